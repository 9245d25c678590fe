"""Capping a Polyak step size per parameter group, and recording the step sizes used.

ALI-G, AALIG and SPS compute one uncapped step size ``γ`` from a global gradient norm; each
parameter group then takes ``max(min(γ, η_group), 0)`` (no cap when ``η_group`` is ``None``:
ALI-G∞). L4 records its (never capped) step sizes the same way. The step sizes actually used are
kept for the studies' diagnostics: ``last_step_size`` and ``last_step_capped`` for the first
group (``None`` and ``False`` before the first step), ``last_step_sizes`` for all of them.
"""

from typing import Any


class StepSizeRecord:
    """Mixin for ``torch.optim.Optimizer`` subclasses that report the step sizes they used.

    Call :meth:`_clear_step_sizes` in ``__init__``; ``__setstate__`` restores the initial
    record on objects that were pickled without one (``torch.optim.Optimizer.__getstate__``
    keeps only ``defaults``, ``state`` and ``param_groups``).
    """

    param_groups: list[dict[str, Any]]
    last_step_size: float | None
    last_step_capped: bool
    last_step_sizes: list[float]

    def _clear_step_sizes(self) -> None:
        self.last_step_size = None
        self.last_step_capped = False
        self.last_step_sizes = []

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        self.__dict__.setdefault("last_step_size", None)
        self.__dict__.setdefault("last_step_capped", False)
        self.__dict__.setdefault("last_step_sizes", [])

    def _record_step_sizes(self, sizes: list[float], first_capped: bool) -> None:
        """Record one step size per group; ``first_capped`` says whether η capped the first."""
        self.last_step_sizes = sizes
        self.last_step_size, self.last_step_capped = sizes[0], first_capped

    def _record_no_step(self) -> None:
        """Record a step that moved nothing: a step size of 0 in every group."""
        self._record_step_sizes([0.0] * len(self.param_groups), False)

    def _capped_step_sizes(self, uncapped: float) -> list[float]:
        """One step size per group from ``uncapped``, capped at the group's ``max_lr`` and never
        negative; records them."""
        caps = [group["max_lr"] for group in self.param_groups]
        capped = [cap is not None and uncapped > cap for cap in caps]
        sizes = [max(cap if c else uncapped, 0.0) for cap, c in zip(caps, capped, strict=True)]
        self._record_step_sizes(sizes, capped[0])
        return sizes
