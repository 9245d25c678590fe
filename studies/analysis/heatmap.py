"""The optimizer × η heatmap of one slice (the ALI-G paper's Figure 3), as plain data.

Rows are optimizers (first-seen order in the records, or the order given), columns the sorted
distinct η of the slice with ALI-G∞ (``None``) last. A cell is the median over seeds of the
finite values of the metric, with a status and counts (see :mod:`studies.analysis.cells`):
``ok`` / ``partial`` / ``diverged`` / ``failed`` / ``missing``; ``values`` is ``None`` wherever
no seed has a finite value. ``to_dict()`` is JSON with ``null``, never ``NaN``/``Infinity``.
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from studies.analysis._common import Direction, check_direction, json_safe
from studies.analysis.cells import Cell, CellStatus, summarise
from studies.analysis.slicing import select_slice
from studies.trial import TrialRecord, eta_sort_key


@dataclass(frozen=True)
class Heatmap:
    """The info object a renderer draws; every grid is row-major, ``len(rows) × len(columns)``."""

    rows: list[str]  # optimizers
    columns: list[float | None]  # η ascending; None = ALI-G∞, always last
    values: list[list[float | None]]  # median over seeds of the finite values; None if none
    status: list[list[CellStatus]]
    n_ok: list[list[int]]  # seeds with a finite value
    n_total: list[list[int]]  # seeds of the cell, whatever their state (0: never scheduled)
    metric: str
    direction: Direction  # whether lower or higher values of the metric are better
    slice: dict[str, Any]  # the values of the other axes (batch_size, radius, …)
    n_diverged: list[list[int]] = field(default_factory=list)  # seeds that diverged, per cell

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data (non-finite floats become ``None``)."""
        return json_safe(
            {
                "rows": list(self.rows),
                "columns": list(self.columns),
                "values": [list(row) for row in self.values],
                "status": [list(row) for row in self.status],
                "n_ok": [list(row) for row in self.n_ok],
                "n_total": [list(row) for row in self.n_total],
                "n_diverged": [list(row) for row in self.n_diverged],
                "metric": self.metric,
                "direction": self.direction,
                "slice": dict(self.slice),
            }
        )


def cells(
    records: Sequence[TrialRecord],
    metric: str = "final_objective",
    slice: Mapping[str, Any] | None = None,
    optimizers: Sequence[str] | None = None,
) -> tuple[list[str], list[float | None], list[list[Cell]], dict[str, Any]]:
    """Rows, columns, the grid of :class:`Cell` and the chosen slice (shared by the analyses).

    ``optimizers`` fixes the rows and their order; records of other optimizers are left out.
    """
    selected, chosen = select_slice(records, slice)
    if optimizers is not None:
        wanted = set(optimizers)
        selected = [r for r in selected if r.optimizer in wanted]
        rows = list(dict.fromkeys(optimizers))
    else:
        rows = list(dict.fromkeys(r.optimizer for r in selected))
    columns: list[float | None] = sorted({r.eta for r in selected}, key=eta_sort_key)
    groups: dict[tuple[str, float | None], list[TrialRecord]] = defaultdict(list)
    for record in selected:
        groups[record.optimizer, record.eta].append(record)
    grid = [[summarise(groups.get((row, eta), []), metric) for eta in columns] for row in rows]
    return rows, columns, grid, chosen


def heatmap(
    records: Sequence[TrialRecord],
    metric: str = "final_objective",
    direction: Direction = "minimize",
    slice: Mapping[str, Any] | None = None,
    optimizers: Sequence[str] | None = None,
) -> Heatmap:
    """The heatmap of ``metric`` over optimizer × η in one slice.

    ``slice`` must name a value for each axis that varies (``slices(records)`` lists them);
    otherwise ``ValueError`` names the axes to choose and their values. ``direction`` is carried
    for the renderer and the robustness analysis; it does not change the medians.
    """
    check_direction(direction)
    rows, columns, grid, chosen = cells(records, metric, slice, optimizers)
    return Heatmap(
        rows=rows,
        columns=columns,
        values=[[cell.value for cell in row] for row in grid],
        status=[[cell.status for cell in row] for row in grid],
        n_ok=[[cell.n_ok for cell in row] for row in grid],
        n_total=[[cell.n_total for cell in row] for row in grid],
        n_diverged=[[cell.n_diverged for cell in row] for row in grid],
        metric=metric,
        direction=direction,
        slice=chosen,
    )
