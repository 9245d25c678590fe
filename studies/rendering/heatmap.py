"""Draw a :class:`~studies.analysis.heatmap.Heatmap` like the ALI-G paper's Figure 3.

Rows are optimizers, columns η labelled as powers of ten (``∞`` for ALI-G∞). Colours follow a
log scale over the finite values when they are all positive (a linear one otherwise), with the
colour map reversed for metrics to maximise so that "good" has the same colour either way.
Missing cells stay blank grey. Row labels, the title and the colour bar's label are drawn as
literal text (:func:`~studies.rendering.labels.literal`): user text is never math text.

Two views, so that the cost and the size of an image are bounded whatever the grid:

- the **detailed** view (a grid whose natural size, :func:`natural_size`, fits in
  :data:`MAX_FIGURE` and has at most :data:`MAX_DETAIL_CELLS` cells): diverged cells are hatched
  and marked "div.", failed ones cross-hatched and marked "fail", partial ones carry their
  ``n_ok/n_total``; every row and column is labelled;
- the **dense** view (anything larger, e.g. 870 η columns): the figure is :data:`MAX_FIGURE` at
  most, diverged and failed cells are solid colours of one overlay image instead of one patch
  and one text per cell, at most :data:`MAX_TICK_LABELS` rows and columns are labelled (evenly
  spaced), and the title says so; the per-cell counts are in the JSON answer. The drawing cost
  is then a few artists, independent of the number of cells.
"""

import math

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, LogNorm, Normalize, to_rgba
from matplotlib.patches import Rectangle

from studies.analysis.heatmap import Heatmap
from studies.rendering.formats import RENDER_LOCK, new_figure, to_bytes
from studies.rendering.labels import eta_label, literal, slice_label
from studies.rendering.limits import plottable, plottable_value

MISSING_COLOUR = "#d9d9d9"
DIVERGED_COLOUR = "#b2182b"
FAILED_COLOUR = "#4d4d4d"
MAX_FIGURE = (32.0, 24.0)  # inches: 3200 × 2400 pixels at most, whatever the grid
# per-cell patches and texts cost ~1 ms each to lay out: more cells than this go dense
MAX_DETAIL_CELLS = 600
MAX_TICK_LABELS = 40  # per axis, in the dense view


def natural_size(n_rows: int, n_columns: int) -> tuple[float, float]:
    """The detailed view's size in inches (0.75 in per column, 0.5 in per row, plus margins);
    multiples of 0.5 so that inches × DPI is an exact pixel count."""
    width = 3.0 + 0.75 * max(n_columns, 1)
    height = 1.75 + 0.5 * max(n_rows, 1)
    return math.ceil(width * 2) / 2, math.ceil(height * 2) / 2


def is_dense(n_rows: int, n_columns: int) -> bool:
    """Whether the grid is drawn in the dense view (see the module docstring)."""
    width, height = natural_size(n_rows, n_columns)
    too_big = width > MAX_FIGURE[0] or height > MAX_FIGURE[1]
    return too_big or n_rows * n_columns > MAX_DETAIL_CELLS


def heatmap_size(n_rows: int, n_columns: int) -> tuple[float, float]:
    """The figure size in inches: :func:`natural_size` capped at :data:`MAX_FIGURE`."""
    width, height = natural_size(n_rows, n_columns)
    return min(width, MAX_FIGURE[0]), min(height, MAX_FIGURE[1])


def labelled_indices(count: int, most: int = MAX_TICK_LABELS) -> list[int]:
    """Every index below ``count``, or every k-th one (from 0) so that at most ``most`` remain."""
    step = max(1, math.ceil(count / most))
    return list(range(0, count, step))


def _norm(values: list[float]) -> Normalize:
    low, high = min(values), max(values)
    if low > 0:
        # one value only: widen by a factor on each side so LogNorm has a range
        return LogNorm(low, high) if high > low else LogNorm(low / 2, high * 2)
    return Normalize(low, high) if high > low else Normalize(low - 0.5, high + 0.5)


def render_heatmap(heatmap: Heatmap, format: str = "png", title: str | None = None) -> bytes:
    """The heatmap as ``format`` bytes (see :data:`studies.rendering.formats.FORMATS`);
    ``title`` (default: the metric and the slice) is drawn as literal text."""
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
    dense = is_dense(n_rows, n_columns)
    if title is None:
        where = slice_label(heatmap.slice)
        title = f"{heatmap.metric} (median over seeds)" + (f"\n{where}" if where else "")
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
        if dense:
            _overlay_statuses(ax, heatmap, grid.shape)
            columns, rows = labelled_indices(n_columns), labelled_indices(n_rows)
            ax.set_xticks(columns, [eta_label(heatmap.columns[j]) for j in columns], rotation=90)
            ax.set_yticks(rows, [literal(heatmap.rows[i]) for i in rows])
            title += f"\n{_dense_note(n_rows, n_columns, len(rows), len(columns))}"
        else:
            for i in range(n_rows):
                for j in range(n_columns):
                    _mark_cell(ax, heatmap, i, j, cmap, norm)
            ax.set_xticks(range(n_columns), [eta_label(eta) for eta in heatmap.columns])
            ax.set_yticks(range(n_rows), [literal(row) for row in heatmap.rows])
        ax.set_xlabel("η")
        ax.tick_params(length=0)
        if finite:
            figure.colorbar(image, ax=ax, label=literal(heatmap.metric))
        else:
            ax.text(0.5, 0.5, "no finite value", transform=ax.transAxes, ha="center")
        ax.set_title(literal(title), fontsize="medium")
        return to_bytes(figure, format)


def _dense_note(n_rows: int, n_columns: int, rows_labelled: int, columns_labelled: int) -> str:
    """What the dense view leaves out, said in the image itself."""
    labelled = []
    if columns_labelled < n_columns:
        labelled.append(f"{columns_labelled} of {n_columns} η")
    if rows_labelled < n_rows:
        labelled.append(f"{rows_labelled} of {n_rows} rows")
    shown = f"; labelled: {', '.join(labelled)}" if labelled else ""
    return (
        f"dense view of {n_rows} × {n_columns} cells{shown}; red: diverged, dark grey: failed; "
        "per-cell counts in the JSON"
    )


def _overlay_statuses(ax: Axes, heatmap: Heatmap, shape: tuple[int, ...]) -> None:
    """Diverged and failed cells as solid colours: one image over the values, not one patch
    and one text per cell."""
    overlay = np.zeros((*shape, 4))
    colours = {"diverged": to_rgba(DIVERGED_COLOUR), "failed": to_rgba(FAILED_COLOUR)}
    for i, row in enumerate(heatmap.status):
        for j, status in enumerate(row):
            if status in colours:
                overlay[i, j] = colours[status]
    if overlay[..., 3].any():
        ax.imshow(overlay, aspect="auto", interpolation="nearest")


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
