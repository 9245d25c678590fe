"""Draw an :class:`~studies.analysis.importance.ImportanceByOptimizer`: per optimizer, one
panel of horizontal bars, the importance of each hyperparameter by each evaluator (fANOVA,
PED-ANOVA; they sum to 1 per evaluator).

An optimizer that could not be analysed gets a panel that says why (its ``skipped`` reason).
Parameter, optimizer and metric names, and the reasons, are literal text.
"""

import math

import numpy as np

from studies.analysis.importance import ImportanceByOptimizer
from studies.rendering.formats import RENDER_LOCK, new_figure, to_bytes
from studies.rendering.labels import literal

PANEL_SIZE = (4.0, 3.0)  # inches per optimizer
PANEL_COLUMNS = 3
BAR_HEIGHT = 0.8  # the share of a parameter's row the evaluators' bars fill


def render_importance(
    info: ImportanceByOptimizer, format: str = "png", title: str | None = None
) -> bytes:
    """One panel per optimizer (analysed or skipped) as ``format`` bytes."""
    names = [*info.optimizers, *[n for n in info.skipped if n not in info.optimizers]]
    n = max(len(names), 1)
    columns = min(n, PANEL_COLUMNS)
    rows = math.ceil(n / columns)
    with RENDER_LOCK:
        figure = new_figure(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows + 0.5)
        axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
        for ax in axes[len(names) :]:
            ax.set_visible(False)
        if not names:
            axes[0].set_visible(True)
            axes[0].text(0.5, 0.5, "no optimizer to analyse", ha="center",
                         transform=axes[0].transAxes)  # fmt: skip
        for ax, name in zip(axes, names, strict=False):
            ax.set_title(literal(name), fontsize="medium")
            result = info.optimizers.get(name)
            if result is None:
                reason = literal(f"skipped: {info.skipped[name]}")
                ax.text(0.5, 0.5, reason, ha="center", va="center", wrap=True,
                        fontsize="small", transform=ax.transAxes)  # fmt: skip
                ax.set_axis_off()
                continue
            evaluators = list(result.importances)
            height = BAR_HEIGHT / max(len(evaluators), 1)
            positions = np.arange(len(result.params))
            for index, evaluator in enumerate(evaluators):
                values = [result.importances[evaluator].get(p, 0.0) for p in result.params]
                ax.barh(positions + index * height, values, height, label=literal(evaluator),
                        color=f"C{index % 10}")  # fmt: skip
            ax.set_yticks(
                positions + height * (len(evaluators) - 1) / 2,
                [literal(p) for p in result.params],
            )
            ax.set_xlim(0, 1)
            ax.set_xlabel("importance")
            ax.grid(True, axis="x", alpha=0.3)
            if evaluators:
                ax.legend(fontsize="x-small")
        default = f"hyperparameter importance on {info.metric}"
        figure.suptitle(literal(title if title is not None else default), fontsize="medium")
        return to_bytes(figure, format)
