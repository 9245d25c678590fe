"""Joint Euclidean projection of a set of parameters onto an l2 ball.

The feasible set of ALI-G's constrained problem is ``Ω = {w : ||w||_2 <= r}`` where ``w`` is the
concatenation of *all* parameters (weights, biases, norm layers together). Its projection is a
single rescaling::

    n = sqrt(sum_p ||p||^2);   if n > r:  p <- p * (r / n)  for every p

The same projection is applied after the step of any optimizer when a study sets a radius, so the
radius is a fair axis for every optimizer, not only ALI-G.
"""

from collections.abc import Iterable, Sequence

import torch


def global_norm(tensors: Sequence[torch.Tensor], *, foreach: bool = True) -> torch.Tensor:
    """``sqrt(sum_t ||t||^2)`` over ``tensors``: a 0-dim tensor on the first one's device.

    ``foreach`` uses one fused per-tensor norm kernel; the plain path is the reference.
    """
    if not tensors:
        return torch.zeros(())
    device = tensors[0].device
    if foreach:
        norms = torch._foreach_norm(list(tensors))
        return torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]))
    total = torch.zeros((), dtype=tensors[0].dtype, device=device)
    for t in tensors:
        total = total + t.detach().pow(2).sum().to(device)
    return total.sqrt()


@torch.no_grad()
def project_onto_ball(
    params: Iterable[torch.Tensor], radius: float, *, foreach: bool = True
) -> float:
    """Project ``params`` jointly onto ``{||w|| <= radius}`` in place; return the norm before.

    Parameters already inside the ball are left untouched (no rounding drift).
    """
    tensors = [p for p in params]
    norm = float(global_norm(tensors, foreach=foreach))
    if norm > radius:
        scale = radius / norm
        if foreach:
            torch._foreach_mul_(tensors, scale)
        else:
            for t in tensors:
                t.mul_(scale)
    return norm
