"""The good-η range of each optimizer in one slice: how far η can move and still work.

A grid point η of an optimizer is *good* when its heatmap value ``v`` (median over seeds of the
finite values) passes a cutoff ``c`` derived from the slice:

- relative mode (the default), with ``b`` the best value of any optimizer in the slice:

  - ``direction="minimize"``: ``tolerance`` is a factor ``t ≥ 1`` (default 10) and
    ``c = b + (t − 1)·|b|``, i.e. ``v ≤ t·b`` when ``b > 0`` (within a factor t of the best) and
    ``v ≤ b − (t − 1)·b`` (as far above ``b`` as ``|b|`` times ``t − 1``) when ``b ≤ 0``; with
    ``b = 0`` only the points that reach 0 are good;
  - ``direction="maximize"``: ``tolerance`` is an absolute gap ``t ≥ 0`` (default 0.01, one
    point of an accuracy in [0, 1]) and good means ``v ≥ b − t``;

- absolute mode, when ``threshold`` is given: good means ``v ≤ threshold`` (minimise) or
  ``v ≥ threshold`` (maximise).

Cells without a finite value (diverged, failed, missing) are never good, and neither is a cell
where fewer than ``min_finite_fraction`` (default 1: all) of its seeds are finite
(:func:`studies.analysis.cells.reliable`). The *grid of an
optimizer* is the heatmap columns where it has at least one trial, in η order with ALI-G∞ last;
columns it never ran are skipped rather than breaking contiguity (another optimizer's grid), but
a point of its own grid that is not good (diverged, or not finished) does break it.

The range is the widest run of consecutive good points of that grid. Width is measured in decades
between the run's lowest and highest finite η: ALI-G∞ extends a run (it is the last column) but
adds no width. Equal widths go to the run that holds the optimizer's best η (its lowest η among
ties of the best value): whenever any point is good the best one is, so exactly one run holds it.

Reported per optimizer: ``eta_low``/``eta_high`` (the run's lowest/highest η; ``eta_high`` is
``None`` and ``includes_infinity`` true when the run reaches ALI-G∞, and ``eta_low`` is ``None``
too if the run is ALI-G∞ alone), ``decades = log10(eta_high / eta_low)`` (0 for a single point,
``None`` when the run includes ∞ or there is no run), ``best_eta``/``best_value`` (the optimizer's
best point over its whole grid, among the cells with enough finite seeds), ``n_good`` (points in
the run, ∞ included). An optimizer with no
good point has every field ``None``, ``n_good = 0`` and ``includes_infinity = False``.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from studies.analysis._common import Direction, check_direction, json_safe, sign
from studies.analysis.cells import DEFAULT_MIN_FINITE_FRACTION, check_fraction, reliable
from studies.analysis.heatmap import Heatmap, heatmap
from studies.trial import TrialRecord

DEFAULT_FACTOR = 10.0  # minimise: within a factor 10 of the best (a decade of loss)
DEFAULT_GAP = 0.01  # maximise: within 0.01 of the best (one accuracy point)


@dataclass(frozen=True)
class EtaRange:
    """The good-η range of one optimizer (see the module docstring for every field)."""

    optimizer: str
    eta_low: float | None
    eta_high: float | None
    decades: float | None
    best_eta: float | None
    best_value: float | None
    n_good: int
    includes_infinity: bool
    seeds: int = 0  # the most seeds any of its cells has
    diverged_seeds: int = 0  # seeds that diverged, over its whole grid


@dataclass(frozen=True)
class Robustness:
    """The good-η ranges of the optimizers of one slice and the rule that made them."""

    ranges: dict[str, EtaRange]  # by optimizer, in heatmap row order
    metric: str
    direction: Direction
    slice: dict[str, Any]
    mode: Literal["relative", "absolute"]
    tolerance: float | None  # the factor (minimise) or gap (maximise) of the relative mode
    threshold: float | None  # the bound of the absolute mode
    reference_value: float | None  # best value of any optimizer in the slice
    cutoff: float | None  # the bound a good value must meet (None: nothing finite in the slice)
    min_finite_fraction: float = DEFAULT_MIN_FINITE_FRACTION  # seeds finite for a good cell

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data (non-finite floats become ``None``)."""
        data = asdict(self)
        data["ranges"] = {name: asdict(r) for name, r in self.ranges.items()}
        return json_safe(data)


def _cutoff(
    best: float, direction: Direction, tolerance: float | None, threshold: float | None
) -> float:
    if threshold is not None:
        return threshold
    assert tolerance is not None
    if direction == "maximize":
        return best - tolerance
    # b·t for b > 0 written as b + (t − 1)|b| so that b ≤ 0 gets a bound above b as well
    return best * tolerance if best > 0 else best + (tolerance - 1.0) * abs(best)


def _width(etas: Sequence[float | None]) -> float:
    finite = [eta for eta in etas if eta is not None]
    return math.log10(max(finite) / min(finite)) if finite else 0.0


def _optimizer_range(
    name: str,
    columns: Sequence[float | None],
    values: Sequence[float | None],
    n_total: Sequence[int],
    good: Sequence[bool],
    direction: Direction,
    trusted: Sequence[bool],
    n_diverged: Sequence[int],
) -> EtaRange:
    grid = [j for j in range(len(columns)) if n_total[j] > 0]
    finite = [j for j in grid if values[j] is not None and trusted[j]]
    counts = (max(n_total, default=0), sum(n_diverged))
    if not any(good[j] for j in grid):
        return EtaRange(name, None, None, None, None, None, 0, False, *counts)
    s = sign(direction)
    # min() keeps the first of equal keys: the lowest η among ties of the best value
    best = min(finite, key=lambda j: s * values[j])  # type: ignore[operator]
    runs: list[list[int]] = []
    current: list[int] = []
    for j in grid:
        if good[j]:
            current.append(j)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    # widths equal in decades may differ in their last bits (log10(0.3/0.1) < log10(30/10)):
    # compared rounded, so that the tie goes to the run holding the best η
    chosen = max(runs, key=lambda run: (round(_width([columns[j] for j in run]), 9), best in run))
    etas = [columns[j] for j in chosen]
    finite_etas = [eta for eta in etas if eta is not None]
    includes_infinity = etas[-1] is None
    return EtaRange(
        optimizer=name,
        eta_low=min(finite_etas) if finite_etas else None,
        eta_high=None if includes_infinity else max(finite_etas),
        decades=None if includes_infinity else _width(etas),
        best_eta=columns[best],
        best_value=values[best],
        n_good=len(chosen),
        includes_infinity=includes_infinity,
        seeds=counts[0],
        diverged_seeds=counts[1],
    )


def robustness_from_heatmap(
    table: Heatmap,
    tolerance: float | None = None,
    threshold: float | None = None,
    min_finite_fraction: float = DEFAULT_MIN_FINITE_FRACTION,
) -> Robustness:
    """The good-η ranges of the optimizers of ``table`` (see the module docstring)."""
    direction = check_direction(table.direction)
    fraction = check_fraction(min_finite_fraction)
    if tolerance is not None and threshold is not None:
        raise ValueError("give either tolerance (relative mode) or threshold, not both")
    if threshold is not None and not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    if threshold is None:
        if tolerance is None:
            tolerance = DEFAULT_FACTOR if direction == "minimize" else DEFAULT_GAP
        if direction == "minimize" and not (math.isfinite(tolerance) and tolerance >= 1.0):
            raise ValueError(f"tolerance must be a factor >= 1 when minimising, got {tolerance}")
        if direction == "maximize" and not (math.isfinite(tolerance) and tolerance >= 0.0):
            raise ValueError(f"tolerance must be a gap >= 0 when maximising, got {tolerance}")
    s = sign(direction)
    # the reference is the best cell that counts: a median of survivors is no reference either
    finite = [
        v
        for i, row in enumerate(table.values)
        for j, v in enumerate(row)
        if v is not None and reliable(table.n_ok[i][j], table.n_total[i][j], fraction)
    ]
    best = min(finite, key=lambda v: s * v) if finite else None
    cutoff = _cutoff(best, direction, tolerance, threshold) if best is not None else None
    ranges = {}
    for i, name in enumerate(table.rows):
        trusted = [
            reliable(table.n_ok[i][j], table.n_total[i][j], fraction)
            for j in range(len(table.columns))
        ]
        good = [
            v is not None and cutoff is not None and s * v <= s * cutoff and trusted[j]
            for j, v in enumerate(table.values[i])
        ]
        diverged = table.n_diverged[i] if table.n_diverged else [0] * len(table.columns)
        ranges[name] = _optimizer_range(
            name, table.columns, table.values[i], table.n_total[i], good, direction, trusted,
            diverged,
        )  # fmt: skip
    return Robustness(
        ranges=ranges,
        metric=table.metric,
        direction=direction,
        slice=dict(table.slice),
        mode="relative" if threshold is None else "absolute",
        tolerance=tolerance,
        threshold=threshold,
        reference_value=best,
        cutoff=cutoff,
        min_finite_fraction=fraction,
    )


def robustness(
    records: Sequence[TrialRecord],
    metric: str = "final_objective",
    direction: Direction = "minimize",
    slice: Mapping[str, Any] | None = None,
    tolerance: float | None = None,
    threshold: float | None = None,
    optimizers: Sequence[str] | None = None,
    min_finite_fraction: float = DEFAULT_MIN_FINITE_FRACTION,
) -> Robustness:
    """The good-η range of each optimizer in one slice of ``records``.

    ``tolerance`` (relative mode: a factor when minimising, default 10; an absolute gap when
    maximising, default 0.01) and ``threshold`` (absolute mode) are exclusive. ``slice`` and
    ``optimizers`` are as for :func:`studies.analysis.heatmap.heatmap`; ``min_finite_fraction``
    is the share of a cell's seeds that must be finite for it to be good (default all).
    """
    table = heatmap(records, metric, direction, slice, optimizers)
    return robustness_from_heatmap(
        table, tolerance=tolerance, threshold=threshold, min_finite_fraction=min_finite_fraction
    )
