"""What a client submits, turned into a validated :class:`~studies.spec.StudySpec` — once, at the
boundary: the API and the CLI hand the request body here, everything downstream gets the
parsed spec.

A body is a study spec, or ``{"preset": name, "overrides": {...}}`` (a shipped preset with
nested overrides merged in). Before the spec is parsed, the body is checked for what the store
cannot hold: non-finite numbers (JSON has none), integers beyond the 32-bit columns, and NUL
characters (PostgreSQL text has none); each is refused naming its path. The parsed spec is
checked once more, because the schema turns numbers given as strings (``"inf"``) into the
values they name. Task options must be given as the values they are (``1000``, not
``"1000"``: :func:`studies.spec.parse_spec`), so that the limits below, the slices and the
trial keys see the value a trial runs with.

After the spec is parsed (the trial count is checked there, from the axis lengths, before
anything is expanded), :func:`check_limits` applies the service's configured bounds
(:class:`Limits`, from the ``SENSITIVITY_MAX_…`` settings): the budget, the task options'
size fields (:data:`TASK_SIZE_FIELDS`, fixed and swept values alike), the lengths of the lists
(optimizers, η values, other axes, tags); each refusal is a :class:`LimitExceeded` naming the
field, the limit and its variable. Seeds are refused below 0 (``data_seed`` of every task).
"""

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from studies.exceptions import LimitExceeded, SpecError
from studies.presets import load_preset
from studies.settings import Settings
from studies.spec import DEFAULT_MAX_TRIALS, StudySpec, eta_values, parse_spec

INT_RANGE = (-(2**31), 2**31 - 1)  # the store's integer columns (batch size, seed) are 32-bit


def _surrogate(text: str) -> str | None:
    """Where ``text`` holds a lone surrogate (JSON allows ``"\\ud800"``; UTF-8 cannot hold
    it), as the message's end, or ``None``."""
    for index, character in enumerate(text):
        if "\ud800" <= character <= "\udfff":
            return f"a lone surrogate (U+{ord(character):04X} at character {index})"
    return None


def _shown(text: str) -> str:
    """``text`` safe to put in an error message (surrogates escaped as ``\\udxxx``)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_storable(body: Any) -> None:
    """Raise SpecError naming the first value the store cannot hold (see the module docstring)."""
    queue: deque[tuple[str, Any]] = deque([("", body)])  # iterative: bodies may nest deeply
    while queue:
        path, value = queue.popleft()
        if isinstance(value, dict):
            for key, item in value.items():
                shown = _shown(str(key))
                child = f"{path}.{shown}" if path else shown
                if "\x00" in str(key):
                    raise SpecError(f"{child}: keys must not contain NUL characters")
                if (found := _surrogate(str(key))) is not None:
                    raise SpecError(f"{child}: keys must not contain {found}")
                queue.append((child, item))
        elif isinstance(value, list):
            queue.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, str) and "\x00" in value:
            raise SpecError(f"{path or 'body'}: must not contain NUL characters")
        elif isinstance(value, str) and (found := _surrogate(value)) is not None:
            raise SpecError(f"{path or 'body'}: must not contain {found}")
        elif isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"{path or 'body'}: must be a finite number, got {value}")
        elif isinstance(value, int) and not INT_RANGE[0] <= value <= INT_RANGE[1]:
            raise SpecError(f"{path or 'body'}: must be between {INT_RANGE[0]} and {INT_RANGE[1]}")


def spec_document(body: Any) -> dict[str, Any]:
    """The spec document of a submission body: the body itself, or the preset it names with
    its overrides merged in; checked to be storable."""
    if not isinstance(body, dict):
        raise SpecError('body: must be a JSON object (a study spec or {"preset": ...})')
    if "preset" in body:
        extra = sorted(set(body) - {"preset", "overrides"})
        if extra:
            raise SpecError(f"{extra[0]}: not allowed next to 'preset' (use 'overrides')")
        overrides = body.get("overrides")
        overrides = {} if overrides is None else overrides
        if not isinstance(overrides, dict):
            raise SpecError("overrides: must be a JSON object")
        if not isinstance(body["preset"], str):
            raise SpecError("preset: must be a preset name")
        body = load_preset(body["preset"], overrides)
    check_storable(body)
    return body


@dataclass(frozen=True)
class Limits:
    """The bounds a submission is checked against (:meth:`of` reads them from the settings);
    each field is the setting of the same name, ``SENSITIVITY_<FIELD>`` in the environment."""

    max_trials: int = DEFAULT_MAX_TRIALS
    max_budget_steps: int | None = None
    max_budget_epochs: int | None = None
    max_optimizers: int | None = None
    max_eta_values: int | None = None
    max_axis_values: int | None = None
    max_tags: int | None = None
    max_task_samples: int | None = None
    max_task_width: int | None = None
    max_task_sequence: int | None = None
    max_unfinished_studies: int | None = None  # checked by the lifecycle (it counts studies)

    @classmethod
    def of(cls, settings: Settings) -> "Limits":
        """The limits the settings configure."""
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


# a task option's size field -> the limit that bounds it (whichever task has the field)
TASK_SIZE_FIELDS: dict[str, str] = {
    "n_samples": "max_task_samples",
    "max_kernel_samples": "max_task_samples",
    "train_subset": "max_task_samples",
    "val_subset": "max_task_samples",
    "n_features": "max_task_width",
    "n_centers": "max_task_width",
    "memory_slots": "max_task_width",
    "word_size": "max_task_width",
    "read_heads": "max_task_width",
    "controller_size": "max_task_width",
    "min_length": "max_task_sequence",
    "max_length": "max_task_sequence",
    "min_repeats": "max_task_sequence",
    "max_repeats": "max_task_sequence",
}
SEED_FIELDS = ("data_seed",)  # task options that seed something: never negative


def _over(field: str, value: float, limit: int | None, name: str, what: str = "") -> None:
    if limit is not None and value > limit:
        raise LimitExceeded(
            f"{field}: {value}{what} is more than the limit of {limit} (SENSITIVITY_{name.upper()})"
        )


def _task_option_values(spec: StudySpec) -> Iterator[tuple[str, str, Any]]:
    """``(field path, option name, value)`` of every fixed and swept task option value."""
    for name, value in spec.task_options.items():
        yield f"task_options.{name}", name, value
    sweeps = spec.grid.task_options if spec.grid is not None else {}
    for name, values in sweeps.items():
        for i, value in enumerate(values):
            yield f"grid.task_options.{name}[{i}]", name, value


def check_limits(spec: StudySpec, limits: Limits) -> None:
    """Raise LimitExceeded (a SpecError) for the first bound the spec is over; SpecError for a
    negative seed (see the module docstring)."""
    budget_limit = {"steps": limits.max_budget_steps, "epochs": limits.max_budget_epochs}
    unit = spec.budget.unit
    _over(f"budget.{unit}", spec.budget.amount, budget_limit[unit], f"max_budget_{unit}")
    _over("optimizers", len(spec.optimizers), limits.max_optimizers, "max_optimizers", " entries")
    _over("tags", len(spec.tags), limits.max_tags, "max_tags", " tags")
    if spec.grid is not None:
        grid = spec.grid
        etas = [("grid.eta", grid.eta)] + [
            (f"optimizers[{i}].eta", entry.eta)
            for i, entry in enumerate(spec.entries)
            if entry.eta is not None
        ]
        for field, grid_eta in etas:
            count = len(eta_values(grid_eta))
            _over(field, count, limits.max_eta_values, "max_eta_values", " η values")
        axes = {
            "grid.batch_size": grid.batch_size or [],
            "grid.radius": grid.radius,
            "grid.weight_decay": grid.weight_decay,
            "grid.seed": grid.seed,
            **{f"grid.task_options.{name}": values for name, values in grid.task_options.items()},
        }
        for field, values in axes.items():
            _over(field, len(values), limits.max_axis_values, "max_axis_values", " values")
    if spec.search is not None and spec.search.batch_size:
        count = len(spec.search.batch_size)
        _over("search.batch_size", count, limits.max_axis_values, "max_axis_values", " values")
    for field, name, value in _task_option_values(spec):
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue  # not a number: the task's options model refuses it, naming the field
        if name in SEED_FIELDS and value < 0:
            raise SpecError(f"{field}: must be >= 0, got {value}")
        limit_name = TASK_SIZE_FIELDS.get(name)
        if limit_name is not None:
            _over(field, value, getattr(limits, limit_name), limit_name)


def parse_submission(
    body: Any, *, max_trials: int | None = None, limits: Limits | None = None
) -> StudySpec:
    """The validated spec of a submission body, or SpecError naming the offending field.

    ``max_trials`` (default: ``limits.max_trials``) is checked before anything is expanded;
    ``limits`` also bounds everything :func:`check_limits` checks (without them: the trial
    limit and the seeds only).
    """
    limits = limits or Limits()
    spec = parse_spec(spec_document(body), max_trials=max_trials or limits.max_trials)
    # once more on what will be stored: the schema turns numbers given as strings ("inf",
    # "1e400", "100000000000000000000") into the values they name
    check_storable(spec.model_dump(mode="json", by_alias=True))
    check_limits(spec, limits)
    return spec
