"""The FastAPI application: routers, error mapping, the request-body limit, and the lifespan
that opens the store, connects to Ray and runs the reconciler.

``create_app(settings, launcher)``: with ``settings.ray_address`` the launcher submits to that
cluster's Jobs API (compose); without it the embedded default reuses or starts a local Ray head
on 127.0.0.1 (dashboard on ``local_ray_dashboard_port``) and stops it again on shutdown if it
started it. Tests may pass their own launcher. Unless ``reconcile_interval_seconds`` is 0, a
:class:`~studies.reconciler.ReconcilerThread` relaunches stranded studies while the app runs.

Every request body is bounded by ``max_body_bytes`` (:class:`BodyLimit`): a larger one is a 413
before the app reads it (its Content-Length), or as soon as the streamed bytes pass the limit.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.dependencies import reject_nul_characters, require_read_token
from service.exceptions import install_error_handlers
from service.routers import analysis, catalog, live, pages, studies, trials
from service.routers import compare as compare_routes
from studies.lifecycle import Launcher
from studies.reconciler import Reconciler, ReconcilerThread
from studies.settings import Settings
from studies.store import Store
from workers.launcher import LocalRayHead, RayJobLauncher

log = logging.getLogger("service")


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is a 413 ``{"detail": …}``.

    A declared Content-Length over the limit is answered at once, before the app runs; a body
    without one (chunked) is counted as the app receives it, and the chunk that passes the limit
    ends the request with the 413 — so no body larger than the limit is ever held in memory.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"body: larger than the limit of {self.max_bytes} bytes (SENSITIVITY_MAX_BODY_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": self._message()}, 413)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI passes an HTTPException raised while reading the body through to
                    # its handler: the client gets the 413 with this detail
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited, send)


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
        if settings.public_url is None:  # the page links of the Ray jobs' metadata
            settings.public_url = public_url
        app.state.settings, app.state.store, app.state.launcher = settings, store, active
        reconciler = Reconciler(
            store,
            active,
            max_launch_attempts=settings.max_launch_attempts,
            grace_seconds=settings.reconcile_grace_seconds,
        )
        app.state.reconciler = reconciler
        background = None
        if settings.reconcile_interval_seconds > 0:
            background = ReconcilerThread(reconciler, settings.reconcile_interval_seconds)
            background.start()
        if public_url:
            log.warning(
                "ready: page %s/ · API docs %s/docs · Ray dashboard %s · data in %s",
                public_url, public_url, active.dashboard_url, settings.data_dir.resolve(),
            )  # fmt: skip
        try:
            yield
        finally:
            if background is not None:
                background.stop()
            store.dispose()
            if head is not None and head.started_here:
                log.info("stopping the local Ray head")
                head.stop()

    app = FastAPI(
        title="η-sensitivity service",
        description="Submit optimizer × η studies, run them on Ray Tune, get the answer.",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(reject_nul_characters), Depends(require_read_token)],
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    for module in (studies, trials, analysis, catalog, pages):
        app.include_router(module.router)
    app.include_router(live.router)  # the live page's events, curves and plots
    app.mount("/ui/static", live.static_files, name="static")  # the live page's script
    app.include_router(compare_routes.router)  # GET /compare and its page /ui/compare
    return app
