"""Performance profiles (Dolan & Moré, Math. Programming 91, 2002; the AlgoPerf benchmark's
summary): how often each optimizer is within a factor τ of the best one, over a set of problems.

For a set of problems P and of optimizers S, with ``t_{p,s}`` the cost of optimizer s on
problem p (here: its best objective over the η grid, a cell's value being the median over
seeds), the *performance ratio* is

    r_{p,s} = t_{p,s} / min{ t_{p,s'} : s' ∈ S }

and the *performance profile* of s is the fraction of problems on which its ratio is at most τ:

    ρ_s(τ) = |{ p ∈ P : r_{p,s} ≤ τ }| / |P|.

``ρ_s(1)`` is the share of problems s wins (ties count for every optimizer that ties), and
``ρ_s(τ)`` for large τ the share it solves at all. Choices, each following the paper:

- **No cost** (every cell of s diverged, or s was not run on p): ``r_{p,s} = ∞`` (Dolan–Moré's
  ``r_M`` for a failure: it never counts, for any τ), written ``null`` in JSON. A problem on
  which no optimizer has a cost has every ratio ∞; it still counts in ``|P|``.
- **Costs must be positive.** A ratio of costs assumes ``t > 0`` (the paper's measures are
  computing times): a cost of 0 would make every other ratio infinite and a negative one
  reverses the order. A cost ``≤ 0`` is refused (``ValueError`` naming the problem and the
  optimizer) instead of being shifted by an arbitrary floor: the objectives here are losses
  (mean squared error, cross-entropy), positive except at an exact optimum, and a shift would
  change every ratio by a choice of ours.
- **The τ grid** is logarithmic from 1 to ``tau_max``: ``τ_k = 10^(k / 20)``, 20 points per
  decade, with ``tau_max`` itself last. ``r ≤ τ`` is tested with a relative slack of 1e-12 so
  that a ratio that is exactly a grid point in real numbers (10, 100) is not lost to rounding.
  ``ratios`` carries every ratio, so the exact steps of ρ_s are known between grid points.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from studies.analysis._common import json_safe

DEFAULT_TAU_MAX = 1e3
POINTS_PER_DECADE = 20
MAX_TAU_MAX = 1e12  # 241 grid points at most
RATIO_SLACK = 1e-12


@dataclass(frozen=True)
class Profile:
    """The costs, ratios and profiles of optimizers over problems (module docstring).

    Every per-optimizer list is in ``problems`` order; ``None`` in ``costs`` is "no cost",
    ``math.inf`` in ``ratios`` is r = ∞ (``null`` in ``to_dict()``).
    """

    problems: list[str]
    optimizers: list[str]
    costs: dict[str, list[float | None]]  # t_{p,s}
    ratios: dict[str, list[float]]  # r_{p,s}; inf: no cost
    tau: list[float]  # the grid, 1 … tau_max
    rho: dict[str, list[float]]  # ρ_s(τ) on the grid
    tau_max: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data (an infinite ratio becomes ``None``)."""
        return json_safe(asdict(self))


def check_tau_max(tau_max: float) -> float:
    """``tau_max`` as a float, or ``ValueError`` unless ``1 < tau_max ≤ 1e12``."""
    if (
        isinstance(tau_max, bool)
        or not isinstance(tau_max, int | float)
        or not (1.0 < tau_max <= MAX_TAU_MAX)
    ):
        raise ValueError(f"tau_max must be in (1, {MAX_TAU_MAX:g}], got {tau_max!r}")
    return float(tau_max)


def tau_grid(tau_max: float = DEFAULT_TAU_MAX) -> list[float]:
    """``1, 10^(1/20), 10^(2/20), …`` up to ``tau_max``, which is always the last point."""
    top = check_tau_max(tau_max)
    n = math.floor(POINTS_PER_DECADE * math.log10(top) + 1e-9)
    grid = [10.0 ** (k / POINTS_PER_DECADE) for k in range(n + 1)]
    grid[0] = 1.0
    if math.isclose(grid[-1], top, rel_tol=1e-9):
        grid[-1] = top
    else:
        grid.append(top)
    return grid


def _cost(value: float | None, problem: str, optimizer: str, label: str) -> float | None:
    if value is None or value == math.inf:
        return None
    if math.isnan(value):
        raise ValueError(f"{label} {problem}: the cost of {optimizer} is NaN")
    if value <= 0:
        raise ValueError(
            f"{label} {problem}: the best value of {optimizer} is {value:g} <= 0; performance "
            "ratios need positive costs (Dolan & Moré 2002), so this comparison is refused"
        )
    return float(value)


def performance_profile(
    costs: Mapping[str, Mapping[str, float | None]],
    optimizers: Sequence[str] | None = None,
    tau_max: float = DEFAULT_TAU_MAX,
    problem_label: str = "problem",
) -> Profile:
    """The performance profiles of ``costs``: problem -> optimizer -> ``t_{p,s}`` (``None`` or
    absent: no cost, r = ∞).

    ``optimizers`` fixes the optimizers and their order (default: first seen over the
    problems). ``problem_label`` names a problem in error messages ("study"). Raises
    ``ValueError`` for no problem, a cost ≤ 0 or NaN, or a ``tau_max`` outside (1, 1e12].
    """
    grid = tau_grid(tau_max)
    problems = list(costs)
    if not problems:
        raise ValueError("a performance profile needs at least one problem")
    names = (
        list(dict.fromkeys(optimizers))
        if optimizers is not None
        else list(dict.fromkeys(name for problem in problems for name in costs[problem]))
    )
    table = {
        name: [_cost(costs[p].get(name), p, name, problem_label) for p in problems]
        for name in names
    }
    best = [
        min((t for name in names if (t := table[name][i]) is not None), default=None)
        for i in range(len(problems))
    ]
    ratios = {
        name: [
            math.inf if t is None or b is None else t / b
            for t, b in zip(table[name], best, strict=True)
        ]
        for name in names
    }
    rho = {
        name: [
            sum(r <= tau * (1.0 + RATIO_SLACK) for r in ratios[name]) / len(problems)
            for tau in grid
        ]
        for name in names
    }
    return Profile(
        problems=problems,
        optimizers=names,
        costs=table,
        ratios=ratios,
        tau=grid,
        rho=rho,
        tau_max=grid[-1],
    )
