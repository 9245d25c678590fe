"""Hyperparameter checks shared by the optimizers.

Each check raises :class:`~optim.exceptions.InvalidHyperparameterError` naming the field and the
offending value, like ``torch.optim`` does (``Invalid learning rate: -1``).
"""

import math

from optim.exceptions import InvalidHyperparameterError


def _as_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidHyperparameterError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value):
        raise InvalidHyperparameterError(f"{name} must not be NaN")
    return value


def positive(name: str, value: object) -> float:
    """``value`` as a float, required finite and > 0."""
    number = _as_float(name, value)
    if not (0.0 < number < math.inf):
        raise InvalidHyperparameterError(f"{name} must be finite and > 0, got {value!r}")
    return number


def optional_positive(name: str, value: object) -> float | None:
    """``None`` (the feature is off) or a finite number > 0."""
    return None if value is None else positive(name, value)


def non_negative(name: str, value: object) -> float:
    """``value`` as a float, required finite and >= 0."""
    number = _as_float(name, value)
    if not (0.0 <= number < math.inf):
        raise InvalidHyperparameterError(f"{name} must be finite and >= 0, got {value!r}")
    return number


def unit_interval(name: str, value: object, *, closed_right: bool = False) -> float:
    """``value`` in [0, 1) (or [0, 1] with ``closed_right``), e.g. a momentum coefficient."""
    number = _as_float(name, value)
    ok = 0.0 <= number <= 1.0 if closed_right else 0.0 <= number < 1.0
    if not ok:
        interval = "[0, 1]" if closed_right else "[0, 1)"
        raise InvalidHyperparameterError(f"{name} must be in {interval}, got {value!r}")
    return number


def positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidHyperparameterError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def finite(name: str, value: object) -> float:
    """``value`` as a finite float (any sign)."""
    number = _as_float(name, value)
    if not math.isfinite(number):
        raise InvalidHyperparameterError(f"{name} must be finite, got {value!r}")
    return number
