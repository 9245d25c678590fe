r"""AALIG's step and AOV schedule written plainly (docs/algorithms.md, section AALIG).

A step on the mini-batch of sample indices ``z`` with per-sample losses ``l_z``, and ``g_p`` the
gradient of ``mean_z l_z`` for parameter ``p``, over all groups; group ``k`` takes::

    gamma_k = min(max((mean_z l_z - mean_z a_z) / (sum_p ||g_p||^2 + eps), 0), eta_k)
    p   <- p - gamma_k (g_p + lambda_k p)
    v_p <- mu_k v_p - gamma_k g_p ;   p <- p + mu_k v_p              when mu_k > 0

The AOVs start at ``a_z = B`` with ``d_z = 0``. Section ``j = 1..K`` ends after epoch
``ceil(j * epochs / K)``; there, each sample seen in the section takes as its reference
``lbar_z`` its loss in the lowest-mean epoch of the section that saw it (ties: the earlier), and::

    lbar_z >  a_z:   d_z = (lbar_z - a_z) / 2 ;   a_z = (a_z + lbar_z) / 2
    lbar_z <= a_z:   a_z = max(B, a_z - d_z / 2)

A sample keeps its last loss of an epoch; a NaN loss counts as not seen.
"""

import math
from collections.abc import Callable, Iterable
from statistics import fmean
from typing import Any

import torch
from torch.optim import Optimizer


class AALIGReference(Optimizer):
    """AALIG, one tensor and one sample at a time.

    ``aov`` is the list of the ``a_z``, ``last_step_sizes`` holds the ``gamma_k`` of the last
    step; call ``end_epoch()`` after every epoch.
    """

    def __init__(
        self,
        params: Iterable[Any],
        *,
        max_lr: float,
        momentum: float,
        weight_decay: float,
        eps: float,
        n_samples: int,
        epochs: int,
        sections: int,
        lower_bound: float,
    ) -> None:
        hyperparameters = {"max_lr": max_lr, "momentum": momentum, "weight_decay": weight_decay}
        super().__init__(params, hyperparameters | {"lower_bound": lower_bound, "eps": eps})
        self.aov = [float(lower_bound)] * n_samples  # a_z
        self.delta = [0.0] * n_samples  # d_z: half the last rise of a_z
        self.section_ends = {math.ceil(j * epochs / sections) for j in range(1, sections + 1)}
        self.epoch = 0  # epochs closed so far
        self.epoch_losses: dict[int, float] = {}  # this epoch's loss of each sample seen
        self.section: list[dict[int, float]] = []  # the closed epochs of the current section
        self.last_step_sizes: list[float] = []

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """One step; ``closure`` returns ``(indices, per_sample_losses)``, and ``.grad`` holds
        the gradient of ``per_sample_losses.mean()``."""
        with torch.enable_grad():
            returned = closure()
        indices, losses = returned
        samples = [int(z) for z in indices]
        values = [float(loss) for loss in losses]
        for z, value in zip(samples, values, strict=True):
            self.epoch_losses[z] = value
        gap = fmean(values) - fmean(self.aov[z] for z in samples)

        params = [p for group in self.param_groups for p in group["params"]]
        g2 = sum(float(p.grad.pow(2).sum()) for p in params if p.grad is not None)
        denominator = g2 + self.defaults["eps"]
        polyak = gap / denominator if denominator > 0 else 0.0
        self.last_step_sizes = []
        for group in self.param_groups:
            eta, mu, decay = group["max_lr"], group["momentum"], group["weight_decay"]
            gamma = min(max(polyak, 0.0), eta)
            self.last_step_sizes.append(gamma)
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.sub_(gamma * (p.grad + decay * p))
                if mu > 0:
                    v = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                    v.mul_(mu).sub_(gamma * p.grad)
                    p.add_(mu * v)
        return returned

    def end_epoch(self) -> bool:
        """Close an epoch; at a section end update the AOVs (and return ``True``)."""
        self.epoch += 1
        seen = {z: loss for z, loss in self.epoch_losses.items() if not math.isnan(loss)}
        self.section.append(seen)
        self.epoch_losses = {}
        if self.epoch not in self.section_ends:
            return False
        means = [fmean(epoch.values()) if epoch else math.inf for epoch in self.section]
        for z in range(len(self.aov)):
            seen_in = [(mean, e[z]) for mean, e in zip(means, self.section, strict=True) if z in e]
            if not seen_in:
                continue
            reference = min(seen_in, key=lambda pair: pair[0])[1]  # the first on ties
            if reference > self.aov[z]:
                self.delta[z] = (reference - self.aov[z]) / 2
                self.aov[z] = (self.aov[z] + reference) / 2
            else:
                self.aov[z] = max(self.defaults["lower_bound"], self.aov[z] - self.delta[z] / 2)
        self.section = []
        return True
