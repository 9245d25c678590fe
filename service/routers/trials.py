"""``/studies/{id}/trials``: the trials of a study and their curves."""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from service.dependencies import SessionDep
from service.exceptions import error_responses
from service.models import TrialCurve, TrialOut, TrialPage
from studies import rendering
from studies.store import repository

router = APIRouter(
    prefix="/studies/{study_id}/trials", tags=["trials"], responses=error_responses(404, 422)
)


@router.get("")
def list_trials(
    study_id: str,
    session: SessionDep,
    optimizer: str | None = None,
    status: str | None = None,
    eta_min: Annotated[float | None, Query(gt=0)] = None,
    eta_max: Annotated[float | None, Query(gt=0)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> TrialPage:
    """Trials in creation order, filtered by optimizer (row), status and an η range."""
    page = repository.list_trials(
        session, study_id, optimizer=optimizer, status=status, eta_min=eta_min, eta_max=eta_max,
        limit=limit, cursor=cursor,
    )  # fmt: skip
    return TrialPage(items=[TrialOut.of(t) for t in page.items], next_cursor=page.next_cursor)


@router.get("/{key}")
def get_trial(study_id: str, key: str, session: SessionDep) -> TrialOut:
    """One trial: axes, config, status, result, attempts."""
    return TrialOut.of(repository.get_trial(session, study_id, key))


@router.get(
    "/{key}/metrics",
    response_model=TrialCurve,
    responses={200: {"content": {f.media_type: {} for f in rendering.FORMATS.values()}}},
)
def metrics(
    study_id: str,
    key: str,
    session: SessionDep,
    name: str | None = None,
    format: Annotated[str, Query(pattern="^(json|png|svg|pdf)$")] = "json",
) -> TrialCurve | Response:
    """The trial's curves: points (step, name, value), optionally of one metric, or a plot."""
    points = repository.metric_curve(session, study_id, key, name)
    if format == "json":
        return TrialCurve.of(key, points)
    curves: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        curves.setdefault(p.name, []).append((p.step, p.value))
    data = rendering.render_learning_curves(curves, name or "metrics", format=format)
    return Response(data, media_type=rendering.FORMATS[format].media_type)
