"""Draw a :class:`~studies.analysis.heatmap.Heatmap` like the ALI-G paper's Figure 3.

Rows are optimizers, columns η labelled as powers of ten (``∞`` for ALI-G∞). Colours follow a
log scale over the finite values when they are all positive (a linear one otherwise), with the
colour map reversed for metrics to maximise so that "good" has the same colour either way.
Diverged cells are hatched and marked "div.", failed ones cross-hatched and marked "fail",
partial ones carry their ``n_ok/n_total``; missing cells stay blank grey.
"""

import math

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, LogNorm, Normalize
from matplotlib.patches import Rectangle

from studies.analysis.heatmap import Heatmap
from studies.rendering.formats import RENDER_LOCK, new_figure, to_bytes
from studies.rendering.labels import eta_label, slice_label
from studies.rendering.limits import plottable, plottable_value

MISSING_COLOUR = "#d9d9d9"
DIVERGED_COLOUR = "#b2182b"
FAILED_COLOUR = "#4d4d4d"


def heatmap_size(n_rows: int, n_columns: int) -> tuple[float, float]:
    """Figure size in inches; multiples of 0.5 so that inches × DPI is an exact pixel count."""
    width = 3.0 + 0.75 * max(n_columns, 1)
    height = 1.75 + 0.5 * max(n_rows, 1)
    return math.ceil(width * 2) / 2, math.ceil(height * 2) / 2


def _norm(values: list[float]) -> Normalize:
    low, high = min(values), max(values)
    if low > 0:
        # one value only: widen by a factor on each side so LogNorm has a range
        return LogNorm(low, high) if high > low else LogNorm(low / 2, high * 2)
    return Normalize(low, high) if high > low else Normalize(low - 0.5, high + 0.5)


def render_heatmap(heatmap: Heatmap, format: str = "png", title: str | None = None) -> bytes:
    """The heatmap as ``format`` bytes (see :data:`studies.rendering.formats.FORMATS`)."""
    n_rows, n_columns = len(heatmap.rows), len(heatmap.columns)
    grid = np.full((max(n_rows, 1), max(n_columns, 1)), np.nan)
    for i, row in enumerate(heatmap.values):
        for j, value in enumerate(row):
            if value is not None:
                grid[i, j] = value
    grid = plottable(grid)
    finite = [float(v) for v in grid.ravel() if math.isfinite(v)]
    name = "viridis" if heatmap.direction == "minimize" else "viridis_r"
    cmap = mpl.colormaps[name].with_extremes(bad=MISSING_COLOUR)  # a copy: no global change
    norm = _norm(finite) if finite else Normalize(0.0, 1.0)
    with RENDER_LOCK:
        figure = new_figure(*heatmap_size(n_rows, n_columns))
        ax = figure.add_subplot()
        image = ax.imshow(
            np.ma.masked_invalid(grid),
            cmap=cmap,
            norm=norm,
            aspect="auto",
            interpolation="nearest",
        )
        for i in range(n_rows):
            for j in range(n_columns):
                _mark_cell(ax, heatmap, i, j, cmap, norm)
        ax.set_xticks(range(n_columns), [eta_label(eta) for eta in heatmap.columns])
        ax.set_yticks(range(n_rows), heatmap.rows)
        ax.set_xlabel("η")
        ax.tick_params(length=0)
        if finite:
            figure.colorbar(image, ax=ax, label=heatmap.metric)
        else:
            ax.text(0.5, 0.5, "no finite value", transform=ax.transAxes, ha="center")
        where = slice_label(heatmap.slice)
        default = f"{heatmap.metric} (median over seeds)" + (f"\n{where}" if where else "")
        ax.set_title(title if title is not None else default, fontsize="medium")
        return to_bytes(figure, format)


def _mark_cell(ax: Axes, heatmap: Heatmap, i: int, j: int, cmap: Colormap, norm: Normalize) -> None:
    status = heatmap.status[i][j]
    corner = (j - 0.5, i - 0.5)
    if status in ("diverged", "failed"):
        colour, hatch, text = (
            (DIVERGED_COLOUR, "///", "div.")
            if status == "diverged"
            else (FAILED_COLOUR, "xx", "fail")
        )
        ax.add_patch(
            Rectangle(corner, 1, 1, facecolor="white", edgecolor=colour, hatch=hatch, linewidth=0)
        )
        ax.text(
            j,
            i,
            text,
            ha="center",
            va="center",
            color=colour,
            fontsize="small",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0},
        )
    elif status == "partial":
        value = plottable_value(heatmap.values[i][j])
        rgba = cmap(norm(value))
        luminance = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
        ax.text(
            j,
            i,
            f"{heatmap.n_ok[i][j]}/{heatmap.n_total[i][j]}",
            ha="center",
            va="center",
            fontsize="x-small",
            color="black" if luminance > 0.5 else "white",
        )
