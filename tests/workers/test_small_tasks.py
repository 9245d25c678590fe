"""The in-memory tasks: matrix factorisation, RBF classification, digits."""

import numpy as np
import pytest
import torch
from sklearn.datasets import dump_svmlight_file

from studies.catalog.tasks import (
    DigitsOptions,
    MatrixFactorisationOptions,
    RbfClassificationOptions,
)
from workers.exceptions import TaskConfigError, TaskDataError
from workers.tasks.digits import Digits
from workers.tasks.matrix_factorisation import MatrixFactorisation
from workers.tasks.rbf_classification import RbfClassification, logistic_loss
from workers.tasks.registry import TASK_TYPES, build_task, parse_task_options
from workers.trainer import run_trial

CPU = torch.device("cpu")


def test_the_exact_condition_generator_has_the_requested_condition_number():
    options = MatrixFactorisationOptions(generator="exact-condition")
    target = MatrixFactorisation(options, seed=0, device=CPU).target
    singular = torch.linalg.svdvals(target)
    assert target.shape == (10, 6)
    assert singular[0].item() == pytest.approx(1.0, rel=1e-5)
    assert target.dtype == torch.float64  # float32 would lose the smallest singular values
    assert singular[0].item() / singular[-1].item() == pytest.approx(1e10, rel=1e-3)


SHAPES = [
    (1, [(1, 6), (10, 1)]),
    (4, [(4, 6), (10, 4)]),
    (10, [(10, 6), (10, 10)]),
    ("true-model", [(10, 6)]),
]


@pytest.mark.parametrize(("rank", "shapes"), SHAPES)
def test_rank_option_sets_the_factor_shapes(rank, shapes):
    task = MatrixFactorisation(MatrixFactorisationOptions(rank=rank), seed=0, device=CPU)
    assert [tuple(p.shape) for p in task.build_model().parameters()] == shapes
    assert task.n_train == 800 and task.x_val.shape == (200, 6)  # the benchmark's 80/20 split


def test_matrix_factorisation_data_is_fixed_by_data_seed_not_trial_seed():
    a = MatrixFactorisation(MatrixFactorisationOptions(), seed=0, device=CPU)
    b = MatrixFactorisation(MatrixFactorisationOptions(), seed=7, device=CPU)
    c = MatrixFactorisation(MatrixFactorisationOptions(data_seed=1), seed=0, device=CPU)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.target, b.target)
    assert not torch.equal(a.target, c.target)
    assert torch.allclose(a.y_train, a.x_train @ a.target.T)


def test_epoch_batches_cover_the_training_set_once_with_indices():
    options = MatrixFactorisationOptions(n_samples=125)  # 100 training samples
    task = MatrixFactorisation(options, seed=0, device=CPU)
    batches = list(task.train_batches(32, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    indices = torch.cat([b.indices for b in batches])
    assert sorted(indices.tolist()) == list(range(100))
    for b in batches:
        assert torch.equal(b.inputs, task.x_train[b.indices])


@pytest.mark.parametrize(
    ("task", "options", "optimizer", "eta"),
    [
        ("matrix-factorisation", {"rank": "true-model"}, "alig", 1.0),
        ("matrix-factorisation", {"rank": "true-model"}, "sgd", 0.5),  # mean over 10 outputs
        ("matrix-factorisation", {"rank": "true-model"}, "adam", 0.01),
        ("digits", {}, "alig", 1.0),
        ("digits", {}, "sgd", 0.5),
        ("digits", {}, "adam", 0.003),
    ],
)
def test_loss_decreases_at_a_sensible_eta(task, options, optimizer, eta):
    reports = []
    config = dict(task=task, task_options=options, optimizer=optimizer, eta=eta,
                  batch_size=64, budget=3, device="cpu")  # fmt: skip
    result = run_trial(config, reports.append)
    assert result.status == "completed"
    assert len(reports) == 3
    assert reports[-1]["train_loss"] < 0.5 * reports[0]["train_loss"]


def test_digits_split_and_accuracy_after_training():
    task = Digits(DigitsOptions(val_fraction=0.25), seed=0, device=CPU)
    assert task.n_train + len(task.y_val) == 1797
    assert len(task.y_val) == round(0.25 * 1797)
    result = run_trial(dict(task="digits", optimizer="adam", eta=0.003, batch_size=64,
                            budget=5, device="cpu"))  # fmt: skip
    assert result.metrics["val_accuracy"] > 0.85


def test_digits_cnn_and_hinge_loss_train():
    options = {"model": "cnn", "loss": "hinge"}
    result = run_trial(dict(task="digits", task_options=options, optimizer="alig", eta=0.5,
                            batch_size=64, budget=2, device="cpu"))  # fmt: skip
    assert result.status == "completed"
    assert result.metrics["val_accuracy"] > 0.5


def test_logistic_loss_matches_formula():
    scores = torch.tensor([[2.0], [-1.0], [0.0]])
    labels = torch.tensor([1.0, 1.0, -1.0])
    expected = torch.log1p(torch.exp(-labels * scores.squeeze(1)))
    torch.testing.assert_close(logistic_loss(scores, labels), expected)


def test_rbf_synthetic_features_and_training():
    options = RbfClassificationOptions(features="centres", n_centers=50)
    task = RbfClassification(options, seed=0, device=CPU)
    model = task.build_model()
    x = task.x_train[:3]
    phi = torch.exp(-task.gamma * torch.cdist(x, task.centres).pow(2))
    torch.testing.assert_close(model(x), model.linear(phi))
    assert [p.numel() for p in model.parameters()] == [50, 1]  # the centres are not trained
    result = run_trial(dict(task="rbf-classification", optimizer="alig", eta=1.0,
                            batch_size=64, budget=4, device="cpu"))  # fmt: skip
    assert result.metrics["val_accuracy"] > 0.9


def test_rbf_reads_a_libsvm_file_and_maps_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("SENSITIVITY_DATASETS_DIR", str(tmp_path))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = np.where(x[:, 0] > 0, 2, 1)  # labels {1, 2} as in some LIBSVM files
    dump_svmlight_file(x, y, str(tmp_path / "toy.svm"))
    task = RbfClassification(
        RbfClassificationOptions(dataset="toy.svm", val_fraction=0.25), seed=0, device=CPU
    )
    assert task.n_train == 45 and task.inputs_train.shape[1] == 4
    assert set(task.y_train.tolist()) == {-1.0, 1.0}
    assert task.gamma == pytest.approx(0.25)


def test_rbf_bad_files_name_the_dataset_option(tmp_path, monkeypatch):
    monkeypatch.setenv("SENSITIVITY_DATASETS_DIR", str(tmp_path))
    with pytest.raises(TaskDataError, match="dataset: no data set named 'nope'"):
        RbfClassification(RbfClassificationOptions(dataset="nope"), seed=0, device=CPU)
    (tmp_path / "bad.svm").write_text("this is not svmlight\n")
    with pytest.raises(TaskDataError, match=r"^dataset: 'bad.svm' is not a LIBSVM/svmlight file$"):
        RbfClassification(RbfClassificationOptions(dataset="bad.svm"), seed=0, device=CPU)
    dump_svmlight_file(np.eye(3), np.array([0, 1, 2]), str(tmp_path / "three.svm"))
    with pytest.raises(TaskDataError, match="2 label values"):
        RbfClassification(RbfClassificationOptions(dataset="three.svm"), seed=0, device=CPU)


def test_registry_covers_the_catalog_and_rejects_bad_options():
    from studies.catalog.tasks import TASKS

    assert set(TASK_TYPES) == set(TASKS)
    with pytest.raises(TaskConfigError, match="unknown task 'mnist'; valid tasks: dnc-copy"):
        build_task("mnist", {}, seed=0, device=CPU)
    with pytest.raises(TaskConfigError, match=r"task_options\.rank"):
        parse_task_options("matrix-factorisation", {"rank": 3})
    with pytest.raises(TaskConfigError, match=r"task_options\.colour: Extra inputs"):
        parse_task_options("digits", {"colour": True})
