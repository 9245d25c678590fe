"""Text for axes: η as a power of ten in mathtext, ALI-G∞ as ∞, slices as ``axis=value``, and
every other string drawn as :func:`literal` text.

Matplotlib reads a string with an even number of unescaped ``$`` as math text, and its parser
raises on what is not valid TeX (``$\\foo$``), so a study name, an optimizer label or a metric
name could make a plot fail. The renderers pass every string they did not write themselves
through :func:`literal`; only the η tick labels of :func:`eta_label` are math text.
"""

import math
from collections.abc import Mapping
from typing import Any


def eta_label(eta: float | None) -> str:
    """``$10^{-3}$`` for a power of ten, ``$3\\times10^{-2}$`` otherwise, ``$\\infty$`` for None."""
    if eta is None:
        return r"$\infty$"
    if not math.isfinite(eta) or eta <= 0:
        return f"{eta:g}"
    exponent = math.floor(math.log10(eta))
    mantissa = eta / 10.0**exponent
    if math.isclose(mantissa, 1.0, rel_tol=1e-9) or math.isclose(mantissa, 10.0, rel_tol=1e-9):
        return rf"$10^{{{exponent + (1 if mantissa > 5 else 0)}}}$"
    if exponent == 0:
        return f"{eta:g}"
    return rf"${mantissa:.3g}\times10^{{{exponent}}}$"


def slice_label(slice: Mapping[str, Any]) -> str:
    """``batch_size=32, radius=∞`` (``None`` radius means unconstrained); '' for no axes."""
    parts = []
    for axis, value in slice.items():
        if value is None and axis == "radius":
            text = "∞"
        elif value is None:
            text = "none"
        else:
            text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(f"{axis}={text}")
    return ", ".join(parts)


def literal(text: object) -> str:
    """``text`` as a string matplotlib draws as it is: each ``$`` escaped to ``\\$``.

    With no unescaped ``$`` left, matplotlib never parses math text and turns each ``\\$`` back
    into ``$``, so the drawn text is exactly ``text`` (a backslash already before a ``$`` stays,
    as it is itself followed by the escaped ``$``). Assumes ``text.usetex`` is off, matplotlib's
    default, as every renderer here does.
    """
    return str(text).replace("$", r"\$")
