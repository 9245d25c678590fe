"""Small helpers shared by the analysis modules: directions and JSON-safe values.

Every info object's ``to_dict()`` goes through :func:`json_safe`, so a non-finite float can never
reach the wire: the service's JSON carries ``null`` instead of ``NaN``/``Infinity``.
"""

import math
from typing import Any, Literal, get_args

# The literal of ``studies.catalog.tasks.Direction``, repeated: analysis depends on records only
Direction = Literal["minimize", "maximize"]
DIRECTIONS: tuple[str, ...] = get_args(Direction)


def check_direction(direction: str) -> Direction:
    """Return ``direction`` unchanged, or raise a ``ValueError`` that names the allowed values."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {list(DIRECTIONS)}, got {direction!r}")
    return direction  # type: ignore[return-value]


def sign(direction: Direction) -> float:
    """``+1`` when lower is better, ``-1`` when higher is better: ``sign · value`` is a loss."""
    return 1.0 if direction == "minimize" else -1.0


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float when finite, else ``None``."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def json_safe(obj: Any) -> Any:
    """A copy of ``obj`` (dicts, lists, tuples, scalars) with every non-finite float as ``None``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(value) for value in obj]
    return obj
