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

See docs/algorithms.md, section SPS; :class:`optim.reference.sps.SPSReference` is the same step
written plainly.
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from optim import validation
from optim.capped_step_size import StepSizeRecord
from optim.closure import loss_value, require_closure
from optim.param_groups import check_groups, descend, shared, with_dense_grad, with_grad
from optim.projection import global_norm

#: No step is taken when the global gradient norm is below this value.
GRAD_NORM_THRESHOLD = 1e-8

#: The hyperparameters a parameter group may override; ``c``, ``f_star`` and ``eps`` are shared.
PER_GROUP = {"max_lr": validation.positive}


class SPS(StepSizeRecord, Optimizer):
    """SPS_max: stochastic Polyak step size capped at ``max_lr``.

    Args:
        params: parameters or parameter groups (``max_lr`` may differ per group).
        max_lr: the cap gamma_b > 0 on the step size (the study's η).
        c: the constant c > 0 of the Polyak step (0.5 in the paper's experiments).
        f_star: the lower bound f* on the mini-batch loss (0 for non-negative losses).
        eps: non-negative constant added to ``c ||g||^2``.
        foreach: multi-tensor kernels (default) or one tensor at a time (see
            :mod:`optim.param_groups`).

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
        defaults = {
            "max_lr": validation.positive("max_lr", max_lr),
            "c": validation.positive("c", c),
            "f_star": validation.finite("f_star", f_star),
            "eps": validation.non_negative("eps", eps),
        }
        self.foreach = bool(foreach)
        super().__init__(params, defaults)
        check_groups(self, PER_GROUP)
        self._clear_step_sizes()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Take one SPS_max step; ``closure`` returns the mini-batch loss (see ``optim.closure``).

        Returns what the closure returned.
        """
        loss = require_closure(closure, "SPS", "the mini-batch loss")
        value = loss_value(loss, "SPS")
        grads = [p.grad for p in with_dense_grad(self, "SPS")]
        grad_norm = float(global_norm(grads, foreach=self.foreach)) if grads else 0.0

        if grad_norm < GRAD_NORM_THRESHOLD:
            self._record_no_step()
            return loss

        c, f_star, eps = (shared(self, name) for name in ("c", "f_star", "eps"))
        uncapped = (value - f_star) / (c * grad_norm**2 + eps)
        for group, gamma in zip(self.param_groups, self._capped_step_sizes(uncapped), strict=True):
            params = with_grad(group["params"])
            if params and gamma != 0.0:
                descend(params, [p.grad for p in params], gamma, foreach=self.foreach)
        return loss
