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

The AOVs start at the loss lower bound ``B`` and are updated at the end of each of ``K`` sections
of the epoch budget from the section's best epoch ``lbar_z`` (:mod:`optim.aov_schedule` has the
schedule and its bookkeeping)::

    not reached (lbar_z >  a_z):  d_z = (lbar_z - a_z) / 2 ;  a_z = (a_z + lbar_z) / 2
    reached     (lbar_z <= a_z):  a_z = max(B, a_z - d_z / 2)          (d_z unchanged)

Departures from the paper (Algorithms 1 and 2, §4):

- ``K`` is a parameter (``sections``, default 10; the paper fixes 10, the authors' code uses 5),
  and the schedule also works when there are fewer epochs than sections;
- the reference is a *copy* of the best epoch's losses, as Algorithm 1 states (the authors'
  code aliased the epoch buffer, ``lbars = ls``, and so used the last epoch of the section, not
  the best one): the one deliberate departure from the authors' update rule;
- the step uses the batch means of ``l_z`` and ``a_z`` (the paper writes one sample ``z_t``), the
  gradient of the unregularised batch-mean loss, ``eps`` in the denominator (default 1e-9, the
  value hard-coded in the authors' code; the paper's formula has none), and ``max(gamma, 0)``
  as in the paper; the decay ``lambda * p`` enters the update direction, not ``gamma``'s
  denominator;
- optional momentum, in the authors' Nesterov form used by ALI-G, on ``g_p`` only.

A NaN per-sample loss is recorded as "not seen" (a diverged run is visible in the parameters and
``last_step_size``, which are NaN, as with ALI-G). The AOV buffers are float32 (float64 when the
parameters are float64), on the first parameter's device.

See docs/algorithms.md, section AALIG; :class:`optim.reference.aalig.AALIGReference` is the same
step and schedule written plainly.
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from optim import validation
from optim.aov_schedule import AOVSchedule
from optim.capped_step_size import StepSizeRecord
from optim.closure import indices_and_losses, require_closure
from optim.exceptions import InvalidHyperparameterError
from optim.param_groups import check_groups, polyak_momentum_step, shared, with_dense_grad
from optim.projection import global_norm

#: The hyperparameters a parameter group may override, with their checks.
PER_GROUP = {
    "max_lr": validation.positive,
    "momentum": validation.unit_interval,
    "weight_decay": validation.non_negative,
}
#: The hyperparameters shared by all groups (the AOV schedule's and the step's ``eps``), with
#: the checks a loaded state must pass.
SHARED = {
    "n_samples": validation.positive_int,
    "epochs": validation.positive_int,
    "sections": validation.positive_int,
    "lower_bound": validation.finite,
    "eps": validation.non_negative,
}

_STATE_KEY = "aalig"
_STATE_VERSION = 2  # version 1 kept the hyperparameters in this entry, not in the param groups
# Attributes that copy.deepcopy / pickle must carry besides torch's defaults/state/param_groups.
_PICKLED = (
    "foreach",
    "last_step_size",
    "last_step_capped",
    "last_step_sizes",
    "_device",
    "_dtype",
    "_schedule",
)


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
        eps: δ >= 0 added to ``||g||^2`` (1e-9 as in the authors' code).
        foreach: multi-tensor kernels (default) or one tensor at a time (see
            :mod:`optim.param_groups`).

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
        eps: float = 1e-9,
        *,
        foreach: bool = True,
    ) -> None:
        defaults = {
            "max_lr": validation.positive("max_lr", max_lr),
            "momentum": validation.unit_interval("momentum", momentum),
            "weight_decay": validation.non_negative("weight_decay", weight_decay),
            "n_samples": validation.positive_int("n_samples", n_samples),
            "epochs": validation.positive_int("epochs", epochs),
            "sections": validation.positive_int("sections", sections),
            "lower_bound": validation.finite("lower_bound", lower_bound),
            "eps": validation.non_negative("eps", eps),
        }
        self.foreach = bool(foreach)
        super().__init__(params, defaults)
        check_groups(self, PER_GROUP)
        first = self.param_groups[0]["params"][0]
        self._device: torch.device = first.device
        self._dtype: torch.dtype = torch.float64 if first.dtype == torch.float64 else torch.float32
        self._schedule = self._new_schedule(self.param_groups[0])
        self._clear_step_sizes()

    def _new_schedule(self, group: dict[str, Any]) -> AOVSchedule:
        """A fresh AOV schedule for the shared hyperparameters of ``group``."""
        return AOVSchedule(
            group["n_samples"],
            group["epochs"],
            group["sections"],
            group["lower_bound"],
            device=self._device,
            dtype=self._dtype,
        )

    # ------------------------------------------------------------------ read-only views

    @property
    def n_samples(self) -> int:
        """The number of training samples, one AOV each."""
        return shared(self, "n_samples")

    @property
    def epochs(self) -> int:
        """The training budget in epochs, which the sections split."""
        return shared(self, "epochs")

    @property
    def aov(self) -> torch.Tensor:
        """A copy of the current AOVs ``a_z`` (one per sample, on the parameters' device)."""
        return self._schedule.aov.clone()

    @property
    def epoch(self) -> int:
        """The number of epochs closed by ``end_epoch`` so far."""
        return self._schedule.epoch

    @property
    def section_ends(self) -> tuple[int, ...]:
        """The epochs (1-based) after which the AOVs are updated."""
        return self._schedule.section_ends

    @property
    def last_epoch_mean(self) -> float | None:
        """The mean loss recorded in the last closed epoch (``None``: none was recorded)."""
        return self._schedule.last_epoch_mean

    # ------------------------------------------------------------------ the step

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Take one AALIG step and record the batch's per-sample losses.

        ``closure`` returns ``(indices, per_sample_losses)``; ``.grad`` holds the gradient of
        ``per_sample_losses.mean()`` when it returns. Returns what the closure returned.
        """
        returned = require_closure(closure, "AALIG", "(indices, per_sample_losses)")
        indices, losses = indices_and_losses(
            returned, "AALIG", self.n_samples, device=self._device, dtype=self._dtype
        )
        grads = [p.grad for p in with_dense_grad(self, "AALIG")]

        gap = losses.mean() - self._schedule.mean_aov(indices)
        if grads:
            g2 = global_norm(grads, foreach=self.foreach).to(self._device, self._dtype).square()
        else:
            g2 = torch.zeros((), device=self._device, dtype=self._dtype)
        gap_value, g2_value = torch.stack([gap, g2]).tolist()  # one device sync
        self._schedule.record(indices, losses)

        denominator = g2_value + shared(self, "eps")
        # 0/0 (no gap at a stationary point with eps = 0) means "no step", not NaN.
        uncapped = gap_value / denominator if denominator > 0 else 0.0
        for group, gamma in zip(self.param_groups, self._capped_step_sizes(uncapped), strict=True):
            # p - gamma (g + lambda p) = p (1 - gamma lambda) - gamma g, with p before the update
            decay = 1.0 - gamma * group["weight_decay"]
            polyak_momentum_step(self, group, gamma, decay=decay, foreach=self.foreach)
        return returned

    @torch.no_grad()
    def end_epoch(self) -> bool:
        """Close an epoch; at a section end update the AOVs.

        Returns ``True`` when this epoch closed a section and the AOVs were updated.
        """
        return self._schedule.end_epoch()

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict plus an ``"aalig"`` entry: the AOVs, epoch buffers and step record."""
        state = super().state_dict()
        state[_STATE_KEY] = {
            "version": _STATE_VERSION,
            **self._schedule.state_dict(),
            "last_step_size": self.last_step_size,
            "last_step_capped": self.last_step_capped,
            "last_step_sizes": list(self.last_step_sizes),
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by :meth:`state_dict`; its hyperparameters win, as torch's do."""
        state_dict = dict(state_dict)
        saved = state_dict.pop(_STATE_KEY, None)
        if not isinstance(saved, dict):
            raise InvalidHyperparameterError(
                f"state_dict has no {_STATE_KEY!r} entry: it was not saved by AALIG"
            )
        if saved.get("version") != _STATE_VERSION:
            raise InvalidHyperparameterError(
                f"state_dict[{_STATE_KEY!r}] has version {saved.get('version')!r}; this AALIG "
                f"loads version {_STATE_VERSION}"
            )
        group = state_dict["param_groups"][0]
        for name, check in SHARED.items():
            check(name, group[name])
        schedule = self._new_schedule(group)
        schedule.load_state_dict(saved, f"state_dict[{_STATE_KEY!r}]")
        super().load_state_dict(state_dict)

        self._schedule = schedule
        self.last_step_size = saved["last_step_size"]
        self.last_step_capped = bool(saved["last_step_capped"])
        self.last_step_sizes = list(saved["last_step_sizes"])

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update({name: self.__dict__[name] for name in _PICKLED if name in self.__dict__})
        return state
