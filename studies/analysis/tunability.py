"""Tunability under a budget (Sivaprasad et al., ICML 2020): the expected best of k random tries.

The *pool* of an optimizer in a slice is its η grid, one value per grid point: the heatmap cell
(median over seeds of the finite values; ALI-G∞ is a point of the pool like any other). A point
whose seeds all diverged is in the pool too, because a random draw can land on it; it enters
with the value chosen by ``diverged``:

- ``"inf"`` (default): the worst possible value, ``+∞`` when minimising (``−∞`` when
  maximising). All k draws land on diverged points with probability ``(d/n)^k > 0``, so ``P_k``
  is infinite for every k as soon as one point diverged; it is then reported as ``None``, and so
  is the CPE. ``prob_all_diverged`` still says how likely that outcome is.
- ``"worst"``: the worst finite value of any optimizer in the slice (a bounded penalty that keeps
  optimizers comparable); ``+∞`` as above if the slice has no finite value.
- a number: that value.

Seeds are not averaged away: a point is *diverged* in the pool unless at least
``min_finite_fraction`` (default 1: all) of its finished seeds (finite or diverged) are finite;
a point that passes with some diverged seeds (a fraction below 1) has as value the median over
all its finished seeds with each diverged seed counted as the ``diverged`` value (the worst
outcome), not the median of the survivors. Seeds that failed or have not finished, and points
with no finished seed, are left out of the pool (they say nothing about the optimizer): a point
with one finite seed and one failed one enters with its finite value.

Closed form, for minimisation, with the pool's n values and ``S(v) = #{values ≥ v} / n``: the
lowest of k draws with replacement is ``v`` with probability ``S(v)^k − S(v⁺)^k``, where
``S(v⁺) = #{values > v} / n``. Summing over the *distinct* values handles ties exactly::

    P_k = Σ_v v · (S(v)^k − S(v⁺)^k)

(with sorted values ``v_(1) ≤ … ≤ v_(n)`` and no ties this is ``Σ_i v_(i)·(((n−i+1)/n)^k −
((n−i)/n)^k)``). Maximisation is the same on ``−v``: ``P_k`` is then the expected highest value.

CPE (cumulative performance estimate): ``Σ_{k=1..K} w_k P_k`` with ``w_k ∝ K − k + 1`` normalised
to sum 1, i.e. ``w_k = 2(K − k + 1) / (K(K + 1))``: small budgets weigh more. ``K`` defaults to
the pool size.
"""

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from studies.analysis._common import Direction, check_direction, finite_or_none, json_safe, sign
from studies.analysis.cells import (
    DEFAULT_MIN_FINITE_FRACTION,
    Cell,
    check_fraction,
    reliable,
)
from studies.analysis.heatmap import cells
from studies.trial import TrialRecord

DivergedPolicy = Literal["inf", "worst"] | float


def expected_best(values: Sequence[float], k: int, direction: Direction = "minimize") -> float:
    """``P_k``: the expected best of ``k`` draws with replacement from ``values`` (closed form).

    ``values`` may hold ``±inf`` (diverged points); the result is then infinite when the
    infinite value can be the best draw. NaN is refused.
    """
    check_direction(direction)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not values:
        raise ValueError("the pool is empty")
    if any(math.isnan(v) for v in values):
        raise ValueError("the pool holds NaN")
    s = sign(direction)
    losses = sorted(s * v for v in values)
    n = len(losses)
    total = 0.0
    i = 0
    while i < n:
        j = i
        while j < n and losses[j] == losses[i]:
            j += 1
        # losses[i:j] are the tied copies of one value u; n − i values are ≥ u, n − j are > u
        p = ((n - i) / n) ** k - ((n - j) / n) ** k
        if p > 0:
            if math.isinf(losses[i]):
                return s * losses[i]
            total += losses[i] * p
        i = j
    return s * total


def cpe_weights(k_max: int) -> list[float]:
    """``w_k = 2(K − k + 1) / (K(K + 1))`` for k = 1..K: proportional to ``K − k + 1``, sum 1."""
    if k_max < 1:
        raise ValueError(f"k_max must be >= 1, got {k_max}")
    return [2.0 * (k_max - k + 1) / (k_max * (k_max + 1)) for k in range(1, k_max + 1)]


def cpe(p_k: Sequence[float | None]) -> float | None:
    """``Σ_k w_k P_k`` with ``K = len(p_k)``; ``None`` when a ``P_k`` is ``None`` or infinite."""
    if not p_k or any(p is None or not math.isfinite(p) for p in p_k):
        return None
    return float(sum(w * p for w, p in zip(cpe_weights(len(p_k)), p_k, strict=True)))  # type: ignore[misc]


@dataclass(frozen=True)
class OptimizerTunability:
    """The pool of one optimizer and its expected best under each budget."""

    optimizer: str
    etas: list[float | None]  # the pool's grid points (None = ALI-G∞)
    values: list[float | None]  # their values; None for a diverged point
    n_diverged: int  # diverged points in the pool
    p_k: list[float | None]  # P_1 … P_K; None where infinite
    prob_all_diverged: list[float]  # (d/n)^k for k = 1..K: every draw diverged
    cpe: float | None


@dataclass(frozen=True)
class Tunability:
    """Expected best under budgets k = 1..K for the optimizers of one slice."""

    optimizers: dict[str, OptimizerTunability]
    metric: str
    direction: Direction
    slice: dict[str, Any]
    diverged: str | float  # the policy: "inf", "worst" or the penalty value
    diverged_value: float | None  # what a diverged point contributed (None: ±∞)
    min_finite_fraction: float = DEFAULT_MIN_FINITE_FRACTION  # seeds finite for a working point

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data (non-finite floats become ``None``)."""
        data = asdict(self)
        data["optimizers"] = {name: asdict(t) for name, t in self.optimizers.items()}
        return json_safe(data)


def _penalty(diverged: DivergedPolicy, direction: Direction, finite: Sequence[float]) -> float:
    worst_possible = math.inf if direction == "minimize" else -math.inf
    if diverged == "inf":
        return worst_possible
    if diverged == "worst":
        if not finite:
            return worst_possible
        return max(finite) if direction == "minimize" else min(finite)
    if isinstance(diverged, int | float) and not isinstance(diverged, bool):
        if math.isnan(diverged):
            raise ValueError("diverged must not be NaN")
        return float(diverged)
    raise ValueError(f"diverged must be 'inf', 'worst' or a number, got {diverged!r}")


def tunability(
    records: Sequence[TrialRecord],
    metric: str = "final_objective",
    direction: Direction = "minimize",
    slice: Mapping[str, Any] | None = None,
    k_max: int | None = None,
    diverged: DivergedPolicy = "inf",
    optimizers: Sequence[str] | None = None,
    min_finite_fraction: float = DEFAULT_MIN_FINITE_FRACTION,
) -> Tunability:
    """``P_k`` for k = 1..K and the CPE of each optimizer in one slice (module docstring).

    ``k_max`` (K) defaults to each optimizer's pool size; ``slice`` and ``optimizers`` are as for
    :func:`studies.analysis.heatmap.heatmap`.
    """
    check_direction(direction)
    fraction = check_fraction(min_finite_fraction)
    if k_max is not None and k_max < 1:
        raise ValueError(f"k_max must be >= 1, got {k_max}")
    rows, columns, grid, chosen = cells(records, metric, slice, optimizers)
    finite = [cell.value for row in grid for cell in row if cell.value is not None]
    penalty = _penalty(diverged, direction, finite)
    result = {}
    for name, row in zip(rows, grid, strict=True):
        members = [
            (eta, _pooled_value(cell, fraction, penalty))
            for eta, cell in zip(columns, row, strict=True)
            if cell.value is not None or cell.n_diverged
        ]
        pool = [penalty if value is None else value for _, value in members]
        n_diverged = sum(value is None for _, value in members)
        big_k = (k_max if k_max is not None else len(pool)) if pool else 0
        p_k = [finite_or_none(expected_best(pool, k, direction)) for k in range(1, big_k + 1)]
        result[name] = OptimizerTunability(
            optimizer=name,
            etas=[eta for eta, _ in members],
            values=[value for _, value in members],
            n_diverged=n_diverged,
            p_k=p_k,
            prob_all_diverged=[(n_diverged / len(pool)) ** k for k in range(1, len(p_k) + 1)],
            cpe=cpe(p_k),
        )
    return Tunability(
        optimizers=result,
        metric=metric,
        direction=direction,
        slice=chosen,
        diverged=diverged,
        diverged_value=finite_or_none(penalty),
        min_finite_fraction=fraction,
    )


def _pooled_value(cell: Cell, fraction: float, penalty: float) -> float | None:
    """A pool point's value: None (diverged) unless enough of its finished seeds are finite
    (failed and unfinished seeds say nothing, as failed points); else the median of its finite
    seeds and its diverged seeds counted as ``penalty``."""
    if not reliable(cell.n_ok, cell.n_ok + cell.n_diverged, fraction):
        return None
    if not cell.n_diverged:
        return cell.value
    return float(statistics.median([*cell.finite_values, *[penalty] * cell.n_diverged]))
