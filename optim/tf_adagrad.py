r"""Adagrad exactly as TensorFlow 1's ``tf.train.AdagradOptimizer``.

The ALI-G paper's DNC heatmap (Figure 3) ran TF1 optimizers; this variant (registry name
``adagrad-tf``) has TF1's rule for that comparison. Per parameter ``p`` with gradient ``g``::

    acc <- acc + g^2                    acc starts at ``initial_accumulator`` (TF1: 0.1)
    p   <- p - lr * g / sqrt(acc)       no eps

``torch.optim.Adagrad`` starts its sum at 0 and divides by ``sqrt(sum) + eps``: on a first
gradient of 0.5 with lr = 0.01 its step is −0.01, TF1's −0.00845 (about 1.18× smaller); the gap
shrinks as the accumulator grows, but the first steps, and so early divergence at large η,
differ.

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
)

#: The hyperparameters, all of which a parameter group may override, with their checks.
PER_GROUP = {"lr": validation.positive, "initial_accumulator": validation.positive}


class TFAdagrad(Optimizer):
    """Adagrad with TensorFlow 1's update rule and defaults.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (> 0).
        initial_accumulator: the accumulator's initial value (> 0, as TF1 requires; TF1's
            default 0.1); it keeps ``sqrt(acc)`` away from 0, so there is no eps.
    """

    def __init__(self, params: Iterable[Any], lr: float, initial_accumulator: float = 0.1) -> None:
        defaults = {
            "lr": validation.positive("lr", lr),
            "initial_accumulator": validation.positive("initial_accumulator", initial_accumulator),
        }
        super().__init__(params, defaults)
        check_groups(self, PER_GROUP)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One TF1 Adagrad step on every parameter with a gradient; returns the closure's loss."""
        loss = optional_closure(closure)
        with_dense_grad(self, "adagrad-tf")
        for group in self.param_groups:
            for p in with_grad(group["params"]):
                grad = p.grad
                acc = filled_state(self, p, "acc", group["initial_accumulator"])
                self.state[p]["step"] = self.state[p].get("step", 0) + 1
                acc.addcmul_(grad, grad)
                p.addcdiv_(grad, acc.sqrt(), value=-group["lr"])
        return loss
