"""Calling an optimizer's closure the way every optimizer here expects.

Polyak-type optimizers (ALI-G, AALIG, SPS, L4) need the mini-batch loss, not only its gradient,
so their ``step`` requires a closure. The closure either returns a loss that was already
back-propagated (``lambda: loss``, the only form that works under ``torch.amp.GradScaler``, whose
``step`` unscales ``.grad`` before calling us) or computes the loss and calls ``backward()`` itself
(``torch.optim``'s convention). Either way ``.grad`` holds the gradient of the returned loss when
the closure returns.
"""

from collections.abc import Callable
from typing import Any

import torch

from optim.exceptions import MissingClosureError


def require_closure(closure: Callable[[], Any] | None, optimizer: str, returns: str) -> Any:
    """Call ``closure`` with grad enabled and return what it returns; raise if there is none."""
    if closure is None:
        raise MissingClosureError(
            f"{optimizer}.step() needs the mini-batch loss: pass a closure that returns "
            f"{returns}, e.g. `loss.backward(); optimizer.step(lambda: loss)`"
        )
    with torch.enable_grad():
        return closure()


def loss_value(loss: object, optimizer: str) -> float:
    """The closure's loss as a Python float (a 0-dim tensor or a number)."""
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise MissingClosureError(
                f"{optimizer}.step(): the closure must return the scalar mini-batch loss, "
                f"got a tensor of shape {tuple(loss.shape)} (reduce it with .mean())"
            )
        return float(loss.detach())
    if isinstance(loss, int | float) and not isinstance(loss, bool):
        return float(loss)
    raise MissingClosureError(
        f"{optimizer}.step(): the closure must return the mini-batch loss (a scalar tensor or "
        f"float), got {type(loss).__name__}"
    )
