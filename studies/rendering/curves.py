"""Line plots: learning curves, and the metric against η per optimizer (sensitivity).

Sensitivity plot: η on a log x axis; per optimizer the median over seeds with a min–max band;
an η where some seed diverged gets an ``x`` at the top edge (in the optimizer's colour), since
a diverged run has no value to place; ALI-G∞ has no η and is drawn as a dashed horizontal line
at its median. The y axis is logarithmic when asked and every value is positive.

Every string the caller or the data supplies (curve and optimizer labels, the metric, titles)
is drawn as literal text (:func:`~studies.rendering.labels.literal`), never as math text. A
legend lists at most :data:`MAX_LEGEND_ENTRIES` entries and says how many it leaves out, so a
study with hundreds of rows still draws in bounded time and space.

Trial curves (:func:`render_trial_curves`, the study page's loss curves): every trial's curve
of one metric, one panel per optimizer, overlaid. Colour says η on a log colour scale with a
colour bar (ALI-G∞, which has no η, in black), or the seed (the view of one optimizer × η
cell). A diverged trial is dashed and ends in an ``x`` at its last finite point. The y axis is
shared by the panels and set by the trials that did not diverge: a diverged curve's blow-up is
clipped to that range (its ``x`` then sits on the edge) instead of stretching the axis over
decades nobody looks at; only when every trial diverged do their own values set it. Log y
when every value drawn is positive; log x when every step is positive and the steps span at
least two decades. Lines are one collection per panel and style, and a curve keeps at most
:data:`MAX_CURVE_POINTS` points, so thousands of trials still draw in bounded time.
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import LogNorm
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator
from matplotlib.transforms import blended_transform_factory

from studies.analysis._common import Direction
from studies.analysis.sensitivity import Sensitivity, sensitivity
from studies.rendering.formats import RENDER_LOCK, new_figure, to_bytes
from studies.rendering.labels import eta_label, literal, slice_label
from studies.rendering.limits import plottable, plottable_value
from studies.trial import TrialRecord

CURVES_SIZE = (7.0, 4.5)  # inches
SENSITIVITY_SIZE = (7.0, 4.5)
DIVERGED_Y = 0.97  # axes fraction where diverged markers sit
DIVERGED_STEP = 0.03  # each optimizer one row lower, so coinciding markers stay visible
MAX_LEGEND_ENTRIES = 20
PANEL_SIZE = (4.5, 3.5)  # inches per optimizer panel of the trial curves
PANEL_COLUMNS = 3  # panels per row
MAX_CURVE_POINTS = 1000  # a longer curve is thinned to this many points (evenly, last kept)
INFINITE_ETA_COLOUR = "black"  # ALI-G∞ has no η on the colour scale
ETA_COLOURMAP = "viridis"
# the top of the y axis above the largest value of the trials that did not diverge: a factor
# on a log axis, a share of the range on a linear one
LOG_HEADROOM = 3.0
LINEAR_HEADROOM = 0.1


def legend(ax: Axes) -> None:
    """The legend of the labelled artists, at most :data:`MAX_LEGEND_ENTRIES` of them."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    left_out = len(handles) - MAX_LEGEND_ENTRIES
    if left_out > 0:
        handles, labels = handles[:MAX_LEGEND_ENTRIES], labels[:MAX_LEGEND_ENTRIES]
    box = ax.legend(handles, labels, fontsize="small")
    if left_out > 0:
        box.set_title(f"(+{left_out} more not listed)", prop={"size": "small"})


def _set_y_scale(ax: Axes, values: Sequence[float], log_y: bool) -> None:
    # a log axis cannot show 0 or negative values: fall back to linear rather than drop them
    if log_y and values and min(values) > 0:
        ax.set_yscale("log")


def render_learning_curves(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    metric: str,
    log_y: bool = True,
    format: str = "png",
    title: str | None = None,
    x_label: str = "step",
) -> bytes:
    """One line per label through its ``(step, value)`` points; non-finite values break it."""
    with RENDER_LOCK:
        figure = new_figure(*CURVES_SIZE)
        ax = figure.add_subplot()
        plotted: list[float] = []
        for label, points in curves.items():
            ordered = sorted(points, key=lambda point: point[0])
            steps = np.array([step for step, _ in ordered], dtype=float)
            values = plottable(
                [v if v is not None and math.isfinite(v) else np.nan for _, v in ordered]
            )
            plotted.extend(values[np.isfinite(values)].tolist())
            ax.plot(steps, values, label=literal(label), linewidth=1.2)
        _set_y_scale(ax, plotted, log_y)
        ax.set_xlabel(literal(x_label))
        ax.set_ylabel(literal(metric))
        ax.grid(True, alpha=0.3)
        if curves:
            legend(ax)
        else:
            ax.text(0.5, 0.5, "no curve", transform=ax.transAxes, ha="center")
        ax.set_title(literal(title if title is not None else metric), fontsize="medium")
        return to_bytes(figure, format)


def render_sensitivity(
    data: Sequence[TrialRecord] | Sensitivity,
    metric: str = "final_objective",
    direction: Direction = "minimize",
    slice: Mapping[str, Any] | None = None,
    log_y: bool = True,
    format: str = "png",
    title: str | None = None,
) -> bytes:
    """The metric against η per optimizer, from records (one slice of them) or a Sensitivity."""
    info = data if isinstance(data, Sensitivity) else sensitivity(data, metric, direction, slice)
    with RENDER_LOCK:
        figure = new_figure(*SENSITIVITY_SIZE)
        ax = figure.add_subplot()
        ax.set_xscale("log")
        # η grids are decades: minor ticks add nothing but ~80 tick objects to lay out (slow)
        ax.xaxis.set_minor_locator(NullLocator())
        top = blended_transform_factory(ax.transData, ax.transAxes)
        right = ax.transAxes
        plotted: list[float] = []
        for index, (row, points) in enumerate(info.curves.items()):
            colour = f"C{index % 10}"
            name = literal(row)
            finite = [p for p in points if p.eta is not None and p.median is not None]
            if finite:
                etas = [p.eta for p in finite]
                medians, lows, highs = (
                    plottable([getattr(p, part) for p in finite])
                    for part in ("median", "low", "high")
                )
                ax.plot(etas, medians, "o-", color=colour, label=name, ms=4)
                ax.fill_between(etas, lows, highs, color=colour, alpha=0.2)
                plotted.extend(v for v in (*lows.tolist(), *highs.tolist()) if math.isfinite(v))
            y_mark = DIVERGED_Y - DIVERGED_STEP * index
            diverged = [p.eta for p in points if p.eta is not None and p.n_diverged > 0]
            if diverged:
                ax.plot(
                    diverged,
                    [y_mark] * len(diverged),
                    "x",
                    color=colour,
                    ms=7,
                    mew=2,
                    transform=top,
                    clip_on=False,
                    label=None if finite else f"{name} (diverged)",
                )
            for p in points:
                if p.eta is not None:
                    continue
                if p.median is not None:  # ALI-G∞: no η to place it at, a level instead
                    level = plottable_value(p.median)
                    ax.axhline(level, color=colour, linestyle="--", label=f"{name} (η = ∞)")
                    plotted.append(level)
                if p.n_diverged > 0:
                    ax.plot(0.98, y_mark, "x", color=colour, ms=7, mew=2, transform=right)
        _set_y_scale(ax, plotted, log_y)
        ax.set_xlabel("η")
        ax.set_ylabel(literal(info.metric))
        ax.grid(True, which="major", alpha=0.3)
        legend(ax)
        where = slice_label(info.slice)
        default = f"{info.metric} vs η (median, min–max over seeds; x: diverged)"
        default += f"\n{where}" if where else ""
        ax.set_title(literal(title if title is not None else default), fontsize="medium")
        return to_bytes(figure, format)


@dataclass(frozen=True)
class RunCurve:
    """One trial's curve of one metric, as :func:`render_trial_curves` draws it."""

    eta: float | None  # None = ALI-G∞
    seed: int
    status: str  # the trial's status; "diverged" is dashed and marked
    points: Sequence[tuple[float, float]]  # (step, value); NaN/±inf allowed (not drawn)

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"


def _thinned(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most :data:`MAX_CURVE_POINTS` points, evenly spaced, the first and last kept."""
    if len(steps) <= MAX_CURVE_POINTS:
        return steps, values
    keep = np.unique(np.linspace(0, len(steps) - 1, MAX_CURVE_POINTS).round().astype(int))
    return steps[keep], values[keep]


def _arrays(curve: RunCurve) -> tuple[np.ndarray, np.ndarray]:
    """The curve's steps and values ordered by step; non-finite values as NaN, finite ones
    :func:`~studies.rendering.limits.plottable`."""
    ordered = sorted(curve.points, key=lambda point: point[0])
    steps = np.array([float(step) for step, _ in ordered], dtype=float)
    values = np.array(
        [v if v is not None and math.isfinite(v) else np.nan for _, v in ordered], dtype=float
    )
    return _thinned(steps, plottable(values))


def _runs(steps: np.ndarray, values: np.ndarray) -> list[np.ndarray]:
    """The curve as polylines of finite points (a NaN breaks it), each an (n, 2) array."""
    finite = np.isfinite(values)
    runs, start = [], None
    for i, ok in enumerate([*finite.tolist(), False]):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            runs.append(np.column_stack([steps[start:i], values[start:i]]))
            start = None
    return runs


def _y_limits(values: Sequence[float]) -> tuple[float, float, bool] | None:
    """``(bottom, top, log)`` of the shared y axis over ``values`` with some headroom; log when
    every value is positive. ``None`` when there is no value."""
    if not values:
        return None
    high, low = max(values), min(values)
    if low > 0:
        return plottable_value(low / LOG_HEADROOM**0.5), plottable_value(high * LOG_HEADROOM), True
    span = (high - low) or abs(high) or 1.0
    bottom, top = low - LINEAR_HEADROOM * span, high + LINEAR_HEADROOM * span
    return plottable_value(bottom), plottable_value(top), False


@dataclass(frozen=True)
class CurveScales:
    """The shared axes of the trial curves (see :func:`curve_scales`)."""

    bottom: float | None  # None: no finite value to show
    top: float | None
    log_y: bool
    log_x: bool
    steps: tuple[float, float] | None  # the x range: first and last step with a finite value


def curve_scales(panels: Mapping[str, Sequence[RunCurve]]) -> CurveScales:
    """The shared axes :func:`render_trial_curves` draws ``panels`` on (see :func:`_scales`)."""
    return _scales([[(c, *_arrays(c)) for c in curves] for curves in panels.values()])


def _scales(panels: Iterable[Sequence[tuple[RunCurve, np.ndarray, np.ndarray]]]) -> CurveScales:
    """The y range from the finite values of the trials that did not diverge (of every trial
    when all diverged) with headroom, log y when they are all positive; the x range, log x when
    every step is positive and they span two decades or more."""
    reference: list[float] = []
    everything: list[float] = []
    steps: list[float] = []
    for entries in panels:
        for curve, curve_steps, values in entries:
            finite = np.isfinite(values)
            steps.extend(curve_steps[finite].tolist())
            everything.extend(values[finite].tolist())
            if not curve.diverged:
                reference.extend(values[finite].tolist())
    limits = _y_limits(reference or everything)
    log_x = bool(steps) and 0 < min(steps) <= max(steps) / 100
    return CurveScales(
        bottom=None if limits is None else limits[0],
        top=None if limits is None else limits[1],
        log_y=limits is not None and limits[2],
        log_x=log_x,
        steps=(min(steps), max(steps)) if steps else None,
    )


def _eta_norm(curves: Sequence[RunCurve]) -> LogNorm | None:
    etas = [c.eta for c in curves if c.eta is not None and c.eta > 0]
    if not etas:
        return None
    low, high = min(etas), max(etas)
    return LogNorm(low, high) if high > low else LogNorm(low / 2, high * 2)


def render_trial_curves(
    panels: Mapping[str, Sequence[RunCurve]],
    metric: str,
    format: str = "png",
    title: str | None = None,
    colour_by: Literal["eta", "seed"] = "eta",
    x_label: str = "step",
) -> bytes:
    """Every curve of ``panels`` (panel title → its trials' curves), one panel each, overlaid
    and coloured by η (log scale, colour bar) or by seed; see the module docstring for the
    scales, the diverged marks and the clipping. Panel titles and ``metric`` are literal text."""
    all_curves = [c for curves in panels.values() for c in curves]
    norm = _eta_norm(all_curves) if colour_by == "eta" else None
    cmap = mpl.colormaps[ETA_COLOURMAP]
    seeds = sorted({c.seed for c in all_curves})
    arrays = {name: [(c, *_arrays(c)) for c in curves] for name, curves in panels.items()}
    scales = _scales(arrays.values())
    limits = None if scales.top is None else (scales.bottom, scales.top, scales.log_y)
    log_x, steps_drawn = scales.log_x, scales.steps

    def colour(curve: RunCurve) -> Any:
        if colour_by == "seed":
            return f"C{seeds.index(curve.seed) % 10}"
        if curve.eta is None or norm is None:
            return INFINITE_ETA_COLOUR
        return cmap(norm(curve.eta))

    n = max(len(panels), 1)
    columns = min(n, PANEL_COLUMNS)
    rows = math.ceil(n / columns)
    width = PANEL_SIZE[0] * columns + (1.2 if norm is not None else 0.0)
    height = PANEL_SIZE[1] * rows + 0.6
    with RENDER_LOCK:
        figure = new_figure(width, height)
        axes = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
        flat = axes.ravel().tolist()
        for ax in flat[len(panels) :]:
            ax.set_visible(False)
        if not panels:
            flat[0].set_visible(True)
            flat[0].text(0.5, 0.5, "no trial", transform=flat[0].transAxes, ha="center")
        for ax, (name, entries) in zip(flat, arrays.items(), strict=False):
            _draw_panel(ax, entries, colour, limits)
            ax.set_title(literal(name), fontsize="medium")
            ax.grid(True, which="major", alpha=0.3)
        for ax in axes[-1]:
            ax.set_xlabel(literal(x_label))
        for ax in axes[:, 0]:
            ax.set_ylabel(literal(metric))
        if limits is not None:
            bottom, top, log_y = limits
            first = flat[0]
            if log_y:
                first.set_yscale("log")
            first.set_ylim(bottom, top)
            if log_x:
                first.set_xscale("log")
            if steps_drawn is not None and steps_drawn[1] > steps_drawn[0]:
                first.set_xlim(*steps_drawn)
        if norm is not None:
            bar = figure.colorbar(
                ScalarMappable(norm=norm, cmap=cmap), ax=flat[: max(len(panels), 1)], label="η"
            )
            ticks = [t for t in bar.get_ticks() if norm.vmin <= t <= norm.vmax]
            if ticks:
                bar.set_ticks(ticks, labels=[eta_label(t) for t in ticks])
        handles = [Line2D([], [], color="grey", linewidth=1.2, label="completed / running")]
        if any(c.diverged for c in all_curves):
            handles.append(
                Line2D(
                    [],
                    [],
                    color="grey",
                    linestyle="--",
                    marker="x",
                    linewidth=1.0,
                    label="diverged (x: last finite point)",
                )
            )
        if colour_by == "seed":
            handles += [
                Line2D([], [], color=f"C{i % 10}", linewidth=1.5, label=f"seed {seed}")
                for i, seed in enumerate(seeds)
            ]
        if any(c.eta is None for c in all_curves) and colour_by == "eta":
            handles.append(Line2D([], [], color=INFINITE_ETA_COLOUR, label="η = ∞ (ALI-G∞)"))
        if all_curves:
            left_out = len(handles) - MAX_LEGEND_ENTRIES
            box = flat[0].legend(handles=handles[:MAX_LEGEND_ENTRIES], fontsize="x-small")
            if left_out > 0:
                box.set_title(f"(+{left_out} more not listed)", prop={"size": "x-small"})
        default = f"{metric} of every trial" + (", by seed" if colour_by == "seed" else "")
        figure.suptitle(literal(title if title is not None else default), fontsize="medium")
        return to_bytes(figure, format)


def _draw_panel(
    ax: Axes,
    entries: Sequence[tuple[RunCurve, np.ndarray, np.ndarray]],
    colour: Any,
    limits: tuple[float, float, bool] | None,
) -> None:
    """One optimizer's curves: a collection of solid lines, one of dashed ones (diverged),
    and an ``x`` at each diverged curve's last finite point; diverged values are clipped to the
    axis' range."""
    bottom, top = (limits[0], limits[1]) if limits is not None else (-math.inf, math.inf)
    solid: tuple[list[np.ndarray], list[Any]] = ([], [])
    dashed: tuple[list[np.ndarray], list[Any]] = ([], [])
    crosses: tuple[list[float], list[float], list[Any]] = ([], [], [])
    for curve, steps, values in entries:
        shown = np.clip(values, bottom, top) if curve.diverged else values  # NaN stays NaN
        target = dashed if curve.diverged else solid
        for run in _runs(steps, shown):
            target[0].append(run)
            target[1].append(colour(curve))
        finite = np.flatnonzero(np.isfinite(shown))
        if curve.diverged and finite.size:
            last = finite[-1]
            crosses[0].append(float(steps[last]))
            crosses[1].append(float(shown[last]))
            crosses[2].append(colour(curve))
    if solid[0]:
        ax.add_collection(LineCollection(solid[0], colors=solid[1], linewidths=1.2, alpha=0.9))
    if dashed[0]:
        ax.add_collection(
            LineCollection(dashed[0], colors=dashed[1], linewidths=1.0, linestyles="--", alpha=0.9)
        )
    if crosses[0]:
        ax.scatter(
            crosses[0],
            crosses[1],
            c=crosses[2],
            marker="x",
            s=36,
            linewidths=1.5,
            zorder=3,
            clip_on=False,
        )
    if not solid[0] and not dashed[0]:
        ax.text(0.5, 0.5, "no curve yet", transform=ax.transAxes, ha="center")
