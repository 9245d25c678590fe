"""The study spec: what a researcher submits, validated fully before anything is stored.

A study runs one task with a list of optimizers over either

- a **grid**: every combination of η × batch size × radius × weight decay × swept task options ×
  seed, for every optimizer (η given as a list, ``null`` meaning ALI-G∞, or as decades
  ``{"from": -4, "to": 6, "per_decade": 1}``; an optimizer entry may carry its own η grid, as
  the paper's DNC grid does for ALI-G and L4); or
- a **search**: an Optuna sampler (tpe, random, grid) proposing η (log scale), batch size,
  radius and weight decay for a number of trials per optimizer.

The optional ``schedule`` (constant by default; ``multistep``, ``cosine`` or a linear ``warmup``
followed by one of them, in the task's budget unit) is the baselines' learning-rate schedule:
η is its initial value, and Polyak-type methods ignore it (docs/algorithms.md, "Learning-rate
schedules"). It is part of every trial's config, hence of its key.

:func:`parse_spec` turns JSON into a :class:`StudySpec` or raises :class:`SpecError` whose message
names every offending field (``grid.eta[2]: must be > 0``); :func:`expand_grid` turns a grid spec
into trial configs, deterministically, each with a stable key.
"""

import itertools
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from studies.catalog.optimizers import OPTIMIZERS, optimizer_info, validate_options
from studies.catalog.tasks import TASKS
from studies.exceptions import LimitExceeded, SpecError
from studies.schedule import SCHEDULE_KINDS, ConstantSchedule, Schedule, schedule_budget_error
from studies.text import TAGS_MAX, OptimizerLabel, StudyName, StudyTag
from studies.trial import Trial, TrialConfig

DEFAULT_MAX_TRIALS = 5_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Decades(_Strict):
    """η = 10^(from + i / per_decade) for i = 0 … (to − from)·per_decade (both ends included)."""

    from_: int = Field(alias="from", ge=-12, le=12)
    to: int = Field(ge=-12, le=12)
    per_decade: Annotated[int, Field(ge=1, le=20)] = 1
    infinity: bool = False  # also add null (ALI-G∞; used only by optimizers that accept it)

    @model_validator(mode="after")
    def _ordered(self) -> "Decades":
        if self.to < self.from_:
            raise ValueError("'to' must be >= 'from'")
        return self

    def values(self) -> list[float | None]:
        """The η values, rounded to 12 significant digits so keys are stable across platforms."""
        count = (self.to - self.from_) * self.per_decade
        etas: list[float | None] = [
            float(f"{10 ** (self.from_ + i / self.per_decade):.12g}") for i in range(count + 1)
        ]
        return [*etas, None] if self.infinity else etas


def _eta_grid(value: Any) -> Any:
    """Pick the η grid form by its JSON shape, so errors speak of that form only."""
    if isinstance(value, Mapping):
        try:
            return Decades.model_validate(dict(value))
        except ValidationError as error:
            raise ValueError(_format_errors(error, prefix="").replace("spec: ", "")) from None
    return value


EtaGrid = Annotated[list[float | None] | Decades, BeforeValidator(_eta_grid)]


def _eta_values(grid: EtaGrid) -> list[float | None]:
    return grid.values() if isinstance(grid, Decades) else list(grid)


def _check_etas(values: list[float | None]) -> list[float | None]:
    if not values:
        raise ValueError("must not be empty")
    for i, eta in enumerate(values):
        if eta is not None and not (math.isfinite(eta) and eta > 0):
            raise ValueError(f"[{i}] must be finite and > 0, got {eta}")
    if len(set(values)) != len(values):
        raise ValueError("must not repeat a value")
    return values


class OptimizerEntry(_Strict):
    """One row of the heatmap: a registered optimizer with fixed options and a label."""

    name: str  # a registry name: alig, aalig, sgd, sgd-nesterov, adam, …
    label: OptimizerLabel | None = (
        None  # row name (sens_trials.optimizer); default: the registry name
    )
    options: dict[str, Any] = Field(default_factory=dict)  # fixed options, e.g. momentum
    eta: EtaGrid | None = None  # this optimizer's own η grid (grid mode); default: grid.eta

    @property
    def row(self) -> str:
        """The heatmap row (and trial axis) name."""
        return self.label or self.name


def _values_of_an_axis(value: list[Any] | None) -> list[Any] | None:
    """An axis's values unchanged (``None``: the default), or ValueError when the list is
    empty or repeats a value."""
    if value is not None:
        if not value:
            raise ValueError("must not be empty")
        if len(set(value)) != len(value):
            raise ValueError("must not repeat a value")
    return value


class Grid(_Strict):
    """The axes of a grid study."""

    eta: EtaGrid
    batch_size: list[Annotated[int, Field(ge=1)]] | None = None  # default: the task's
    radius: list[Annotated[float, Field(gt=0)] | None] = [None]
    weight_decay: list[Annotated[float, Field(ge=0)] | None] = [None]
    seed: list[Annotated[int, Field(ge=0)]] = [0]  # seeds torch and numpy: never negative
    task_options: dict[str, list[Any]] = Field(default_factory=dict)  # swept task options

    @field_validator("eta")
    @classmethod
    def _eta(cls, value: EtaGrid) -> EtaGrid:
        _check_etas(_eta_values(value))
        return value

    @field_validator("batch_size", "radius", "weight_decay", "seed")
    @classmethod
    def _non_empty(cls, value: list[Any] | None) -> list[Any] | None:
        return _values_of_an_axis(value)

    @field_validator("task_options")
    @classmethod
    def _sweeps(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in value.items():
            if not values:
                raise ValueError(f"{key}: must not be empty")
        return value


class Range(_Strict):
    """A search range for one float hyperparameter."""

    low: Annotated[float, Field(gt=0)]
    high: Annotated[float, Field(gt=0)]
    log: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.high <= self.low:
            raise ValueError("need finite 0 < low < high")
        return self


class Search(_Strict):
    """An Optuna search: ``n_trials`` proposals per optimizer."""

    sampler: Literal["tpe", "random", "grid"] = "tpe"
    n_trials: Annotated[int, Field(ge=1)]
    eta: Range
    batch_size: list[Annotated[int, Field(ge=1)]] | None = None  # categorical; default: task's
    radius: Range | None = None  # None: unconstrained
    weight_decay: Range | None = None  # None: no decay
    seed: Annotated[int, Field(ge=0)] = 0  # trial seed and the sampler's seed
    grid_points: Annotated[int, Field(ge=2, le=100)] = 10  # the grid sampler's points per range


class Budget(_Strict):
    """The training budget of every trial, in the task's unit."""

    steps: Annotated[int, Field(ge=1)] | None = None
    epochs: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _one(self) -> "Budget":
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of 'steps' or 'epochs'")
        return self

    @property
    def unit(self) -> Literal["steps", "epochs"]:
        return "steps" if self.steps is not None else "epochs"

    @property
    def amount(self) -> int:
        return self.steps if self.steps is not None else self.epochs  # type: ignore[return-value]


class Resources(_Strict):
    """What one trial reserves on the Ray cluster."""

    cpu: Annotated[float, Field(gt=0, le=64)] = 1.0
    gpu: Annotated[float, Field(ge=0, le=8)] = 0.0  # fractions share a GPU between trials


class Execution(_Strict):
    """How the driver runs a grid study's trials (docs/architecture.md, "Packed trials").

    ``packing: auto`` trains trials that differ only in η, radius, optimizer or its options (and
    seed) as one vectorised model per pack where the task and optimizer have a packed form;
    ``off`` runs one model per trial. ``max_pack_size`` bounds the members of one pack.

    ``checkpoint_every``: a trial checkpoints its whole training state every this many
    reports — every N epochs for epoch budgets (one report per epoch), every N × ``report_every``
    steps for step budgets — and a trial restarted after a lost worker, node or driver continues
    from its last checkpoint (docs/architecture.md, "Checkpoints"); 0: no checkpoints. A pack
    checkpoints each of its members on its own.

    ``compile``: a pack of a task with a recurrent model (``dnc-copy``) runs each time step as
    one ``torch.compile``-d function (docs/architecture.md, "Compiled packs"): faster, the same
    operations rounded differently. Where the worker cannot compile (no C++ compiler for the
    CPU, no Triton for CUDA), or a compilation fails, the pack runs uncompiled and its log
    says so; unpacked trials always run uncompiled.
    """

    packing: Literal["auto", "off"] = "auto"
    max_pack_size: Annotated[int, Field(ge=1, le=1024)] = 128
    checkpoint_every: Annotated[int, Field(ge=0, le=100_000)] = 1
    compile: bool = False


class StudySpec(_Strict):
    """A whole study as submitted."""

    name: StudyName = "study"  # limits and the text check: studies.text, shared with the schema
    tags: Annotated[list[StudyTag], Field(max_length=TAGS_MAX)] = Field(default_factory=list)
    task: str
    task_options: dict[str, Any] = Field(default_factory=dict)  # fixed task options
    optimizers: list[str | OptimizerEntry]
    grid: Grid | None = None
    search: Search | None = None
    budget: Budget
    resources: Resources = Resources()
    execution: Execution = Execution()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = False
    divergence_factor: Annotated[float, Field(gt=1)] = 1e3
    max_failures: Annotated[int, Field(ge=0, le=10)] = 2  # retries of a crashed trial
    schedule: Schedule = ConstantSchedule()  # the baselines' learning-rate schedule

    @field_validator("optimizers")
    @classmethod
    def _entries(cls, value: list[str | OptimizerEntry]) -> list[str | OptimizerEntry]:
        if not value:
            raise ValueError("must not be empty")
        return value

    @property
    def entries(self) -> list[OptimizerEntry]:
        """The optimizers as entries (a bare name is an entry with defaults)."""
        return [OptimizerEntry(name=o) if isinstance(o, str) else o for o in self.optimizers]


def _field_message(field: str, message: object) -> str:
    """``field: message``, or ``field[i]: …`` when the message starts with an index."""
    text = str(message)
    if text.startswith("["):
        index, _, rest = text.partition(" ")
        return f"{field}{index}: {rest}"
    return f"{field}: {text}"


def _format_errors(
    error: ValidationError, prefix: str = "", renamed: Mapping[str, str] | None = None
) -> str:
    """``field.path: message`` for every error, joined by "; " (``renamed``: the full path of
    an error whose location starts at one of its keys, in place of ``prefix`` and the key)."""
    parts = []
    for item in error.errors():
        loc = item["loc"]
        if renamed and loc and loc[0] in renamed:
            message = item["msg"].removeprefix("Value error, ")
            parts.append(_field_message(renamed[str(loc[0])], message))
            continue
        location = ""
        previous: object = None
        for piece in loc:
            if previous in ("schedule", "then") and piece in SCHEDULE_KINDS:
                continue  # the union's tag: ``schedule.milestones``, not ``schedule.multistep…``
            location += f"[{piece}]" if isinstance(piece, int) else f".{piece}"
            previous = piece
        message = item["msg"].removeprefix("Value error, ")
        parts.append(_field_message(f"{prefix}{location.lstrip('.') or 'spec'}", message))
    return "; ".join(parts)


def parse_spec(
    data: Mapping[str, Any] | StudySpec, *, max_trials: int = DEFAULT_MAX_TRIALS
) -> StudySpec:
    """Validate ``data`` completely (schema, task, optimizers, options, size) or raise SpecError."""
    if isinstance(data, StudySpec):
        spec = data
    else:
        if not isinstance(data, Mapping):
            raise SpecError("spec: must be a JSON object")
        try:
            spec = StudySpec.model_validate(dict(data))
        except ValidationError as error:
            raise SpecError(_format_errors(error)) from None
    # the size first, from the axis lengths alone: nothing below expands more than this many
    # combinations (the task-option sweeps are validated combination by combination)
    if spec.grid is not None or spec.search is not None:
        count = planned_trial_count(spec)
        if count > max_trials:
            raise LimitExceeded(
                f"{'grid' if spec.grid else 'search'}: the study has {count} trials, "
                f"more than the limit of {max_trials} (SENSITIVITY_MAX_TRIALS)"
            )
    _check_semantics(spec)
    return spec


def _check_semantics(spec: StudySpec) -> None:
    """What the schema cannot say: registry names, options, budget unit, mode."""
    if spec.task not in TASKS:
        raise SpecError(f"task: unknown task {spec.task!r}; valid tasks: {', '.join(TASKS)}")
    task = TASKS[spec.task]
    if (spec.grid is None) == (spec.search is None):
        raise SpecError("grid: give exactly one of 'grid' or 'search'")
    if spec.budget.unit != task.budget_unit:
        raise SpecError(
            f"budget.{spec.budget.unit}: task {spec.task} is budgeted in {task.budget_unit}"
        )
    schedule_error = schedule_budget_error(spec.schedule, spec.budget.amount, spec.budget.unit)
    if schedule_error is not None:
        raise SpecError(f"schedule.{schedule_error}")
    if spec.search is not None:
        # here, not in the schema: a stored search spec of an earlier version still loads
        try:
            _values_of_an_axis(spec.search.batch_size)
        except ValueError as error:
            raise SpecError(f"search.batch_size: {error}") from None
    sweeps = spec.grid.task_options if spec.grid else {}
    for combination in _task_option_combinations(spec):
        try:
            validated = task.options.model_validate(combination).model_dump(mode="json")
        except ValidationError as error:
            # a swept value's error names it in its sweep: grid.task_options.<name>[i]
            swept = {
                name: f"grid.task_options.{name}[{values.index(combination[name])}]"
                for name, values in sweeps.items()
            }
            raise SpecError(_format_errors(error, "task_options.", swept)) from None
        _check_given_as_validated(sweeps, combination, validated)
    rows = set()
    for i, entry in enumerate(spec.entries):
        field = f"optimizers[{i}]"
        if entry.name not in OPTIMIZERS:
            raise SpecError(
                f"{field}: unknown optimizer {entry.name!r}; valid names: {', '.join(OPTIMIZERS)}"
            )
        if entry.row in rows:
            raise SpecError(f"{field}: duplicate row {entry.row!r}; give entries distinct labels")
        rows.add(entry.row)
        info = optimizer_info(entry.name)
        fixed = dict(entry.options)
        for reserved in sorted(set(fixed) & {*info.set_by_trial, "weight_decay"}):
            hint = " (use the grid's weight_decay axis)" if reserved == "weight_decay" else ""
            raise SpecError(f"{field}.options.{reserved}: set by the study, not an option{hint}")
        validate_options(entry.name, fixed, field=f"{field}.options")
        if info.closure == "per-sample" and task.budget_unit != "epochs":
            raise SpecError(f"{field}: {entry.name} needs a task with an epoch budget")
        if entry.eta is not None:
            if spec.search is not None:
                raise SpecError(f"{field}.eta: per-optimizer η grids need grid mode")
            try:
                values = _check_etas(_eta_values(entry.eta))
            except ValueError as error:
                raise SpecError(_field_message(f"{field}.eta", error)) from None
            if None in values and not info.eta_may_be_none:
                raise SpecError(f"{field}.eta: null (ALI-G∞) is only valid for alig")
        elif (
            spec.grid is not None
            and not info.eta_may_be_none
            and all(eta is None for eta in _eta_values(spec.grid.eta))
        ):  # the shared grid's null is ALI-G∞, skipped for the others: a row with none left
            raise SpecError(
                f"{field}: {entry.name} has no η in grid.eta (null, ALI-G∞, is only valid "
                f"for alig); give it numbers there or its own optimizers[{i}].eta"
            )


def _check_given_as_validated(
    sweeps: Mapping[str, list[Any]], given: dict[str, Any], validated: dict[str, Any]
) -> None:
    """Refuse a task option whose value the options model had to convert to another one
    (``"1000"`` for 1000): the spec is stored as given and a worker converts it again, so
    limits, slices and trial keys would see one value while the trial runs another. A number
    that equals its converted value (``1000.0`` for 1000, ``1`` for 1.0) is the same value."""
    for name, value in given.items():
        # True == 1 in Python: a boolean given for a number is a converted value too
        converted = isinstance(value, bool) != isinstance(validated.get(name), bool)
        if name in validated and (validated[name] != value or converted):
            field = f"grid.task_options.{name}" if name in sweeps else f"task_options.{name}"
            raise SpecError(
                f"{field}: must be given as {validated[name]!r}, not as the "
                f"{type(value).__name__} {value!r}"
            )


def _task_option_combinations(spec: StudySpec) -> list[dict[str, Any]]:
    sweeps = spec.grid.task_options if spec.grid else {}
    clash = set(sweeps) & set(spec.task_options)
    if clash:
        raise SpecError(f"grid.task_options.{sorted(clash)[0]}: also fixed in task_options")
    for name, values in sweeps.items():
        for i, value in enumerate(values):
            if value in values[:i]:  # by value: 1000 and 1000.0 are one value, one trial
                raise SpecError(f"grid.task_options.{name}[{i}]: repeats the value {value!r}")
    keys = sorted(sweeps)
    return [
        {**spec.task_options, **dict(zip(keys, values, strict=True))}
        for values in itertools.product(*(sweeps[k] for k in keys))
    ]


def eta_values(grid: EtaGrid) -> list[float | None]:
    """The η values of a grid's (or an optimizer entry's) η axis, decades written out."""
    return _eta_values(grid)


def planned_trial_count(spec: StudySpec) -> int:
    """How many trials the study runs, computed from the axis lengths without expanding the
    grid (so an absurd grid is refused at once): a search runs ``n_trials`` per optimizer; a
    grid runs, per optimizer, its η values (``null`` only where accepted) × batch sizes × radii
    × weight decays (one for optimizers without decay) × swept task options × seeds.

    It runs before the names are checked: an unknown optimizer counts as one that takes every
    η and every decay (an upper bound; the name is refused right after)."""
    if spec.search is not None:
        return spec.search.n_trials * len(spec.entries)
    grid = spec.grid
    assert grid is not None
    shared = (
        len(grid.batch_size or [0])
        * len(grid.radius)
        * len(grid.seed)
        * math.prod(len(values) for values in grid.task_options.values())
    )
    total = 0
    for entry in spec.entries:
        info = OPTIMIZERS.get(entry.name)
        etas = _eta_values(entry.eta if entry.eta is not None else grid.eta)
        n_etas = sum(1 for eta in etas if eta is not None or info is None or info.eta_may_be_none)
        decays = len(grid.weight_decay) if info is None or info.takes_weight_decay else 1
        total += n_etas * decays * shared
    return total


def _planned(
    spec: StudySpec,
    entry: OptimizerEntry,
    eta: float | None,
    batch_size: int,
    radius: float | None,
    weight_decay: float | None,
    seed: int,
    extra: dict[str, Any],
) -> Trial:
    """One trial: its config and its key (the hash of everything that defines the run)."""
    config = TrialConfig(
        task=spec.task,
        task_options={**spec.task_options, **extra},
        optimizer=entry.name,
        eta=eta,
        optimizer_options=dict(entry.options),
        batch_size=batch_size,
        radius=radius,
        weight_decay=weight_decay,
        seed=seed,
        budget=spec.budget.amount,
        device=spec.device,
        amp=spec.amp,
        threads=max(1, int(spec.resources.cpu)),
        divergence_factor=spec.divergence_factor,
        schedule=spec.schedule,
    )
    return Trial.of(entry.row, config, extra)


def search_trial(spec: StudySpec, entry_index: int, sample: Mapping[str, Any]) -> Trial:
    """The trial of a search study for one sampled point (``eta`` and optionally
    ``batch_size``, ``radius``, ``weight_decay``) of the optimizer ``spec.entries[entry_index]``.
    """
    if spec.search is None:
        raise SpecError("search: this study is a grid study")
    task = TASKS[spec.task]
    batch_size = (
        sample.get("batch_size") or (spec.search.batch_size or [task.default_batch_size])[0]
    )
    return _planned(
        spec,
        spec.entries[entry_index],
        float(sample["eta"]),
        int(batch_size),
        sample.get("radius"),
        sample.get("weight_decay"),
        spec.search.seed,
        {},
    )


def expand_grid(spec: StudySpec, *, validate: bool = True) -> list[Trial]:
    """Every trial of a grid study, in a deterministic order, each with its stable key.

    ``null`` in a shared η grid (ALI-G∞) applies only to optimizers that accept it; optimizers
    that take no weight decay run once with ``weight_decay = null`` whatever the decay axis.
    """
    if spec.grid is None:
        raise SpecError("grid: this study is a search study; it has no grid to expand")
    grid = spec.grid
    task = TASKS[spec.task]
    batch_sizes = grid.batch_size or [task.default_batch_size]
    sweep_keys = sorted(grid.task_options)
    sweeps = list(itertools.product(*(grid.task_options[k] for k in sweep_keys)))
    trials: list[Trial] = []
    seen: set[str] = set()
    for entry in spec.entries:
        info = optimizer_info(entry.name)
        etas = [
            eta
            for eta in _eta_values(entry.eta if entry.eta is not None else grid.eta)
            if eta is not None or info.eta_may_be_none
        ]
        decays = grid.weight_decay if info.takes_weight_decay else [None]
        for eta, batch_size, radius, decay, sweep, seed in itertools.product(
            etas, batch_sizes, grid.radius, decays, sweeps, grid.seed
        ):
            extra = dict(zip(sweep_keys, sweep, strict=True))
            trial = _planned(spec, entry, eta, batch_size, radius, decay, seed, extra)
            if trial.key in seen:  # e.g. decays collapsed to null for an optimizer without decay
                continue
            seen.add(trial.key)
            trials.append(trial)
    if validate and not trials:
        raise SpecError("grid: the grid expands to no trial")
    return trials
