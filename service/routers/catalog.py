"""What a study may use: presets, tasks, optimizers; and the service's health."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.dependencies import LauncherDep, SettingsDep, StoreDep
from service.exceptions import error_responses
from service.models import (
    DatabaseDown,
    DatabaseUp,
    Health,
    OptimizerList,
    OptimizerOut,
    PresetList,
    PresetOut,
    RayCheck,
    TaskList,
    TaskOut,
)
from studies.catalog.optimizers import OPTIMIZERS
from studies.catalog.tasks import TASKS
from studies.presets import load_preset, preset_names
from workers.launcher import dashboard_answers

router = APIRouter(tags=["catalog"], responses=error_responses(422))


@router.get("/presets")
def presets() -> PresetList:
    """The shipped study presets with their specs."""
    return PresetList(
        items=[PresetOut(name=name, spec=load_preset(name)) for name in preset_names()]
    )


@router.get("/tasks")
def tasks() -> TaskList:
    """Every task: budget unit, defaults, metrics (with direction) and its options' schema."""
    return TaskList(items=[TaskOut.of(spec) for spec in TASKS.values()])


@router.get("/optimizers")
def optimizers() -> OptimizerList:
    """Every optimizer: what η means for it, how it steps, its options (defaults, help) and
    their JSON schema (from the torch-free catalog, :mod:`studies.catalog.optimizers`)."""
    return OptimizerList(items=[OptimizerOut.of(info) for info in OPTIMIZERS.values()])


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "the database or Ray is unreachable"}},
)
def health(
    store: StoreDep,
    launcher: LauncherDep,
    settings: SettingsDep,
) -> JSONResponse:
    """Database and Ray reachability; 503 when either is down."""
    database: DatabaseUp | DatabaseDown
    try:
        with store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        database = DatabaseUp(ok=True, dialect=store.dialect)
    except Exception as error:  # reported, not raised: this endpoint diagnoses
        database = DatabaseDown(ok=False, error=str(error))
    ray_url = getattr(launcher, "address", None) or launcher.dashboard_url
    ray = RayCheck(ok=dashboard_answers(ray_url), dashboard=launcher.dashboard_url)
    ok = database.ok and ray.ok
    body = Health(status="ok" if ok else "degraded", database=database, ray=ray)
    return JSONResponse(body.model_dump(mode="json"), 200 if ok else 503)
