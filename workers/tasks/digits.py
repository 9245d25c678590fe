"""scikit-learn's bundled 8×8 handwritten digits: real image data that needs no download.

1,797 grey-scale images (pixel values 0–16, scaled to [0, 1]) of the digits 0–9, split into
training and validation sets by ``options.data_seed``. Models: an MLP 64→128→10 with ReLU, or a
small CNN (two 3×3 convolutions with 16 and 32 channels, max-pooling, a linear classifier).
The per-sample loss is cross-entropy or the multi-class hinge (then ALI-G is Deep Frank-Wolfe).
"""

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from studies.catalog.tasks import DigitsOptions
from workers.tasks.base import Batch, Task
from workers.tasks.finite_data import epoch_batches, evaluate_in_batches, top1_correct
from workers.tasks.losses import PER_SAMPLE_LOSSES


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


MODELS = {"mlp": _mlp, "cnn": _cnn}


class Digits(Task):
    """The task; the split comes from ``options.data_seed``."""

    name = "digits"

    def __init__(self, options: DigitsOptions, *, seed: int, device: torch.device) -> None:
        super().__init__(options, seed=seed, device=device)
        from sklearn.datasets import load_digits

        self.options: DigitsOptions = options
        data = load_digits()
        # in the default dtype (float32; float64 where a test asks for exact comparisons)
        images = (torch.from_numpy(data.images / 16.0).unsqueeze(1)).to(torch.get_default_dtype())
        labels = torch.from_numpy(data.target.astype(np.int64))
        order = torch.from_numpy(np.random.default_rng(options.data_seed).permutation(len(labels)))
        n_val = round(options.val_fraction * len(labels))
        self.x_val, self.y_val = images[order[:n_val]], labels[order[:n_val]]
        self.x_train, self.y_train = images[order[n_val:]], labels[order[n_val:]]
        self.loss_fn = PER_SAMPLE_LOSSES[options.loss]

    @property
    def n_train(self) -> int:
        return int(self.y_train.shape[0])

    def build_model(self) -> nn.Module:
        return MODELS[self.options.model]()

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        return epoch_batches(self.x_train, self.y_train, batch_size, generator)

    def per_sample_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self.loss_fn(model(batch.inputs), batch.targets)

    def evaluate(self, model: nn.Module, batch_size: int) -> dict[str, float]:
        return evaluate_in_batches(
            model, self.x_val, self.y_val, self.loss_fn, self.device, correct=top1_correct
        )
