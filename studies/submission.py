"""What a client submits, turned into a validated :class:`~studies.spec.StudySpec` — once, at the
boundary: the API and the CLI hand the request body here, everything downstream gets the
parsed spec.

A body is a study spec, or ``{"preset": name, "overrides": {...}}`` (a shipped preset with
nested overrides merged in). Before the spec is parsed, the body is checked for what the store
cannot hold: non-finite numbers (JSON has none), integers beyond the 32-bit columns, and NUL
characters (PostgreSQL text has none); each is refused naming its path.
"""

import math
from collections import deque
from typing import Any

from studies.exceptions import SpecError
from studies.presets import load_preset
from studies.spec import StudySpec, parse_spec

INT_RANGE = (-(2**31), 2**31 - 1)  # the store's integer columns (batch size, seed) are 32-bit


def check_storable(body: Any) -> None:
    """Raise SpecError naming the first value the store cannot hold (see the module docstring)."""
    queue: deque[tuple[str, Any]] = deque([("", body)])  # iterative: bodies may nest deeply
    while queue:
        path, value = queue.popleft()
        if isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                if "\x00" in str(key):
                    raise SpecError(f"{child}: keys must not contain NUL characters")
                queue.append((child, item))
        elif isinstance(value, list):
            queue.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, str) and "\x00" in value:
            raise SpecError(f"{path or 'body'}: must not contain NUL characters")
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


def parse_submission(body: Any, *, max_trials: int) -> StudySpec:
    """The validated spec of a submission body, or SpecError naming the offending field."""
    return parse_spec(spec_document(body), max_trials=max_trials)
