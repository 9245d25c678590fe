"""The FastAPI application: routers, error mapping, and the lifespan that opens the store and
connects to Ray.

``create_app(settings, launcher)``: with ``settings.ray_address`` the launcher submits to that
cluster's Jobs API (compose); without it the embedded default reuses or starts a local Ray head
on 127.0.0.1 (dashboard on ``local_ray_dashboard_port``) and stops it again on shutdown if it
started it. Tests may pass their own launcher.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from service.dependencies import reject_nul_characters
from service.exceptions import install_error_handlers
from service.routers import analysis, catalog, pages, studies, trials
from studies.lifecycle import Launcher
from studies.settings import Settings
from studies.store import Store
from workers.launcher import LocalRayHead, RayJobLauncher

log = logging.getLogger("service")


def create_app(
    settings: Settings | None = None,
    launcher: Launcher | None = None,
    public_url: str | None = None,
) -> FastAPI:
    """The service's ASGI app (``public_url``: where it is served, for the start-up message)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(settings.resolved_database_url)
        store.upgrade()
        head: LocalRayHead | None = None
        active = launcher
        if active is None:
            if settings.ray_address:
                active = RayJobLauncher(settings.ray_address, settings)
            else:
                head = LocalRayHead(
                    dashboard_port=settings.local_ray_dashboard_port,
                    num_cpus=settings.local_ray_num_cpus,
                    log_path=settings.data_dir / "ray-head.log",
                )
                active = RayJobLauncher(head.ensure(settings), settings)
        if settings.ray_dashboard_url is None:  # the links of the API and the page
            settings.ray_dashboard_url = active.dashboard_url
        app.state.settings, app.state.store, app.state.launcher = settings, store, active
        if public_url:
            log.warning(
                "ready: page %s/ · API docs %s/docs · Ray dashboard %s · data in %s",
                public_url, public_url, active.dashboard_url, settings.data_dir.resolve(),
            )  # fmt: skip
        try:
            yield
        finally:
            store.dispose()
            if head is not None and head.started_here:
                log.info("stopping the local Ray head")
                head.stop()

    app = FastAPI(
        title="η-sensitivity service",
        description="Submit optimizer × η studies, run them on Ray Tune, get the answer.",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(reject_nul_characters)],
    )
    install_error_handlers(app)
    for module in (studies, trials, analysis, catalog, pages):
        app.include_router(module.router)
    return app
