"""Line plots: learning curves, and the metric against η per optimizer (sensitivity).

Sensitivity plot: η on a log x axis; per optimizer the median over seeds with a min–max band;
an η where some seed diverged gets an ``x`` at the top edge (in the optimizer's colour), since
a diverged run has no value to place; ALI-G∞ has no η and is drawn as a dashed horizontal line
at its median. The y axis is logarithmic when asked and every value is positive.

Every string the caller or the data supplies (curve and optimizer labels, the metric, titles)
is drawn as literal text (:func:`~studies.rendering.labels.literal`), never as math text. A
legend lists at most :data:`MAX_LEGEND_ENTRIES` entries and says how many it leaves out, so a
study with hundreds of rows still draws in bounded time and space.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import NullLocator
from matplotlib.transforms import blended_transform_factory

from studies.analysis._common import Direction
from studies.analysis.sensitivity import Sensitivity, sensitivity
from studies.rendering.formats import RENDER_LOCK, new_figure, to_bytes
from studies.rendering.labels import literal, slice_label
from studies.rendering.limits import plottable, plottable_value
from studies.trial import TrialRecord

CURVES_SIZE = (7.0, 4.5)  # inches
SENSITIVITY_SIZE = (7.0, 4.5)
DIVERGED_Y = 0.97  # axes fraction where diverged markers sit
DIVERGED_STEP = 0.03  # each optimizer one row lower, so coinciding markers stay visible
MAX_LEGEND_ENTRIES = 20


def _legend(ax: Axes) -> None:
    """The legend of the labelled artists, at most :data:`MAX_LEGEND_ENTRIES` of them."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    left_out = len(handles) - MAX_LEGEND_ENTRIES
    if left_out > 0:
        handles, labels = handles[:MAX_LEGEND_ENTRIES], labels[:MAX_LEGEND_ENTRIES]
    legend = ax.legend(handles, labels, fontsize="small")
    if left_out > 0:
        legend.set_title(f"(+{left_out} more not listed)", prop={"size": "small"})


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
            _legend(ax)
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
        _legend(ax)
        where = slice_label(info.slice)
        default = f"{info.metric} vs η (median, min–max over seeds; x: diverged)"
        default += f"\n{where}" if where else ""
        ax.set_title(literal(title if title is not None else default), fontsize="medium")
        return to_bytes(figure, format)
