r"""Packed forms of the Polyak-type optimizers: ALI-G, SPS_max and L4 (Mom and Adam).

Each member's step size comes from *that member's* loss and gradient norm (never the pack's),
exactly as in the per-trial classes :class:`optim.alig.AliG`, :class:`optim.sps.SPS` and
:class:`optim.l4.L4`, whose docstrings give the formulas; here every scalar of those formulas is
a tensor ``[n]``. Step sizes are computed in float64, as the per-trial classes do with Python
floats, and applied in the parameters' dtype.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch

from optim.packed.base import PackedOptimizer, member_norms, per_member
from optim.sps import GRAD_NORM_THRESHOLD


def _squared_norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Each member's squared gradient norm, ``[n]`` in float64 (the per-trial code squares a
    Python float)."""
    return member_norms(tensors).double().square()


def _descend(
    params: list[torch.Tensor], directions: list[torch.Tensor], gamma: torch.Tensor
) -> None:
    """``p_k <- p_k - gamma_k d_k`` for every member ``k``."""
    for p, d in zip(params, directions, strict=True):
        p.sub_(d * per_member(gamma.to(p.dtype), p))


class PackedAliG(PackedOptimizer):
    """ALI-G per member: ``gamma = max(min(L / (||g||² + eps), η), 0)``, Nesterov momentum."""

    name: ClassVar[str] = "alig"
    closure: ClassVar[str] = "loss"
    numeric: ClassVar[tuple[str, ...]] = ("momentum", "eps")
    reports_step_size: ClassVar[bool] = True
    optional_states: ClassVar[Mapping[str, float]] = MappingProxyType({"momentum_buffer": 0.0})

    def _step(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], losses: torch.Tensor
    ) -> None:
        denominator = _squared_norms(grads) + self.eps.double()
        values = losses.detach().double()
        uncapped = torch.where(denominator > 0, values / denominator, torch.zeros_like(values))
        cap = self.eta.double()
        capped = uncapped > cap
        gamma = torch.where(capped, cap, uncapped).clamp_min(0.0)
        self._record(gamma, capped)
        _descend(params, grads, gamma)
        if bool((self.momentum > 0).any()):
            buffers = self._buffers("momentum_buffer", params)
            for p, g, v in zip(params, grads, buffers, strict=True):
                mu = per_member(self.momentum, p)
                v.mul_(mu).sub_(g * per_member(gamma.to(p.dtype), p))
                p.add_(v * mu)


class PackedSPS(PackedOptimizer):
    """SPS_max per member: no step when ``||g|| < 1e-8``, else
    ``gamma = max(min((L − f*) / (c ||g||² + eps), η), 0)``."""

    name: ClassVar[str] = "sps"
    closure: ClassVar[str] = "loss"
    numeric: ClassVar[tuple[str, ...]] = ("c", "eps")
    reports_step_size: ClassVar[bool] = True
    f_star: ClassVar[float] = 0.0  # the registry exposes no f*; the per-trial default

    def _step(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], losses: torch.Tensor
    ) -> None:
        norms = member_norms(grads).double()
        values = losses.detach().double()
        uncapped = (values - self.f_star) / (self.c.double() * norms.square() + self.eps.double())
        cap = self.eta.double()
        moving = norms >= GRAD_NORM_THRESHOLD
        capped = moving & (uncapped > cap)
        gamma = torch.where(capped, cap, uncapped).clamp_min(0.0)
        gamma = torch.where(moving, gamma, torch.zeros_like(gamma))
        self._record(gamma, capped)
        _descend(params, grads, gamma)


class PackedL4(PackedOptimizer):
    """L4 per member: the fraction ``η`` of each member's gap ``L − γ_l L_min`` over
    ``<v, g>``; the momentum and Adam moments and the minimum-loss estimate are per member."""

    name: ClassVar[str] = "l4mom"
    closure: ClassVar[str] = "loss"
    reports_step_size: ClassVar[bool] = True
    direction: ClassVar[str] = "momentum"
    # L4's shared hyperparameters: the registry exposes none, so the paper's defaults
    gamma_l, init_factor, forget_time = 0.9, 0.75, 1000.0
    beta1, beta2, adam_eps, eps = 0.9, 0.999, 1e-4, 1e-12

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # each member's minimum-loss estimate L_min (set at its first step), float64
        self.min_loss = torch.zeros(self.n, dtype=torch.float64, device=self.device)
        self.last_min_loss = torch.zeros_like(self.min_loss)

    def _step(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], losses: torch.Tensor
    ) -> None:
        t = self.counts  # each member's own step number
        values = losses.detach().double()
        min_loss = torch.where(
            t == 1, self.init_factor * values, torch.minimum(self.min_loss, values)
        )
        exp_avgs = self._buffers("exp_avg", params)
        for m, g in zip(exp_avgs, grads, strict=True):
            m.lerp_(g, 1.0 - self.beta1)
        bias1 = 1.0 - self.beta1**t

        def per(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
            return per_member(values.to(like.dtype), like)

        if self.direction == "momentum":
            directions = [m / per(bias1, m) for m in exp_avgs]
            dot = member_norms(exp_avgs).double().square() / bias1**2
        else:
            root2 = (1.0 - self.beta2**t) ** 0.5
            exp_avg_sqs = self._buffers("exp_avg_sq", params)
            for s, g in zip(exp_avg_sqs, grads, strict=True):
                s.mul_(self.beta2).addcmul_(g, g, value=1.0 - self.beta2)
            denoms = [(s.sqrt() / per(root2, s)).add_(self.adam_eps) for s in exp_avg_sqs]
            scaled = [m / d.sqrt() for m, d in zip(exp_avgs, denoms, strict=True)]
            dot = member_norms(scaled).double().square() / bias1**2
            directions = [m / d / per(bias1, m) for m, d in zip(exp_avgs, denoms, strict=True)]
        denominator = dot + self.eps
        gap = values - self.gamma_l * min_loss
        eta = torch.where(
            denominator == 0.0, torch.zeros_like(gap), self.eta.double() * gap / denominator
        ).clamp_min(0.0)
        self._record(eta)
        _descend(params, directions, eta)
        self.last_min_loss = min_loss
        self.min_loss = min_loss * (1.0 + 1.0 / self.forget_time)


class PackedL4Adam(PackedL4):
    """L4 on the Adam direction."""

    name: ClassVar[str] = "l4adam"
    direction: ClassVar[str] = "adam"
