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
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from optim import validation
from optim.closure import loss_value, require_closure
from optim.exceptions import InvalidHyperparameterError
from optim.projection import global_norm, project_onto_ball
from optim.step_sizes import StepSizeRecord
from optim.tiling import tiles


class AliG(StepSizeRecord, Optimizer):
    """ALI-G with an optional maximal learning rate, Nesterov momentum and an l2-ball constraint.

    Args:
        params: parameters or parameter groups (``max_lr`` and ``momentum`` may differ per group).
        max_lr: maximal learning rate η; ``None`` is ALI-G∞ (no cap).
        momentum: Nesterov momentum coefficient μ in [0, 1).
        radius: radius r of the joint l2-ball constraint on all parameters; ``None`` = none.
        eps: δ > 0 (or 0 for the paper's exact toy examples) added to ``||g||^2``.
        foreach: use the fused multi-tensor kernels (default); ``False`` is the per-tensor
            reference implementation, kept for testing.

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
        max_lr = validation.optional_positive("max_lr", max_lr)
        momentum = validation.unit_interval("momentum", momentum)
        self.radius = validation.optional_positive("radius", radius)
        self.eps = validation.non_negative("eps", eps)
        self.foreach = bool(foreach)
        super().__init__(params, {"max_lr": max_lr, "momentum": momentum})
        for group in self.param_groups:  # groups may override the defaults: check them too
            validation.optional_positive("max_lr", group["max_lr"])
            validation.unit_interval("momentum", group["momentum"])
        self.last_step_size: float | None = None
        self.last_step_capped: bool = False
        self.last_step_sizes: list[float] = []
        self.project()

    def _all_params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def project(self) -> None:
        """Project all parameters jointly onto the l2 ball of radius ``self.radius`` (if any)."""
        if self.radius is not None:
            project_onto_ball(self._all_params(), self.radius, foreach=self.foreach)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("last_step_size", None)
        self.__dict__.setdefault("last_step_capped", False)
        self.__dict__.setdefault("last_step_sizes", [])

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Take one ALI-G step; ``closure`` returns the mini-batch loss (see ``optim.closure``).

        Returns what the closure returned.
        """
        loss = require_closure(closure, "AliG", "the mini-batch loss")
        value = loss_value(loss, "AliG")
        grads = [p.grad for p in self._all_params() if p.grad is not None]
        if any(g.is_sparse for g in grads):
            raise InvalidHyperparameterError("AliG does not support sparse gradients")
        g2 = float(global_norm(grads, foreach=self.foreach)) ** 2 if grads else 0.0
        denominator = g2 + self.eps
        # 0/0 (zero loss at a stationary point with eps = 0) means "no step", not NaN.
        uncapped = value / denominator if denominator > 0 else 0.0

        for group, gamma in zip(self.param_groups, self._capped_step_sizes(uncapped), strict=True):
            self._update_group(group, gamma)
        self.project()
        return loss

    def _update_group(self, group: dict[str, Any], gamma: float) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        grads = [p.grad for p in params]
        momentum = group["momentum"]
        buffers = [self._momentum_buffer(p) for p in params] if momentum > 0 else []
        if self.foreach:
            if not buffers:
                torch._foreach_add_(params, grads, alpha=-gamma)
                return
            for p_tile, g_tile, v_tile in tiles(params, grads, buffers):
                torch._foreach_add_(p_tile, g_tile, alpha=-gamma)
                torch._foreach_mul_(v_tile, momentum)
                torch._foreach_add_(v_tile, g_tile, alpha=-gamma)
                torch._foreach_add_(p_tile, v_tile, alpha=momentum)
            return
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            p.add_(g, alpha=-gamma)
            if buffers:
                buffers[i].mul_(momentum).add_(g, alpha=-gamma)
                p.add_(buffers[i], alpha=momentum)

    def _momentum_buffer(self, p: torch.Tensor) -> torch.Tensor:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["momentum_buffer"]
