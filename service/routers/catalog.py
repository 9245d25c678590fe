"""What a study may use: presets, tasks, optimizers; and the service's health."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from optim.registry import OPTIMIZERS
from service.dependencies import LauncherDep, SettingsDep, StoreDep
from studies.analysis import json_safe
from studies.presets import load_preset, preset_names
from studies.tasks import TASKS
from workers.launcher import dashboard_answers

router = APIRouter(tags=["catalog"])


@router.get("/presets")
def presets() -> dict:
    """The shipped study presets with their specs."""
    return {"items": [{"name": name, "spec": load_preset(name)} for name in preset_names()]}


@router.get("/tasks")
def tasks() -> dict:
    """Every task: budget unit, defaults, metrics (with direction) and its options' schema."""
    items = []
    for spec in TASKS.values():
        items.append(
            {
                "name": spec.name,
                "description": spec.description,
                "budget_unit": spec.budget_unit,
                "default_budget": spec.default_budget,
                "default_batch_size": spec.default_batch_size,
                "metrics": spec.metrics,
                "options": spec.options.model_json_schema(),
                "defaults": spec.options().model_dump(mode="json"),
            }
        )
    return {"items": items}


@router.get("/optimizers")
def optimizers() -> dict:
    """Every optimizer: what η means for it, how it steps, its options and their defaults."""
    items = []
    for info in OPTIMIZERS.values():
        items.append(
            json_safe(
                {
                    "name": info.name,
                    "description": info.description,
                    "eta_meaning": info.eta_meaning,
                    "eta_may_be_null": info.eta_may_be_none,
                    "closure": info.closure,
                    "native_radius": info.native_radius,
                    "reports_step_size": info.reports_step_size,
                    "options": {
                        name: {"default": option.default, "help": option.help}
                        for name, option in info.options.items()
                        if name not in info.required_options
                    },
                }
            )
        )
    return {"items": items}


@router.get("/health")
def health(
    store: StoreDep,
    launcher: LauncherDep,
    settings: SettingsDep,
) -> Any:
    """Database and Ray reachability; 503 when either is down."""
    checks: dict[str, Any] = {}
    try:
        with store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = {"ok": True, "dialect": store.dialect}
    except Exception as error:  # reported, not raised: this endpoint diagnoses
        checks["database"] = {"ok": False, "error": str(error)}
    ray_url = getattr(launcher, "address", None) or launcher.dashboard_url
    checks["ray"] = {"ok": dashboard_answers(ray_url), "dashboard": launcher.dashboard_url}
    ok = all(check["ok"] for check in checks.values())
    return JSONResponse({"status": "ok" if ok else "degraded", **checks}, 200 if ok else 503)
