r"""Matrix factorisation (AALIG paper §5.1): a cheap problem whose interpolation we control.

    min_{W1 ∈ R^{10×k}, W2 ∈ R^{k×6}}  E_x ||W1 W2 x − A x||²,   x ~ N(0, I_6)

with 1,000 fixed training samples and a target ``A`` (10×6) of condition number 1e10:
``A = U diag(s) Vᵀ`` with ``U`` (10×6) and ``V`` (6×6) random orthonormal and singular values
``s`` log-spaced from 1 down to 1/cond. Ranks 1 and 4 cannot represent ``A`` (no interpolation:
the optimal loss is the energy of the discarded singular directions); rank 10 and the
"true model" (one linear 10×6 map) can (optimal loss 0). The per-sample loss is the squared error
summed over the 10 outputs. Data and model are float64: in float32 the smallest singular values
(1e-10 relative to the largest) would be lost below the 1e-7 rounding, and the problem would not
have the conditioning it claims.
"""

from collections.abc import Iterator

import torch
from torch import nn

from studies.catalog.tasks import MatrixFactorisationOptions
from workers.tasks.base import Batch, Task
from workers.tasks.finite_data import epoch_batches, evaluate_in_batches

IN_FEATURES, OUT_FEATURES = 6, 10


def make_target(condition_number: float, generator: torch.Generator) -> torch.Tensor:
    """A random 10×6 float64 matrix with singular values log-spaced in [1/condition_number, 1]."""
    u, _ = torch.linalg.qr(torch.randn(OUT_FEATURES, IN_FEATURES, generator=generator).double())
    v, _ = torch.linalg.qr(torch.randn(IN_FEATURES, IN_FEATURES, generator=generator).double())
    exponents = torch.linspace(0.0, 1.0, IN_FEATURES, dtype=torch.float64)
    singular = condition_number ** (-exponents)
    return u.double() @ torch.diag(singular) @ v.double().T


def squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample ``||outputs − targets||²`` summed over the output coordinates."""
    return (outputs - targets).pow(2).sum(dim=1)


class Factorised(nn.Module):
    """``x ↦ W1 W2 x`` (rank ``k``), or one linear map for the true model."""

    def __init__(self, rank: int | None) -> None:
        super().__init__()
        if rank is None:
            self.layers = nn.Sequential(nn.Linear(IN_FEATURES, OUT_FEATURES, bias=False))
        else:
            self.layers = nn.Sequential(
                nn.Linear(IN_FEATURES, rank, bias=False), nn.Linear(rank, OUT_FEATURES, bias=False)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MatrixFactorisation(Task):
    """The task; ``A`` and the samples come from ``options.data_seed``."""

    name = "matrix-factorisation"

    def __init__(
        self, options: MatrixFactorisationOptions, *, seed: int, device: torch.device
    ) -> None:
        super().__init__(options, seed=seed, device=device)
        self.options: MatrixFactorisationOptions = options
        generator = torch.Generator().manual_seed(options.data_seed)
        self.target = make_target(options.condition_number, generator)
        self.x_train = torch.randn(
            options.n_samples, IN_FEATURES, generator=generator, dtype=torch.float64
        )
        self.x_val = torch.randn(
            options.n_val, IN_FEATURES, generator=generator, dtype=torch.float64
        )
        self.y_train = self.x_train @ self.target.T
        self.y_val = self.x_val @ self.target.T

    @property
    def n_train(self) -> int:
        return self.options.n_samples

    def build_model(self) -> nn.Module:
        rank = self.options.rank
        return Factorised(None if rank == "true-model" else int(rank)).double()

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        return epoch_batches(self.x_train, self.y_train, batch_size, generator)

    def per_sample_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return squared_error(model(batch.inputs), batch.targets)

    def evaluate(self, model: nn.Module, batch_size: int) -> dict[str, float]:
        return evaluate_in_batches(model, self.x_val, self.y_val, squared_error, self.device)
