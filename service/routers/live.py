"""What the live study page reads besides the analysis routes: the study's events, every
trial's curves, and the plots the analysis routes serve as JSON only (tunability, importance).

- ``GET /studies/{id}/events``: server-sent events (``text/event-stream``). The stream polls the
  store every ``interval`` seconds, each time in a short session of its own in the threadpool
  (no session is held between polls, nor while the client waits), and sends ``version`` with
  the study's status, progress and an opaque version token whenever that token changes (the
  first poll always sends one), ``heartbeat`` when nothing was sent for ``heartbeat`` seconds,
  and ``end`` once the study is finished (``succeeded``, ``failed``, ``cancelled``) or deleted;
  then it closes. It stops polling as soon as the client disconnects. The token is a digest of
  the study's status, :func:`service.cache.study_version` (which moves when a trial's row does:
  it starts, finishes, is requeued) and :func:`studies.store.repository.latest_steps` (which
  moves when a report adds curve points at a new step, which no trial row sees), so it changes
  whenever a trial or its curves do: the page appends it to its figure URLs (``v=…``) to fetch
  a figure again only then.
- ``GET /studies/{id}/curves``: every trial's curve of one metric (default ``train_loss``) in
  one slice, per optimizer, or only ``optimizer``'s, or only one heatmap cell's seeds
  (``optimizer`` and ``eta``): JSON (the stored points) or a figure drawn by
  :func:`studies.rendering.render_trial_curves` in any format of the registry.
- ``GET /studies/{id}/plots/tunability`` and ``/plots/importance``: the figures of the
  tunability and importance analyses (or, with ``format=json``, their JSON), with the query
  parameters of their JSON routes.
- ``/ui/static/study.js``: the page's script, from :data:`static_files` (the app mounts it).

Every answer but the events is cached per study version like the analysis routes' answers;
the curves' key also holds :func:`~studies.store.repository.latest_steps`, so a running trial's
new points are drawn without waiting for a trial to change (the analyses read final values,
which only a trial's row holds, so their keys leave it out).
"""

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session

from service.cache import Answer, study_version
from service.dependencies import SessionDep
from service.exceptions import AnalysisUnavailable, error_responses
from service.models import ApiModel, ImportanceByOptimizer, Progress, Tunability
from service.routers.analysis import (
    CacheDep,
    Diverged,
    KMax,
    MinFiniteFraction,
    Selection,
    cached_answer,
    image_answer,
    json_answer,
    key_parameters,
)
from studies import analysis, rendering
from studies.exceptions import InvalidQuery, StudyNotFound
from studies.rendering.labels import slice_label
from studies.statuses import STUDY_FINISHED
from studies.store import Store, StudyInfo, repository
from studies.trial import TrialRecord, eta_sort_key

router = APIRouter(tags=["live"], responses=error_responses(404, 422))
STATIC = Path(__file__).resolve().parent.parent / "static"

DEFAULT_CURVE = "train_loss"
# the formats of a figure: the rendering registry's, and JSON for the data
FIGURE_FORMATS = "|".join(rendering.FORMATS)
FORMAT_PATTERN = f"^(json|{FIGURE_FORMATS})$"
FIGURE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the figure in the requested format, or the analysis' JSON",
        "content": {f.media_type: {} for f in rendering.FORMATS.values()},
    }
}


# --- events -----------------------------------------------------------------------------------


class StudyState(ApiModel):
    """The data of a ``version`` event (and of ``end``): what the page shows of the study."""

    version: str  # opaque: changes whenever the status, a trial or a trial's curves change
    status: str
    progress: Progress
    error: str | None


def study_state(store: Store, study_id: str) -> dict[str, Any]:
    """:func:`state_of` the study, read in one short session of its own."""
    with store.session() as session:
        return state_of(session, study_id)


def state_of(session: Session, study_id: str) -> dict[str, Any]:
    """The study's status, progress, error and version token (``StudyNotFound``: a 404); the
    token digests the status, the study's version and its curves' latest steps."""
    study = repository.get_study(session, study_id)
    version = study_version(session, study_id)
    steps = repository.latest_steps(session, study_id)
    progress = repository.study_progress(session, study_id)
    stamp = version.updated_at.isoformat() if version.updated_at else ""
    text = f"{study.status}|{version.trials}|{version.finished}|{version.attempts}|{stamp}|{steps}"
    state = StudyState(
        version=hashlib.sha256(text.encode()).hexdigest()[:16],
        status=study.status,
        progress=Progress.of(progress),
        error=study.error,
    )
    return state.model_dump(mode="json")


def sse(event: str, data: Any, id: str | None = None) -> str:
    """One server-sent event: its name, an optional id and one line of JSON data."""
    head = f"event: {event}\n" + (f"id: {id}\n" if id else "")
    return head + f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


async def study_events(
    request: Request, store: Store, study_id: str, first: dict[str, Any],
    interval: float, heartbeat: float,
) -> AsyncIterator[str]:  # fmt: skip
    """The event stream of :func:`events` (see the module docstring), from a first state."""
    loop = asyncio.get_running_loop()
    state: dict[str, Any] | None = first
    sent_version, last_sent = None, loop.time()
    while True:
        if state is None:  # deleted while the client watched
            yield sse("end", {"status": "deleted"})
            return
        if state["version"] != sent_version:
            yield sse("version", state, id=state["version"])
            sent_version, last_sent = state["version"], loop.time()
        if state["status"] in STUDY_FINISHED:
            yield sse("end", state)
            return
        await asyncio.sleep(interval)
        if await request.is_disconnected():
            return
        if loop.time() - last_sent >= heartbeat:
            yield sse("heartbeat", {"at": datetime.now(UTC).isoformat()})
            last_sent = loop.time()
        try:
            state = await run_in_threadpool(study_state, store, study_id)
        except StudyNotFound:
            state = None


@router.get(
    "/studies/{study_id}/events",
    response_model=StudyState,
    responses={
        200: {
            "description": "server-sent events; the data of `version` and `end` is a StudyState",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def events(
    study_id: str,
    request: Request,
    interval: Annotated[float, Query(ge=0.1, le=60, description="seconds between polls")] = 1.0,
    heartbeat: Annotated[float, Query(ge=1, le=300, description="seconds of silence")] = 15.0,
) -> StreamingResponse:
    """Server-sent events of the study: ``version`` (status, progress, version token) whenever
    a trial or the status changes, ``heartbeat`` when quiet, ``end`` once it is finished."""
    store: Store = request.app.state.store
    first = await run_in_threadpool(study_state, store, study_id)  # an unknown study: a 404
    return StreamingResponse(
        study_events(request, store, study_id, first, interval, heartbeat),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# --- curves -----------------------------------------------------------------------------------


class SliceQuery:
    """The slice of the analysis routes (batch size, radius, weight decay, other axes), parsed
    by the same :class:`~service.routers.analysis.Selection`, without its metric."""

    def __init__(
        self,
        batch_size: Annotated[int | None, Query(ge=1)] = None,
        radius: Annotated[str | None, Query(description="a number, or 'none'")] = None,
        weight_decay: Annotated[str | None, Query(description="a number, or 'none'")] = None,
        axis: Annotated[list[str] | None, Query(description="other axes: name:value")] = None,
    ) -> None:
        selection = Selection(
            batch_size=batch_size, radius=radius, weight_decay=weight_decay, axis=axis
        )
        self.slice: dict[str, Any] = selection.slice


class CurveTrial(ApiModel):
    """One trial's curve: its axes, outcome and ``[step, value]`` points (null: NaN/±inf)."""

    key: str
    optimizer: str
    eta: float | None  # None = ALI-G∞
    seed: int
    status: str
    final_objective: float | None
    reason: str | None
    points: list[tuple[int, float | None]]


class Curves(ApiModel):
    """Per optimizer (panel) the curves of its trials in one slice."""

    metric: str
    metrics: list[str]  # the curve names the selected trials recorded
    slice: dict[str, Any]
    optimizer: str | None  # only this optimizer's trials, when asked
    eta: float | None  # only this η's trials, when asked (with cell = true)
    cell: bool  # whether one optimizer × η cell was asked for
    panels: dict[str, list[CurveTrial]]


def _parse_eta(text: str | None) -> tuple[bool, float | None]:
    """``(asked, η)`` from the ``eta`` parameter: a positive number, or ``none`` for ALI-G∞."""
    if text is None:
        return False, None
    if text.strip().lower() in ("none", "null", "inf"):
        return True, None
    try:
        eta = float(text)
    except ValueError:
        raise InvalidQuery(f"eta: must be a number or 'none' (ALI-G∞), got {text!r}") from None
    if not eta > 0 or eta == float("inf"):
        raise InvalidQuery(f"eta: must be a positive finite number or 'none', got {text!r}")
    return True, eta


def select_curve_trials(
    records: Sequence[TrialRecord],
    slice: dict[str, Any],
    optimizer: str | None,
    eta_text: str | None,
) -> tuple[dict[str, list[TrialRecord]], dict[str, Any], bool, float | None]:
    """The trials to draw by panel (optimizer, first-seen order), the chosen slice, whether a
    cell was asked for and its η. A 422 names the parameter: an optimizer or an η no trial of
    the slice has, an η without an optimizer, a slice to choose."""
    try:
        selected, chosen = analysis.select_slice(records, slice or None)
    except ValueError as error:
        raise AnalysisUnavailable(str(error)) from error
    optimizers = list(dict.fromkeys(r.optimizer for r in selected))
    if optimizer is not None and optimizer not in optimizers:
        known = ", ".join(repr(name) for name in optimizers) or "none"
        raise InvalidQuery(
            f"optimizer: no trial of {optimizer!r} in this slice; the optimizers are {known}"
        )
    cell, eta = _parse_eta(eta_text)
    if cell and optimizer is None:
        raise InvalidQuery("eta: needs optimizer (a cell is an optimizer and an η)")
    panels: dict[str, list[TrialRecord]] = {}
    for record in selected:
        if optimizer is not None and record.optimizer != optimizer:
            continue
        if cell and record.eta != eta:
            continue
        panels.setdefault(record.optimizer, []).append(record)
    if cell and not panels:
        etas = sorted({r.eta for r in selected if r.optimizer == optimizer}, key=eta_sort_key)
        shown = ", ".join("none" if e is None else f"{e:g}" for e in etas)
        raise InvalidQuery(f"eta: {optimizer!r} has no trial at η = {eta_text}; its η: {shown}")
    for trials in panels.values():
        trials.sort(key=lambda r: (eta_sort_key(r.eta), r.seed))
    return panels, chosen, cell, eta


def _curves_title(study: StudyInfo, metric: str, chosen: dict[str, Any], cell: bool,
                  optimizer: str | None, eta: float | None) -> str:  # fmt: skip
    where = slice_label(chosen)
    if cell:
        eta_text = "∞" if eta is None else f"{eta:g}"
        head = f"{study.name}: {metric} of {optimizer} at η = {eta_text}, by seed"
    else:
        head = f"{study.name}: {metric} of every trial, coloured by η"
    return head + (f"\n{where}" if where else "")


@router.get("/studies/{study_id}/curves", response_model=Curves, responses=FIGURE)
def curves(
    study_id: str,
    session: SessionDep,
    cache: CacheDep,
    where: Annotated[SliceQuery, Depends()],
    optimizer: Annotated[str | None, Query(description="one optimizer (a heatmap row)")] = None,
    eta: Annotated[str | None, Query(description="with optimizer: one cell; 'none': ∞")] = None,
    metric: Annotated[str, Query(min_length=1, description="a curve's name")] = DEFAULT_CURVE,
    format: Annotated[str, Query(pattern=FORMAT_PATTERN)] = "json",
) -> Response:
    """Every trial's curve of ``metric`` in one slice, one panel per optimizer, coloured by η
    (log scale), diverged trials dashed and marked; with ``optimizer`` and ``eta`` one cell's
    seeds. JSON: the stored points; png/svg/pdf: the figure."""

    def produce(study: StudyInfo, records: list[TrialRecord]) -> Answer:
        panels, chosen, cell, eta_value = select_curve_trials(records, where.slice, optimizer, eta)
        keys = [r.key for trials in panels.values() for r in trials]
        points = repository.curve_points(session, study.id, keys, metric)
        names = repository.curve_names(session, study.id, keys)
        if names and metric not in names:
            raise AnalysisUnavailable(
                f"metric: no trial here recorded a curve {metric!r}; recorded: {', '.join(names)}"
            )
        if format == "json":
            body = {
                "metric": metric, "metrics": names, "slice": chosen, "optimizer": optimizer,
                "eta": eta_value, "cell": cell,
                "panels": {
                    name: [
                        {
                            "key": r.key, "optimizer": r.optimizer, "eta": r.eta, "seed": r.seed,
                            "status": r.status, "final_objective": r.final_objective,
                            "reason": r.reason, "points": points[r.key],
                        }
                        for r in trials
                    ]
                    for name, trials in panels.items()
                },
            }  # fmt: skip
            return json_answer(Curves.model_validate(body))
        drawn = {
            name: [rendering.RunCurve(r.eta, r.seed, r.status, points[r.key]) for r in trials]
            for name, trials in panels.items()
        }
        title = _curves_title(study, metric, chosen, cell, optimizer, eta_value)
        image = rendering.render_trial_curves(
            drawn, metric, format, title=title, colour_by="seed" if cell else "eta"
        )
        return image_answer(image, format)

    study = repository.get_study(session, study_id)  # a 404 before anything else
    # the study's version does not move while a trial reports; its latest steps do
    steps = repository.latest_steps(session, study.id)
    key = ("curves", format, metric, optimizer, eta, key_parameters(where.slice), steps)
    return cached_answer(session, cache, study, key, produce)


# --- plots of the analyses served as JSON only ------------------------------------------------


def _tunability_figure(info: Any, study: StudyInfo, direction: str, fmt: str) -> bytes:
    """The :data:`~service.routers.analysis.Draw` of ``/plots/tunability``."""
    return rendering.render_tunability(info, fmt)


def _importance_figure(info: Any, study: StudyInfo, direction: str, fmt: str) -> bytes:
    """The :data:`~service.routers.analysis.Draw` of ``/plots/importance``."""
    return rendering.render_importance(info, fmt)


@router.get("/studies/{study_id}/plots/tunability", response_model=Tunability, responses=FIGURE)
def tunability_plot(
    study_id: str,
    session: SessionDep,
    cache: CacheDep,
    selection: Annotated[Selection, Depends()],
    k_max: KMax = None,
    diverged: Diverged = "worst",
    min_finite_fraction: MinFiniteFraction = 1.0,
    format: Annotated[str, Query(pattern=FORMAT_PATTERN)] = "png",
) -> Response:
    """The figure of ``/tunability`` (its JSON with ``format=json``): expected best after k η
    draws per optimizer, with CPE."""
    options = {"k_max": k_max, "diverged": diverged, "min_finite_fraction": min_finite_fraction}

    produce = selection.analysed(
        analysis.tunability, Tunability, format=format, draw=_tunability_figure, **options
    )
    return selection.answer(
        session, cache, study_id, "tunability-plot", produce, format=format, **options
    )


@router.get(
    "/studies/{study_id}/plots/importance", response_model=ImportanceByOptimizer, responses=FIGURE
)
def importance_plot(
    study_id: str,
    session: SessionDep,
    cache: CacheDep,
    selection: Annotated[Selection, Depends()],
    optimizer: str | None = None,
    format: Annotated[str, Query(pattern=FORMAT_PATTERN)] = "png",
) -> Response:
    """The figure of ``/importance`` (its JSON with ``format=json``): per optimizer the
    importance of each hyperparameter."""

    produce = selection.analysed(
        analysis.importance_by_optimizer, ImportanceByOptimizer, format=format,
        draw=_importance_figure, sliced=False, optimizers=[optimizer] if optimizer else None,
    )  # fmt: skip
    return selection.answer(
        session, cache, study_id, "importance-plot", produce, format=format, optimizer=optimizer
    )


# --- the page's script ------------------------------------------------------------------------

# the live page's script (plain JavaScript, no build step), mounted by the app at /ui/static:
# code, not data, so like the API docs it needs no token
static_files = StaticFiles(directory=STATIC)
