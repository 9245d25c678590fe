"""Slices: the combinations of the axes other than optimizer, η and seed.

A heatmap (or a robustness or tunability table) compares optimizers across η with every other
swept axis held fixed. Those axes are ``batch_size``, ``radius``, ``weight_decay`` and every key
of ``TrialRecord.extra_axes`` (a record without some extra key has ``None`` for it). A *slice*
is a dict ``{axis: value}`` over all of them.

Selecting a slice: the caller names a value for every axis that takes several values in the
records; axes with a single value may be left out. Anything else is a ``ValueError`` whose message
names the axes and the values they take, so the service can pass it on as a 4xx.
"""

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from studies.trial import TrialRecord

BASE_AXES: tuple[str, ...] = ("batch_size", "radius", "weight_decay")


def value_sort_key(value: Any) -> tuple[int, int, Any]:
    """Order axis values: numbers ascending, then other values by their text, then ``None``.

    ``None`` last matches η (ALI-G∞) and radius (unconstrained, an infinite ball).
    """
    if value is None:
        return (1, 0, 0)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, 0, value)
    return (0, 1, str(value))


def axis_names(records: Iterable[TrialRecord]) -> list[str]:
    """The base axes, then the extra axes in first-seen order."""
    extra: dict[str, None] = {}
    for record in records:
        for name in record.extra_axes:
            if name not in BASE_AXES:
                extra.setdefault(name, None)
    return [*BASE_AXES, *extra]


def axis_value(record: TrialRecord, axis: str) -> Any:
    """The record's value on ``axis`` (``None`` for an extra axis the record does not have)."""
    if axis in BASE_AXES:
        return getattr(record, axis)
    return record.extra_axes.get(axis)


def _hashable(value: Any) -> Hashable:
    # extra axes are JSON values; a list or dict would not hash, so key it by its text
    return value if isinstance(value, Hashable) else repr(value)


def axis_values(records: Sequence[TrialRecord], axes: Sequence[str]) -> dict[str, list[Any]]:
    """For each axis, its distinct values in the records, sorted by :func:`value_sort_key`."""
    result: dict[str, list[Any]] = {}
    for axis in axes:
        seen: dict[Hashable, Any] = {}
        for record in records:
            value = axis_value(record, axis)
            seen.setdefault(_hashable(value), value)
        result[axis] = sorted(seen.values(), key=value_sort_key)
    return result


def _slice_key(record: TrialRecord, axes: Sequence[str]) -> tuple[Hashable, ...]:
    return tuple(_hashable(axis_value(record, axis)) for axis in axes)


def slices(records: Sequence[TrialRecord]) -> list[dict[str, Any]]:
    """The distinct slices present in ``records``, each a dict over all axes, in sorted order.

    Each can be passed back unchanged as the ``slice`` argument of the analysis functions.
    """
    axes = axis_names(records)
    found: dict[tuple[Hashable, ...], dict[str, Any]] = {}
    for record in records:
        key = _slice_key(record, axes)
        if key not in found:
            found[key] = {axis: axis_value(record, axis) for axis in axes}
    return sorted(found.values(), key=lambda s: tuple(value_sort_key(s[axis]) for axis in axes))


def _describe(values: Mapping[str, list[Any]]) -> str:
    return "; ".join(f"{axis} in {values[axis]!r}" for axis in values)


def select_slice(
    records: Sequence[TrialRecord], slice: Mapping[str, Any] | None = None
) -> tuple[list[TrialRecord], dict[str, Any]]:
    """The records of one slice and that slice as a dict over all axes.

    Raises ``ValueError`` when ``slice`` names an unknown axis or a value no record has, when it
    leaves out an axis that takes several values, or when the combination has no trial.
    """
    axes = axis_names(records)
    values = axis_values(records, axes)
    given = dict(slice or {})
    unknown = [axis for axis in given if axis not in axes]
    if unknown:
        raise ValueError(f"unknown slice axes {unknown}; the axes are {axes}")
    for axis, value in given.items():
        if _hashable(value) not in {_hashable(v) for v in values[axis]}:
            raise ValueError(f"no trial has {axis}={value!r}; {axis} takes {values[axis]!r}")
    unchosen = {axis: vals for axis, vals in values.items() if len(vals) > 1 and axis not in given}
    if unchosen:
        raise ValueError(
            "the records span several slices; choose a value for each of these axes: "
            + _describe(unchosen)
        )
    chosen = {
        axis: given[axis] if axis in given else (values[axis][0] if values[axis] else None)
        for axis in axes
    }
    wanted = tuple(_hashable(chosen[axis]) for axis in axes)
    selected = [record for record in records if _slice_key(record, axes) == wanted]
    if records and not selected:
        raise ValueError(f"no trial in the slice {chosen!r}; the slices are {slices(records)!r}")
    return selected, chosen
