"""Draw a :class:`~studies.analysis.tunability.Tunability`: the expected best value after k
random η draws, against k, per optimizer (the curve whose weighted mean is the CPE score).

One line with markers per optimizer, its CPE in the legend; an infinite ``P_k`` (some draw
may be diverged under the ``inf`` policy) leaves a gap. Log y when every value drawn is
positive. Optimizer names and the metric are literal text.
"""

import math

from studies.analysis.tunability import Tunability
from studies.rendering.curves import MAX_LEGEND_ENTRIES
from studies.rendering.formats import RENDER_LOCK, new_figure, to_bytes
from studies.rendering.labels import literal, slice_label
from studies.rendering.limits import plottable_value

TUNABILITY_SIZE = (7.0, 4.5)  # inches


def render_tunability(info: Tunability, format: str = "png", title: str | None = None) -> bytes:
    """``P_k`` against k (1..K) for every optimizer of ``info`` as ``format`` bytes."""
    with RENDER_LOCK:
        figure = new_figure(*TUNABILITY_SIZE)
        ax = figure.add_subplot()
        drawn: list[float] = []
        for index, (name, optimizer) in enumerate(info.optimizers.items()):
            ks = list(range(1, len(optimizer.p_k) + 1))
            values = [
                math.nan if p is None or not math.isfinite(p) else plottable_value(p)
                for p in optimizer.p_k
            ]
            drawn.extend(v for v in values if math.isfinite(v))
            score = "—" if optimizer.cpe is None else f"{optimizer.cpe:.3g}"
            label = f"{literal(name)} (CPE {score})" if index < MAX_LEGEND_ENTRIES else None
            ax.plot(ks, values, "o-", color=f"C{index % 10}", ms=3, label=label)
        if drawn and min(drawn) > 0:
            ax.set_yscale("log")
        ax.set_xlabel("k (random η draws)")
        ax.set_ylabel(literal(f"expected best {info.metric}"))
        ax.grid(True, alpha=0.3)
        if info.optimizers:
            ax.legend(fontsize="small")
        if not drawn:
            ax.text(0.5, 0.5, "no finite value", transform=ax.transAxes, ha="center")
        where = slice_label(info.slice)
        default = f"tunability: expected best {info.metric} after k η draws"
        default += f"\n{where}" if where else ""
        ax.set_title(literal(title if title is not None else default), fontsize="medium")
        return to_bytes(figure, format)
