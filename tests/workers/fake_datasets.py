"""Tiny data sets in torchvision's on-disk formats, written by tests (no download ever).

CIFAR as pickled dicts of a ``uint8 [N, 3072]`` array (R plane, G plane, B plane, each row-major
32×32) and labels, SVHN as MATLAB files with ``X`` of shape ``(32, 32, 3, N)`` and ``y`` of shape
``(N, 1)`` in 1..10.

Tasks read only the operator's data-set directory (``SENSITIVITY_DATASETS_DIR``), in the task's
folder (``<dir>/cifar10`` …): :func:`use_datasets_dir` points the settings at a test directory and
:func:`write_dataset` writes a fixture there. torchvision's md5 checks are on, and the fixtures are
not the official files, so :func:`trust_fixture` makes torchvision expect the fixtures' md5s, for
one test only (``monkeypatch`` undoes it).
"""

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from torchvision.datasets import CIFAR10, CIFAR100, SVHN


def _pickle(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(obj, f)


def random_images(n: int, seed: int) -> np.ndarray:
    """uint8 images [N, 3, 32, 32]."""
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def write_cifar10(
    root: Path, train: np.ndarray, train_labels: list[int], test: np.ndarray, test_labels: list[int]
) -> None:
    """Five training batches (split evenly), one test batch and the meta file."""
    folder = root / "cifar-10-batches-py"
    for part, (images, labels) in enumerate(
        zip(np.array_split(train, 5), np.array_split(np.asarray(train_labels), 5), strict=True)
    ):
        # str keys: torchvision unpickles with encoding="latin1" and indexes entry["data"]
        _pickle(
            folder / f"data_batch_{part + 1}",
            {"data": images.reshape(len(images), -1), "labels": labels.tolist()},
        )
    _pickle(folder / "test_batch", {"data": test.reshape(len(test), -1), "labels": test_labels})
    _pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})


def write_cifar100(
    root: Path, train: np.ndarray, train_labels: list[int], test: np.ndarray, test_labels: list[int]
) -> None:
    folder = root / "cifar-100-python"
    for name, images, labels in [("train", train, train_labels), ("test", test, test_labels)]:
        _pickle(
            folder / name,
            {
                "data": images.reshape(len(images), -1),
                "fine_labels": labels,
                "coarse_labels": [label // 5 for label in labels],
            },
        )
    _pickle(
        folder / "meta",
        {
            "fine_label_names": [f"fine{i}" for i in range(100)],
            "coarse_label_names": [f"coarse{i}" for i in range(20)],
        },
    )


def write_svhn(
    root: Path, train: np.ndarray, train_digits: list[int], test: np.ndarray, test_digits: list[int]
) -> None:
    """The .mat files store HWCN images and the digit 0 as label 10."""
    root.mkdir(parents=True, exist_ok=True)
    for name, images, digits in [("train", train, train_digits), ("test", test, test_digits)]:
        mat_labels = np.array([[10 if d == 0 else d] for d in digits], dtype=np.uint8)
        scipy.io.savemat(
            root / f"{name}_32x32.mat", {"X": images.transpose(2, 3, 1, 0), "y": mat_labels}
        )


WRITERS = {"cifar10": write_cifar10, "cifar100": write_cifar100, "svhn": write_svhn}


def use_datasets_dir(monkeypatch: pytest.MonkeyPatch, directory: Path) -> Path:
    """Make ``directory`` (created) the data-set directory, with downloads off; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("SENSITIVITY_DATASETS_DIR", str(directory))
    monkeypatch.delenv("SENSITIVITY_ALLOW_DOWNLOADS", raising=False)
    return directory


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def trust_fixture(monkeypatch: pytest.MonkeyPatch, name: str, root: Path) -> None:
    """Make torchvision's reader of ``name`` expect the md5s of the files under ``root`` (the
    task's folder), for this test only."""
    if name == "svhn":
        split_list = {  # the "extra" split is never written (nor read)
            split: [url, file, _md5(root / file) if split != "extra" else md5]
            for split, (url, file, md5) in SVHN.split_list.items()
        }
        monkeypatch.setattr(SVHN, "split_list", split_list)
        return
    reader = {"cifar10": CIFAR10, "cifar100": CIFAR100}[name]
    folder = root / reader.base_folder
    for attribute in ("train_list", "test_list"):
        files = [[file, _md5(folder / file)] for file, _ in getattr(reader, attribute)]
        monkeypatch.setattr(reader, attribute, files)
    meta = {**reader.meta, "md5": _md5(folder / reader.meta["filename"])}
    monkeypatch.setattr(reader, "meta", meta)


def write_dataset(
    monkeypatch: pytest.MonkeyPatch,
    datasets: Path,
    name: str,
    n_train: int,
    n_test: int,
    *,
    trusted: bool = True,
) -> Path:
    """A fixture of ``name`` in ``datasets/<name>`` with the labels ``i % classes`` (train) and
    ``3i % classes`` (test) and the images ``random_images(n, 1)`` / ``random_images(n, 2)``;
    torchvision trusts it unless ``trusted`` is false. Returns the task's folder."""
    classes = 100 if name == "cifar100" else 10
    root = datasets / name
    WRITERS[name](
        root,
        random_images(n_train, 1),
        [i % classes for i in range(n_train)],
        random_images(n_test, 2),
        [(3 * i) % classes for i in range(n_test)],
    )
    if trusted:
        trust_fixture(monkeypatch, name, root)
    return root
