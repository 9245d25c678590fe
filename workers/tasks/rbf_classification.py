r"""RBF-kernel binary classification with the logistic loss (AALIG paper §5.1).

Features are Gaussian kernel evaluations against ``m`` centres drawn from the training inputs,
``φ_j(x) = exp(−γ ||x − c_j||²)``, and the model is linear in them: ``f(x) = wᵀφ(x) + b``. The
per-sample loss is the logistic loss ``log(1 + exp(−y f(x)))`` with ``y ∈ {−1, +1}``.

Data: a LIBSVM/svmlight file (``options.path``; e.g. mushrooms, which interpolates, or ijcnn1,
which does not), read with scikit-learn, or by default a synthetic set: two interleaved
Gaussian-mixture classes in ``n_features`` dimensions whose labels are flipped with probability
``label_noise`` (noise makes the problem non-interpolating). Any two distinct label values in a
file are mapped to −1 / +1 (smaller → −1).
"""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from studies.catalog.tasks import RbfClassificationOptions
from workers.exceptions import TaskDataError
from workers.tasks.base import Batch, Task
from workers.tasks.finite_data import epoch_batches, evaluate_in_batches, sign_correct


def logistic_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample ``log(1 + exp(−y f))`` for logits ``f`` of shape [B, 1] and ``y`` in ±1."""
    return functional.softplus(-targets * outputs.squeeze(1))


def read_libsvm(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Dense features and ±1 labels from a LIBSVM/svmlight file; a clear error if unusable."""
    from sklearn.datasets import load_svmlight_file

    if not Path(path).is_file():
        raise TaskDataError(f"path: no LIBSVM file at {path!r}")
    try:
        features, labels = load_svmlight_file(path)
    except ValueError as error:
        raise TaskDataError(f"path: {path!r} is not a LIBSVM/svmlight file ({error})") from error
    classes = np.unique(labels)
    if classes.size != 2:
        raise TaskDataError(
            f"path: binary classification needs 2 label values, {path!r} has {classes.size}"
        )
    return np.asarray(features.todense(), dtype=np.float32), np.where(labels == classes[0], -1, 1)


def synthetic(options: RbfClassificationOptions, rng: np.random.Generator) -> tuple:
    """Two classes, each a mixture of 3 Gaussian blobs, with optional label flips."""
    n, d = options.n_samples, options.n_features
    centres = rng.normal(scale=2.0, size=(2, 3, d))
    labels = rng.integers(0, 2, size=n)
    blob = rng.integers(0, 3, size=n)
    features = centres[labels, blob] + rng.normal(size=(n, d))
    flips = rng.random(n) < options.label_noise
    labels = np.where(flips, 1 - labels, labels)
    return features.astype(np.float32), np.where(labels == 0, -1, 1)


class KernelModel(nn.Module):
    """``x ↦ wᵀ φ(x) + b`` with fixed RBF centres (a buffer, not trained)."""

    def __init__(self, centres: torch.Tensor, gamma: float) -> None:
        super().__init__()
        self.register_buffer("centres", centres)
        self.gamma = gamma
        self.linear = nn.Linear(centres.shape[0], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.exp(-self.gamma * torch.cdist(x, self.centres).pow(2)))


class RbfClassification(Task):
    """The task; data, split and centres come from ``options.data_seed``."""

    name = "rbf-classification"

    def __init__(
        self, options: RbfClassificationOptions, *, seed: int, device: torch.device
    ) -> None:
        super().__init__(options, seed=seed, device=device)
        self.options: RbfClassificationOptions = options
        rng = np.random.default_rng(options.data_seed)
        features, labels = read_libsvm(options.path) if options.path else synthetic(options, rng)
        order = rng.permutation(labels.shape[0])
        n_val = max(1, round(options.val_fraction * labels.shape[0]))
        if labels.shape[0] - n_val < 2:
            raise TaskDataError("path: too few samples for a train/validation split")
        val, train = order[:n_val], order[n_val:]
        x, y = torch.from_numpy(features), torch.from_numpy(labels.astype(np.float32))
        self.x_train, self.y_train = x[train], y[train]
        self.x_val, self.y_val = x[val], y[val]
        n_centres = min(options.n_centers, train.size)
        self.centres = self.x_train[torch.from_numpy(rng.permutation(train.size)[:n_centres])]
        self.gamma = options.gamma or 1.0 / features.shape[1]

    @property
    def n_train(self) -> int:
        return int(self.y_train.shape[0])

    def build_model(self) -> nn.Module:
        return KernelModel(self.centres.clone(), self.gamma)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        return epoch_batches(self.x_train, self.y_train, batch_size, generator)

    def per_sample_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return logistic_loss(model(batch.inputs), batch.targets)

    def evaluate(self, model: nn.Module, batch_size: int) -> dict[str, float]:
        return evaluate_in_batches(
            model, self.x_val, self.y_val, logistic_loss, self.device, correct=sign_correct
        )
