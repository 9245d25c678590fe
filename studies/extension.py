"""Extending a study: more trials added to a stored spec (``POST /studies/{id}/extend``).

An extension body is a fragment of a spec that only **adds**:

- ``grid``: values for any of ``eta`` (a list, or decades ``{"from", "to", "per_decade"}``),
  ``batch_size``, ``radius``, ``weight_decay``, ``seed``, and ``task_options`` (more values of
  the options the study already sweeps). Each axis becomes the stored one with the new values
  appended, in the body's order, values already there ignored (an η grid of decades stays one
  when the union is again a decade range of the same density; otherwise it is written out);
- ``optimizers``: entries whose row (label, else name) the study does not have are appended; an
  entry naming an existing row may bring more ``eta`` values for that row alone (its η grid
  becomes its own: the grid's values it ran, then the new ones); its ``name`` and, when given,
  its ``options`` must be the stored ones;
- ``search``: a search study's ``n_trials`` (samples per optimizer) raised; its other fields, when
  given, must be the stored ones. New optimizer entries of a search are sampled ``n_trials``
  times each.

Every other field of a spec (``task``, ``task_options``, ``budget``, ``device``, ``amp``,
``schedule``, ``resources``, …) may appear only with its stored value. Anything that is not an
addition is an :class:`ExtensionConflict` naming the field (409: another task, budget or device,
another optimizer or options under an existing row, a new swept task option, fewer samples);
a malformed body is a :class:`SpecError` naming the field (422), and so is an extension that
adds no trial. The merged spec is validated as a submission is (:func:`parse_submission`: the
trial count and the service's limits; its error messages name fields of the merged spec).

Every trial has a key that hashes what defines it (:mod:`studies.trial`), so the merged spec's
trials are the stored ones — the same keys, whose rows and results are kept as they are — and
the new ones (:func:`plan_extension`). A merged spec that does not reproduce every stored key
(trials stored by another version of the keys) is refused rather than run twice.
"""

import json
from collections.abc import Callable, Collection, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from studies.catalog.optimizers import OPTIMIZERS
from studies.catalog.tasks import TASKS
from studies.exceptions import ExtensionConflict, SpecError
from studies.spec import (
    Decades,
    OptimizerEntry,
    Search,
    StudySpec,
    eta_values,
    expand_grid,
    planned_trial_count,
)
from studies.submission import Limits, check_storable, parse_submission
from studies.trial import Trial

# the grid's list axes an extension appends to (``eta`` and ``task_options`` are merged apart)
GRID_AXES = ("batch_size", "radius", "weight_decay", "seed")
SHOWN_MAX = 200  # characters of a value quoted in a conflict's message


@dataclass(frozen=True)
class ExtensionPlan:
    """A planned extension: the merged spec, what the body added (by field, as stored in the
    study's history), the trials to insert and how many trials it adds and reuses.

    A grid's ``new_trials`` are its new rows; a search makes its rows as it samples, so
    ``new_trials`` is empty and ``n_added`` counts the samples it plans."""

    spec: StudySpec
    added: dict[str, Any]
    new_trials: list[Trial] = field(default_factory=list)
    n_added: int = 0
    n_reused: int = 0

    def document(self) -> dict[str, Any]:
        """The merged spec as the store keeps it (what a submission stores)."""
        return self.spec.model_dump(mode="json", by_alias=True)


def plan_extension(
    stored: Mapping[str, Any],
    stored_keys: Collection[str],
    body: Any,
    *,
    limits: Limits | None = None,
) -> ExtensionPlan:
    """The extension of a study whose spec is ``stored`` (a validated spec document) and whose
    trial rows have ``stored_keys``, by ``body``: see the module docstring. Raises
    ExtensionConflict (not an addition), SpecError (malformed, over a limit, or no new trial).
    """
    document, added = merge_spec(stored, body)
    spec = parse_submission(document, limits=limits)
    keys = set(stored_keys)
    if spec.grid is not None:
        union = expand_grid(spec)
        missing = keys - {trial.key for trial in union}
        if missing:
            raise ExtensionConflict(
                f"grid: {len(missing)} of the study's {len(keys)} stored trials are not trials "
                "of the merged spec (their keys come from another version of the service): "
                "submit a new study instead"
            )
        new_trials = [trial for trial in union if trial.key not in keys]
        n_added = len(new_trials)
    else:
        new_trials = []
        n_added = planned_trial_count(spec) - planned_trial_count(StudySpec.model_validate(stored))
    if n_added <= 0:
        raise SpecError(
            "body: the extension adds no new trial (every value it names is already in the "
            "study); add η values, seeds, batch sizes, radii, weight decays, swept task-option "
            "values, optimizers or, for a search, a larger search.n_trials"
        )
    return ExtensionPlan(spec, added, new_trials, n_added, len(keys))


def history_entry(plan: ExtensionPlan, at: datetime, from_status: str) -> dict[str, Any]:
    """The study's history entry of an extension (JSON): when, from which status, what it
    added and how many trials it added and reused."""
    return {
        "at": at.isoformat(),
        "from_status": from_status,
        "added": plan.added,
        "trials_added": plan.n_added,
        "trials_reused": plan.n_reused,
    }


# ----------------------------------------------------------------------------------- merging


def merge_spec(stored: Mapping[str, Any], body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The merged spec document (not yet validated as a whole) and what the body added, by
    field path (``grid.eta``, ``optimizers``, ``optimizers[0].eta``, ``search.n_trials``).

    The fields are merged in a fixed order: the fixed fields are compared first, then the grid
    (so an existing optimizer's own η values start from the merged grid), the search, and the
    optimizers."""
    if not isinstance(body, Mapping):
        raise SpecError('body: must be a JSON object (the values to add, e.g. {"grid": ...})')
    if not body:
        raise SpecError("body: the extension adds no new trial (the body is empty)")
    check_storable(body)
    old = StudySpec.model_validate(stored)  # stored specs were validated at submit
    document = deepcopy(dict(stored))
    added: dict[str, Any] = {}
    for name, value in body.items():
        if name not in MERGERS:
            _check_fixed(old, document, name, value)
    for name, merge in MERGERS.items():
        if name in body:
            merge(old, document, body[name], added)
    return document, added


def _check_fixed(old: StudySpec, document: dict[str, Any], name: str, value: Any) -> None:
    """A field an extension does not add to may only repeat its stored value."""
    try:
        candidate = StudySpec.model_validate({**document, name: value})
    except ValidationError as error:
        raise _schema_error(error) from None
    if getattr(candidate, name) != getattr(old, name):
        raise ExtensionConflict(
            f"{name}: the study has {_shown(getattr(old, name))}, the extension "
            f"{_shown(getattr(candidate, name))}; an extension only adds trials and cannot change "
            f"{name} (submit a new study for that)"
        )


def _merge_grid(
    old: StudySpec, document: dict[str, Any], value: Any, added: dict[str, Any]
) -> None:
    if old.grid is None:
        raise ExtensionConflict(
            "grid: the study is a search study; extend it with a larger search.n_trials or "
            "more optimizers"
        )
    if not isinstance(value, Mapping):
        raise SpecError("grid: must be a JSON object of the axis values to add")
    grid = document["grid"]
    for axis, values in value.items():
        field = f"grid.{axis}"
        if axis == "eta":
            grid["eta"], fresh = _merge_etas(grid["eta"], values, field)
        elif axis in GRID_AXES:
            default = [TASKS[old.task].default_batch_size] if axis == "batch_size" else None
            grid[axis], fresh = _merge_axis(grid.get(axis), values, field, default)
        elif axis == "task_options":
            _merge_sweeps(grid, values, added)
            continue
        else:
            valid = ", ".join(("eta", *GRID_AXES, "task_options"))
            raise SpecError(f"{field}: not an axis an extension adds to; valid: {valid}")
        if fresh:
            added[field] = fresh


def _merge_sweeps(grid: dict[str, Any], value: Any, added: dict[str, Any]) -> None:
    """More values of the task options the study sweeps (a new swept option would change every
    stored trial's task options)."""
    if not isinstance(value, Mapping):
        raise SpecError("grid.task_options: must be a JSON object of option values to add")
    sweeps = grid.setdefault("task_options", {})
    for option, values in value.items():
        field = f"grid.task_options.{option}"
        if option not in sweeps:
            swept = ", ".join(sorted(sweeps)) or "none"
            raise ExtensionConflict(
                f"{field}: the study does not sweep {option} (it sweeps: {swept}); an extension "
                "adds values to swept options only (submit a new study to sweep another)"
            )
        sweeps[option], fresh = _merge_axis(sweeps[option], values, field)
        if fresh:
            added[field] = fresh


def _merge_search(
    old: StudySpec, document: dict[str, Any], value: Any, added: dict[str, Any]
) -> None:
    if old.search is None:
        raise ExtensionConflict("search: the study is a grid study; extend its grid instead")
    if not isinstance(value, Mapping):
        raise SpecError('search: must be a JSON object (e.g. {"n_trials": 40})')
    try:
        candidate = Search.model_validate({**document["search"], **value})
    except ValidationError as error:
        raise _schema_error(error, "search") from None
    for name in Search.model_fields:
        if name != "n_trials" and getattr(candidate, name) != getattr(old.search, name):
            raise ExtensionConflict(
                f"search.{name}: the study has {_shown(getattr(old.search, name))}; an "
                "extension only raises search.n_trials (submit a new study for another search)"
            )
    if candidate.n_trials < old.search.n_trials:
        raise ExtensionConflict(
            f"search.n_trials: the study samples {old.search.n_trials} per optimizer, the "
            f"extension {candidate.n_trials}; an extension cannot remove samples"
        )
    if candidate.n_trials > old.search.n_trials:
        document["search"]["n_trials"] = candidate.n_trials
        added["search.n_trials"] = {"from": old.search.n_trials, "to": candidate.n_trials}


def _merge_optimizers(
    old: StudySpec, document: dict[str, Any], value: Any, added: dict[str, Any]
) -> None:
    if not isinstance(value, list) or not value:
        raise SpecError("optimizers: must be a non-empty list of optimizer entries to add")
    rows = {entry.row: index for index, entry in enumerate(old.entries)}
    entries = document["optimizers"]
    appended: list[Any] = []
    seen: set[str] = set()
    for i, raw in enumerate(value):
        field = f"optimizers[{i}]"
        entry = _entry(raw, field)
        if entry.row in seen:
            raise SpecError(f"{field}: repeats the row {entry.row!r} of an earlier entry")
        seen.add(entry.row)
        if entry.row not in rows:
            entries.append(raw)
            appended.append(raw)
            continue
        index = rows[entry.row]
        stored = old.entries[index]
        if entry.name != stored.name:
            raise ExtensionConflict(
                f"{field}.name: the study's row {entry.row!r} runs {stored.name}, not "
                f"{entry.name}; give a new optimizer its own label"
            )
        if isinstance(raw, Mapping) and "options" in raw and entry.options != stored.options:
            raise ExtensionConflict(
                f"{field}.options: the study's row {entry.row!r} runs with the options "
                f"{_shown(stored.options)}; an extension cannot change an existing optimizer's "
                "options (add it as a new entry under another label)"
            )
        if entry.eta is not None:
            fresh = _extend_entry_eta(document, entries, index, stored, entry, field)
            if fresh:
                added[f"optimizers[{index}].eta"] = fresh
    if appended:
        added["optimizers"] = appended


def _extend_entry_eta(
    document: dict[str, Any],
    entries: list[Any],
    index: int,
    stored: OptimizerEntry,
    entry: OptimizerEntry,
    field: str,
) -> list[float | None]:
    """Give an existing row more η values of its own; the values added."""
    if document.get("grid") is None:
        raise SpecError(f"{field}.eta: per-optimizer η grids need grid mode")
    if stored.eta is not None:
        base: Any = entries[index]["eta"]
    else:
        # the row ran the grid's η values (null only where it accepts it): they become its own
        accepts_none = OPTIMIZERS[stored.name].eta_may_be_none
        base = [
            eta for eta in _values(document["grid"]["eta"], "grid.eta")
            if eta is not None or accepts_none
        ]  # fmt: skip
    merged, fresh = _merge_etas(base, _eta_document(entry.eta), f"{field}.eta")
    raw = entries[index]
    entries[index] = {**(raw if isinstance(raw, Mapping) else {"name": raw}), "eta": merged}
    return fresh


# the mergeable fields, in the order they are merged (see merge_spec)
MERGERS: dict[str, Callable[[StudySpec, dict[str, Any], Any, dict[str, Any]], None]] = {
    "grid": _merge_grid,
    "search": _merge_search,
    "optimizers": _merge_optimizers,
}


# ----------------------------------------------------------------------------------- helpers


def _merge_axis(
    stored: list[Any] | None, value: Any, field: str, default: list[Any] | None = None
) -> tuple[list[Any] | None, list[Any]]:
    """``(the stored values with the new ones appended, the new ones)``; ``default`` stands for
    an axis the study left out (the task's batch size). Unchanged when nothing is new."""
    if not isinstance(value, list):
        raise SpecError(f"{field}: must be a list of values to add")
    base = list(stored) if stored is not None else list(default or [])
    fresh: list[Any] = []
    for item in value:
        if item not in base and item not in fresh:
            fresh.append(item)
    return (base + fresh if fresh else stored), fresh


def _merge_etas(stored: Any, value: Any, field: str) -> tuple[Any, list[float | None]]:
    """``(the merged η grid document, the values it adds)``: the stored values then the new
    ones; decades stay decades when the union is one range of the same density."""
    old_values = _values(stored, field)
    new_values = _values(value, field)
    fresh: list[float | None] = []
    for eta in new_values:
        if eta not in old_values and eta not in fresh:
            fresh.append(eta)
    if not fresh:
        return stored, []
    merged = old_values + fresh
    if isinstance(stored, Mapping) and isinstance(value, Mapping):
        first, second = Decades.model_validate(stored), Decades.model_validate(value)
        if first.per_decade == second.per_decade:
            union = Decades.model_validate(
                {
                    "from": min(first.from_, second.from_),
                    "to": max(first.to, second.to),
                    "per_decade": first.per_decade,
                    "infinity": first.infinity or second.infinity,
                }
            )
            if set(union.values()) == set(merged):
                return union.model_dump(mode="json", by_alias=True), fresh
    return merged, fresh


def _values(grid: Any, field: str) -> list[Any]:
    """The η values of a grid document: a list as it is (its items are validated with the
    merged spec), decades written out."""
    if isinstance(grid, list):
        return list(grid)
    if isinstance(grid, Mapping):
        try:
            return eta_values(Decades.model_validate(dict(grid)))
        except ValidationError as error:
            raise _schema_error(error, field) from None
    raise SpecError(f"{field}: must be a list of η values or decades {{from, to, per_decade}}")


def _eta_document(grid: list[float | None] | Decades) -> Any:
    return grid.model_dump(mode="json", by_alias=True) if isinstance(grid, Decades) else grid


def _entry(raw: Any, field: str) -> OptimizerEntry:
    """An optimizer entry of the body (a registry name or an object)."""
    if isinstance(raw, str):
        return OptimizerEntry(name=raw)
    try:
        return OptimizerEntry.model_validate(raw)
    except ValidationError as error:
        raise _schema_error(error, field) from None


def _schema_error(error: ValidationError, prefix: str = "") -> SpecError:
    """SpecError naming every invalid field (``prefix.path: message``)."""
    parts = []
    for item in error.errors():
        path = prefix
        for piece in item["loc"]:
            path += f"[{piece}]" if isinstance(piece, int) else f".{piece}"
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{path.lstrip('.') or 'body'}: {message}")
    return SpecError("; ".join(parts))


def _shown(value: Any) -> str:
    """A stored or given value in a message: its JSON, shortened."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", by_alias=True, exclude_none=True)
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= SHOWN_MAX else text[: SHOWN_MAX - 1] + "…"
