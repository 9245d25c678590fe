r"""Mixed precision (``amp: true``): where it runs, and the loss scaling of trials and packs.

A trial with ``amp`` runs its forward pass under ``torch.autocast`` on the devices of
:data:`AMP_DTYPES` (CUDA, in float16) and is ignored elsewhere: on the CPU it trains in the
parameters' dtype, as documented in the spec. Its gradients come from a loss scaled by
``torch.amp.GradScaler``, whose rule (:data:`SCALER`) is, after every step:

- the gradients of ``scale × loss`` are unscaled (``× 1/scale``) before clipping and the step;
- if any of them is not finite the optimizer step is **skipped** (parameters, buffers and the
  optimizer's step count stay as they were) and ``scale ← scale × backoff_factor``;
- otherwise, after ``growth_interval`` consecutive steps that were not skipped,
  ``scale ← scale × growth_factor`` (when that is finite).

A pack (:mod:`workers.packed_trainer`) keeps that state **per member**
(:class:`PackedGradScaler`): member ``k`` scales its own loss by its own ``scale[k]``, skips
the steps on which its own gradient overflowed and grows or backs off on its own, so that it
follows the trajectory its trial follows with its own ``GradScaler``. See docs/architecture.md,
"Packed trials".
"""

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from optim.packed import per_member

#: Device type -> the dtype ``amp`` autocasts to there; devices not listed ignore ``amp``.
AMP_DTYPES: dict[str, torch.dtype] = {"cuda": torch.float16}


@dataclass(frozen=True)
class ScalerSettings:
    """``torch.amp.GradScaler``'s constructor arguments (its defaults)."""

    init_scale: float = 2.0**16
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000


#: The loss scaling every AMP trial and pack uses.
SCALER = ScalerSettings()


def amp_dtype(amp: bool, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run with ``amp`` on ``device``, or ``None`` (full precision)."""
    return AMP_DTYPES.get(device.type) if amp else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    """``torch.autocast`` to ``dtype`` on ``device``, or nothing when ``dtype`` is ``None``."""
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """A trial's ``GradScaler`` on ``device``, with :data:`SCALER`'s settings."""
    s = SCALER
    return torch.amp.GradScaler(
        device.type,
        init_scale=s.init_scale,
        growth_factor=s.growth_factor,
        backoff_factor=s.backoff_factor,
        growth_interval=s.growth_interval,
    )


def skipped_step(scaler: torch.amp.GradScaler | None, scale_before: float | None) -> bool:
    """Whether the step whose scale was ``scale_before`` was skipped: a skip, and only a
    skip, lowers the scale in ``update`` (``backoff_factor < 1``)."""
    return scaler is not None and scale_before is not None and scaler.get_scale() < scale_before


class PackedGradScaler:
    """One ``GradScaler`` per member of a pack: ``scale [n]`` (float32, as torch keeps it) and
    ``growth_tracker [n]`` (consecutive unskipped steps), updated per member by torch's rule."""

    def __init__(self, n: int, device: torch.device) -> None:
        self.settings = SCALER
        self.scale = torch.full((n,), self.settings.init_scale, dtype=torch.float32, device=device)
        self.growth_tracker = torch.zeros(n, dtype=torch.int32, device=device)

    def scaled(self, losses: torch.Tensor) -> torch.Tensor:
        """``losses [n] × scale``: each member's loss times its own scale."""
        return losses * self.scale.to(losses.dtype)

    @torch.no_grad()
    def unscale_(self, grads: Sequence[torch.Tensor]) -> torch.Tensor:
        """Multiply each member's slices of ``grads`` by its ``1/scale`` in place, as
        ``GradScaler.unscale_`` does (the reciprocal taken in float64, applied in float32);
        returns which members found a non-finite value (``[n]`` bool)."""
        inverse = self.scale.double().reciprocal().float()
        found = torch.zeros_like(self.scale, dtype=torch.bool)
        for g in grads:
            found |= ~torch.isfinite(g).reshape(g.shape[0], -1).all(dim=1)
            g.mul_(per_member(inverse.to(g.dtype), g))
        return found

    def update(self, found: torch.Tensor) -> None:
        """After the step: back off where ``found``, else count and grow (torch's
        ``_amp_update_scale_`` per member)."""
        s = self.settings
        successful = self.growth_tracker + 1
        grows = successful == s.growth_interval
        grown = self.scale * s.growth_factor
        grows_finite = grows & torch.isfinite(grown)
        scale = torch.where(grows_finite, grown, self.scale)
        tracker = torch.where(grows, torch.zeros_like(successful), successful)
        self.scale = torch.where(found, self.scale * s.backoff_factor, scale)
        self.growth_tracker = torch.where(found, torch.zeros_like(tracker), tracker)

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the members ``index``."""
        self.scale = self.scale.index_select(0, index)
        self.growth_tracker = self.growth_tracker.index_select(0, index)

    def member_state(self, position: int) -> dict[str, float | int]:
        """Member ``position``'s scaler, as ``GradScaler.state_dict`` names it."""
        return {
            "scale": float(self.scale[position]),
            "_growth_tracker": int(self.growth_tracker[position]),
        }

    def load_member_states(self, states: Sequence[dict[str, float | int]]) -> None:
        """Continue from one :meth:`member_state` per member, in the pack's member order."""
        device = self.scale.device
        self.scale = torch.tensor(
            [float(s["scale"]) for s in states], dtype=torch.float32, device=device
        )
        self.growth_tracker = torch.tensor(
            [int(s["_growth_tracker"]) for s in states], dtype=torch.int32, device=device
        )
