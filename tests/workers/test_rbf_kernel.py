"""RBF classification's benchmark setup: the full training-set kernel, its bandwidths, the split."""

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from sklearn.datasets import dump_svmlight_file
from sklearn.metrics.pairwise import rbf_kernel as sklearn_rbf_kernel
from sklearn.model_selection import train_test_split

from studies.catalog.tasks import TASKS, RbfClassificationOptions
from workers.exceptions import TaskConfigError
from workers.tasks.rbf_classification import RbfClassification, rbf_kernel, synthetic
from workers.tasks.registry import parse_task_options
from workers.trainer import run_trial

CPU = torch.device("cpu")


def write_libsvm(path, n: int, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = np.where(x[:, 0] > 0, 1, -1)
    dump_svmlight_file(x, y, str(path))
    return x, y


def test_kernel_features_are_the_gaussian_kernel_against_every_training_sample():
    options = RbfClassificationOptions(n_samples=40, n_features=3, bandwidth=1.5)
    task = RbfClassification(options, seed=0, device=CPU)
    train, val = task.inputs_train.double().numpy(), task.inputs_val.double().numpy()
    squared = ((train[:, None, :] - train[None, :, :]) ** 2).sum(axis=2)
    assert task.x_train.shape == (32, 32) and task.x_train.dtype == torch.float32
    np.testing.assert_allclose(task.x_train.numpy(), np.exp(-squared / (2 * 1.5**2)), rtol=1e-6)
    np.testing.assert_allclose(
        task.x_val.numpy(), sklearn_rbf_kernel(val, train, gamma=1 / (2 * 1.5**2)), rtol=1e-6
    )
    assert torch.all(torch.diagonal(task.x_train) == 1.0)
    model = task.build_model()
    assert [tuple(p.shape) for p in model.parameters()] == [(1, 32)]  # one weight each, no bias
    torch.testing.assert_close(model(task.x_val), task.x_val @ model.linear.weight.T)


def test_blocked_kernel_equals_the_one_block_kernel():
    rng = np.random.default_rng(1)
    a, b = torch.from_numpy(rng.normal(size=(37, 5))), torch.from_numpy(rng.normal(size=(11, 5)))
    whole = rbf_kernel(a, b, 0.7)
    torch.testing.assert_close(rbf_kernel(a, b, 0.7, block_entries=30), whole, rtol=0, atol=0)
    expected = sklearn_rbf_kernel(a.numpy(), b.numpy(), gamma=1 / (2 * 0.7**2))
    np.testing.assert_allclose(whole.numpy(), expected, rtol=1e-6)


def test_the_default_synthetic_bandwidth_is_gamma_one_over_d():
    task = RbfClassification(RbfClassificationOptions(n_samples=20, n_features=8), seed=0,
                             device=CPU)  # fmt: skip
    assert task.bandwidth == pytest.approx(2.0) and task.gamma == pytest.approx(1 / 8)


def test_the_split_is_unshuffled_by_default_as_train_test_split(tmp_path, monkeypatch):
    monkeypatch.setenv("SENSITIVITY_DATASETS_DIR", str(tmp_path))
    x, y = write_libsvm(tmp_path / "toy.svm", 53)  # 0.2 × 53 = 10.6: the test set is rounded up
    task = RbfClassification(RbfClassificationOptions(dataset="toy.svm"), seed=0, device=CPU)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, shuffle=False)
    assert task.n_train == 42 == len(x_train)
    np.testing.assert_array_equal(task.inputs_train.numpy(), x_train)
    np.testing.assert_array_equal(task.inputs_val.numpy(), x_test)
    np.testing.assert_array_equal(task.y_train.numpy(), y_train.astype(np.float32))
    np.testing.assert_array_equal(task.y_val.numpy(), y_test.astype(np.float32))
    shuffled = RbfClassification(
        RbfClassificationOptions(dataset="toy.svm", shuffle_split=True), seed=0, device=CPU
    )
    assert shuffled.n_train == 42
    assert not torch.equal(shuffled.inputs_train, task.inputs_train)
    rows = torch.cat([shuffled.inputs_train, shuffled.inputs_val])
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, x.tolist()))


def test_the_centres_option_builds_what_the_task_built_before():
    options = RbfClassificationOptions(
        features="centres", n_centers=30, shuffle_split=True, n_samples=100
    )
    task = RbfClassification(options, seed=0, device=CPU)
    # the earlier construction: data, a shuffled split, then the centres, from one generator
    rng = np.random.default_rng(0)
    features, _ = synthetic(options, rng)
    order = rng.permutation(100)
    train = features[order[20:]]
    centres = train[rng.permutation(80)[:30]]
    np.testing.assert_array_equal(task.inputs_train.numpy(), train)
    np.testing.assert_array_equal(task.centres.numpy(), centres)
    assert task.x_train is task.inputs_train and task.gamma == pytest.approx(1 / 10)
    model = task.build_model()
    assert [p.numel() for p in model.parameters()] == [30, 1]  # weights and a bias


@pytest.mark.parametrize(
    ("name", "bandwidth"),
    [("mushrooms", 0.5), ("ijcnn1", 0.05), ("ijcnn1.tr", 0.05), ("w8a", 20.0), ("toy.svm", None)],
)
def test_named_libsvm_files_get_the_benchmark_bandwidth(tmp_path, monkeypatch, name, bandwidth):
    monkeypatch.setenv("SENSITIVITY_DATASETS_DIR", str(tmp_path))
    write_libsvm(tmp_path / name, 20, d=4)
    task = RbfClassification(RbfClassificationOptions(dataset=name), seed=0, device=CPU)
    assert task.bandwidth == pytest.approx(bandwidth or math.sqrt(4 / 2))
    given = RbfClassification(
        RbfClassificationOptions(dataset=name, bandwidth=3.0), seed=0, device=CPU
    )
    assert given.bandwidth == 3.0  # an explicit σ wins over the table


def test_mushrooms_kernel_uses_sigma_one_half(tmp_path, monkeypatch):
    monkeypatch.setenv("SENSITIVITY_DATASETS_DIR", str(tmp_path))
    write_libsvm(tmp_path / "mushrooms", 25)
    task = RbfClassification(RbfClassificationOptions(dataset="mushrooms"), seed=0, device=CPU)
    train = task.inputs_train.double().numpy()
    np.testing.assert_allclose(
        task.x_train.numpy(), sklearn_rbf_kernel(train, train, gamma=2.0), rtol=1e-6
    )


def test_a_kernel_over_too_many_training_samples_is_refused():
    options = RbfClassificationOptions(n_samples=100, max_kernel_samples=50)
    with pytest.raises(TaskConfigError, match=r"max_kernel_samples: .*80×80.*features='centres'"):
        RbfClassification(options, seed=0, device=CPU)
    big = RbfClassificationOptions(features="centres", n_centers=10, n_samples=100)
    assert RbfClassification(big, seed=0, device=CPU).n_train == 80  # centres have no limit


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"n_centers": 20}, "n_centers"),
        ({"gamma": 0.5}, "gamma"),
        ({"features": "kernel", "n_centers": 200}, "n_centers"),
        ({"features": "centres", "bandwidth": 1.0}, "bandwidth"),
        ({"features": "centres", "max_kernel_samples": 10}, "max_kernel_samples"),
    ],
)
def test_options_of_the_other_feature_map_are_errors_naming_the_field(options, field):
    with pytest.raises(ValidationError, match=f"{field}: only with features="):
        RbfClassificationOptions(**options)
    with pytest.raises(TaskConfigError, match=f"{field}: only with features="):
        parse_task_options("rbf-classification", options)


def test_none_widths_are_the_defaults_for_either_feature_map():
    RbfClassificationOptions(gamma=None)
    RbfClassificationOptions(features="centres", bandwidth=None)


def test_the_catalog_defaults_are_the_benchmarks():
    spec = TASKS["rbf-classification"]
    assert (spec.default_budget, spec.default_batch_size, spec.budget_unit) == (35, 100, "epochs")
    assert RbfClassificationOptions().features == "kernel"
    assert RbfClassificationOptions().path is None  # synthetic data stay the offline default


def test_the_kernel_default_trains_on_synthetic_data():
    reports = []
    result = run_trial(
        {"task": "rbf-classification", "task_options": {"n_samples": 300}, "optimizer": "sgd",
         "eta": 1.0, "batch_size": 100, "budget": 5, "device": "cpu"},
        reports.append,
    )  # fmt: skip
    assert result.status == "completed", result.reason
    assert reports[-1]["train_loss"] < 0.5 * reports[0]["train_loss"]
    assert result.metrics["val_accuracy"] > 0.9
