r"""SPS_max: the stochastic Polyak step size with a cap (Loizou et al., AISTATS 2021).

One step, with ``L`` the mini-batch loss and ``g`` its gradient over *all* parameters of *all*
groups::

    g2    = sum_p ||g_p||^2                          one global squared norm
    if sqrt(g2) < 1e-8:  no step at all              (a stationary point: nothing to scale)
    gamma = (L - f*) / (c * g2 + eps)                stochastic Polyak step, f* = f_i^* bound
    gamma = min(gamma, max_lr)                       per group ("SPS_max", gamma_b = max_lr)
    gamma = max(gamma, 0)                            never an ascent step
    p    <- p - gamma * g_p

With ``c = 1`` and ``f* = 0`` this is exactly ALI-G without momentum (``optim.alig.AliG`` with
the same ``max_lr`` and ``eps``), apart from the ``||g|| < 1e-8`` rule.

Departures from the paper (Loizou, Vaswani, Laradji, Lacoste-Julien, "Stochastic Polyak
Step-size for SGD: An Adaptive Learning Rate for Fast Convergence", AISTATS 2021):

- ``eps`` is added to the denominator (the paper divides by ``c ||g||^2`` alone) and the step is
  skipped when ``||g|| < 1e-8``, following the authors' released code;
- ``max(gamma, 0)`` is added so a loss below ``f*`` (a wrong lower bound) is never an ascent;
- only the constant cap ``gamma_b = max_lr`` is implemented, not the smoothed cap variant;
- one ``f*`` for every mini-batch (the paper allows a per-sample ``f_i^*``; 0 is exact for
  non-negative losses that can interpolate).
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from optim import validation
from optim.closure import loss_value, require_closure
from optim.exceptions import InvalidHyperparameterError
from optim.projection import global_norm
from optim.step_sizes import StepSizeRecord

#: No step is taken when the global gradient norm is below this value.
GRAD_NORM_THRESHOLD = 1e-8


class SPS(StepSizeRecord, Optimizer):
    """SPS_max: stochastic Polyak step size capped at ``max_lr``.

    Args:
        params: parameters or parameter groups (``max_lr`` may differ per group).
        max_lr: the cap gamma_b > 0 on the step size (the study's η).
        c: the constant c > 0 of the Polyak step (0.5 in the paper's experiments).
        f_star: the lower bound f* on the mini-batch loss (0 for non-negative losses).
        eps: non-negative constant added to ``c ||g||^2``.
        foreach: use the fused multi-tensor kernels (default); ``False`` is the per-tensor
            reference implementation, kept for testing.

    After each ``step`` the step size used by the first group is ``last_step_size`` and
    ``last_step_capped`` says whether ``max_lr`` capped it (``last_step_sizes`` has one per
    group). A skipped step (``||g|| < 1e-8``) reports a step size of 0.
    """

    def __init__(
        self,
        params: Iterable[Any],
        max_lr: float,
        c: float = 0.5,
        f_star: float = 0.0,
        eps: float = 1e-8,
        *,
        foreach: bool = True,
    ) -> None:
        max_lr = validation.positive("max_lr", max_lr)
        self.c = validation.positive("c", c)
        self.f_star = validation.finite("f_star", f_star)
        self.eps = validation.non_negative("eps", eps)
        self.foreach = bool(foreach)
        super().__init__(params, {"max_lr": max_lr})
        for group in self.param_groups:  # groups may override the default: check them too
            validation.positive("max_lr", group["max_lr"])
        self.last_step_size: float | None = None
        self.last_step_capped: bool = False
        self.last_step_sizes: list[float] = []

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("last_step_size", None)
        self.__dict__.setdefault("last_step_capped", False)
        self.__dict__.setdefault("last_step_sizes", [])

    def _all_params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Take one SPS_max step; ``closure`` returns the mini-batch loss (see ``optim.closure``).

        Returns what the closure returned.
        """
        loss = require_closure(closure, "SPS", "the mini-batch loss")
        value = loss_value(loss, "SPS")
        grads = [p.grad for p in self._all_params() if p.grad is not None]
        if any(g.is_sparse for g in grads):
            raise InvalidHyperparameterError("SPS does not support sparse gradients")
        grad_norm = float(global_norm(grads, foreach=self.foreach)) if grads else 0.0

        if grad_norm < GRAD_NORM_THRESHOLD:
            self.last_step_sizes = [0.0] * len(self.param_groups)
            self.last_step_size, self.last_step_capped = 0.0, False
            return loss

        uncapped = (value - self.f_star) / (self.c * grad_norm**2 + self.eps)
        for group, gamma in zip(self.param_groups, self._capped_step_sizes(uncapped), strict=True):
            self._update_group(group, gamma)
        return loss

    def _update_group(self, group: dict[str, Any], gamma: float) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params or gamma == 0.0:
            return
        grads = [p.grad for p in params]
        if self.foreach:
            torch._foreach_add_(params, grads, alpha=-gamma)
            return
        for p, g in zip(params, grads, strict=True):
            p.add_(g, alpha=-gamma)
