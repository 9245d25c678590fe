"""JSON shapes of the API's resources (no NaN/Infinity ever: non-finite numbers become null)."""

from datetime import datetime
from typing import Any

from studies.analysis import json_safe
from studies.store import Progress, StudyInfo, TrialInfo


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def study_json(
    study: StudyInfo, progress: Progress, dashboard_url: str | None, *, full: bool = True
) -> dict[str, Any]:
    """A study with its progress; ``full`` adds the spec."""
    base = f"/studies/{study.id}"
    body: dict[str, Any] = {
        "id": study.id,
        "name": study.name,
        "task": study.task,
        "tags": study.tags,
        "status": study.status,
        "progress": progress.as_dict(),
        "n_trials": progress.total,
        "error": study.error,
        "created_at": _time(study.created_at),
        "started_at": _time(study.started_at),
        "finished_at": _time(study.finished_at),
        "ray_job_id": study.ray_job_id,
        "dashboard_url": _job_link(dashboard_url, study.ray_job_id),
        "links": {
            "self": base,
            "trials": f"{base}/trials",
            "heatmap": f"{base}/heatmap",
            "heatmap_png": f"{base}/heatmap?format=png",
            "robustness": f"{base}/robustness",
            "tunability": f"{base}/tunability",
            "importance": f"{base}/importance",
            "export": f"{base}/export?format=csv",
            "page": f"/ui/studies/{study.id}",
        },
    }
    if full:
        body["spec"] = study.spec
    return body


def _job_link(dashboard_url: str | None, job_id: str | None) -> str | None:
    if not dashboard_url:
        return None
    return f"{dashboard_url.rstrip('/')}/#/jobs" + (f"/{job_id}" if job_id else "")


def trial_json(trial: TrialInfo) -> dict[str, Any]:
    """A trial row."""
    return json_safe(
        {
            "key": trial.key,
            "optimizer": trial.optimizer,
            "eta": trial.eta,
            "batch_size": trial.batch_size,
            "radius": trial.radius,
            "weight_decay": trial.weight_decay,
            "seed": trial.seed,
            "extra_axes": trial.extra_axes,
            "status": trial.status,
            "final_objective": trial.final_objective,
            "objective_kind": trial.objective_kind,
            "metrics": trial.metrics,
            "reason": trial.reason,
            "attempts": trial.attempts,
            "config": trial.config,
            "started_at": _time(trial.started_at),
            "finished_at": _time(trial.finished_at),
        }
    )
