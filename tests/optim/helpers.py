"""Small deterministic problems shared by the optimizer tests."""

import torch
from torch import nn


def mlp(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A 2-layer MLP 5 -> 16 -> 1 with seeded weights."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1)).to(dtype)


def regression_data(
    n: int = 64, seed: int = 1, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs x ~ N(0, I_5) and targets of a fixed linear map plus a little noise."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=generator, dtype=dtype)
    w = torch.randn(5, 1, generator=generator, dtype=dtype)
    return x, x @ w + 0.01 * torch.randn(n, 1, generator=generator, dtype=dtype)


def batches(step: int, x: torch.Tensor, y: torch.Tensor, size: int = 16) -> tuple:
    """The mini-batch of ``step`` (cycling through the data in order) with its sample indices."""
    n = x.shape[0]
    start = (step * size) % n
    index = torch.arange(start, start + size) % n
    return index, x[index], y[index]


def flat(model: nn.Module) -> torch.Tensor:
    """All parameters of ``model`` as one vector (a copy)."""
    return torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
