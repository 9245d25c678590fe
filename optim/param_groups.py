r"""What ALI-G, AALIG, SPS and L4 do alike with their parameter groups.

Hyperparameters live in the groups, as in ``torch.optim``, so ``state_dict()`` carries them. Each
optimizer names the few that may differ per group (``max_lr``, ``momentum``, ...); every other
hyperparameter is *shared*: the optimizer computes one global quantity from it (the squared
gradient norm over all groups, the joint projection, the minimum-loss estimate), so every group
holds the same value and :func:`shared` reads it from the first group.

The in-place updates come in two forms, chosen by each optimizer's ``foreach`` flag: ``True``
(the default) issues multi-tensor ``torch._foreach_*`` kernels, ``False`` the same operations
one tensor at a time. They agree up to rounding (the global norms are summed in another order).
The papers' formulas, written plainly, are in :mod:`optim.reference`.
"""

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer

from optim.exceptions import InvalidHyperparameterError
from optim.tiling import tiles

Check = Callable[[str, Any], Any]


def check_groups(optimizer: Optimizer, per_group: Mapping[str, Check]) -> None:
    """Check the hyperparameters of every group against the optimizer's contract.

    A group may override those of ``per_group`` (each is checked with its check). Every other key
    of ``optimizer.defaults`` is shared: a group that sets it to another value is an error, since
    the value could not take effect.
    """
    for group in optimizer.param_groups:
        for name, value in group.items():
            if name in per_group:
                per_group[name](name, value)
            elif name in optimizer.defaults and value != optimizer.defaults[name]:
                raise InvalidHyperparameterError(
                    f"{name} is shared by all parameter groups: a group cannot set it to "
                    f"{value!r} (the optimizer's {name} is {optimizer.defaults[name]!r})"
                )


def shared(optimizer: Optimizer, name: str) -> Any:
    """The shared hyperparameter ``name`` (the same in every group: see :func:`check_groups`)."""
    return optimizer.param_groups[0][name]


def all_params(optimizer: Optimizer) -> list[torch.Tensor]:
    """Every parameter of every group, in group order."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def with_grad(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The parameters among ``params`` that have a gradient (``None`` ones take no step)."""
    return [p for p in params if p.grad is not None]


def with_dense_grad(optimizer: Optimizer, name: str) -> list[torch.Tensor]:
    """The parameters of all groups that have a gradient; a sparse gradient is an error."""
    params = with_grad(all_params(optimizer))
    if any(p.grad.is_sparse for p in params):
        raise InvalidHyperparameterError(f"{name} does not support sparse gradients")
    return params


def zeros_state(optimizer: Optimizer, p: torch.Tensor, key: str) -> torch.Tensor:
    """``optimizer.state[p][key]``, created as zeros shaped like ``p`` on first use."""
    return filled_state(optimizer, p, key, 0.0)


def filled_state(optimizer: Optimizer, p: torch.Tensor, key: str, value: float) -> torch.Tensor:
    """``optimizer.state[p][key]``, created filled with ``value`` shaped like ``p`` on first use
    (an accumulator that starts at TF1's initial value)."""
    state = optimizer.state[p]
    if key not in state:
        state[key] = torch.full_like(p, value, memory_format=torch.preserve_format)
    return state[key]


def optional_closure(closure: Callable[[], Any] | None) -> Any:
    """The loss of ``closure`` computed with grad enabled (``torch.optim``'s convention for
    optimizers that do not need it), or None without one."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def descend(
    params: list[torch.Tensor], directions: list[torch.Tensor], step: float, *, foreach: bool
) -> None:
    """``p <- p - step * d`` for each parameter ``p`` and its direction ``d``, in place."""
    if foreach:
        torch._foreach_add_(params, directions, alpha=-step)
        return
    for p, d in zip(params, directions, strict=True):
        p.add_(d, alpha=-step)


def polyak_momentum_step(
    optimizer: Optimizer,
    group: dict[str, Any],
    gamma: float,
    *,
    decay: float = 1.0,
    foreach: bool,
) -> None:
    r"""ALI-G's update of ``group``, in place, with the authors' Nesterov momentum ``μ``::

        p <- decay * p - gamma * g
        v <- μ * v - gamma * g ;   p <- p + μ * v        (when the group's momentum μ > 0)

    for each parameter ``p`` of the group that has a gradient ``g``; ``v`` is its
    ``"momentum_buffer"`` state. AALIG's weight decay λ enters as ``decay = 1 - gamma * λ``:
    ``p - gamma (g + λ p)``.
    """
    params = with_grad(group["params"])
    if not params:
        return
    grads = [p.grad for p in params]
    momentum = group["momentum"]
    buffers = [zeros_state(optimizer, p, "momentum_buffer") for p in params] if momentum > 0 else []
    if not foreach:
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if decay != 1.0:
                p.mul_(decay)
            p.add_(g, alpha=-gamma)
            if buffers:
                buffers[i].mul_(momentum).add_(g, alpha=-gamma)
                p.add_(buffers[i], alpha=momentum)
        return
    if not buffers:
        if decay != 1.0:
            torch._foreach_mul_(params, decay)
        torch._foreach_add_(params, grads, alpha=-gamma)
        return
    # All passes on one cache-sized tile before the next (see optim.tiling); element-wise, so
    # the numbers are those of one pass after the other over whole tensors.
    for p_tile, g_tile, v_tile in tiles(params, grads, buffers):
        if decay != 1.0:
            torch._foreach_mul_(p_tile, decay)
        torch._foreach_add_(p_tile, g_tile, alpha=-gamma)
        torch._foreach_mul_(v_tile, momentum)
        torch._foreach_add_(v_tile, g_tile, alpha=-gamma)
        torch._foreach_add_(p_tile, v_tile, alpha=momentum)
