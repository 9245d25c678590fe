r"""RBF-kernel binary classification with the logistic loss (AALIG paper §5.1).

Two feature maps (``options.features``):

* ``"kernel"`` (default; the setup of the benchmark code the AALIG paper reuses, IssamLaradji/sls):
  one feature per training sample, ``φ_j(x) = exp(−||x − x_j||² / (2σ²))`` for every training
  input ``x_j``, precomputed once as the matrices ``K_train = k(X_train, X_train)`` and
  ``K_val = k(X_val, X_train)``; the model is ``f(x) = wᵀφ(x)`` with no bias, as the benchmark's
  ``nn.Linear(n_train, 1, bias=False)``. ``σ`` is ``options.bandwidth``, or by default the
  benchmark's value for a known LIBSVM set or a file whose stem names one (:data:`LIBSVM_SETS`),
  else ``√(d/2)`` (``γ = 1/(2σ²) = 1/d``, scikit-learn's ``rbf_kernel`` default).
* ``"centres"``: ``m = n_centers`` centres drawn from the training inputs (not trained),
  ``φ_j(x) = exp(−γ ||x − c_j||²)`` with ``γ = gamma`` or ``1/d``, and ``f(x) = wᵀφ(x) + b``.

The per-sample loss is the logistic loss ``log(1 + exp(−y f(x)))`` with ``y ∈ {−1, +1}`` (the
benchmark's binary cross-entropy on logits with labels {0, 1} is the same function).

Data: a LIBSVM/svmlight data set named by ``options.dataset`` (e.g. mushrooms, which
interpolates, or ijcnn1, which does not) and read with scikit-learn from the operator's data-set
directory only (:mod:`workers.datasets`, docs/datasets.md), or by default a synthetic set: two
interleaved Gaussian-mixture classes in ``n_features`` dimensions whose labels are flipped with
probability ``label_noise`` (noise makes the problem non-interpolating). Any two distinct label
values in a file are mapped to −1 / +1 (smaller → −1). The validation set is the last
``⌈val_fraction · n⌉`` samples in file order (scikit-learn's
``train_test_split(..., shuffle=False)``, as the benchmark), or, with ``shuffle_split``, a random
subset drawn from ``data_seed``.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from studies.catalog.tasks import RbfClassificationOptions
from workers.datasets import DIRECTORY, resolve_file, verify_manifest
from workers.exceptions import TaskConfigError, TaskDataError
from workers.tasks.base import Batch, Task
from workers.tasks.finite_data import epoch_batches, evaluate_in_batches, sign_correct


@dataclass(frozen=True)
class LibsvmSet:
    """A LIBSVM data set known by name.

    ``files``: the names looked for in the data-set directory, in order (the LIBSVM site's file,
    then its bzip2 form, which scikit-learn reads as well); ``bandwidth``: σ of the benchmark code
    (sls, src/datasets.py); ``stems``: file-name stems (up to the first dot) that get that σ too.
    """

    files: tuple[str, ...]
    bandwidth: float
    stems: tuple[str, ...]


LIBSVM_SETS: dict[str, LibsvmSet] = {
    "mushrooms": LibsvmSet(("mushrooms", "mushrooms.bz2"), 0.5, ("mushrooms",)),
    "ijcnn1": LibsvmSet(("ijcnn1", "ijcnn1.bz2"), 0.05, ("ijcnn", "ijcnn1")),
    "rcv1": LibsvmSet(("rcv1_train.binary", "rcv1_train.binary.bz2"), 0.25, ("rcv1", "rcv1_train")),
    "w8a": LibsvmSet(("w8a", "w8a.bz2"), 20.0, ("w8a",)),
}


def logistic_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample ``log(1 + exp(−y f))`` for logits ``f`` of shape [B, 1] and ``y`` in ±1."""
    return functional.softplus(-targets * outputs.squeeze(1))


def find_libsvm(dataset: str) -> tuple[str, Path]:
    """The file name and resolved path of ``dataset``: a known name's first present file, or
    the file of that name in the data-set directory; a :class:`TaskDataError` when absent."""
    known = LIBSVM_SETS.get(dataset)
    for name in known.files if known else (dataset,):
        path = resolve_file(name)
        if path is not None:
            return name, path
    if known:
        raise TaskDataError(
            f"dataset: {DIRECTORY} has no file for the known data set {dataset!r} (looked for "
            f"{', '.join(known.files)})"
        )
    raise TaskDataError(
        f"dataset: no data set named {dataset!r} (known: {', '.join(LIBSVM_SETS)}; or a file "
        f"name inside {DIRECTORY})"
    )


def read_libsvm(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Dense features and ±1 labels of the LIBSVM/svmlight data set ``dataset``.

    The file is found by :func:`find_libsvm`, checked against the operator's manifest when there
    is one, then parsed. Every failure is a :class:`TaskDataError` that names the data set but
    never quotes the parser's message, which can echo the file's bytes.
    """
    from sklearn.datasets import load_svmlight_file

    name, path = find_libsvm(dataset)
    verify_manifest(name, path)
    label = repr(dataset) if name == dataset else f"{dataset!r} (file {name})"
    try:
        features, labels = load_svmlight_file(str(path))
    except (ValueError, OSError, EOFError):  # bad text, bad bzip2/gzip stream, truncated stream
        # ``from None``: the parser's error (and so the file's content) stays out of tracebacks
        raise TaskDataError(f"dataset: {label} is not a LIBSVM/svmlight file") from None
    classes = np.unique(labels)
    if classes.size != 2:
        raise TaskDataError(
            f"dataset: binary classification needs 2 label values, {label} has {classes.size}"
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


def default_bandwidth(dataset: str | None, n_features: int) -> float:
    """The benchmark's σ for a known data set or a file whose stem names one, else ``√(d/2)``
    (γ = 1/d)."""
    if dataset is not None:
        if dataset in LIBSVM_SETS:
            return LIBSVM_SETS[dataset].bandwidth
        stem = dataset.split(".")[0].lower()
        for known in LIBSVM_SETS.values():
            if stem in known.stems:
                return known.bandwidth
    return math.sqrt(n_features / 2.0)


def rbf_kernel(
    a: torch.Tensor, b: torch.Tensor, bandwidth: float, *, block_entries: int = 1 << 22
) -> torch.Tensor:
    """``exp(−||a_i − b_j||² / (2σ²))`` as a float32 [len(a), len(b)] matrix.

    Distances are computed in float64, ``block_entries`` kernel entries at a time, so the peak
    memory is the float32 result plus one float64 block.
    """
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    b_sq = b64.pow(2).sum(dim=1)
    scale = -1.0 / (2.0 * bandwidth**2)
    # the default dtype: float32, or float64 where a test compares runs exactly
    out = torch.empty(a.shape[0], b.shape[0], dtype=torch.get_default_dtype())
    rows = max(1, block_entries // max(1, b.shape[0]))
    for start in range(0, a.shape[0], rows):
        block = a64[start : start + rows]
        squared = block.pow(2).sum(dim=1, keepdim=True) + b_sq - 2.0 * (block @ b64.T)
        out[start : start + rows] = squared.clamp_(min=0.0).mul_(scale).exp_()
    return out


class KernelModel(nn.Module):
    """``x ↦ wᵀ φ(x) + b`` with fixed RBF centres (a buffer, not trained)."""

    def __init__(self, centres: torch.Tensor, gamma: float) -> None:
        super().__init__()
        self.register_buffer("centres", centres)
        self.gamma = gamma
        self.linear = nn.Linear(centres.shape[0], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.exp(-self.gamma * torch.cdist(x, self.centres).pow(2)))


class PrecomputedKernelModel(nn.Module):
    """``k ↦ wᵀ k`` on a row of the precomputed kernel (one weight per training sample)."""

    def __init__(self, n_train: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_train, 1, bias=False)

    def forward(self, kernel_rows: torch.Tensor) -> torch.Tensor:
        return self.linear(kernel_rows)


class RbfClassification(Task):
    """The task; data, split and centres come from ``options.data_seed``.

    ``x_train`` / ``x_val`` are what the model reads: kernel rows for ``features="kernel"``, the
    raw inputs for ``"centres"``; ``inputs_train`` / ``inputs_val`` are always the raw inputs.
    """

    name = "rbf-classification"

    def __init__(
        self, options: RbfClassificationOptions, *, seed: int, device: torch.device
    ) -> None:
        super().__init__(options, seed=seed, device=device)
        self.options: RbfClassificationOptions = options
        rng = np.random.default_rng(options.data_seed)
        if options.dataset is not None:
            features, labels = read_libsvm(options.dataset)
        else:
            features, labels = synthetic(options, rng)
        n = labels.shape[0]
        n_val = max(1, math.ceil(options.val_fraction * n))  # train_test_split's rule
        if n - n_val < 2:
            raise TaskDataError("dataset: too few samples for a train/validation split")
        if options.shuffle_split:
            order = rng.permutation(n)
            val, train = order[:n_val], order[n_val:]
        else:
            train, val = np.arange(n - n_val), np.arange(n - n_val, n)
        dtype = torch.get_default_dtype()  # float32 unless a test asks for float64
        x, y = torch.from_numpy(features).to(dtype), torch.from_numpy(labels).to(dtype)
        self.inputs_train, self.y_train = x[train], y[train]
        self.inputs_val, self.y_val = x[val], y[val]
        d = features.shape[1]
        if options.features == "kernel":
            n_train = train.size
            if n_train > options.max_kernel_samples:
                gigabytes = n_train * n * 4 / 1e9
                raise TaskConfigError(
                    f"max_kernel_samples: features='kernel' needs a {n_train}×{n_train} kernel "
                    f"over the training set (with validation rows {gigabytes:.1f} GB in float32), "
                    f"more than max_kernel_samples={options.max_kernel_samples} training samples; "
                    "use features='centres' (n_centers) or raise max_kernel_samples"
                )
            self.bandwidth = options.bandwidth or default_bandwidth(options.dataset, d)
            self.gamma = 1.0 / (2.0 * self.bandwidth**2)
            self.centres = None
            self.x_train = rbf_kernel(self.inputs_train, self.inputs_train, self.bandwidth)
            self.x_val = rbf_kernel(self.inputs_val, self.inputs_train, self.bandwidth)
        else:
            self.gamma = options.gamma or 1.0 / d
            self.bandwidth = math.sqrt(1.0 / (2.0 * self.gamma))
            n_centres = min(options.n_centers, train.size)
            chosen = torch.from_numpy(rng.permutation(train.size)[:n_centres])
            self.centres = self.inputs_train[chosen]
            self.x_train, self.x_val = self.inputs_train, self.inputs_val

    @property
    def n_train(self) -> int:
        return int(self.y_train.shape[0])

    def build_model(self) -> nn.Module:
        if self.centres is None:
            return PrecomputedKernelModel(self.n_train)
        return KernelModel(self.centres.clone(), self.gamma)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        return epoch_batches(self.x_train, self.y_train, batch_size, generator)

    def per_sample_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return logistic_loss(model(batch.inputs), batch.targets)

    def evaluate(self, model: nn.Module, batch_size: int) -> dict[str, float]:
        return evaluate_in_batches(
            model, self.x_val, self.y_val, logistic_loss, self.device, correct=sign_correct
        )
