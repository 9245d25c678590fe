"""One way to step any registered optimizer after ``backward()``.

Optimizers differ in what ``step`` needs (see ``OptimizerInfo.closure``): nothing (``torch.optim``
baselines), the mini-batch loss (ALI-G, SPS, L4) or the per-sample losses with their sample
indices (AALIG). The trainer computes per-sample losses, back-propagates their mean (clipping or
scaling gradients as it must), then calls :func:`step`, which builds the right closure from the
table below and passes it *positionally*, the only form ``torch.amp.GradScaler.step`` accepts.
"""

from collections.abc import Callable
from typing import Any

import torch

from optim.exceptions import MissingClosureError
from optim.registry import ClosureKind

Closure = Callable[[], Any] | None


def _no_closure(loss: torch.Tensor, per_sample: torch.Tensor | None, indices: Any) -> Closure:
    return None


def _loss_closure(loss: torch.Tensor, per_sample: torch.Tensor | None, indices: Any) -> Closure:
    value = loss.detach()
    return lambda: value


def _per_sample_closure(
    loss: torch.Tensor, per_sample: torch.Tensor | None, indices: Any
) -> Closure:
    if per_sample is None or indices is None:
        raise MissingClosureError(
            "this optimizer needs per-sample losses and their sample indices "
            "(the task's data must yield indices)"
        )
    values = per_sample.detach()
    return lambda: (indices, values)


CLOSURE_BUILDERS: dict[ClosureKind, Callable[..., Closure]] = {
    "none": _no_closure,
    "loss": _loss_closure,
    "per-sample": _per_sample_closure,
}


def step(
    optimizer: torch.optim.Optimizer,
    kind: ClosureKind,
    loss: torch.Tensor,
    per_sample: torch.Tensor | None = None,
    indices: torch.Tensor | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Step ``optimizer`` (whose ``.grad`` holds the gradient of ``loss``) as its kind requires.

    ``loss`` is the unscaled mean loss, ``per_sample`` the unreduced losses it is the mean of.
    """
    closure = CLOSURE_BUILDERS[kind](loss, per_sample, indices)
    if scaler is not None:
        if closure is None:
            scaler.step(optimizer)
        else:
            scaler.step(optimizer, closure)
    elif closure is None:
        optimizer.step()
    else:
        optimizer.step(closure)
