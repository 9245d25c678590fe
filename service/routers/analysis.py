"""The answers: heatmap, good-η ranges, tunability, importance, sensitivity curves, CSV export."""

import csv
import io
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy.orm import Session

from service.dependencies import SessionDep
from service.exceptions import AnalysisUnavailable, error_responses
from service.models import (
    ExportRow,
    Heatmap,
    ImportanceByOptimizer,
    Reproduction,
    Robustness,
    Sensitivity,
    TrialOut,
    Tunability,
)
from studies import analysis, rendering
from studies.catalog.tasks import TASKS
from studies.reproduction import study_reproduction
from studies.store import repository
from studies.trial import TrialRecord

# the share of a cell's seeds that must be finite for it to count as working (default: all)
MinFiniteFraction = Annotated[float, Query(gt=0, le=1, description="share of seeds finite")]
router = APIRouter(
    prefix="/studies/{study_id}", tags=["analysis"], responses=error_responses(404, 422)
)
ImageFormat = Literal["json", "png", "svg"]
# the 200 of an analysis that is drawn on request (format=png|svg) besides its JSON
IMAGES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the JSON, or the plot with format=png or format=svg",
        "content": {"image/png": {}, "image/svg+xml": {}},
    }
}


def _parse_value(text: str) -> Any:
    """A slice value from a query string: null/none, an int, a float, or the text itself."""
    if text.lower() in ("null", "none"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class Selection:
    """The query parameters every analysis shares: metric, direction and the slice."""

    def __init__(
        self,
        metric: Annotated[
            str, Query(description="final_objective, val_accuracy, …")
        ] = "final_objective",
        direction: Annotated[Literal["minimize", "maximize"] | None, Query()] = None,
        batch_size: Annotated[int | None, Query(ge=1)] = None,
        radius: Annotated[str | None, Query(description="a number, or 'none'")] = None,
        weight_decay: Annotated[str | None, Query(description="a number, or 'none'")] = None,
        axis: Annotated[list[str] | None, Query(description="other axes: name:value")] = None,
    ) -> None:
        self.metric = metric
        self.direction = direction
        self.slice: dict[str, Any] = {}
        if batch_size is not None:
            self.slice["batch_size"] = batch_size
        for name, text in (("radius", radius), ("weight_decay", weight_decay)):
            if text is not None:
                value = _parse_value(text)
                if isinstance(value, str):
                    raise AnalysisUnavailable(f"{name}: must be a number or 'none', got {text!r}")
                self.slice[name] = value
        for item in axis or []:
            name, sep, text = item.partition(":")
            if not sep or not name:
                raise AnalysisUnavailable(f"axis: expected name:value, got {item!r}")
            self.slice[name] = _parse_value(text)

    def resolve(self, session: Session, study_id: str) -> tuple[list[TrialRecord], str]:
        """The study's records and the metric's direction (from the task catalog by default)."""
        study = repository.get_study(session, study_id)
        metrics = TASKS[study.task].metrics if study.task in TASKS else {}
        if self.metric != "final_objective" and self.metric not in metrics:
            known = ", ".join(metrics) or "final_objective"
            raise AnalysisUnavailable(
                f"metric: {study.task} has no metric {self.metric!r}; known: {known}"
            )
        direction = self.direction or metrics.get(self.metric, "minimize")
        return repository.trial_records(session, study_id), direction

    def analyse(
        self,
        session: Session,
        study_id: str,
        function: Callable[..., Any],
        *,
        sliced: bool = True,
        **options: Any,
    ) -> tuple[Any, str]:
        """``function(records, metric, direction, slice=..., **options)`` on the study's records,
        and the direction it used; ``sliced=False`` for analyses over every slice at once.

        The analysis' ValueErrors (a slice to choose, nothing finished yet) are 422s.
        """
        records, direction = self.resolve(session, study_id)
        if sliced:
            options["slice"] = self.slice or None
        try:
            return function(records, self.metric, direction, **options), direction
        except ValueError as error:
            raise AnalysisUnavailable(str(error)) from error


def _image(data: bytes, fmt: str) -> Response:
    return Response(data, media_type=rendering.FORMATS[fmt].media_type)


@router.get("/heatmap", response_model=Heatmap, responses=IMAGES)
def heatmap(
    study_id: str,
    session: SessionDep,
    selection: Annotated[Selection, Depends()],
    format: ImageFormat = "json",
) -> Heatmap | Response:
    """Optimizer × η: the median over seeds of the metric per cell, with each cell's status."""
    info, _ = selection.analyse(session, study_id, analysis.heatmap)
    if format == "json":
        return Heatmap.of(info)
    study = repository.get_study(session, study_id)
    return _image(
        rendering.render_heatmap(info, format, title=f"{study.name}: {selection.metric}"), format
    )


@router.get("/robustness")
def robustness(
    study_id: str,
    session: SessionDep,
    selection: Annotated[Selection, Depends()],
    tolerance: Annotated[float | None, Query(gt=0)] = None,
    threshold: float | None = None,
    min_finite_fraction: MinFiniteFraction = 1.0,
) -> Robustness:
    """Per optimizer the widest contiguous good-η range: eta_low, eta_high, decades, best."""
    info, _ = selection.analyse(
        session, study_id, analysis.robustness, tolerance=tolerance, threshold=threshold,
        min_finite_fraction=min_finite_fraction,
    )  # fmt: skip
    return Robustness.of(info)


@router.get("/tunability")
def tunability(
    study_id: str,
    session: SessionDep,
    selection: Annotated[Selection, Depends()],
    k_max: Annotated[int | None, Query(ge=1, le=1000)] = None,
    diverged: Annotated[Literal["worst", "inf"], Query()] = "worst",
    min_finite_fraction: MinFiniteFraction = 1.0,
) -> Tunability:
    """Expected best after k random η draws (k = 1..K) and the CPE score per optimizer."""
    info, _ = selection.analyse(
        session, study_id, analysis.tunability, k_max=k_max, diverged=diverged,
        min_finite_fraction=min_finite_fraction,
    )  # fmt: skip
    return Tunability.of(info)


@router.get("/importance")
def importance(
    study_id: str,
    session: SessionDep,
    selection: Annotated[Selection, Depends()],
    optimizer: str | None = None,
) -> ImportanceByOptimizer:
    """Per optimizer (or only ``optimizer``), the importance of η, batch size, radius, weight
    decay on log10 of the objective, diverged trials as a penalty (fANOVA and PED-ANOVA)."""
    info, _ = selection.analyse(
        session, study_id, analysis.importance_by_optimizer, sliced=False,
        optimizers=[optimizer] if optimizer else None,
    )  # fmt: skip
    return ImportanceByOptimizer.of(info)


@router.get("/reproduction")
def reproduction(study_id: str, session: SessionDep) -> Reproduction:
    """The published claims of the study's paper preset, checked on its results: claimed,
    measured, pass/fail (or "not enough budget" when the study ran a smaller budget)."""
    study = repository.get_study(session, study_id)
    records = repository.trial_records(session, study_id)
    return Reproduction.of(study_reproduction(study.tags, study.task, study.spec, records))


@router.get("/sensitivity", response_model=Sensitivity, responses=IMAGES)
def sensitivity(
    study_id: str,
    session: SessionDep,
    selection: Annotated[Selection, Depends()],
    format: ImageFormat = "json",
) -> Sensitivity | Response:
    """Per optimizer the metric against η with the spread over seeds."""
    info, direction = selection.analyse(session, study_id, analysis.sensitivity)
    if format == "json":
        return Sensitivity.of(info)
    return _image(
        rendering.render_sensitivity(info, selection.metric, direction, format=format), format
    )


EXPORT_AXES = ("key", "optimizer", "eta", "batch_size", "radius", "weight_decay", "seed")
EXPORT_OUTCOME = ("status", "final_objective", "attempts", "reason")


def export_rows(trials: Sequence[TrialRecord]) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and JSON-safe rows of the export: each trial's :class:`TrialOut` fields
    (axes, then outcome), with one column per other axis and per last metric."""
    outs = [TrialOut.of(t) for t in trials]
    extra = sorted({name for t in outs for name in t.extra_axes})
    metrics = sorted({name for t in outs for name in t.metrics})
    columns = [*EXPORT_AXES, *extra, *EXPORT_OUTCOME, *metrics]
    rows = []
    for t in outs:
        fields = t.model_dump(mode="json", include={*EXPORT_AXES, *EXPORT_OUTCOME})
        row = {**fields, **{n: t.extra_axes.get(n) for n in extra}}
        row.update({n: t.metrics.get(n) for n in metrics})
        rows.append({name: row[name] for name in columns})
    return columns, rows


@router.get(
    "/export",
    response_model=list[ExportRow],
    responses={200: {"description": "CSV (default) or JSON rows", "content": {"text/csv": {}}}},
)
def export(
    study_id: str,
    session: SessionDep,
    format: Literal["csv", "json"] = "csv",
) -> Response:
    """One row per trial: its axes, status, final objective and last metrics."""
    repository.get_study(session, study_id)
    trials = []
    cursor = None
    while True:
        page = repository.list_trials(session, study_id, limit=500, cursor=cursor)
        trials.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    columns, rows = export_rows(trials)
    if format == "json":
        return Response(json.dumps(rows, allow_nan=False), media_type="application/json")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    headers = {"Content-Disposition": f'attachment; filename="study-{study_id}.csv"'}
    return Response(buffer.getvalue(), media_type="text/csv", headers=headers)
