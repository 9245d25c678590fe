"""The answers: heatmap, good-η ranges, tunability, importance, sensitivity curves, CSV export.

Each analysis reads the trials' final values or, with ``value=best``, the best value each trial
reached during training (:mod:`studies.analysis.values`, docs/analysis.md): the records are
mapped once (:meth:`Selection.records_for`) before any analysis runs, the best values coming
from the stored curves (:func:`curve_extremes`, one aggregate query of the store), and every
JSON answer carries the ``value`` it used.

Every answer (JSON, image, export) is computed once per study version and served from the
app's :class:`~service.cache.AnswerCache` until a trial of the study changes (see
:mod:`service.cache`): a repeated request costs two small queries (the study, its version)
instead of reading every trial and analysing or drawing them again. The routes are plain
``def`` functions, so FastAPI runs them in its threadpool: a cold analysis or a drawing never
blocks the event loop, and concurrent requests for the same answer compute it once.
"""

import csv
import io
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from service.cache import Answer, AnswerCache, study_version
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
from studies.analysis import CurveExtremes, Extremes, ValueMode
from studies.catalog.tasks import TASKS
from studies.reproduction import study_reproduction
from studies.store import StudyInfo, repository
from studies.trial import TrialRecord

# the share of a cell's seeds that must be finite for it to count as working (default: all)
MinFiniteFraction = Annotated[float, Query(gt=0, le=1, description="share of seeds finite")]
# which value of each trial the analyses read (docs/analysis.md)
ValueQuery = Annotated[
    ValueMode,
    Query(description="final: the stored final value; best: the best seen during training"),
]
router = APIRouter(
    prefix="/studies/{study_id}", tags=["analysis"], responses=error_responses(404, 422)
)
ImageFormat = Literal["json", "png", "svg", "pdf"]  # json, or a format of rendering.FORMATS
# the 200 of an analysis that is drawn on request (format=png|svg|pdf) besides its JSON
IMAGES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the JSON, or the plot with format=png, svg or pdf",
        "content": {f.media_type: {} for f in rendering.FORMATS.values()},
    }
}
# what an answer is made of once the study and its records are read
Produce = Callable[[StudyInfo, list[TrialRecord]], Answer]
# what an analysis' answer is made of: the study, the records holding the chosen value, the
# metric's direction (:meth:`Selection.answer`)
ProduceAnalysis = Callable[[StudyInfo, list[TrialRecord], str], Answer]
# an analysis' figure: (its result, the study, the metric's direction, the format) -> the image
Draw = Callable[[Any, StudyInfo, str, str], bytes]
# the options of /tunability and of its plot
KMax = Annotated[int | None, Query(ge=1, le=1000)]
Diverged = Annotated[Literal["worst", "inf"], Query()]

_cache_creation = threading.Lock()


def get_answer_cache(request: Request) -> AnswerCache:
    """The app's answer cache, made on first use (one per app, so one per store)."""
    state = request.app.state
    cache = getattr(state, "answer_cache", None)
    if cache is None:
        with _cache_creation:
            cache = getattr(state, "answer_cache", None)
            if cache is None:
                cache = state.answer_cache = AnswerCache()
    return cache


CacheDep = Annotated[AnswerCache, Depends(get_answer_cache)]


def key_parameters(values: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Request parameters as part of a cache key: sorted ``(name, repr)`` pairs. The repr tells
    ``1`` from ``1.0`` (equal in Python, not the same answer: a slice value is echoed back) and
    makes a NaN equal to itself (``threshold=nan`` would otherwise never be found again)."""
    return tuple(sorted((name, repr(value)) for name, value in values.items()))


def cached_answer(
    session: Session,
    cache: AnswerCache,
    study: StudyInfo,
    what: tuple[Any, ...],
    produce: Produce,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The answer ``what`` of ``study``, from the cache or made by ``produce(study, records)``
    (then kept for this version of the study); a kept refusal is raised again as a 422."""
    key = (*what, study.id, study_version(session, study.id))
    answer = cache.get(key, lambda: produce(study, repository.trial_records(session, study.id)))
    if answer.refusal is not None:
        raise AnalysisUnavailable(answer.refusal)
    return Response(answer.body, media_type=answer.media_type, headers=headers)


def json_answer(model: BaseModel) -> Answer:
    """The JSON body FastAPI would send for ``model`` as a response model."""
    return Answer(model.model_dump_json(by_alias=True).encode())


def image_answer(data: bytes, fmt: str) -> Answer:
    return Answer(data, rendering.FORMATS[fmt].media_type)


def curve_extremes(session: Session, study_id: str, curve: str) -> Extremes:
    """Per trial key, the extremes of its stored ``curve`` (:func:`studies.analysis.best_value`
    reads them): :func:`studies.store.repository.curve_extremes`, one aggregate query."""
    found = repository.curve_extremes(session, study_id, curve)
    return {key: {curve: CurveExtremes(low, high)} for key, (low, high) in found.items()}


def records_with_value(
    session: Session,
    study: StudyInfo,
    records: list[TrialRecord],
    value: str,
    metric: str,
    direction: str,
) -> list[TrialRecord]:
    """``records`` with ``metric`` holding the chosen ``value`` (the curves are read only for
    ``best``); a metric without a curve is a 422. A cached answer stays right: a completed
    trial's curve is written before its result, and its result changes the study's version."""
    if value == "final":
        return records
    try:
        curve = analysis.curve_name(metric)
        extremes = curve_extremes(session, study.id, curve)
        return analysis.choose_values(records, value, metric, direction, extremes)  # type: ignore[arg-type]
    except ValueError as error:
        raise AnalysisUnavailable(str(error)) from error


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
    """The query parameters every analysis shares: metric, direction, the slice and which value
    of each trial to read (``final`` or ``best``)."""

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
        value: ValueQuery = "final",
    ) -> None:
        self.metric = metric
        self.direction = direction
        self.value: ValueMode = value
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

    def direction_for(self, study: StudyInfo) -> str:
        """The metric's direction (given, or from the task catalog); a 422 for a metric the
        study's task does not report."""
        metrics = TASKS[study.task].metrics if study.task in TASKS else {}
        if self.metric != "final_objective" and self.metric not in metrics:
            known = ", ".join(metrics) or "final_objective"
            raise AnalysisUnavailable(
                f"metric: {study.task} has no metric {self.metric!r}; known: {known}"
            )
        return self.direction or metrics.get(self.metric, "minimize")

    def records_for(
        self, session: Session, study: StudyInfo, records: list[TrialRecord], direction: str
    ) -> list[TrialRecord]:
        """``records`` holding the chosen value of the metric (:func:`records_with_value`)."""
        return records_with_value(session, study, records, self.value, self.metric, direction)

    def answer(
        self,
        session: Session,
        cache: AnswerCache,
        study_id: str,
        what: str,
        produce: ProduceAnalysis,
        **parameters: Any,
    ) -> Response:
        """:func:`cached_answer` of analysis ``what`` for this selection and ``parameters``;
        ``produce(study, records, direction)`` makes it from the records holding the chosen
        value."""
        study = repository.get_study(session, study_id)  # a 404 before anything else
        direction = self.direction_for(study)
        key = (
            what, self.metric, direction, self.value, key_parameters(self.slice),
            key_parameters(parameters),
        )  # fmt: skip

        def make(study: StudyInfo, records: list[TrialRecord]) -> Answer:
            return produce(study, self.records_for(session, study, records, direction), direction)

        return cached_answer(session, cache, study, key, make)

    def analyse(
        self,
        records: Sequence[TrialRecord],
        function: Callable[..., Any],
        direction: str,
        *,
        sliced: bool = True,
        **options: Any,
    ) -> Any:
        """``function(records, metric, direction, slice=..., **options)``; ``sliced=False`` for
        analyses over every slice at once. The analysis' ValueErrors (a slice to choose,
        nothing finished yet) are 422s."""
        if sliced:
            options["slice"] = self.slice or None
        try:
            return function(records, self.metric, direction, **options)
        except ValueError as error:
            raise AnalysisUnavailable(str(error)) from error

    def analysed(
        self,
        function: Callable[..., Any],
        model: Any,
        *,
        format: str = "json",
        draw: Draw | None = None,
        sliced: bool = True,
        **options: Any,
    ) -> ProduceAnalysis:
        """The ``produce`` of :meth:`answer` for the analysis ``function`` (:meth:`analyse`,
        with ``sliced`` and ``options``): with ``format="json"`` its result as ``model``'s
        JSON (``model.of_value``, which carries the value read), else the image of
        ``draw(result, study, direction, format)``."""

        def produce(study: StudyInfo, records: list[TrialRecord], direction: str) -> Answer:
            info = self.analyse(records, function, direction, sliced=sliced, **options)
            if format == "json":
                return json_answer(model.of_value(info, self.value))
            assert draw is not None  # a route drawn on request passes its figure
            return image_answer(draw(info, study, direction, format), format)

        return produce


@router.get("/heatmap", response_model=Heatmap, responses=IMAGES)
def heatmap(
    study_id: str,
    session: SessionDep,
    cache: CacheDep,
    selection: Annotated[Selection, Depends()],
    format: ImageFormat = "json",
) -> Response:
    """Optimizer × η: the median over seeds of the metric per cell, with each cell's status.
    The image of a large grid is a dense view of bounded size (it says what it leaves out)."""

    def draw(info: Any, study: StudyInfo, direction: str, fmt: str) -> bytes:
        title = f"{study.name}: {selection.metric}"
        title += " (best during training)" if selection.value == "best" else ""
        return rendering.render_heatmap(info, fmt, title=title)

    produce = selection.analysed(analysis.heatmap, Heatmap, format=format, draw=draw)
    return selection.answer(session, cache, study_id, "heatmap", produce, format=format)


@router.get("/robustness", response_model=Robustness)
def robustness(
    study_id: str,
    session: SessionDep,
    cache: CacheDep,
    selection: Annotated[Selection, Depends()],
    tolerance: Annotated[float | None, Query(gt=0)] = None,
    threshold: float | None = None,
    min_finite_fraction: MinFiniteFraction = 1.0,
) -> Response:
    """Per optimizer the widest contiguous good-η range: eta_low, eta_high, decades, best."""
    options = {
        "tolerance": tolerance,
        "threshold": threshold,
        "min_finite_fraction": min_finite_fraction,
    }

    produce = selection.analysed(analysis.robustness, Robustness, **options)
    return selection.answer(session, cache, study_id, "robustness", produce, **options)


@router.get("/tunability", response_model=Tunability)
def tunability(
    study_id: str,
    session: SessionDep,
    cache: CacheDep,
    selection: Annotated[Selection, Depends()],
    k_max: KMax = None,
    diverged: Diverged = "worst",
    min_finite_fraction: MinFiniteFraction = 1.0,
) -> Response:
    """Expected best after k random η draws (k = 1..K) and the CPE score per optimizer."""
    options = {"k_max": k_max, "diverged": diverged, "min_finite_fraction": min_finite_fraction}

    produce = selection.analysed(analysis.tunability, Tunability, **options)
    return selection.answer(session, cache, study_id, "tunability", produce, **options)


@router.get("/importance", response_model=ImportanceByOptimizer)
def importance(
    study_id: str,
    session: SessionDep,
    cache: CacheDep,
    selection: Annotated[Selection, Depends()],
    optimizer: str | None = None,
) -> Response:
    """Per optimizer (or only ``optimizer``), the importance of η, batch size, radius, weight
    decay on log10 of the objective, diverged trials as a penalty (fANOVA and PED-ANOVA)."""

    produce = selection.analysed(
        analysis.importance_by_optimizer, ImportanceByOptimizer, sliced=False,
        optimizers=[optimizer] if optimizer else None,
    )  # fmt: skip
    return selection.answer(session, cache, study_id, "importance", produce, optimizer=optimizer)


@router.get("/reproduction", response_model=Reproduction)
def reproduction(study_id: str, session: SessionDep, cache: CacheDep) -> Response:
    """The published claims of the study's paper preset, checked on its results: claimed,
    measured, pass/fail (or "not enough budget" when the study ran a smaller budget)."""

    def produce(study: StudyInfo, records: list[TrialRecord]) -> Answer:
        report = study_reproduction(study.tags, study.task, study.spec, records)
        return json_answer(Reproduction.of(report))

    study = repository.get_study(session, study_id)
    return cached_answer(session, cache, study, ("reproduction",), produce)


@router.get("/sensitivity", response_model=Sensitivity, responses=IMAGES)
def sensitivity(
    study_id: str,
    session: SessionDep,
    cache: CacheDep,
    selection: Annotated[Selection, Depends()],
    format: ImageFormat = "json",
) -> Response:
    """Per optimizer the metric against η with the spread over seeds."""

    def draw(info: Any, study: StudyInfo, direction: str, fmt: str) -> bytes:
        return rendering.render_sensitivity(info, selection.metric, direction, format=fmt)

    produce = selection.analysed(analysis.sensitivity, Sensitivity, format=format, draw=draw)
    return selection.answer(session, cache, study_id, "sensitivity", produce, format=format)


EXPORT_AXES = ("key", "optimizer", "eta", "batch_size", "radius", "weight_decay", "seed")
EXPORT_OUTCOME = ("status", "final_objective", "attempts", "reason")
# what makes a spreadsheet read a cell as a formula (OWASP's list: = + - @, tab, CR)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs: text starting like a formula (``=HYPERLINK(…)``,
    ``@SUM(…)``, ``-2+3``) gets a leading ``'``, which spreadsheets read as "this is text" and
    hide. Numbers, and text that is a plain number (``-0.5``, which a spreadsheet reads as
    that number, not as a formula), stay as they are."""
    formula = isinstance(value, str) and value.startswith(FORMULA_START)
    return "'" + value if formula and not PLAIN_NUMBER.fullmatch(value) else value


BEST_COLUMN = "best_objective"  # the export's column of value=best


def export_rows(
    trials: Sequence[TrialRecord], best: Mapping[str, float | None] | None = None
) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and JSON-safe rows of the export: each trial's :class:`TrialOut` fields
    (axes, then outcome), with one column per other axis and per last metric; with ``best``
    (trial key -> its best objective) a ``best_objective`` column after the outcome."""
    outs = [TrialOut.of(t) for t in trials]
    extra = sorted({name for t in outs for name in t.extra_axes})
    metrics = sorted({name for t in outs for name in t.metrics})
    best_column = [BEST_COLUMN] if best is not None else []
    columns = [*EXPORT_AXES, *extra, *EXPORT_OUTCOME, *best_column, *metrics]
    rows = []
    for t in outs:
        fields = t.model_dump(mode="json", include={*EXPORT_AXES, *EXPORT_OUTCOME})
        row = {**fields, **{n: t.extra_axes.get(n) for n in extra}}
        row.update({n: t.metrics.get(n) for n in metrics})
        if best is not None:
            row[BEST_COLUMN] = analysis.json_safe(best.get(t.key))
        rows.append({name: row[name] for name in columns})
    return columns, rows


def best_objectives(
    session: Session, study: StudyInfo, records: Sequence[TrialRecord]
) -> dict[str, float | None]:
    """Per trial key, the best objective it reached (:func:`studies.analysis.best_value`), for
    the trials with a finite final value (completed), as ``value=best`` gives the analyses;
    ``None`` for every other trial: a running one's curve is partial (its best would change
    under a cached answer, since new points leave the study's version as it is), and a
    diverged or failed one keeps its outcome."""
    curve = analysis.curve_name("final_objective")
    extremes = curve_extremes(session, study.id, curve)
    metrics = TASKS[study.task].metrics if study.task in TASKS else {}
    direction = metrics.get("final_objective", "minimize")
    return {
        r.key: analysis.best_value(r, "final_objective", direction, extremes)  # type: ignore[arg-type]
        if r.value("final_objective") is not None
        else None
        for r in records
    }


def export_csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """The CSV text of the export: a header, one line per row, ``None`` as an empty cell, and
    every cell :func:`spreadsheet_safe` (the header too: axis and metric names are text)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([spreadsheet_safe(name) for name in columns])
    for row in rows:
        writer.writerow(["" if row[n] is None else spreadsheet_safe(row[n]) for n in columns])
    return buffer.getvalue()


@router.get(
    "/export",
    response_model=list[ExportRow],
    responses={200: {"description": "CSV (default) or JSON rows", "content": {"text/csv": {}}}},
)
def export(
    study_id: str,
    session: SessionDep,
    cache: CacheDep,
    format: Literal["csv", "json"] = "csv",
    value: ValueQuery = "final",
) -> Response:
    """One row per trial: its axes, status, final objective and last metrics; with
    ``value=best`` also ``best_objective``, the best objective seen during training by a
    completed trial (empty for every other trial, running or diverged). In the CSV, text
    that a spreadsheet would run as a formula starts with ``'``; the JSON rows are as stored."""

    def produce(study: StudyInfo, records: list[TrialRecord]) -> Answer:
        best = best_objectives(session, study, records) if value == "best" else None
        columns, rows = export_rows(records, best)
        if format == "json":
            return Answer(json.dumps(rows, allow_nan=False).encode())
        return Answer(export_csv(columns, rows).encode(), "text/csv")

    study = repository.get_study(session, study_id)
    headers = None
    if format == "csv":
        headers = {"Content-Disposition": f'attachment; filename="study-{study_id}.csv"'}
    return cached_answer(session, cache, study, ("export", format, value), produce, headers)
