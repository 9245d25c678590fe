"""Explicit encodings of non-finite floats for SQL columns and JSON documents.

PostgreSQL's ``double precision`` stores NaN and ±Infinity, SQLite turns NaN into NULL, and JSON
has no spelling for any of them (``json.dumps`` writes ``NaN``, which is not JSON). So the store
never puts a non-finite float into a float column or a JSON document:

- **columns**: a float column is paired with a ``kind`` column in ``finite | nan | inf | -inf``;
  the float column holds the value when ``kind == "finite"`` and NULL otherwise. A missing value
  is NULL in both columns (where the ``kind`` column is nullable).
- **JSON** (a trial's last-reported ``metrics``): a finite number is stored as itself, a
  non-finite one as the tagged object ``{"kind": "nan" | "inf" | "-inf"}``, a missing one as
  ``null``; e.g. ``{"loss": 0.25, "grad_norm": {"kind": "inf"}}``.

Decoding gives back Python floats (``math.nan``, ``±math.inf``), so a round trip is exact.
"""

import math
from collections.abc import Mapping
from typing import Any, get_args

from studies.trial import ValueKind

VALUE_KINDS: tuple[ValueKind, ...] = get_args(ValueKind)
_NON_FINITE: dict[str, float] = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def float_kind(value: float) -> ValueKind:
    """The kind of a float: ``finite``, ``nan``, ``inf`` or ``-inf``."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return "finite"


def _as_float(value: object, what: str) -> float:
    # bool is an int, but a True "loss" is a bug in the caller, not a number worth storing
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what}: expected a number, got {type(value).__name__}")
    return float(value)


def encode_float(value: float | None, what: str = "value") -> tuple[float | None, ValueKind | None]:
    """``(column value, kind)`` for a float column and its kind column.

    ``None`` → ``(None, None)``; a finite x → ``(x, "finite")``; NaN/±inf → ``(None, kind)``.
    Raises ``TypeError`` (naming ``what``) for anything that is not a real number.
    """
    if value is None:
        return None, None
    number = _as_float(value, what)
    kind = float_kind(number)
    return (number if kind == "finite" else None), kind


def decode_float(value: float | None, kind: str | None) -> float | None:
    """The inverse of :func:`encode_float`: the Python float (NaN/±inf included) or ``None``."""
    if kind is None:
        return None if value is None else float(value)  # tolerate rows written without a kind
    if kind == "finite":
        if value is None:
            raise ValueError("a finite value is NULL in its float column")
        return float(value)
    try:
        return _NON_FINITE[kind]
    except KeyError:
        raise ValueError(f"unknown value kind {kind!r}") from None


def encode_metrics(metrics: Mapping[str, float | None]) -> dict[str, Any]:
    """A JSON-safe copy of ``metrics``: non-finite values become ``{"kind": ...}`` objects.

    Keys must be strings and values numbers or ``None``; ``TypeError`` names the offending metric.
    """
    encoded: dict[str, Any] = {}
    for name, value in metrics.items():
        if not isinstance(name, str):
            raise TypeError(f"metrics: names must be strings, got {name!r}")
        if value is None:
            encoded[name] = None
            continue
        number = _as_float(value, f"metrics.{name}")
        kind = float_kind(number)
        encoded[name] = number if kind == "finite" else {"kind": kind}
    return encoded


def decode_metrics(document: Mapping[str, Any] | None) -> dict[str, float | None]:
    """The inverse of :func:`encode_metrics` (``None`` or ``{}`` → ``{}``)."""
    decoded: dict[str, float | None] = {}
    for name, value in (document or {}).items():
        if isinstance(value, Mapping):
            decoded[name] = decode_float(None, value.get("kind"))
        else:
            decoded[name] = None if value is None else float(value)
    return decoded
