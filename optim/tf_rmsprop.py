r"""RMSProp exactly as TensorFlow 1's ``tf.train.RMSPropOptimizer`` (non-centered).

The ALI-G paper's DNC heatmap (Figure 3) ran TF1 optimizers; ``torch.optim.RMSprop`` differs
from TF1's in three ways that matter at the start of training, so the service has this variant
(registry name ``rmsprop-tf``) for that comparison. Per parameter ``p`` with gradient ``g``::

    ms  <- decay * ms + (1 - decay) * g^2          ms starts at ``initial_accumulator`` (TF1: 1)
    mom <- momentum * mom + lr * g / sqrt(ms + eps)    eps inside the square root; mom starts at 0
    p   <- p - mom

(with ``momentum = 0`` this is ``p <- p - lr * g / sqrt(ms + eps)``). TF1's defaults are
``decay = 0.9``, ``momentum = 0``, ``eps = 1e-10`` and the ``ms`` slot initialised to ones.

``torch.optim.RMSprop`` instead starts ``v`` at 0, smooths with ``alpha = 0.99`` and adds ``eps``
outside the square root: on a first gradient of 0.5 with lr = 0.01 its step is −0.1, TF1's is
−0.0052 (about 19× smaller), because TF1's ``ms`` starts at 1.

Each parameter is updated on its own (no multi-tensor kernels); sparse gradients are refused.
All hyperparameters may differ per parameter group. See docs/algorithms.md, section Baselines.
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from optim import validation
from optim.param_groups import (
    check_groups,
    filled_state,
    optional_closure,
    with_dense_grad,
    with_grad,
    zeros_state,
)

#: The hyperparameters, all of which a parameter group may override, with their checks.
PER_GROUP = {
    "lr": validation.positive,
    "decay": validation.unit_interval,
    "momentum": validation.unit_interval,
    "eps": validation.positive,
    "initial_accumulator": validation.non_negative,
}


class TFRMSprop(Optimizer):
    """RMSProp with TensorFlow 1's update rule and defaults.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (> 0).
        decay: the discount ρ in [0, 1) of the running mean square.
        momentum: momentum coefficient μ in [0, 1) (TF1's ``momentum``; 0 = none).
        eps: ε > 0 added to the mean square *inside* the square root.
        initial_accumulator: the mean square's initial value >= 0 (TF1 uses ones).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        decay: float = 0.9,
        momentum: float = 0.0,
        eps: float = 1e-10,
        initial_accumulator: float = 1.0,
    ) -> None:
        defaults = {
            "lr": validation.positive("lr", lr),
            "decay": validation.unit_interval("decay", decay),
            "momentum": validation.unit_interval("momentum", momentum),
            "eps": validation.positive("eps", eps),
            "initial_accumulator": validation.non_negative(
                "initial_accumulator", initial_accumulator
            ),
        }
        super().__init__(params, defaults)
        check_groups(self, PER_GROUP)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One TF1 RMSProp step on every parameter with a gradient; returns the closure's loss."""
        loss = optional_closure(closure)
        with_dense_grad(self, "rmsprop-tf")
        for group in self.param_groups:
            lr, decay, momentum, eps = group["lr"], group["decay"], group["momentum"], group["eps"]
            for p in with_grad(group["params"]):
                grad = p.grad
                ms = filled_state(self, p, "ms", group["initial_accumulator"])
                self.state[p]["step"] = self.state[p].get("step", 0) + 1
                ms.mul_(decay).addcmul_(grad, grad, value=1 - decay)
                denominator = ms.add(eps).sqrt_()
                if momentum > 0:
                    mom = zeros_state(self, p, "mom")
                    mom.mul_(momentum).addcdiv_(grad, denominator, value=lr)
                    p.sub_(mom)
                else:
                    p.addcdiv_(grad, denominator, value=-lr)
        return loss
