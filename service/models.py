"""The API's response models: what every route answers, as it appears in ``/openapi.json``,
and what :class:`service.client.ApiClient` returns.

One model per resource; the domain objects are turned into them in one place each
(:meth:`StudySummary.of` / :meth:`StudyOut.of`, :meth:`TrialOut.of`, :meth:`TrialCurve.of`,
the analysis models from their info objects' ``to_dict()``). No answer ever holds NaN or
Infinity: :class:`ApiModel` maps every non-finite float of its input to ``null`` before it is
validated (:func:`studies.analysis.json_safe`), so a field that may be non-finite is typed
``float | None``. Timestamps are ISO 8601 text as ``datetime.isoformat`` writes it.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, PlainSerializer, model_validator

from studies.analysis import CellStatus, Direction, ValueMode, json_safe

# the analysis' own records are the wire shapes of a good-η range and a sensitivity point
# (pydantic validates stdlib dataclasses; the parent model maps non-finite floats to null)
from studies.analysis.robustness import EtaRange
from studies.analysis.sensitivity import SensitivityPoint
from studies.catalog.optimizers import OptimizerInfo
from studies.catalog.tasks import TaskSpec
from studies.statuses import StudyStatus, TrialStatus
from studies.store import Progress as StoreProgress
from studies.store import StudyInfo
from studies.store.read_models import CurvePoint
from studies.trial import TrialConfig, TrialRecord, ValueKind

Timestamp = Annotated[
    datetime,
    PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json"),
]
Json = dict[str, Any]


class ApiModel(BaseModel):
    """Base of every response model: non-finite floats in the input become ``None``."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _finite_floats(cls, data: Any) -> Any:
        return json_safe(data) if isinstance(data, dict) else data


# --- errors -----------------------------------------------------------------------------------


class ErrorOut(ApiModel):
    """Every 4xx/5xx body: a message naming the offending field or resource."""

    detail: str


# --- studies ----------------------------------------------------------------------------------


class Progress(ApiModel):
    """How many trials of a study are in each status (``done`` = completed + diverged +
    failed)."""

    total: int
    done: int
    pending: int
    running: int
    completed: int
    diverged: int
    failed: int
    cancelled: int

    @classmethod
    def of(cls, progress: StoreProgress) -> Self:
        return cls.model_validate(progress.as_dict())


class StudyLinks(ApiModel):
    """Where the study's resources are."""

    self: str
    trials: str
    heatmap: str
    heatmap_png: str
    robustness: str
    tunability: str
    importance: str
    export: str
    page: str

    @classmethod
    def of(cls, study_id: str) -> Self:
        base = f"/studies/{study_id}"
        return cls(
            self=base,
            trials=f"{base}/trials",
            heatmap=f"{base}/heatmap",
            heatmap_png=f"{base}/heatmap?format=png",
            robustness=f"{base}/robustness",
            tunability=f"{base}/tunability",
            importance=f"{base}/importance",
            export=f"{base}/export?format=csv",
            page=f"/ui/studies/{study_id}",
        )


def _job_link(dashboard_url: str | None, job_id: str | None) -> str | None:
    if not dashboard_url:
        return None
    return f"{dashboard_url.rstrip('/')}/#/jobs" + (f"/{job_id}" if job_id else "")


class StudySummary(ApiModel):
    """A study with its progress, as listed (no spec)."""

    id: str
    name: str
    task: str
    tags: list[str]
    status: StudyStatus
    progress: Progress
    n_trials: int  # planned trials (a search creates its rows as it samples)
    error: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    ray_job_id: str | None
    dashboard_url: str | None  # the Ray dashboard's page of the study's job
    links: StudyLinks

    @classmethod
    def of(cls, study: StudyInfo, progress: StoreProgress, dashboard_url: str | None) -> Self:
        """The model of a stored study (the one place a study becomes JSON)."""
        fields: dict[str, Any] = {
            "id": study.id,
            "name": study.name,
            "task": study.task,
            "tags": study.tags,
            "status": study.status,
            "progress": Progress.of(progress),
            "n_trials": progress.total,
            "error": study.error,
            "created_at": study.created_at,
            "started_at": study.started_at,
            "finished_at": study.finished_at,
            "ray_job_id": study.ray_job_id,
            "dashboard_url": _job_link(dashboard_url, study.ray_job_id),
            "links": StudyLinks.of(study.id),
        }
        if "spec" in cls.model_fields:
            fields["spec"] = study.spec
        return cls.model_validate(fields)


class StudyOut(StudySummary):
    """A study in full: its spec too."""

    spec: Json


class StudyPage(ApiModel):
    """One page of studies, newest first; pass ``next_cursor`` back as ``cursor``."""

    items: list[StudySummary]
    next_cursor: str | None


# --- trials -----------------------------------------------------------------------------------


class TrialOut(ApiModel):
    """A trial: its axes, config, status, result and attempts."""

    key: str
    optimizer: str  # the heatmap row
    eta: float | None  # None = ALI-G∞
    batch_size: int
    radius: float | None
    weight_decay: float | None
    seed: int
    extra_axes: Json
    status: TrialStatus
    final_objective: float | None  # null for no result or a non-finite one (objective_kind)
    objective_kind: ValueKind | None
    metrics: dict[str, float | None]  # last reported values
    reason: str | None
    attempts: int
    config: TrialConfig | None
    started_at: Timestamp | None
    finished_at: Timestamp | None

    @classmethod
    def of(cls, trial: TrialRecord) -> Self:
        """The model of a stored trial (the one place a trial becomes JSON): the record's
        fields of the same names (the record holds a field for each)."""
        return cls.model_validate({name: getattr(trial, name) for name in cls.model_fields})


class TrialPage(ApiModel):
    """One page of trials in creation order; pass ``next_cursor`` back as ``cursor``."""

    items: list[TrialOut]
    next_cursor: str | None


class MetricPoint(ApiModel):
    step: int
    name: str
    value: float | None  # null when NaN or ±inf


class TrialCurve(ApiModel):
    """A trial's reported metrics, step by step."""

    key: str
    points: list[MetricPoint]

    @classmethod
    def of(cls, key: str, points: Sequence[CurvePoint]) -> Self:
        rows = [{"step": p.step, "name": p.name, "value": p.value} for p in points]
        return cls.model_validate({"key": key, "points": rows})


class ExportRow(ApiModel):
    """One row of ``/export``: the trial's axes and outcome, then one column per other axis
    and per last metric (by their names)."""

    model_config = ConfigDict(extra="allow")

    key: str
    optimizer: str
    eta: float | None
    batch_size: int
    radius: float | None
    weight_decay: float | None
    seed: int
    status: TrialStatus
    final_objective: float | None
    attempts: int
    reason: str | None


# --- analyses ---------------------------------------------------------------------------------


class _Analysis(ApiModel):
    # the trials' value the answer used (docs/analysis.md): ``final``, the stored final value;
    # ``best``, the best value seen during training
    value: ValueMode = "final"

    @classmethod
    def of(cls, info: Any) -> Self:
        """The model of an analysis info object (its JSON-safe ``to_dict()``)."""
        return cls.model_validate(info.to_dict())

    @classmethod
    def of_value(cls, info: Any, value: ValueMode) -> Self:
        """The model of an analysis info object computed from the trials' ``value``."""
        return cls.model_validate({**info.to_dict(), "value": value})


class Heatmap(_Analysis):
    """Optimizer × η; every grid is row-major, ``len(rows) × len(columns)``."""

    rows: list[str]  # optimizers
    columns: list[float | None]  # η ascending; null = ALI-G∞, last
    values: list[list[float | None]]  # median over seeds of the finite values
    status: list[list[CellStatus]]
    n_ok: list[list[int]]  # seeds with a finite value, per cell
    n_total: list[list[int]]  # seeds per cell
    n_diverged: list[list[int]]  # seeds that diverged, per cell
    metric: str
    direction: Direction
    slice: Json  # the values of the other axes


class Robustness(_Analysis):
    """The good-η range per optimizer, and the rule that made them."""

    ranges: dict[str, EtaRange]
    metric: str
    direction: Direction
    slice: Json
    mode: Literal["relative", "absolute"]
    tolerance: float | None
    threshold: float | None
    reference_value: float | None
    cutoff: float | None
    min_finite_fraction: float  # the share of a cell's seeds that must be finite to be good


class OptimizerTunability(ApiModel):
    optimizer: str
    etas: list[float | None]
    values: list[float | None]
    n_diverged: int
    p_k: list[float | None]  # expected best after k = 1..K draws; null where infinite
    prob_all_diverged: list[float | None]
    cpe: float | None


class Tunability(_Analysis):
    """Expected best after k random η draws and the CPE score, per optimizer."""

    optimizers: dict[str, OptimizerTunability]
    metric: str
    direction: Direction
    slice: Json
    diverged: str | float | None  # the policy: "inf", "worst" or a penalty
    diverged_value: float | None
    min_finite_fraction: float  # the share of a point's seeds that must be finite


class Importance(_Analysis):
    """Normalised importances of the varying hyperparameters, per evaluator."""

    importances: dict[str, dict[str, float | None]]  # evaluator -> parameter -> importance
    params: list[str]
    metric: str
    direction: Direction
    optimizer: str | None
    n_trials: int  # finite values and diverged trials (entered as the penalty)
    n_excluded: int  # failed or without the metric
    n_diverged: int
    scale: Literal["log10", "raw"]  # the objective's scale
    diverged_penalty: float | None  # what a diverged trial entered as, on that scale


class ImportanceByOptimizer(_Analysis):
    """One importance analysis per optimizer (η means something else for each)."""

    optimizers: dict[str, Importance]
    skipped: dict[str, str]  # optimizer -> why it has no analysis
    metric: str
    direction: Direction


class ClaimOut(ApiModel):
    """One published claim as measured on the study."""

    id: str
    source: str  # paper, section, figure or table
    statement: str  # what the paper says and how it is checked
    optimizer: str
    metric: str
    slice: Json
    claimed: Any
    measured: Any
    status: Literal["pass", "fail", "not enough budget", "no data"]
    seeds_holding: int  # seeds on which it holds when checked on that seed alone
    seeds_total: int


class Reproduction(_Analysis):
    """The claims of the study's paper preset, checked (empty for a study without one)."""

    preset: str | None
    budget: Json  # {"study": …, "paper": …} in the task's unit
    claims: list[ClaimOut]


class Sensitivity(_Analysis):
    """Per optimizer the metric against η with the spread over seeds."""

    curves: dict[str, list[SensitivityPoint]]
    metric: str
    direction: Direction
    slice: Json


# --- catalog and health -----------------------------------------------------------------------


class PresetOut(ApiModel):
    name: str
    spec: Json


class PresetList(ApiModel):
    items: list[PresetOut]


class TaskOut(ApiModel):
    name: str
    description: str
    budget_unit: str
    default_budget: int
    default_batch_size: int
    metrics: dict[str, Direction]  # metric -> direction
    options: Json  # the JSON schema of the task's options
    defaults: Json
    facts: Json  # what is known about the default data (matrix factorisation: rank floors)
    packs: bool  # whether its trials can train as one vectorised model per pack
    compiles: bool  # whether its packs compile their time steps (execution.compile)

    @classmethod
    def of(cls, spec: TaskSpec) -> Self:
        return cls(
            name=spec.name,
            description=spec.description,
            budget_unit=spec.budget_unit,
            default_budget=spec.default_budget,
            default_batch_size=spec.default_batch_size,
            metrics=dict(spec.metrics),
            options=spec.options.model_json_schema(),
            defaults=spec.options().model_dump(mode="json"),
            facts=spec.facts(),
            packs=spec.packs,
            compiles=spec.compiles,
        )


class TaskList(ApiModel):
    items: list[TaskOut]


class OptionOut(ApiModel):
    default: Any
    help: str | None


class OptimizerOut(ApiModel):
    name: str
    description: str
    eta_meaning: str
    eta_may_be_null: bool  # only ALI-G: eta = null is ALI-G∞
    closure: str
    native_radius: bool
    reports_step_size: bool
    packs: bool  # whether its trials can train in packs (execution.packing)
    options: dict[str, OptionOut]  # those a study may set, with their defaults
    options_schema: Json  # the JSON schema of the options

    @classmethod
    def of(cls, info: OptimizerInfo) -> Self:
        defaults = info.defaults()
        fields = info.options.model_fields
        return cls(
            name=info.name,
            description=info.description,
            eta_meaning=info.eta_meaning,
            eta_may_be_null=info.eta_may_be_none,
            closure=info.closure,
            native_radius=info.native_radius,
            reports_step_size=info.reports_step_size,
            packs=info.packs,
            options={
                name: OptionOut(default=defaults.get(name), help=field.description)
                for name, field in fields.items()
                if name not in info.set_by_trial
            },
            options_schema=info.options.model_json_schema(),
        )


class OptimizerList(ApiModel):
    items: list[OptimizerOut]


class DatabaseUp(ApiModel):
    ok: Literal[True]
    dialect: str


class DatabaseDown(ApiModel):
    ok: Literal[False]
    error: str


class RayCheck(ApiModel):
    ok: bool
    dashboard: str | None


class Health(ApiModel):
    """Database and Ray reachability (the same body with a 503 when either is down)."""

    status: Literal["ok", "degraded"]
    database: DatabaseUp | DatabaseDown
    ray: RayCheck


# --- extensions -------------------------------------------------------------------------------


class ExtensionOut(ApiModel):
    """One entry of a study's extension history: when, from which status, what it added (by
    field of the spec: ``grid.eta``, ``optimizers``, ``search.n_trials``…) and how many trials
    it added and kept."""

    at: str  # ISO 8601
    from_status: StudyStatus
    added: Json
    trials_added: int
    trials_reused: int


class StudyExtension(ApiModel):
    """The answer of ``POST /studies/{id}/extend``: the study as ``GET /studies/{id}`` shows it
    (``pending`` again, its spec the merged one), how many trials the extension added (a
    search: the samples it plans) and how many stored trials it kept as they were, and the
    study's extension history, oldest first."""

    study: StudyOut
    added: int
    reused: int
    extensions: list[ExtensionOut]


# --- comparing studies (GET /compare) ---------------------------------------------------------


class StudyHeader(ApiModel):
    """A study of the comparison: one problem of the performance profile."""

    id: str
    name: str
    task: str
    direction: Direction
    slice: Json  # the slice read
    cutoff: float | None  # the good-η cutoff of its robustness rule
    reference_value: float | None  # the best value of any optimizer in that slice


class StudyEntry(ApiModel):
    """One optimizer in one study: its good-η range (as ``/robustness`` answers), best cell
    and tunability."""

    eta_low: float | None
    eta_high: float | None  # null with includes_infinity: the range reaches ALI-G∞
    decades: float | None
    includes_infinity: bool
    n_good: int
    best_eta: float | None
    best_value: float | None  # the cost t of the profile; null: every cell diverged
    cpe: float | None  # tunability (diverged points: the slice's worst finite value)
    p_k: list[float | None]
    seeds: int
    diverged_seeds: int


class Profile(ApiModel):
    """Dolan–Moré performance profiles; per-optimizer lists are in ``problems`` order."""

    problems: list[str]  # study ids
    optimizers: list[str]
    costs: dict[str, list[float | None]]  # t_{p,s}: the best value; null: none
    ratios: dict[str, list[float | None]]  # r_{p,s} = t_{p,s} / min_s t_{p,s}; null: ∞
    tau: list[float]  # log grid from 1 to tau_max
    rho: dict[str, list[float]]  # ρ_s(τ): share of studies with r_{p,s} ≤ τ
    tau_max: float


class Comparison(_Analysis):
    """Per optimizer (label) and study, and the performance profiles over the studies."""

    studies: list[StudyHeader]
    # label -> study id -> its entry; null: that study did not run the optimizer
    optimizers: dict[str, dict[str, StudyEntry | None]]
    profile: Profile
    metric: str
    min_finite_fraction: float


__all__ = [
    "ClaimOut",
    "Comparison",
    "DatabaseDown",
    "DatabaseUp",
    "ErrorOut",
    "EtaRange",
    "ExportRow",
    "ExtensionOut",
    "Health",
    "Heatmap",
    "Importance",
    "ImportanceByOptimizer",
    "MetricPoint",
    "OptimizerList",
    "OptimizerOut",
    "OptimizerTunability",
    "OptionOut",
    "PresetList",
    "PresetOut",
    "Profile",
    "Progress",
    "RayCheck",
    "Reproduction",
    "Robustness",
    "Sensitivity",
    "SensitivityPoint",
    "StudyEntry",
    "StudyExtension",
    "StudyHeader",
    "StudyLinks",
    "StudyOut",
    "StudyPage",
    "StudySummary",
    "TaskList",
    "TaskOut",
    "TrialCurve",
    "TrialOut",
    "TrialPage",
    "Tunability",
]
