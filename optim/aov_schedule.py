r"""AALIG's approximate optimal values (AOVs): one per training sample, updated once a section.

The ``epochs`` budget is split into ``K = sections`` equal sections; section ``j = 1..K`` ends
after epoch ``ceil(j * epochs / K)`` (duplicates merged: with fewer epochs than sections every
epoch closes a section; the last epoch always closes one). The AOVs are fixed during a section.
The losses seen online are recorded per epoch; the epoch with the lowest mean recorded loss in
the section gives the reference ``lbar_z``. At a section end, per sample::

    not reached (lbar_z >  a_z):  d_z = (lbar_z - a_z) / 2 ;  a_z = (a_z + lbar_z) / 2
    reached     (lbar_z <= a_z):  a_z = max(B, a_z - d_z / 2)          (d_z unchanged)

with ``a_z = B`` (``lower_bound``) and ``d_z = 0`` at the start. ``d_z`` is the last rise (half
the gap to ``lbar_z``), so a reached AOV goes back half of that rise, and by the same amount again
each time it is reached.

Bookkeeping details (not in the paper):

- a sample's reference is its loss in the lowest-mean epoch *among the epochs of the section that
  saw it*; when every epoch sees every sample (the usual case) this is exactly the section's best
  epoch, and a loader that drops a few samples per epoch still gives them a reference. Samples
  never seen in a section keep their AOV (and ``d_z``). Ties keep the earlier epoch;
- the reference is a *copy* of the best epoch's losses (the authors' code aliased the epoch
  buffer and so used the last epoch of the section, not the best one);
- a sample seen twice in one epoch (or twice in one batch) keeps one of its losses for the epoch
  mean (the last one written; with duplicates inside a batch, whichever the device writes);
- a NaN per-sample loss is recorded as "not seen";
- epochs past the ``epochs`` budget close no section: the AOVs stay as they are;
- the buffers hold one value per sample each: ``aov`` (``a``), ``delta`` (``d``),
  ``epoch_loss`` (this epoch's losses, NaN = not seen), ``ref_loss`` (the section's reference
  losses) and ``ref_mean`` (the mean loss of the epoch each reference comes from, inf = none).

See docs/algorithms.md, section AALIG.
"""

import math
from typing import Any

import torch

from optim import validation
from optim.exceptions import InvalidHyperparameterError

#: The per-sample buffers, as named in :meth:`AOVSchedule.state_dict`.
BUFFERS = ("aov", "delta", "epoch_loss", "ref_loss", "ref_mean")


def section_ends(epochs: int, sections: int) -> tuple[int, ...]:
    """The epochs (1-based) after which a section closes: ``ceil(j * epochs / sections)``."""
    epochs = validation.positive_int("epochs", epochs)
    sections = validation.positive_int("sections", sections)
    return tuple(sorted({-(-j * epochs // sections) for j in range(1, sections + 1)}))


class AOVSchedule:
    """The AOVs of ``n_samples`` samples and the losses recorded for their next update.

    ``record`` stores a batch's per-sample losses, ``end_epoch`` closes an epoch (and at a section
    end updates the AOVs). The buffers live on ``device`` in ``dtype``.
    """

    def __init__(
        self,
        n_samples: int,
        epochs: int,
        sections: int,
        lower_bound: float,
        *,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.n_samples = n_samples
        self.lower_bound = lower_bound
        self.section_ends = section_ends(epochs, sections)
        self.epoch = 0  # epochs closed so far
        self.last_epoch_mean: float | None = None
        like = {"device": device, "dtype": dtype}
        self.aov = torch.full((n_samples,), lower_bound, **like)
        self.delta = torch.zeros(n_samples, **like)
        self.epoch_loss = torch.full((n_samples,), math.nan, **like)
        self.ref_loss = torch.zeros(n_samples, **like)
        self.ref_mean = torch.full((n_samples,), math.inf, **like)

    def mean_aov(self, indices: torch.Tensor) -> torch.Tensor:
        """``mean_z a_z`` over the batch ``indices`` (a 0-dim tensor)."""
        return self.aov.index_select(0, indices).mean()

    def record(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        """Record the batch's per-sample ``losses`` for this epoch."""
        self.epoch_loss.index_copy_(0, indices, losses)

    def end_epoch(self) -> bool:
        """Close an epoch; at a section end update the AOVs. ``True`` when it closed a section."""
        self.epoch += 1
        seen = ~torch.isnan(self.epoch_loss)
        count, total = torch.stack(
            [seen.sum().to(self.epoch_loss.dtype), torch.nansum(self.epoch_loss)]
        ).tolist()
        self.last_epoch_mean = total / count if count > 0 else None
        if self.last_epoch_mean is not None:
            mean = self.last_epoch_mean
            better = seen & (self.ref_mean > mean)  # strictly lower: ties keep the earlier epoch
            self.ref_loss = torch.where(better, self.epoch_loss, self.ref_loss)  # a copy
            self.ref_mean.masked_fill_(better, mean)
        self.epoch_loss.fill_(math.nan)

        if self.epoch not in self.section_ends:
            return False
        self._update_aovs()
        self.ref_mean.fill_(math.inf)
        return True

    def _update_aovs(self) -> None:
        has_ref = torch.isfinite(self.ref_mean)
        reference, aov = self.ref_loss, self.aov
        not_reached = has_ref & (reference > aov)
        reached = has_ref & ~not_reached
        rise = (reference - aov) / 2
        lowered = (aov - self.delta / 2).clamp_min(self.lower_bound)
        self.delta = torch.where(not_reached, rise, self.delta)
        self.aov = torch.where(not_reached, aov + rise, torch.where(reached, lowered, aov))

    def state_dict(self) -> dict[str, Any]:
        """The epoch count, the last epoch's mean and copies of the buffers."""
        return {
            "epoch": self.epoch,
            "last_epoch_mean": self.last_epoch_mean,
            **{name: getattr(self, name).clone() for name in BUFFERS},
        }

    def load_state_dict(self, saved: dict[str, Any], where: str) -> None:
        """Load what :meth:`state_dict` saved (``where`` names it in errors); checks first."""
        buffers = {}
        for name in BUFFERS:
            value = torch.as_tensor(saved[name])
            if tuple(value.shape) != (self.n_samples,):
                raise InvalidHyperparameterError(
                    f"{where}[{name!r}] must have shape ({self.n_samples},), "
                    f"got {tuple(value.shape)}"
                )
            buffers[name] = value.to(device=self.aov.device, dtype=self.aov.dtype, copy=True)
        self.epoch = int(saved["epoch"])
        self.last_epoch_mean = saved["last_epoch_mean"]
        for name, value in buffers.items():
            setattr(self, name, value)
