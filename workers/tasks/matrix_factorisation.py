r"""Matrix factorisation (AALIG paper §5.1): a cheap problem whose interpolation we control.

    min_{W1 ∈ R^{10×k}, W2 ∈ R^{k×6}}  (1 / (10 n)) Σ_i ||W1 W2 x_i − y_i||²,   y_i = A x_i

on the data of :mod:`studies.catalog.matrix_data` (by default what the benchmark code the AALIG
paper reuses builds: ``A = linspace(1, 1e-10, 10)[:, None] · U(0, 1)^{10×6}``, 1,000 samples
``x ~ N(0, I_6)`` split 80/20). The loss is the mean squared error over every output entry, as
torch's ``MSELoss(reduction="mean")``: the per-sample loss is the mean over the 10 outputs, and a
batch's loss is their mean. Ranks 1 and 4 cannot represent ``A`` (their optimal losses,
``studies.catalog.matrix_data.training_floors``, are clearly above 0); rank 10 and the
"true model" (one linear 10×6 map) can (optimal loss 0). Data and model are float64: the
``exact-condition`` generator's smallest singular values (1e-10 relative) would be lost in
float32. See docs/algorithms.md, section "matrix-factorisation".
"""

from collections.abc import Iterator

import torch
from torch import nn

from studies.catalog.matrix_data import IN_FEATURES, OUT_FEATURES, make_data
from studies.catalog.tasks import MatrixFactorisationOptions
from workers.tasks.base import Batch, Task
from workers.tasks.finite_data import epoch_batches, evaluate_in_batches


def mean_squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample squared error averaged over the output coordinates."""
    return (outputs - targets).pow(2).mean(dim=1)


class Factorised(nn.Module):
    """``x ↦ W1 W2 x`` (rank ``k``), or one linear map for the true model; no biases."""

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
    """The task; ``A``, the samples and the split come from ``options.data_seed``."""

    name = "matrix-factorisation"

    def __init__(
        self, options: MatrixFactorisationOptions, *, seed: int, device: torch.device
    ) -> None:
        super().__init__(options, seed=seed, device=device)
        self.options: MatrixFactorisationOptions = options
        data = make_data(
            options.generator,
            options.condition_number,
            options.n_samples,
            options.val_fraction,
            options.data_seed,
        )
        self.target = torch.from_numpy(data.target)
        self.x_train, self.y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
        self.x_val, self.y_val = torch.from_numpy(data.x_val), torch.from_numpy(data.y_val)

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    def build_model(self) -> nn.Module:
        rank = self.options.rank
        return Factorised(None if rank == "true-model" else int(rank)).double()

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        return epoch_batches(self.x_train, self.y_train, batch_size, generator)

    def per_sample_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return mean_squared_error(model(batch.inputs), batch.targets)

    def evaluate(self, model: nn.Module, batch_size: int) -> dict[str, float]:
        return evaluate_in_batches(model, self.x_val, self.y_val, mean_squared_error, self.device)
