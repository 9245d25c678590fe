"""Values matplotlib can lay out.

Norms, colour bars, autoscaling and log tick locators add, subtract and raise 10 to the limits
of what they show; with values near the float limit (±1.8e308) those intermediate results
overflow and drawing fails. Finite values are therefore clamped to ±:data:`PLOT_LIMIT` before
they are drawn: a value that large is drawn at the edge of the scale instead of failing the
whole figure. Non-finite values are left alone (the renderers mask or skip them).
"""

import numpy as np

# 1e200 and not 1e300: a log axis from 1e-300 to 1e300 overflows in the tick formatter
PLOT_LIMIT = 1e200


def plottable(values: np.ndarray) -> np.ndarray:
    """``values`` (float array, any shape) with finite entries clamped to ±PLOT_LIMIT."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), np.clip(values, -PLOT_LIMIT, PLOT_LIMIT), values)


def plottable_value(value: float) -> float:
    """One value clamped as :func:`plottable` does."""
    return float(plottable(np.array(value)))
