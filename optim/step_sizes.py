"""Capping a Polyak step size per parameter group, and remembering what was used.

ALI-G, AALIG and SPS compute one uncapped step size ``γ`` from a global gradient norm; each
parameter group then takes ``max(min(γ, η_group), 0)`` (no cap when ``η_group`` is ``None``:
ALI-G∞). The step sizes actually used are kept for the studies' diagnostics: ``last_step_size``
and ``last_step_capped`` for the first group, ``last_step_sizes`` for all of them.
"""

from typing import Any


class StepSizeRecord:
    """Mixin for ``torch.optim.Optimizer`` subclasses whose groups carry ``max_lr``."""

    param_groups: list[dict[str, Any]]
    last_step_size: float | None = None
    last_step_capped: bool = False
    last_step_sizes: list[float]

    def _capped_step_sizes(self, uncapped: float) -> list[float]:
        """One step size per group from ``uncapped``; records them; never negative."""
        sizes: list[float] = []
        for index, group in enumerate(self.param_groups):
            max_lr = group["max_lr"]
            capped = max_lr is not None and uncapped > max_lr
            gamma = max(max_lr if capped else uncapped, 0.0)
            sizes.append(gamma)
            if index == 0:
                self.last_step_size, self.last_step_capped = gamma, capped
        self.last_step_sizes = sizes
        return sizes
