"""CIFAR-10/100 and SVHN tasks on tiny data sets written in torchvision's on-disk formats.

The files go through the real torchvision readers (no mocks): CIFAR as pickled dicts of a
``uint8 [N, 3072]`` array (R plane, G plane, B plane, each row-major 32×32) and labels, SVHN as
MATLAB files with ``X`` of shape ``(32, 32, 3, N)`` and ``y`` of shape ``(N, 1)`` in 1..10. They
lie in the task's folder of a test data-set directory, and torchvision's md5 checks are on: the
tests that read them make torchvision expect the fixtures' md5s (``trust_fixture``).
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from studies.catalog.tasks import DigitsOptions, ImageClassificationOptions
from tests.workers.fake_datasets import (
    random_images,
    trust_fixture,
    use_datasets_dir,
    write_cifar10,
    write_dataset,
)
from workers.exceptions import TaskConfigError, TaskDataError
from workers.tasks.image_classification import (
    IMAGE_CLASSIFICATION_TASKS,
    Cifar10Task,
    Cifar100Task,
    ImageClassificationTask,
    SvhnTask,
    random_crop_flip,
)

CPU = torch.device("cpu")
MakeTask = Callable[..., ImageClassificationTask]


@pytest.fixture
def datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The data-set directory of the test (downloads off)."""
    return use_datasets_dir(monkeypatch, tmp_path / "datasets")


@pytest.fixture
def make_task(datasets: Path, monkeypatch: pytest.MonkeyPatch) -> MakeTask:
    """``make_task(name, n_train=50, n_test=20, trusted=True, **options)``: a fixture of
    ``name`` in the data-set directory and the task reading it."""

    def make(
        name: str, n_train: int = 50, n_test: int = 20, trusted: bool = True, **options: object
    ) -> ImageClassificationTask:
        write_dataset(monkeypatch, datasets, name, n_train, n_test, trusted=trusted)
        opts = ImageClassificationOptions(**options)
        return IMAGE_CLASSIFICATION_TASKS[name](opts, seed=0, device=CPU)

    return make


@pytest.fixture
def cifar10(make_task: MakeTask) -> ImageClassificationTask:
    return make_task("cifar10")


def test_registry_names() -> None:
    assert {name: cls.num_classes for name, cls in IMAGE_CLASSIFICATION_TASKS.items()} == {
        "cifar10": 10,
        "cifar100": 100,
        "svhn": 10,
    }
    assert Cifar10Task.name == "cifar10" and Cifar100Task.name == "cifar100"
    assert SvhnTask.name == "svhn" and not SvhnTask.flip


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn"])
def test_loads_through_torchvision(make_task: MakeTask, name: str) -> None:
    task = make_task(name, augment=False)
    assert task.root == task.root.parent / name  # the task's folder of the directory
    assert task.n_train == 50
    train, test = task.split(train=True), task.split(train=False)
    assert train.images.shape == (50, 3, 32, 32) and train.images.dtype == torch.uint8
    assert torch.equal(train.images, torch.from_numpy(random_images(50, 1)))
    assert torch.equal(test.images, torch.from_numpy(random_images(20, 2)))
    classes = task.num_classes
    assert train.labels.tolist() == [i % classes for i in range(50)]
    assert test.labels.tolist() == [(3 * i) % classes for i in range(20)]
    assert train.labels.dtype == torch.int64


def test_svhn_label_ten_is_digit_zero(make_task: MakeTask) -> None:
    task = make_task("svhn")
    labels = task.split(train=True).labels
    assert labels.min().item() == 0 and labels.max().item() == 9
    assert labels[0].item() == 0  # written as 10 in the .mat file


@pytest.mark.parametrize(
    ("name", "what", "first"),
    [
        ("cifar10", "CIFAR-10", "cifar10/cifar-10-batches-py/data_batch_1"),
        ("cifar100", "CIFAR-100", "cifar100/cifar-100-python/train"),
        ("svhn", "SVHN", "svhn/train_32x32.mat"),
    ],
)
def test_md5_checks_are_on(make_task: MakeTask, name: str, what: str, first: str) -> None:
    """Files that are not the official ones (the fixtures, untrusted) are refused by name."""
    task = make_task(name, trusted=False)
    with pytest.raises(TaskDataError, match="md5") as error:
        _ = task.n_train
    message = str(error.value)
    assert what in message and first in message
    assert str(task.root.parent) not in message  # only paths relative to the directory


@pytest.mark.parametrize(
    ("name", "what", "folder"),
    [("cifar10", "CIFAR-10", "cifar10/"), ("cifar100", "CIFAR-100", "cifar100/"),
     ("svhn", "SVHN", "svhn/")],
)  # fmt: skip
def test_missing_files_clear_error(datasets: Path, name: str, what: str, folder: str) -> None:
    task = IMAGE_CLASSIFICATION_TASKS[name](ImageClassificationOptions(), seed=0, device=CPU)
    with pytest.raises(TaskDataError) as error:
        _ = task.n_train
    message = str(error.value)
    assert what in message and folder in message and "download=true" in message
    assert str(datasets) not in message


def test_one_missing_batch_named(make_task: MakeTask, datasets: Path) -> None:
    task = make_task("cifar10")
    (datasets / "cifar10" / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(TaskDataError, match=r"missing cifar10/cifar-10-batches-py/data_batch_3\. "):
        _ = task.n_train


def test_data_root_is_refused_with_a_hint() -> None:
    with pytest.raises(ValidationError, match=r"data_root\n.*removed.*data-set directory"):
        ImageClassificationOptions(data_root="/tmp")
    assert "data_root" not in ImageClassificationOptions().model_dump()
    assert "data_root" not in ImageClassificationOptions.model_json_schema()["properties"]


def test_download_needs_the_operators_permission(
    make_task: MakeTask, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(TaskConfigError, match="download: downloads are disabled"):
        Cifar10Task(ImageClassificationOptions(download=True), seed=0, device=CPU)
    # allowed: torchvision's download() finds the (trusted) files in place and fetches nothing
    monkeypatch.setenv("SENSITIVITY_ALLOW_DOWNLOADS", "true")
    assert make_task("cifar10", download=True).n_train == 50


def test_wrong_options_type() -> None:
    with pytest.raises(TypeError, match="ImageClassificationOptions"):
        Cifar10Task(DigitsOptions(), seed=0, device=CPU)


def test_subsets_take_the_first_images(make_task: MakeTask) -> None:
    task = make_task("cifar100", train_subset=7, val_subset=3)
    assert task.n_train == 7
    assert torch.equal(task.split(train=True).images, torch.from_numpy(random_images(50, 1)[:7]))
    assert len(task.split(train=False)) == 3
    assert make_task("cifar10", train_subset=500).n_train == 50


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn"])
def test_normalisation_of_a_known_pixel(make_task: MakeTask, name: str) -> None:
    task = make_task(name, augment=False)
    images = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    images[0, 0, 5, 7], images[0, 1, 5, 7], images[0, 2, 5, 7] = 255, 100, 0
    out = task.normalise(images)
    assert out.dtype == torch.float32
    for channel, value in enumerate((255, 100, 0)):
        expected = (value / 255 - task.mean[channel]) / task.std[channel]
        assert out[0, channel, 5, 7].item() == pytest.approx(expected, abs=1e-5)
    assert out[0, 0, 0, 0].item() == pytest.approx(-task.mean[0] / task.std[0], abs=1e-5)
    # CIFAR-10's published statistics (WRN / DFW code)
    if name == "cifar10":
        assert out[0, 0, 5, 7].item() == pytest.approx((255 - 125.3) / 63.0, abs=1e-5)


def test_epoch_covers_training_set_once(cifar10: ImageClassificationTask) -> None:
    batches = list(cifar10.train_batches(16, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [16, 16, 16, 2]  # last partial batch kept
    indices = torch.cat([b.indices for b in batches])
    assert sorted(indices.tolist()) == list(range(50))
    assert not torch.equal(indices, torch.arange(50))  # shuffled
    labels = cifar10.split(train=True).labels
    for batch in batches:
        assert batch.inputs.shape == (len(batch), 3, 32, 32)
        assert batch.inputs.dtype == torch.float32
        assert torch.equal(batch.targets, labels[batch.indices])


def test_without_augmentation_inputs_are_the_normalised_images(make_task: MakeTask) -> None:
    task = make_task("cifar10", augment=False)
    images = task.split(train=True).images
    for batch in task.train_batches(32, torch.Generator().manual_seed(3)):
        assert torch.equal(batch.inputs, task.normalise(images[batch.indices]))


def test_augmentation_reproducible_and_changes_images(cifar10: ImageClassificationTask) -> None:
    def epoch(seed: int) -> list[torch.Tensor]:
        return [b.inputs for b in cifar10.train_batches(16, torch.Generator().manual_seed(seed))]

    first, again, other = epoch(5), epoch(5), epoch(6)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    batch = next(cifar10.train_batches(50, torch.Generator().manual_seed(5)))
    plain = cifar10.normalise(cifar10.split(train=True).images[batch.indices])
    assert batch.inputs.shape == plain.shape and not torch.equal(batch.inputs, plain)


def _is_crop(out: torch.Tensor, image: torch.Tensor, allow_flip: bool) -> bool:
    padded = F.pad(image, (4, 4, 4, 4))
    for dy in range(9):
        for dx in range(9):
            window = padded[:, dy : dy + 32, dx : dx + 32]
            if torch.equal(out, window) or (allow_flip and torch.equal(out, window.flip(-1))):
                return True
    return False


@pytest.mark.parametrize("flip", [True, False])
def test_random_crop_flip_is_a_padded_crop(flip: bool) -> None:
    images = torch.from_numpy(random_images(12, 4)) | 1  # no zero pixels: padding is visible
    out = random_crop_flip(images, torch.Generator().manual_seed(0), flip=flip)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert all(_is_crop(o, i, allow_flip=flip) for o, i in zip(out, images, strict=True))
    assert (out == 0).any()  # some crop shows the black padding
    # with a fixed crop offset, a mirrored image is the flip of an unmirrored one
    flipped = [not _is_crop(o, i, allow_flip=False) for o, i in zip(out, images, strict=True)]
    assert any(flipped) == flip


def test_per_sample_loss_and_hinge_option(make_task: MakeTask) -> None:
    task = make_task("cifar10", loss="hinge", augment=False)
    torch.manual_seed(0)
    model = task.build_model()
    batch = next(task.train_batches(8, torch.Generator().manual_seed(0)))
    losses = task.per_sample_loss(model, batch)
    assert losses.shape == (8,) and (losses >= 0).all()
    logits = model(batch.inputs)
    scores = logits - logits.gather(1, batch.targets[:, None]) + 1.0
    scores.scatter_(1, batch.targets[:, None], 0.0)
    assert torch.allclose(losses, scores.amax(dim=1), atol=1e-5)


class _Recorder(nn.Module):
    """A fixed linear classifier on the mean of each channel that records its modes."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 10)
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return self.linear(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("loss", ["ce", "hinge"])
def test_evaluate_on_the_test_split(make_task: MakeTask, loss: str) -> None:
    task = make_task("cifar10", loss=loss, val_subset=15)
    torch.manual_seed(0)
    model = _Recorder()
    metrics = task.evaluate(model, batch_size=4)
    assert model.modes == [False] * 4  # ceil(15 / 4) batches, all in eval mode
    assert model.training  # train mode restored
    test = task.split(train=False)
    with torch.no_grad():
        logits = model(task.normalise(test.images))
    expected_loss = {
        "ce": F.cross_entropy(logits, test.labels),
        "hinge": (
            (logits - logits.gather(1, test.labels[:, None]) + 1.0)
            .scatter(1, test.labels[:, None], 0.0)
            .amax(dim=1)
            .mean()
        ),
    }[loss]
    assert metrics["val_loss"] == pytest.approx(expected_loss.item(), rel=1e-5)
    accuracy = (logits.argmax(1) == test.labels).float().mean().item()
    assert metrics["val_accuracy"] == pytest.approx(accuracy)
    model.eval()
    task.evaluate(model, batch_size=100)
    assert not model.training  # the previous mode, whatever it was


@pytest.mark.parametrize(
    ("name", "model", "classes"),
    [("cifar100", "resnet8", 100), ("svhn", "wrn-16-4", 10)],
)
def test_build_model_uses_options(make_task: MakeTask, name: str, model: str, classes: int) -> None:
    task = make_task(name, model=model, dropout=0.3)
    net = task.build_model()
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, classes)
    dropouts = [m.p for m in net.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and set(dropouts) == {0.3}


def test_resnet8_learns_a_learnable_labelling(
    datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """64 noisy images whose class is the quadrant holding a bright square: SGD fits it."""
    rng = np.random.default_rng(0)
    n = 64
    images = rng.integers(0, 100, (n, 3, 32, 32), dtype=np.uint8)
    labels = [i % 4 for i in range(n)]
    for i, quadrant in enumerate(labels):
        top, left = 16 * (quadrant // 2), 16 * (quadrant % 2)
        images[i, :, top + 4 : top + 12, left + 4 : left + 12] = 255
    write_cifar10(datasets / "cifar10", images, labels, images[:16], labels[:16])
    trust_fixture(monkeypatch, "cifar10", datasets / "cifar10")
    options = ImageClassificationOptions(augment=False)
    task = Cifar10Task(options, seed=0, device=CPU)
    torch.manual_seed(0)
    model = task.build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    history: list[float] = []
    while len(history) < 30:
        for batch in task.train_batches(16, generator):
            loss = task.per_sample_loss(model, batch).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history.append(loss.item())
    first, last = np.mean(history[:4]), np.mean(history[-4:])
    assert last < 0.5 * first, history
