"""Data sets by name, never by path: what a study spec can make a worker read, and what a trial's
failure reason (readable by every API client) can reveal.

Every test runs against a fresh data-set directory (``SENSITIVITY_DATASETS_DIR``) with downloads
off, and keeps a secret next to it, outside, that no spec may reach.
"""

import bz2
import pickle
import traceback
from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
from sklearn.datasets import dump_svmlight_file

from studies.catalog.tasks import ImageClassificationOptions, RbfClassificationOptions
from studies.exceptions import SpecError
from studies.spec import parse_spec
from tests.workers.fake_datasets import use_datasets_dir, write_dataset
from workers.datasets import sha256
from workers.exceptions import TaskConfigError, TaskDataError
from workers.tasks.image_classification import Cifar10Task
from workers.tasks.rbf_classification import RbfClassification
from workers.trainer import run_trial

SECRET = "hunter2-SECRET-7f3a"


def write_libsvm(path: Path, n: int = 40) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    dump_svmlight_file(x, np.where(x[:, 0] > 0, 1, -1), str(path))


@pytest.fixture
def datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return use_datasets_dir(monkeypatch, tmp_path / "datasets")


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A valid LIBSVM file outside the data-set directory: reading it would succeed."""
    path = tmp_path / "secret"
    write_libsvm(path)
    return path


@pytest.fixture
def parser_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file scikit-learn's LIBSVM parser is asked to read."""
    calls: list[str] = []
    real = sklearn.datasets.load_svmlight_file

    def spy(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(sklearn.datasets, "load_svmlight_file", spy)
    return calls


def rbf(**options: object) -> RbfClassification:
    """The task built from options that skip the catalog's checks: the worker's own must hold."""
    return RbfClassification(
        RbfClassificationOptions.model_construct(**options), seed=0, device="cpu"
    )


def spec(task: str, options: dict) -> dict:
    return {
        "task": task,
        "task_options": options,
        "optimizers": ["sgd"],
        "grid": {"eta": [0.1], "batch_size": [16], "seed": [0]},
        "budget": {"epochs": 1},
        "device": "cpu",
    }


def rbf_trial(dataset: str) -> dict:
    """A two-epoch SGD trial on ``dataset``, as a study would hand it to a worker."""
    return {
        "task": "rbf-classification",
        "task_options": {"dataset": dataset},
        "optimizer": "sgd",
        "eta": 0.1,
        "batch_size": 16,
        "budget": 2,
        "device": "cpu",
    }


def full_text(error: BaseException) -> str:
    """The message and the whole printed traceback, chained exceptions included."""
    return "".join(traceback.format_exception(error))


# --- names that are paths: refused at submit (422) and again by the worker ----------------------


@pytest.mark.parametrize("name", ["../secret", "/etc/passwd", "sub/file", "..", ".hidden", ""])
def test_a_path_as_dataset_is_a_422_at_submit(name):
    with pytest.raises(SpecError, match=r"task_options\.dataset: must be a data-set name"):
        parse_spec(spec("rbf-classification", {"dataset": name}))


@pytest.mark.parametrize("name", ["../secret", "/etc/passwd", "datasets/../../secret"])
def test_the_worker_refuses_a_path_and_reads_nothing(datasets, secret, parser_calls, name):
    with pytest.raises(TaskDataError, match=r"^dataset: must be a data-set name") as error:
        rbf(dataset=name)
    assert parser_calls == []
    assert str(datasets.parent) not in str(error.value)


def test_a_symlink_out_of_the_directory_is_refused_and_not_read(datasets, secret, parser_calls):
    (datasets / "escape.svm").symlink_to(secret)
    with pytest.raises(TaskDataError) as error:
        rbf(dataset="escape.svm")
    message = str(error.value)
    assert message == (
        "dataset: 'escape.svm' points outside the operator's data-set directory; refused"
    )
    assert parser_calls == []
    # through the trainer, as a trial would run it
    with pytest.raises(TaskDataError, match="points outside"):
        run_trial(rbf_trial("escape.svm"))
    assert parser_calls == []


def test_a_symlink_inside_the_directory_is_followed(datasets, parser_calls):
    write_libsvm(datasets / "real.svm")
    (datasets / "alias.svm").symlink_to(datasets / "real.svm")
    assert rbf(dataset="alias.svm").n_train == 32
    assert parser_calls == [str(datasets / "real.svm")]


def test_path_and_data_root_are_refused_with_a_pointer_to_the_new_way():
    with pytest.raises(SpecError, match=r"task_options\.path: path was removed.*use 'dataset'"):
        parse_spec(spec("rbf-classification", {"path": "/etc/passwd"}))
    with pytest.raises(SpecError, match=r"task_options\.data_root: data_root was removed"):
        parse_spec(spec("cifar10", {"data_root": "/tmp"}))


def test_an_unknown_name_lists_the_known_ones(datasets):
    with pytest.raises(TaskDataError) as error:
        rbf(dataset="foo")
    assert str(error.value) == (
        "dataset: no data set named 'foo' (known: mushrooms, ijcnn1, rcv1, w8a; or a file name "
        "inside the operator's data-set directory)"
    )


# --- what a failure reason can reveal -----------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [f"{SECRET} is not svmlight\n", f"1 1:0.5\n-1 {SECRET}:2\n", f"+1 3:{SECRET}\n"],
)
def test_a_garbage_file_error_does_not_echo_its_content(datasets, content):
    (datasets / "garbage.svm").write_text(content)
    with pytest.raises(TaskDataError) as error:
        run_trial(rbf_trial("garbage.svm"))
    assert str(error.value) == "dataset: 'garbage.svm' is not a LIBSVM/svmlight file"
    assert SECRET not in full_text(error.value)


def test_the_manifest_is_checked_when_present(datasets):
    write_libsvm(datasets / "listed.svm")
    write_libsvm(datasets / "unlisted.svm")
    digest = sha256(datasets / "listed.svm")
    (datasets / "MANIFEST.sha256").write_text(f"# checked by the workers\n{digest}  listed.svm\n")
    assert rbf(dataset="listed.svm").n_train == 32
    with pytest.raises(TaskDataError, match=r"'unlisted\.svm' is not listed in the operator's"):
        rbf(dataset="unlisted.svm")
    with (datasets / "listed.svm").open("a") as file:
        file.write("1 1:0.5\n")  # still a valid file, but no longer the operator's
    with pytest.raises(TaskDataError, match="does not match its sha256"):
        rbf(dataset="listed.svm")
    (datasets / "MANIFEST.sha256").write_text(f"{SECRET}\n")
    with pytest.raises(TaskDataError, match=r"line 1 of the operator's MANIFEST\.sha256") as error:
        rbf(dataset="listed.svm")
    assert SECRET not in full_text(error.value)


# --- pickle: only md5-checked files under the operator's directory ------------------------------


class _Marker:
    """Unpickling this creates the file ``path`` (a stand-in for arbitrary code)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_a_malicious_cifar_batch_fails_the_md5_check_and_is_never_unpickled(
    datasets, tmp_path, monkeypatch
):
    # every other file passes its (fixture) md5 check: only the replaced batch fails
    root = write_dataset(monkeypatch, datasets, "cifar10", 10, 5)
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    marker = tmp_path / "pwned"
    batch.write_bytes(pickle.dumps(_Marker(marker)))
    # the payload is live: unpickling a copy creates its marker
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Marker(probe))).close()
    assert probe.exists()
    with pytest.raises(TaskDataError) as error:
        run_trial({"task": "cifar10", "task_options": {"model": "resnet8"}, "optimizer": "sgd",
                   "eta": 0.1, "batch_size": 4, "budget": 1, "device": "cpu"})  # fmt: skip
    assert str(error.value).startswith(
        "CIFAR-10 data set refused: cifar10/cifar-10-batches-py/data_batch_1 failed torchvision's "
        "md5 check"
    )
    assert str(datasets) not in str(error.value)
    assert not marker.exists()


def test_even_a_trusted_layout_is_read_only_from_the_operators_directory(
    datasets, tmp_path, monkeypatch
):
    elsewhere = use_datasets_dir(monkeypatch, tmp_path / "elsewhere")
    write_dataset(monkeypatch, elsewhere, "cifar10", 10, 5)
    use_datasets_dir(monkeypatch, datasets)  # the operator's directory: no CIFAR-10 in it
    with pytest.raises(TaskDataError, match="CIFAR-10 data set not found"):
        _ = Cifar10Task(ImageClassificationOptions(), seed=0, device="cpu").n_train
    with pytest.raises(SpecError, match="data_root"):
        parse_spec(spec("cifar10", {"data_root": str(elsewhere / "cifar10")}))


# --- downloads ---------------------------------------------------------------------------------


def test_download_without_the_operators_permission_is_refused(datasets, monkeypatch):
    with pytest.raises(TaskConfigError) as error:
        run_trial({"task": "svhn", "task_options": {"download": True}, "optimizer": "sgd",
                   "eta": 0.1, "batch_size": 4, "budget": 1, "device": "cpu"})  # fmt: skip
    assert str(error.value).startswith("download: downloads are disabled on this service")
    assert "SENSITIVITY_ALLOW_DOWNLOADS" in str(error.value)
    assert list(datasets.iterdir()) == []  # nothing written
    monkeypatch.setenv("SENSITIVITY_ALLOW_DOWNLOADS", "false")
    with pytest.raises(TaskConfigError, match="downloads are disabled"):
        Cifar10Task(ImageClassificationOptions(download=True), seed=0, device="cpu")


def test_download_with_permission_keeps_the_md5_checks(datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("SENSITIVITY_ALLOW_DOWNLOADS", "true")
    root = write_dataset(monkeypatch, datasets, "cifar10", 10, 5)
    task = Cifar10Task(ImageClassificationOptions(download=True), seed=0, device="cpu")
    assert task.n_train == 10  # files in place and verified: torchvision fetches nothing
    assert task.root == root


# --- the way that works --------------------------------------------------------------------------


def test_a_libsvm_file_named_inside_the_directory_trains(datasets, parser_calls):
    write_libsvm(datasets / "toy.svm", n=60)
    options = RbfClassificationOptions(dataset="toy.svm")  # the catalog accepts the name
    assert options.dataset == "toy.svm"
    reports = []
    result = run_trial(rbf_trial("toy.svm"), reports.append)
    assert result.status == "completed", result.reason
    assert np.isfinite(result.final_objective) and reports
    assert result.metrics["val_accuracy"] is not None
    assert parser_calls == [str(datasets / "toy.svm")]


def test_a_known_name_finds_its_file(datasets, parser_calls):
    # the registry's second file name for mushrooms: the LIBSVM file, bzip2-compressed
    write_libsvm(datasets / "plain")
    (datasets / "mushrooms.bz2").write_bytes(bz2.compress((datasets / "plain").read_bytes()))
    task = rbf(dataset="mushrooms")
    assert task.bandwidth == 0.5  # the benchmark's σ
    assert parser_calls == [str(datasets / "mushrooms.bz2")]
    (datasets / "mushrooms.bz2").unlink()
    with pytest.raises(TaskDataError, match="no file for the known data set 'mushrooms'"):
        rbf(dataset="mushrooms")
