"""Draw a :class:`~studies.analysis.profiles.Profile`: ρ_s(τ) against τ, one step curve per
optimizer, as Dolan & Moré (2002) plot them.

τ is on a log axis from 1 to ``tau_max``; ρ from 0 to 1. Each curve is the exact step function
of the optimizer's ratios (it rises at each ratio ≤ ``tau_max``, not only at grid points), drawn
with ``where="post"``: ρ_s(τ) holds from one ratio to the next. Optimizers whose curves coincide
(ties) would hide one another, so each has its own line style as well as its colour. An
optimizer with no finite ratio is a flat line at 0, listed in the legend as such. Labels are
literal text (:func:`~studies.rendering.labels.literal`).
"""

import math

from studies.analysis.profiles import RATIO_SLACK, Profile
from studies.rendering.curves import legend
from studies.rendering.formats import RENDER_LOCK, new_figure, to_bytes
from studies.rendering.labels import literal

PROFILE_SIZE = (7.0, 4.5)  # inches
LINE_STYLES = ("-", "--", "-.", ":")


def profile_steps(ratios: list[float], tau_max: float) -> tuple[list[float], list[float]]:
    """The corners of ρ(τ) on [1, tau_max] for one optimizer's ``ratios``: ``(τ, ρ)`` lists
    for ``step(where="post")``; starts at τ = 1 and ends at ``tau_max``."""
    n = len(ratios)
    if n == 0:
        return [1.0, tau_max], [0.0, 0.0]
    inside = sorted({r for r in ratios if r <= tau_max * (1.0 + RATIO_SLACK) and r > 1.0})
    taus = [1.0, *inside, tau_max]

    def rho(tau: float) -> float:
        return sum(r <= tau * (1.0 + RATIO_SLACK) for r in ratios) / n

    return taus, [rho(tau) for tau in taus]


def render_profile(profile: Profile, format: str = "png", title: str | None = None) -> bytes:
    """The performance profiles of ``profile`` as ``format`` bytes (module docstring)."""
    with RENDER_LOCK:
        figure = new_figure(*PROFILE_SIZE)
        ax = figure.add_subplot()
        ax.set_xscale("log")
        for index, name in enumerate(profile.optimizers):
            ratios = profile.ratios[name]
            taus, rhos = profile_steps(ratios, profile.tau_max)
            solved = any(math.isfinite(r) for r in ratios)
            label = literal(name) if solved else f"{literal(name)} (no finite value)"
            ax.step(
                taus,
                rhos,
                where="post",
                color=f"C{index % 10}",
                linestyle=LINE_STYLES[index % len(LINE_STYLES)],
                linewidth=1.6,
                label=label,
            )
        ax.set_xlim(1.0, profile.tau_max)
        ax.set_ylim(-0.02, 1.05)
        ax.set_xlabel("τ (performance ratio to the best optimizer)")
        ax.set_ylabel("ρ(τ): share of studies within τ")
        ax.grid(True, which="major", alpha=0.3)
        legend(ax)
        n = len(profile.problems)
        default = f"Performance profiles over {n} stud{'y' if n == 1 else 'ies'}"
        ax.set_title(literal(title if title is not None else default), fontsize="medium")
        return to_bytes(figure, format)
