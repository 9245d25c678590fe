r"""ALI-G: Adaptive Learning-rates for Interpolation with Gradients (Berrada et al., ICML 2020).

One step, with ``L`` the mini-batch loss (mean-reduced, unregularised, unscaled) and ``g`` its
gradient over *all* parameters of *all* groups::

    g2    = sum_p ||g_p||^2                       one global squared norm
    gamma = L / (g2 + eps)                        Polyak step with f* = 0
    gamma = min(gamma, eta)                       per group, unless eta is None (ALI-G∞)
    gamma = max(gamma, 0)                         a negative loss never gives an ascent step
    p    <- p - gamma * g_p
    if mu > 0:   v_p <- mu * v_p - gamma * g_p ;   p <- p + mu * v_p
    if r:        w <- w * r / ||w||  when ||w|| > r   (w = all parameters jointly)

Departures from Algorithm 1 of the paper, all following the authors' released code:

- momentum is the authors' Nesterov form above (the paper writes ``w <- Π(w + mu v)`` only);
- ``max(gamma, 0)`` is added so a loss below zero (e.g. a shifted objective) is never an ascent;
- the projection is applied once after the whole step and once at construction, so the first
  iterate is feasible as the algorithm requires.

See docs/algorithms.md, section ALI-G; :class:`optim.reference.alig.AliGReference` is the same
step written plainly.
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from optim import validation
from optim.capped_step_size import StepSizeRecord
from optim.closure import loss_value, require_closure
from optim.param_groups import (
    all_params,
    check_groups,
    polyak_momentum_step,
    shared,
    with_dense_grad,
)
from optim.projection import global_norm, project_onto_ball

#: The hyperparameters a parameter group may override; ``radius`` and ``eps`` are shared.
PER_GROUP = {"max_lr": validation.optional_positive, "momentum": validation.unit_interval}


class AliG(StepSizeRecord, Optimizer):
    """ALI-G with an optional maximal learning rate, Nesterov momentum and an l2-ball constraint.

    Args:
        params: parameters or parameter groups (``max_lr`` and ``momentum`` may differ per group).
        max_lr: maximal learning rate η; ``None`` is ALI-G∞ (no cap).
        momentum: Nesterov momentum coefficient μ in [0, 1).
        radius: radius r of the joint l2-ball constraint on all parameters; ``None`` = none.
        eps: δ > 0 (or 0 for the paper's exact toy examples) added to ``||g||^2``.
        foreach: multi-tensor kernels (default) or one tensor at a time (see
            :mod:`optim.param_groups`).

    After each ``step`` the step size actually used by the first group is ``last_step_size`` and
    ``last_step_capped`` says whether η capped it (``last_step_sizes`` has one per group).
    """

    def __init__(
        self,
        params: Iterable[Any],
        max_lr: float | None = None,
        momentum: float = 0.0,
        radius: float | None = None,
        eps: float = 1e-5,
        *,
        foreach: bool = True,
    ) -> None:
        defaults = {
            "max_lr": validation.optional_positive("max_lr", max_lr),
            "momentum": validation.unit_interval("momentum", momentum),
            "radius": validation.optional_positive("radius", radius),
            "eps": validation.non_negative("eps", eps),
        }
        self.foreach = bool(foreach)
        super().__init__(params, defaults)
        check_groups(self, PER_GROUP)
        self._clear_step_sizes()
        self.project()

    def project(self) -> None:
        """Project all parameters jointly onto the l2 ball of radius ``radius`` (if any)."""
        radius = shared(self, "radius")
        if radius is not None:
            project_onto_ball(all_params(self), radius, foreach=self.foreach)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Take one ALI-G step; ``closure`` returns the mini-batch loss (see ``optim.closure``).

        Returns what the closure returned.
        """
        loss = require_closure(closure, "AliG", "the mini-batch loss")
        value = loss_value(loss, "AliG")
        grads = [p.grad for p in with_dense_grad(self, "AliG")]
        g2 = float(global_norm(grads, foreach=self.foreach)) ** 2 if grads else 0.0
        denominator = g2 + shared(self, "eps")
        # 0/0 (zero loss at a stationary point with eps = 0) means "no step", not NaN.
        uncapped = value / denominator if denominator > 0 else 0.0

        for group, gamma in zip(self.param_groups, self._capped_step_sizes(uncapped), strict=True):
            polyak_momentum_step(self, group, gamma, foreach=self.foreach)
        self.project()
        return loss
