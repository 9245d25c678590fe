"""Small deterministic problems shared by the optimizer tests."""

from collections.abc import Callable

import pytest
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


def two_groups(model: nn.Module, **second: object) -> list[dict]:
    """The MLP's first layer and its last layer as two parameter groups; ``second`` overrides
    hyperparameters of the second group."""
    return [
        {"params": list(model[0].parameters())},
        {"params": list(model[2].parameters()), **second},
    ]


def regression_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, step: int, x: torch.Tensor, y: torch.Tensor
) -> None:
    """One step on mini-batch ``step`` of the squared error; AALIG-style optimizers (those with
    ``end_epoch``) get ``(indices, per_sample_losses)`` and close an epoch every 4 steps."""
    index, xb, yb = batches(step, x, y)
    optimizer.zero_grad()
    losses = (model(xb) - yb).pow(2).squeeze(1)
    losses.mean().backward()
    if hasattr(optimizer, "end_epoch"):
        optimizer.step(lambda: (index, losses))
        if (step + 1) % 4 == 0:
            optimizer.end_epoch()
    else:
        optimizer.step(lambda: losses.mean())


def assert_matches_reference(
    make_optimizer: Callable[[list[dict]], torch.optim.Optimizer],
    reference_class: type[torch.optim.Optimizer],
    steps: int = 24,
    **second: object,
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Run an optimizer and its reference (built with the optimizer's ``defaults``) in float64 on
    two groups of one MLP, step by step, and check that the step sizes and parameters agree to
    1e-12 relative after every step (1e-14 absolute for the parameters that pass near 0, where
    relative rounding errors are larger)."""
    model, twin = mlp(dtype=torch.float64), mlp(dtype=torch.float64)
    optimizer = make_optimizer(two_groups(model, **second))
    reference = reference_class(two_groups(twin, **second), **optimizer.defaults)
    x, y = regression_data(dtype=torch.float64)
    for step in range(steps):
        regression_step(model, optimizer, step, x, y)
        regression_step(twin, reference, step, x, y)
        assert optimizer.last_step_sizes == pytest.approx(reference.last_step_sizes, rel=1e-12)
        torch.testing.assert_close(flat(model), flat(twin), rtol=1e-12, atol=1e-14)
    return optimizer, reference
