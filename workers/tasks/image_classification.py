"""CIFAR-10, CIFAR-100 and SVHN classification tasks (docs/algorithms.md, "cifar10, …").

Data: torchvision's own ``CIFAR10`` / ``CIFAR100`` / ``SVHN`` classes, md5 checks included, read
a fixed folder of the operator's data-set directory (:func:`workers.datasets.image_root`,
docs/datasets.md) in torchvision's on-disk layout: ``<datasets_dir>/cifar10/cifar-10-batches-py/``,
``<datasets_dir>/cifar100/cifar-100-python/``, ``<datasets_dir>/svhn/{train,test}_32x32.mat``.
No spec chooses a directory, and torchvision checks every file's md5 before it unpickles any, so
only the official files under the operator's directory ever reach ``pickle``. ``download: true``
is refused unless the operator allows downloads. Training uses the whole train split (SVHN:
without "extra"), evaluation the test split; ``train_subset`` / ``val_subset`` keep the first N
images (all of them when N exceeds the split). Each split is read once, on first use, into a uint8
tensor ``[N, 3, 32, 32]`` plus int64 labels on the task's device (50k CIFAR images are 150 MB), and
every batch is augmented and normalised on the fly with tensor ops, so no per-image PIL work and
no DataLoader workers are needed.

Per batch (``x`` in {0..255}):

- augmentation (training only, when ``options.augment``): the image is zero-padded by 4 pixels on
  each side (black, as torchvision's ``RandomCrop(32, padding=4)`` pads before normalisation), a
  32×32 window with offsets ``(dy, dx) ~ U{0..8}²`` is cropped, and for CIFAR it is mirrored
  left-right with probability 1/2 (not for SVHN: digits are not mirror-symmetric). All draws
  come from the trainer's generator, so an epoch is reproducible from its seed.
- normalisation per channel c: ``(x / 255 − mean_c) / std_c`` with each data set's standard
  training-set statistics.

``train_batches`` yields one epoch in a random order (``randperm`` from the generator), the last
partial batch included, with ``indices`` = positions in the (subset) training set, which AALIG
uses to keep one approximate optimal value per sample. The loss is ``options.loss`` from
``PER_SAMPLE_LOSSES`` (cross-entropy, or the multi-class hinge that turns ALI-G into DFW).
"""

from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torchvision.datasets import CIFAR10, CIFAR100, SVHN
from torchvision.datasets.utils import check_integrity

from studies.catalog.tasks import ImageClassificationOptions, TaskOptions
from workers.datasets import DIRECTORY, image_root, require_downloads_allowed
from workers.exceptions import TaskDataError
from workers.tasks.base import Batch, Task
from workers.tasks.image_models import build_image_model
from workers.tasks.losses import PER_SAMPLE_LOSSES

PADDING = 4  # random-crop padding in pixels (on each side)


@dataclass(frozen=True)
class ImageSplit:
    """One split in memory: uint8 images ``[N, C, H, W]`` and int64 labels ``[N]``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def random_crop_flip(
    images: torch.Tensor, generator: torch.Generator, padding: int = PADDING, flip: bool = True
) -> torch.Tensor:
    """Per-image random crop of the zero-padded batch (same size), then an optional mirror.

    ``images`` is ``[B, C, H, W]`` of any dtype; offsets ``(dy, dx) ~ U{0..2·padding}²`` and (with
    ``flip``) a fair coin per image are drawn from ``generator``, in that order. One gather does
    crop and mirror together: output column j reads padded column ``dx + j``, or ``dx + W − 1 − j``
    when mirrored.
    """
    count, channels, height, width = images.shape
    device = images.device
    offsets = torch.randint(
        0, 2 * padding + 1, (2, count), generator=generator, device=generator.device
    ).to(device)
    padded = nn.functional.pad(images, (padding, padding, padding, padding))
    rows = offsets[0, :, None] + torch.arange(height, device=device)  # [B, H]
    cols = offsets[1, :, None] + torch.arange(width, device=device)  # [B, W]
    if flip:
        mirror = torch.rand(count, generator=generator, device=generator.device).to(device) < 0.5
        cols = torch.where(mirror[:, None], cols.flip(1), cols)
    batch_index = torch.arange(count, device=device)[:, None, None, None]
    channel_index = torch.arange(channels, device=device)[None, :, None, None]
    return padded[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]


class ImageClassificationTask(Task):
    """Shared data handling; subclasses name the data set and how torchvision reads it.

    Not packable: the networks' batch norms update running statistics in place, which a
    vectorised pack (``torch.func.vmap``) cannot do per member.

    The data folder is fixed at construction (``image_root(name)``), and a ``download: true``
    the operator does not allow is a :class:`~workers.exceptions.TaskConfigError` there, before
    anything is read. Missing files, files failing torchvision's md5 check and failed downloads
    are :class:`~workers.exceptions.TaskDataError` on first use of the data; their messages name
    files relative to the data-set directory only.
    """

    packable = False

    label: ClassVar[str]  # the data set's name in messages
    num_classes: ClassVar[int]
    mean: ClassVar[tuple[float, float, float]]  # per-channel mean of x / 255 (training set)
    std: ClassVar[tuple[float, float, float]]  # per-channel standard deviation of x / 255
    flip: ClassVar[bool] = True  # mirror augmentation
    layout: ClassVar[str]  # the files torchvision expects, for the missing-data message

    def __init__(self, options: TaskOptions, *, seed: int, device: torch.device) -> None:
        if not isinstance(options, ImageClassificationOptions):
            raise TypeError(
                f"{self.name} needs ImageClassificationOptions, got {type(options).__name__}"
            )
        super().__init__(options, seed=seed, device=torch.device(device))
        self.options: ImageClassificationOptions = options
        if options.download:
            require_downloads_allowed()
        self.root = image_root(self.name)  # the task's folder of the operator's directory
        # (x / 255 − mean) / std  ==  x · scale − shift, per channel
        std = torch.tensor(self.std, device=self.device).view(1, -1, 1, 1)
        mean = torch.tensor(self.mean, device=self.device).view(1, -1, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = mean / std
        self._loss = PER_SAMPLE_LOSSES[options.loss]
        self._splits: dict[bool, ImageSplit] = {}  # train? -> split, read on first use

    # ------------------------------------------------------------------ data set specifics

    @abstractmethod
    def checked_files(self, root: Path) -> list[tuple[Path, str]]:
        """Every file torchvision reads for this data set under ``root``, with its md5."""

    def required_files(self, root: Path) -> list[Path]:
        """Every file torchvision reads for this data set under ``root``."""
        return [path for path, _md5 in self.checked_files(root)]

    @abstractmethod
    def _read(self, root: Path, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images ``[N, 3, 32, 32]`` and integer labels ``[N]`` of one split."""

    # ------------------------------------------------------------------ data

    def split(self, train: bool) -> ImageSplit:
        """The training (``train=True``) or test split, subset applied, on the task's device."""
        if train not in self._splits:
            self._splits[train] = self._load(train)
        return self._splits[train]

    def _shown(self, path: Path) -> str:
        """``path`` relative to the data-set directory: messages show no other location."""
        return path.relative_to(self.root.parent).as_posix()

    def _load(self, train: bool) -> ImageSplit:
        root, download = self.root, self.options.download
        if not download:
            missing = [
                self._shown(path) for path in self.required_files(root) if not path.is_file()
            ]
            if missing:
                raise TaskDataError(
                    f"{self.label} data set not found in {DIRECTORY}: missing "
                    f"{', '.join(missing)}. The operator puts torchvision's files there "
                    f"({self.layout}), or allows downloads (SENSITIVITY_ALLOW_DOWNLOADS) so that "
                    "download=true fetches them."
                )
        try:
            images, labels = self._read(root, train, download)
        except RuntimeError:
            # torchvision's "not found or corrupted": a file failed its md5 check, so nothing
            # was unpickled. Name the files (hashing again only on this error path).
            corrupted = [
                self._shown(path)
                for path, md5 in self.checked_files(root)
                if path.is_file() and not check_integrity(str(path), md5)
            ]
            if not corrupted:
                if not download:
                    raise
                # the downloaded archive itself failed its md5 check
                raise TaskDataError(
                    f"download: torchvision could not fetch a verified copy of {self.label} "
                    f"into {DIRECTORY}"
                ) from None
            raise TaskDataError(
                f"{self.label} data set refused: {', '.join(corrupted)} failed torchvision's md5 "
                "check (not the official files), so nothing was read; the operator must put the "
                "official files there"
            ) from None
        except OSError as error:  # the network or a read-only directory; an unreadable file
            if download:
                raise TaskDataError(
                    f"download: torchvision could not fetch {self.label} into {DIRECTORY} "
                    f"({type(error).__name__})"
                ) from None
            raise TaskDataError(
                f"{self.label} data set in {DIRECTORY} could not be read ({type(error).__name__})"
            ) from None
        limit = self.options.train_subset if train else self.options.val_subset
        # copy only the kept rows, then ship them once to the device
        images_t = torch.from_numpy(np.ascontiguousarray(images[:limit], dtype=np.uint8))
        labels_t = torch.from_numpy(np.asarray(labels[:limit], dtype=np.int64))
        return ImageSplit(images_t.to(self.device), labels_t.to(self.device))

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """float32 ``(x / 255 − mean_c) / std_c`` of a uint8 batch."""
        return images.to(self._scale.device, torch.float32) * self._scale - self._shift

    # ------------------------------------------------------------------ Task interface

    @property
    def n_train(self) -> int:
        return len(self.split(train=True))

    def build_model(self) -> nn.Module:
        return build_image_model(
            self.options.model,
            self.num_classes,
            in_channels=len(self.mean),
            dropout=self.options.dropout,
        ).to(self.device)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        data = self.split(train=True)
        order = torch.randperm(len(data), generator=generator, device=generator.device)
        for start in range(0, len(data), batch_size):
            indices = order[start : start + batch_size]
            rows = indices.to(data.images.device)
            images = data.images[rows]
            if self.options.augment:
                images = random_crop_flip(images, generator, flip=self.flip)
            yield Batch(
                inputs=self.normalise(images), targets=data.labels[rows], indices=indices.cpu()
            )

    def per_sample_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self._loss(model(batch.inputs), batch.targets)

    def evaluate(self, model: nn.Module, batch_size: int) -> dict[str, float]:
        """Mean loss (``options.loss``) and accuracy on the test split, in eval mode."""
        data = self.split(train=False)
        was_training = model.training
        model.eval()  # BN running statistics, no dropout
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        try:
            with torch.no_grad():
                for start in range(0, len(data), batch_size):
                    labels = data.labels[start : start + batch_size]
                    logits = model(self.normalise(data.images[start : start + batch_size]))
                    # accumulate on the device: one host sync at the end, not one per batch
                    total_loss += self._loss(logits.float(), labels).sum()
                    correct += (logits.argmax(dim=1) == labels).sum()
        finally:
            model.train(was_training)
        count = max(len(data), 1)
        return {"val_loss": total_loss.item() / count, "val_accuracy": correct.item() / count}


class _CifarTask(ImageClassificationTask):
    """CIFAR-10/100: pickled batches under ``root / base_folder``."""

    # torchvision's class, unmodified: its md5 checks run before any batch is unpickled
    dataset_class: ClassVar[type[CIFAR10]]

    def checked_files(self, root: Path) -> list[tuple[Path, str]]:
        dataset = self.dataset_class
        files = [(name, md5) for name, md5 in dataset.train_list + dataset.test_list]
        files.append((dataset.meta["filename"], dataset.meta["md5"]))
        return [(root / dataset.base_folder / name, md5) for name, md5 in files]

    def _read(self, root: Path, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
        dataset: Any = self.dataset_class(root=root, train=train, download=download)
        # torchvision keeps CIFAR as HWC for PIL; back to CHW
        return dataset.data.transpose(0, 3, 1, 2), np.asarray(dataset.targets)


class Cifar10Task(_CifarTask):
    """CIFAR-10: 50k training / 10k test 32×32 colour images, 10 classes."""

    name = "cifar10"
    label = "CIFAR-10"
    num_classes = 10
    # the statistics of the WRN and DFW/ALI-G reference code
    mean = (125.3 / 255, 123.0 / 255, 113.9 / 255)
    std = (63.0 / 255, 62.1 / 255, 66.7 / 255)
    dataset_class = CIFAR10
    layout = "cifar10/cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta"


class Cifar100Task(_CifarTask):
    """CIFAR-100: 50k training / 10k test 32×32 colour images, 100 fine classes."""

    name = "cifar100"
    label = "CIFAR-100"
    num_classes = 100
    mean = (129.3 / 255, 124.1 / 255, 112.4 / 255)
    std = (68.2 / 255, 65.4 / 255, 70.4 / 255)
    dataset_class = CIFAR100
    layout = "cifar100/cifar-100-python/ with train, test and meta"


class SvhnTask(ImageClassificationTask):
    """SVHN: 73,257 training / 26,032 test 32×32 digit crops, 10 classes (label 0 = digit 0)."""

    name = "svhn"
    label = "SVHN"
    num_classes = 10
    mean = (0.4377, 0.4438, 0.4728)
    std = (0.1980, 0.2010, 0.1970)
    flip = False
    layout = "svhn/ with train_32x32.mat and test_32x32.mat"
    # torchvision's class, unmodified: it md5-checks the .mat file before scipy reads it
    dataset_class: ClassVar[type[SVHN]] = SVHN

    def checked_files(self, root: Path) -> list[tuple[Path, str]]:
        entries = [self.dataset_class.split_list[split] for split in ("train", "test")]
        return [(root / name, md5) for _url, name, md5 in entries]

    def _read(self, root: Path, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
        split = "train" if train else "test"
        dataset = self.dataset_class(root=root, split=split, download=download)
        # torchvision already maps the .mat label 10 to class 0 and stores CHW
        return dataset.data, dataset.labels


IMAGE_CLASSIFICATION_TASKS: dict[str, type[ImageClassificationTask]] = {
    task.name: task for task in (Cifar10Task, Cifar100Task, SvhnTask)
}
