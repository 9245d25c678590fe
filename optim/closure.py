"""The closures of ``optimizer.step``: what each optimizer needs from one, on both sides.

Optimizers differ in what ``step`` needs, their *closure kind* (``OptimizerInfo.closure`` in
:mod:`optim.registry`): nothing (``"none"``: the ``torch.optim`` baselines), the mini-batch loss
(``"loss"``: ALI-G, SPS, L4) or the per-sample losses with their sample indices
(``"per-sample"``: AALIG).

The closure either returns values that were already back-propagated (``lambda: loss``, the only
form that works under ``torch.amp.GradScaler``, whose ``step`` unscales ``.grad`` before calling
the optimizer) or computes the loss and calls ``backward()`` itself (``torch.optim``'s
convention). Either way ``.grad`` holds the gradient of the (mean) loss when the closure returns.

Optimizer side: :func:`require_closure` calls the closure, :func:`loss_value` and
:func:`indices_and_losses` check what it returned. Caller side: :func:`step_with_closure` builds
the closure of the optimizer's kind from the trainer's loss and steps the optimizer.
"""

from collections.abc import Callable
from typing import Any, Literal

import torch

from optim.exceptions import InvalidHyperparameterError, MissingClosureError

#: What an optimizer's ``step`` needs from its caller (see the module docstring).
ClosureKind = Literal["none", "loss", "per-sample"]
Closure = Callable[[], Any] | None

# ------------------------------------------------------------------ the optimizer's side


def require_closure(closure: Closure, optimizer: str, returns: str) -> Any:
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


def indices_and_losses(
    returned: object,
    optimizer: str,
    n_samples: int,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The closure's ``(indices, per_sample_losses)``, checked, on ``device``.

    ``indices`` become a LongTensor in ``[0, n_samples)``, the losses a detached ``dtype``
    tensor of the same length; nothing is recorded when a check fails.
    """
    if not (isinstance(returned, tuple | list) and len(returned) == 2):
        raise MissingClosureError(
            f"{optimizer}.step(): the closure must return (indices, per_sample_losses), got "
            f"{type(returned).__name__}"
        )
    indices, losses = (torch.as_tensor(t) for t in returned)
    if indices.dim() != 1 or indices.is_floating_point() or indices.is_complex():
        raise InvalidHyperparameterError(
            f"indices must be a 1-D integer tensor, got dtype {indices.dtype} and shape "
            f"{tuple(indices.shape)}"
        )
    if indices.dtype == torch.bool:
        raise InvalidHyperparameterError("indices must be integer sample indices, not a mask")
    if losses.dim() != 1 or not losses.is_floating_point():
        raise InvalidHyperparameterError(
            f"per_sample_losses must be a 1-D float tensor (reduction='none'), got dtype "
            f"{losses.dtype} and shape {tuple(losses.shape)}"
        )
    if indices.numel() != losses.numel():
        raise InvalidHyperparameterError(
            f"indices and per_sample_losses must have the same length, got "
            f"{indices.numel()} and {losses.numel()}"
        )
    if indices.numel() == 0:
        raise InvalidHyperparameterError("indices: the batch is empty")
    indices = indices.to(device=device, dtype=torch.long)
    low, high = torch.aminmax(indices)
    low_value, high_value = torch.stack([low, high]).tolist()  # one device sync
    if low_value < 0 or high_value >= n_samples:
        bad = low_value if low_value < 0 else high_value
        raise InvalidHyperparameterError(
            f"indices must lie in [0, n_samples={n_samples}), got {bad}"
        )
    return indices, losses.detach().to(device=device, dtype=dtype)


# ------------------------------------------------------------------ the caller's side


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


#: The closure each kind of optimizer is stepped with, from ``(loss, per_sample, indices)``.
CLOSURE_BUILDERS: dict[ClosureKind, Callable[..., Closure]] = {
    "none": _no_closure,
    "loss": _loss_closure,
    "per-sample": _per_sample_closure,
}


def step_with_closure(
    optimizer: torch.optim.Optimizer,
    kind: ClosureKind,
    loss: torch.Tensor,
    per_sample: torch.Tensor | None = None,
    indices: torch.Tensor | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Step ``optimizer`` (whose ``.grad`` holds the gradient of ``loss``) as its kind requires.

    ``loss`` is the unscaled mean loss, ``per_sample`` the unreduced losses it is the mean of and
    ``indices`` their sample indices. The closure is passed *positionally*, the only form
    ``torch.amp.GradScaler.step`` accepts.
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
