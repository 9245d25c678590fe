"""The metric against η per optimizer in one slice: the data of a sensitivity plot.

One point per grid η of each optimizer (the columns where it has trials, ALI-G∞ last): the
median over seeds of the finite values with their min and max (the band), the cell status and
the counts of :mod:`studies.analysis.cells`. ``median``/``low``/``high`` are ``None`` when no seed
has a finite value (a diverged point is then marked by ``n_diverged > 0``).
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from studies.analysis._common import Direction, check_direction, json_safe
from studies.analysis.cells import CellStatus
from studies.analysis.heatmap import cells
from studies.trial import TrialRecord


@dataclass(frozen=True)
class SensitivityPoint:
    """One η of one optimizer."""

    eta: float | None  # None = ALI-G∞
    median: float | None
    low: float | None
    high: float | None
    status: CellStatus
    n_ok: int
    n_diverged: int
    n_total: int


@dataclass(frozen=True)
class Sensitivity:
    """Per optimizer, its points in η order."""

    curves: dict[str, list[SensitivityPoint]]
    metric: str
    direction: Direction
    slice: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data (non-finite floats become ``None``)."""
        return json_safe(asdict(self))


def sensitivity(
    records: Sequence[TrialRecord],
    metric: str = "final_objective",
    direction: Direction = "minimize",
    slice: Mapping[str, Any] | None = None,
    optimizers: Sequence[str] | None = None,
) -> Sensitivity:
    """The sensitivity curves of one slice (``slice``/``optimizers`` as for the heatmap)."""
    check_direction(direction)
    rows, columns, grid, chosen = cells(records, metric, slice, optimizers)
    curves = {
        name: [
            SensitivityPoint(eta, c.value, c.low, c.high, c.status, c.n_ok, c.n_diverged, c.n_total)
            for eta, c in zip(columns, row, strict=True)
            if c.n_total > 0
        ]
        for name, row in zip(rows, grid, strict=True)
    }
    return Sensitivity(curves=curves, metric=metric, direction=direction, slice=chosen)
