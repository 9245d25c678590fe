r"""Packed forms of the learning-rate baselines: torch's SGD, Adam/AdamW/AMSGrad, Adagrad and
RMSprop, and the TensorFlow-1 variants ``rmsprop-tf`` and ``adagrad-tf``.

Member ``k``'s update is the per-trial optimizer's (``torch.optim``'s single-tensor update rule,
:mod:`optim.tf_rmsprop`, :mod:`optim.tf_adagrad`) with that member's learning rate ``eta[k]``
and options; where the per-trial code branches on an option (``momentum > 0``), the packed
update runs the general form, which gives the same numbers for the members whose option makes
the branch a no-op (a momentum of 0 leaves ``buf = g``).
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

import torch

from optim.packed.base import PackedOptimizer, per_member


def _decayed(
    grads: list[torch.Tensor], params: list[torch.Tensor], decay: torch.Tensor
) -> list[torch.Tensor]:
    """``g + λ p`` per member (l2 weight decay in the gradient), or ``grads`` when every λ = 0."""
    if not bool((decay != 0).any()):
        return grads
    return [g + p * per_member(decay, p) for g, p in zip(grads, params, strict=True)]


class PackedSGD(PackedOptimizer):
    """``torch.optim.SGD`` (no dampening): ``buf = μ buf + g`` (``buf = g`` at the first step:
    the buffer starts at zero, and ``μ·0 + g`` is ``g`` exactly), ``p -= η (g + μ buf)`` with
    Nesterov, ``p -= η buf`` without."""

    name: ClassVar[str] = "sgd"
    numeric: ClassVar[tuple[str, ...]] = ("momentum", "weight_decay")
    nesterov: ClassVar[bool] = False
    optional_states: ClassVar[Mapping[str, float]] = MappingProxyType({"momentum_buffer": 0.0})

    def _step(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], losses: torch.Tensor
    ) -> None:
        grads = _decayed(grads, params, self.weight_decay)
        if bool((self.momentum != 0).any()):
            buffers = self._buffers("momentum_buffer", params)
            for buf, g in zip(buffers, grads, strict=True):
                buf.mul_(per_member(self.momentum, buf)).add_(g)
            if self.nesterov:
                grads = [
                    g + b * per_member(self.momentum, b)
                    for g, b in zip(grads, buffers, strict=True)
                ]
            else:
                grads = buffers
        for p, g in zip(params, grads, strict=True):
            p.sub_(g * per_member(self.eta, p))


class PackedSGDNesterov(PackedSGD):
    """``torch.optim.SGD(nesterov=True)``."""

    name: ClassVar[str] = "sgd-nesterov"
    nesterov: ClassVar[bool] = True


class PackedAdam(PackedOptimizer):
    """``torch.optim.Adam``: ``m = lerp(m, g, 1 − β1)``, ``v = β2 v + (1 − β2) g²``,
    ``p -= η/(1 − β1^t) · m / (sqrt(v̂)/sqrt(1 − β2^t) + eps)`` (``v̂ = max`` of all ``v`` for
    AMSGrad); decay in the gradient (Adam) or decoupled ``p *= 1 − η λ`` (AdamW)."""

    name: ClassVar[str] = "adam"
    numeric: ClassVar[tuple[str, ...]] = ("beta1", "beta2", "eps", "weight_decay")
    decoupled: ClassVar[bool] = False
    amsgrad: ClassVar[bool] = False

    def _step(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], losses: torch.Tensor
    ) -> None:
        t = self.counts
        if self.decoupled:
            for p in params:
                p.mul_(per_member(1 - self.eta * self.weight_decay, p))
        else:
            grads = _decayed(grads, params, self.weight_decay)
        exp_avgs = self._buffers("exp_avg", params)
        exp_avg_sqs = self._buffers("exp_avg_sq", params)
        # the bias corrections per member, in float64 as torch computes them with Python floats
        bias1 = 1 - self.beta1.double() ** t
        bias2_sqrt = (1 - self.beta2.double() ** t).sqrt()
        step_size = (self.eta.double() / bias1).to(self.dtype)
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            m, v = exp_avgs[i], exp_avg_sqs[i]
            m.lerp_(g, per_member(1 - self.beta1, m))
            v.mul_(per_member(self.beta2, v)).addcmul_(g, g * per_member(1 - self.beta2, v))
            if self.amsgrad:
                peak = self._buffers("max_exp_avg_sq", params)[i]
                torch.maximum(peak, v, out=peak)
                v = peak
            denom = (v.sqrt() / per_member(bias2_sqrt.to(self.dtype), v)).add_(
                per_member(self.eps, v)
            )
            p.sub_(m / denom * per_member(step_size, p))


class PackedAdamW(PackedAdam):
    """``torch.optim.AdamW``: decoupled weight decay."""

    name: ClassVar[str] = "adamw"
    decoupled: ClassVar[bool] = True


class PackedAMSGrad(PackedAdam):
    """``torch.optim.Adam(amsgrad=True)``."""

    name: ClassVar[str] = "amsgrad"
    amsgrad: ClassVar[bool] = True


class PackedAdagrad(PackedOptimizer):
    """``torch.optim.Adagrad`` (no lr decay, accumulator from 0): ``s += g²``,
    ``p -= η g / (sqrt(s) + eps)``."""

    name: ClassVar[str] = "adagrad"
    numeric: ClassVar[tuple[str, ...]] = ("eps", "weight_decay")

    def _step(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], losses: torch.Tensor
    ) -> None:
        grads = _decayed(grads, params, self.weight_decay)
        for p, g, s in zip(params, grads, self._buffers("sum", params), strict=True):
            s.addcmul_(g, g)
            p.sub_(g / s.sqrt().add_(per_member(self.eps, s)) * per_member(self.eta, p))


class PackedRMSprop(PackedOptimizer):
    """``torch.optim.RMSprop``: ``v = α v + (1 − α) g²``, ``a = sqrt(v − ḡ²) + eps`` (centered)
    or ``sqrt(v) + eps``; ``buf = μ buf + g / a``, ``p -= η buf``."""

    name: ClassVar[str] = "rmsprop"
    numeric: ClassVar[tuple[str, ...]] = ("alpha", "momentum", "weight_decay", "eps")
    centered: ClassVar[bool] = False

    def _step(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], losses: torch.Tensor
    ) -> None:
        grads = _decayed(grads, params, self.weight_decay)
        squares = self._buffers("square_avg", params)
        means = self._buffers("grad_avg", params) if self.centered else [None] * len(params)
        buffers = self._buffers("momentum_buffer", params)
        for p, g, v, mean, buf in zip(params, grads, squares, means, buffers, strict=True):
            alpha = per_member(self.alpha, v)
            v.mul_(alpha).addcmul_(g, g * (1 - alpha))
            if mean is not None:
                mean.lerp_(g, 1 - alpha)
                avg = v.addcmul(mean, mean, value=-1).sqrt_()
            else:
                avg = v.sqrt()
            avg = avg.add_(per_member(self.eps, v))
            buf.mul_(per_member(self.momentum, buf)).add_(g / avg)
            p.sub_(buf * per_member(self.eta, p))


class PackedCenteredRMSprop(PackedRMSprop):
    """``torch.optim.RMSprop(centered=True)``."""

    name: ClassVar[str] = "rmsprop"
    centered: ClassVar[bool] = True


class PackedTFRMSprop(PackedOptimizer):
    """TF1 RMSProp (:mod:`optim.tf_rmsprop`): ``ms = ρ ms + (1 − ρ) g²`` from the initial value,
    ``mom = μ mom + η g / sqrt(ms + eps)``, ``p -= mom``."""

    name: ClassVar[str] = "rmsprop-tf"
    numeric: ClassVar[tuple[str, ...]] = ("decay", "momentum", "eps", "initial_accumulator")

    def _step(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], losses: torch.Tensor
    ) -> None:
        squares = self._buffers("ms", params, fill=self.initial_accumulator)
        moms = self._buffers("mom", params)
        for p, g, ms, mom in zip(params, grads, squares, moms, strict=True):
            decay = per_member(self.decay, ms)
            ms.mul_(decay).addcmul_(g, g * (1 - decay))
            denominator = ms.add(per_member(self.eps, ms)).sqrt_()
            mom.mul_(per_member(self.momentum, mom)).add_(g / denominator * per_member(self.eta, p))
            p.sub_(mom)


class PackedTFAdagrad(PackedOptimizer):
    """TF1 Adagrad (:mod:`optim.tf_adagrad`): ``acc += g²`` from the initial value,
    ``p -= η g / sqrt(acc)``."""

    name: ClassVar[str] = "adagrad-tf"
    numeric: ClassVar[tuple[str, ...]] = ("initial_accumulator",)

    def _step(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], losses: torch.Tensor
    ) -> None:
        accumulators = self._buffers("acc", params, fill=self.initial_accumulator)
        for p, g, acc in zip(params, grads, accumulators, strict=True):
            acc.addcmul_(g, g)
            p.sub_(g / acc.sqrt() * per_member(self.eta, p))
