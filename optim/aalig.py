r"""AALIG: Adaptive ALI-G, "Faking Interpolation Until You Make It" (ICLR 2022 submission).

ALI-G's Polyak step with the optimal loss 0 replaced by one approximate optimal value (AOV)
``a_z`` per training sample, for problems that do not interpolate.

One step, on a mini-batch of sample indices ``z`` with per-sample losses ``l_z`` whose batch mean
was back-propagated, ``g`` its gradient over *all* parameters of *all* groups::

    g2    = sum_p ||g_p||^2                                 one global squared norm
    gamma = (mean_z l_z - mean_z a_z) / (g2 + eps)
    gamma = min(max(gamma, 0), eta)                         per group (eta may differ per group)
    p    <- p - gamma * (g_p + lambda * p)                  weight decay only in the direction
    if mu > 0:   v_p <- mu * v_p - gamma * g_p ;   p <- p + mu * v_p      (no decay term in v)

AOV schedule. The ``epochs`` budget is split into ``K = sections`` equal sections; section
``j = 1..K`` ends after epoch ``ceil(j * epochs / K)`` (duplicates merged: with fewer epochs than
sections every epoch closes a section; the last epoch always closes one). The AOVs are fixed
during a section. The losses seen online are recorded per epoch; the epoch with the lowest mean
recorded loss in the section gives the reference ``lbar_z``. At a section end, per sample::

    not reached (lbar_z >  a_z):  d_z = (lbar_z - a_z) / 2 ;  a_z = (a_z + lbar_z) / 2
    reached     (lbar_z <= a_z):  a_z = max(B, a_z - d_z / 2)          (d_z unchanged)

with ``a_z = B`` (``lower_bound``) and ``d_z = 0`` at the start. ``d_z`` is half the last rise,
so a reached AOV goes back halfway down, and by the same amount again each time it is reached.

Departures from the paper (Algorithms 1 and 2, §4), as decided in ``docs/ALGORITHMS.md``:

- ``K`` is a parameter (``sections``, default 10; the paper fixes 10, the authors' code uses 5),
  and the schedule also works when there are fewer epochs than sections;
- the reference is a *copy* of the best epoch's losses (the authors' code aliased the epoch
  buffer and so used the last epoch of the section, not the best one);
- the step uses the batch means of ``l_z`` and ``a_z`` (the paper writes one sample ``z_t``), the
  gradient of the unregularised batch-mean loss, ``eps`` in the denominator, and ``max(gamma, 0)``
  as in the paper; the decay ``lambda * p`` enters the update direction, not ``gamma``'s
  denominator;
- optional momentum, in the authors' Nesterov form used by ALI-G, on ``g_p`` only.

Bookkeeping details (not in the paper):

- a sample's reference is its loss in the lowest-mean epoch *among the epochs of the section that
  saw it*; when every epoch sees every sample (the usual case) this is exactly the section's best
  epoch, and a loader that drops a few samples per epoch still gives them a reference. Samples
  never seen in a section keep their AOV (and ``d_z``). Ties keep the earlier epoch;
- a sample seen twice in one epoch (or twice in one batch) keeps one of its losses for the epoch
  mean (the last one written; with duplicates inside a batch, whichever the device writes);
- a NaN per-sample loss is recorded as "not seen" (a diverged run is visible in the parameters
  and ``last_step_size``, which are NaN, as with ALI-G);
- epochs past the ``epochs`` budget close no section: the AOVs stay as they are;
- AOV buffers are float32 (float64 when the parameters are float64), on the first parameter's
  device, one value per sample each: ``a``, ``d``, the epoch's losses (NaN = not seen), the
  reference losses and their epoch means (inf = no reference).
"""

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from optim import validation
from optim.closure import require_closure
from optim.exceptions import InvalidHyperparameterError, MissingClosureError
from optim.projection import global_norm
from optim.step_sizes import StepSizeRecord

_STATE_KEY = "aalig"
_STATE_VERSION = 1
_BUFFERS = ("aov", "delta", "epoch_loss", "ref_loss", "ref_mean")
# Attributes that copy.deepcopy / pickle must carry besides torch's defaults/state/param_groups.
_PICKLED = (
    "n_samples",
    "epochs",
    "sections",
    "lower_bound",
    "eps",
    "foreach",
    "last_step_size",
    "last_step_capped",
    "last_step_sizes",
    "last_epoch_mean",
    "_section_ends",
    "_epoch",
    "_best_mean",
    "_device",
    "_dtype",
    *(f"_{name}" for name in _BUFFERS),
)


def section_ends(epochs: int, sections: int) -> tuple[int, ...]:
    """The epochs (1-based) after which a section closes: ``ceil(j * epochs / sections)``."""
    epochs = validation.positive_int("epochs", epochs)
    sections = validation.positive_int("sections", sections)
    return tuple(sorted({-(-j * epochs // sections) for j in range(1, sections + 1)}))


class AALIG(StepSizeRecord, Optimizer):
    """AALIG: ALI-G with one approximate optimal value per training sample.

    Args:
        params: parameters or parameter groups (``max_lr``, ``momentum`` and ``weight_decay``
            may differ per group).
        max_lr: maximal learning rate η (> 0).
        n_samples: number of training samples; the closure's indices lie in ``[0, n_samples)``.
        epochs: the training budget in epochs, split into ``sections`` sections.
        momentum: Nesterov momentum coefficient μ in [0, 1).
        weight_decay: λ >= 0, added to the update direction only.
        sections: number K of AOV updates over the budget.
        lower_bound: the known lower bound B of every per-sample loss (0 for cross-entropy).
        eps: δ >= 0 added to ``||g||^2``.
        foreach: use the fused multi-tensor kernels (default); ``False`` is the per-tensor
            reference implementation, kept for testing.

    ``step(closure)``: the closure returns ``(indices, per_sample_losses)`` (a LongTensor of
    sample indices and the unreduced losses, both of length B), and ``.grad`` holds the gradient
    of ``per_sample_losses.mean()`` when it returns. Call ``end_epoch()`` after every epoch.

    After each step, ``last_step_size`` is the step size of the first group, ``last_step_capped``
    whether η capped it, and ``last_step_sizes`` has one per group. ``aov`` is a copy of the AOVs.
    """

    def __init__(
        self,
        params: Iterable[Any],
        max_lr: float,
        n_samples: int,
        epochs: int,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        sections: int = 10,
        lower_bound: float = 0.0,
        eps: float = 1e-5,
        *,
        foreach: bool = True,
    ) -> None:
        max_lr = validation.positive("max_lr", max_lr)
        momentum = validation.unit_interval("momentum", momentum)
        weight_decay = validation.non_negative("weight_decay", weight_decay)
        self.n_samples = validation.positive_int("n_samples", n_samples)
        self.epochs = validation.positive_int("epochs", epochs)
        self.sections = validation.positive_int("sections", sections)
        self.lower_bound = validation.finite("lower_bound", lower_bound)
        self.eps = validation.non_negative("eps", eps)
        self.foreach = bool(foreach)
        defaults = {"max_lr": max_lr, "momentum": momentum, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        for group in self.param_groups:  # groups may override the defaults: check them too
            validation.positive("max_lr", group["max_lr"])
            validation.unit_interval("momentum", group["momentum"])
            validation.non_negative("weight_decay", group["weight_decay"])

        first = self.param_groups[0]["params"][0]
        self._device: torch.device = first.device
        self._dtype: torch.dtype = torch.float64 if first.dtype == torch.float64 else torch.float32
        self._section_ends: tuple[int, ...] = section_ends(self.epochs, self.sections)
        self._epoch = 0
        self._best_mean = math.inf
        n, like = self.n_samples, {"device": self._device, "dtype": self._dtype}
        self._aov = torch.full((n,), self.lower_bound, **like)
        self._delta = torch.zeros(n, **like)
        self._epoch_loss = torch.full((n,), math.nan, **like)
        self._ref_loss = torch.zeros(n, **like)
        self._ref_mean = torch.full((n,), math.inf, **like)

        self.last_step_size: float | None = None
        self.last_step_capped: bool = False
        self.last_step_sizes: list[float] = []
        self.last_epoch_mean: float | None = None

    # ------------------------------------------------------------------ read-only views

    @property
    def aov(self) -> torch.Tensor:
        """A copy of the current AOVs ``a_z`` (one per sample, on the parameters' device)."""
        return self._aov.clone()

    @property
    def epoch(self) -> int:
        """The number of epochs closed by ``end_epoch`` so far."""
        return self._epoch

    @property
    def section_ends(self) -> tuple[int, ...]:
        """The epochs (1-based) after which the AOVs are updated."""
        return self._section_ends

    # ------------------------------------------------------------------ the step

    def _all_params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def _batch(self, returned: object) -> tuple[torch.Tensor, torch.Tensor]:
        """The closure's ``(indices, per_sample_losses)``, checked, on the buffers' device."""
        if not (isinstance(returned, tuple | list) and len(returned) == 2):
            raise MissingClosureError(
                "AALIG.step(): the closure must return (indices, per_sample_losses), got "
                f"{type(returned).__name__}"
            )
        indices, losses = (torch.as_tensor(t) for t in returned)
        if indices.dim() != 1 or indices.is_floating_point() or indices.is_complex():
            raise InvalidHyperparameterError(
                f"indices must be a 1-D integer tensor, got dtype {indices.dtype} and shape "
                f"{tuple(indices.shape)}"
            )
        if indices.dtype == torch.bool:
            raise InvalidHyperparameterError("indices must be integer sample indices, not a mask")
        if losses.dim() != 1 or not losses.is_floating_point():
            raise InvalidHyperparameterError(
                f"per_sample_losses must be a 1-D float tensor (reduction='none'), got dtype "
                f"{losses.dtype} and shape {tuple(losses.shape)}"
            )
        if indices.numel() != losses.numel():
            raise InvalidHyperparameterError(
                f"indices and per_sample_losses must have the same length, got "
                f"{indices.numel()} and {losses.numel()}"
            )
        if indices.numel() == 0:
            raise InvalidHyperparameterError("indices: the batch is empty")
        indices = indices.to(device=self._device, dtype=torch.long)
        low, high = torch.aminmax(indices)
        low_value, high_value = torch.stack([low, high]).tolist()
        if low_value < 0 or high_value >= self.n_samples:
            bad = low_value if low_value < 0 else high_value
            raise InvalidHyperparameterError(
                f"indices must lie in [0, n_samples={self.n_samples}), got {bad}"
            )
        return indices, losses.detach().to(device=self._device, dtype=self._dtype)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Take one AALIG step and record the batch's per-sample losses.

        ``closure`` returns ``(indices, per_sample_losses)``; ``.grad`` holds the gradient of
        ``per_sample_losses.mean()`` when it returns. Returns what the closure returned.
        """
        returned = require_closure(closure, "AALIG", "(indices, per_sample_losses)")
        indices, losses = self._batch(returned)
        grads = [p.grad for p in self._all_params() if p.grad is not None]
        if any(g.is_sparse for g in grads):
            raise InvalidHyperparameterError("AALIG does not support sparse gradients")

        gap = losses.mean() - self._aov.index_select(0, indices).mean()
        if grads:
            g2 = global_norm(grads, foreach=self.foreach).to(self._device, self._dtype).square()
        else:
            g2 = torch.zeros((), device=self._device, dtype=self._dtype)
        gap_value, g2_value = torch.stack([gap, g2]).tolist()  # one device sync
        self._epoch_loss.index_copy_(0, indices, losses)

        denominator = g2_value + self.eps
        # 0/0 (no gap at a stationary point with eps = 0) means "no step", not NaN.
        uncapped = gap_value / denominator if denominator > 0 else 0.0
        for group, gamma in zip(self.param_groups, self._capped_step_sizes(uncapped), strict=True):
            self._update_group(group, gamma)
        return returned

    def _update_group(self, group: dict[str, Any], gamma: float) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        grads = [p.grad for p in params]
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        # p - gamma (g + lambda p) = p (1 - gamma lambda) - gamma g, with p before the update
        decay = 1.0 - gamma * weight_decay
        buffers = [self._momentum_buffer(p) for p in params] if momentum > 0 else []
        if self.foreach:
            if decay != 1.0:
                torch._foreach_mul_(params, decay)
            torch._foreach_add_(params, grads, alpha=-gamma)
            if buffers:
                torch._foreach_mul_(buffers, momentum)
                torch._foreach_add_(buffers, grads, alpha=-gamma)
                torch._foreach_add_(params, buffers, alpha=momentum)
            return
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if decay != 1.0:
                p.mul_(decay)
            p.add_(g, alpha=-gamma)
            if buffers:
                buffers[i].mul_(momentum).add_(g, alpha=-gamma)
                p.add_(buffers[i], alpha=momentum)

    def _momentum_buffer(self, p: torch.Tensor) -> torch.Tensor:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["momentum_buffer"]

    # ------------------------------------------------------------------ the AOV schedule

    @torch.no_grad()
    def end_epoch(self) -> bool:
        """Close an epoch; at a section end update the AOVs.

        Returns ``True`` when this epoch closed a section and the AOVs were updated.
        """
        self._epoch += 1
        seen = ~torch.isnan(self._epoch_loss)
        count, total = torch.stack(
            [seen.sum().to(self._dtype), torch.nansum(self._epoch_loss)]
        ).tolist()
        self.last_epoch_mean = total / count if count > 0 else None
        if self.last_epoch_mean is not None:
            mean = self.last_epoch_mean
            better = seen & (self._ref_mean > mean)  # strictly lower: ties keep the earlier epoch
            self._ref_loss = torch.where(better, self._epoch_loss, self._ref_loss)  # a copy
            self._ref_mean.masked_fill_(better, mean)
            self._best_mean = min(self._best_mean, mean)
        self._epoch_loss.fill_(math.nan)

        if self._epoch not in self._section_ends:
            return False
        self._update_aovs()
        self._ref_mean.fill_(math.inf)
        self._best_mean = math.inf
        return True

    def _update_aovs(self) -> None:
        has_ref = torch.isfinite(self._ref_mean)
        reference, aov = self._ref_loss, self._aov
        not_reached = has_ref & (reference > aov)
        reached = has_ref & ~not_reached
        rise = (reference - aov) / 2
        lowered = (aov - self._delta / 2).clamp_min(self.lower_bound)
        self._delta = torch.where(not_reached, rise, self._delta)
        self._aov = torch.where(not_reached, aov + rise, torch.where(reached, lowered, aov))

    # ------------------------------------------------------------------ state

    def _aalig_state(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "n_samples": self.n_samples,
            "epochs": self.epochs,
            "sections": self.sections,
            "lower_bound": self.lower_bound,
            "eps": self.eps,
            "section_ends": list(self._section_ends),
            "epoch": self._epoch,
            "best_mean": self._best_mean,
            "last_step_size": self.last_step_size,
            "last_step_capped": self.last_step_capped,
            "last_step_sizes": list(self.last_step_sizes),
            "last_epoch_mean": self.last_epoch_mean,
            **{name: getattr(self, f"_{name}").clone() for name in _BUFFERS},
        }

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict plus an ``"aalig"`` entry: AOVs, schedule and epoch buffers."""
        state = super().state_dict()
        state[_STATE_KEY] = self._aalig_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by :meth:`state_dict`; its schedule and sample count win."""
        state_dict = dict(state_dict)
        saved = state_dict.pop(_STATE_KEY, None)
        if not isinstance(saved, dict):
            raise InvalidHyperparameterError(
                f"state_dict has no {_STATE_KEY!r} entry: it was not saved by AALIG"
            )
        n_samples = validation.positive_int("n_samples", saved["n_samples"])
        like = {"device": self._device, "dtype": self._dtype}
        buffers = {}
        for name in _BUFFERS:
            value = torch.as_tensor(saved[name])
            if tuple(value.shape) != (n_samples,):
                raise InvalidHyperparameterError(
                    f"state_dict[{_STATE_KEY!r}][{name!r}] must have shape ({n_samples},), "
                    f"got {tuple(value.shape)}"
                )
            buffers[name] = value.to(**like, copy=True)
        epochs = validation.positive_int("epochs", saved["epochs"])
        sections = validation.positive_int("sections", saved["sections"])
        super().load_state_dict(state_dict)

        self.n_samples, self.epochs, self.sections = n_samples, epochs, sections
        self.lower_bound = validation.finite("lower_bound", saved["lower_bound"])
        self.eps = validation.non_negative("eps", saved["eps"])
        self._section_ends = tuple(int(e) for e in saved["section_ends"])
        self._epoch = int(saved["epoch"])
        self._best_mean = float(saved["best_mean"])
        self.last_step_size = saved["last_step_size"]
        self.last_step_capped = bool(saved["last_step_capped"])
        self.last_step_sizes = list(saved["last_step_sizes"])
        self.last_epoch_mean = saved["last_epoch_mean"]
        for name, value in buffers.items():
            setattr(self, f"_{name}", value)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update({name: self.__dict__[name] for name in _PICKLED if name in self.__dict__})
        return state
