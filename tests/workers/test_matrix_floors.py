"""Matrix factorisation on the benchmark's data: each rank's optimal loss in closed form, checked
against the task's own loss and against training, and the floors the catalog publishes."""

import numpy as np
import pytest
import torch

from studies.catalog.matrix_data import (
    make_data,
    mean_squared_error,
    optimal_map,
    rank_floor,
    training_floors,
)
from studies.catalog.tasks import TASKS, MatrixFactorisationOptions
from workers.tasks.matrix_factorisation import MatrixFactorisation

CPU = torch.device("cpu")
DEFAULT = MatrixFactorisationOptions()


def default_data():
    return make_data("benchmark", 1e10, 1000, 0.2, 0)


def test_the_benchmark_target_scales_uniform_rows_linearly():
    rng = np.random.default_rng(0)
    expected = np.linspace(1.0, 1e-10, 10)[:, None] * rng.random((10, 6))
    data = default_data()
    assert np.array_equal(data.target, expected)
    assert np.allclose(data.y_train, data.x_train @ data.target.T, rtol=0, atol=0)  # no noise
    assert data.x_train.shape == (800, 6) and data.x_val.shape == (200, 6)


def test_ranks_1_and_4_do_not_interpolate_and_10_and_the_true_model_do():
    floors = training_floors()
    assert floors["1"] > floors["4"] > 1e-3  # clearly above 0: the loss of an MSE near 0.1
    assert floors["10"] < 1e-20 and floors["true-model"] < 1e-20
    assert TASKS["matrix-factorisation"].facts() == {"rank_floors": floors}


@pytest.mark.parametrize("rank", [1, 4])
def test_the_closed_form_map_has_the_floor_loss_and_no_nearby_map_beats_it(rank):
    data = default_data()
    best = optimal_map(data.x_train, data.target, rank)
    floor = rank_floor(data.x_train, data.target, rank)
    assert np.linalg.matrix_rank(best) == rank
    # the task's own loss of a model set to the closed-form factors equals the floor
    task = MatrixFactorisation(MatrixFactorisationOptions(rank=rank), seed=0, device=CPU)
    u, s, vt = np.linalg.svd(best)
    model = task.build_model()
    with torch.no_grad():
        model.layers[0].weight.copy_(torch.from_numpy(vt[:rank]))
        model.layers[1].weight.copy_(torch.from_numpy(u[:, :rank] * s[:rank]))
        loss = task.per_sample_loss(model, next(iter(task.train_batches(800, torch.Generator()))))
    assert float(loss.mean()) == pytest.approx(floor, rel=1e-10)
    # perturbing the factors (the map stays rank-k) only ever increases the loss
    rng = np.random.default_rng(1)
    p, q = u[:, :rank] * s[:rank], vt[:rank]
    for _ in range(50):
        near = (p + 1e-3 * rng.standard_normal(p.shape)) @ (q + 1e-3 * rng.standard_normal(q.shape))
        assert mean_squared_error(data.x_train @ near.T, data.y_train) >= floor


def test_least_squares_on_the_training_set_reaches_the_true_models_floor():
    data = default_data()
    solution, *_ = np.linalg.lstsq(data.x_train, data.y_train, rcond=None)
    assert mean_squared_error(data.x_train @ solution, data.y_train) < 1e-25


def test_the_loss_is_torchs_mean_squared_error_over_every_entry():
    task = MatrixFactorisation(DEFAULT, seed=0, device=CPU)
    model = task.build_model()
    batch = next(iter(task.train_batches(100, torch.Generator().manual_seed(0))))
    with torch.no_grad():
        ours = task.per_sample_loss(model, batch).mean()
        reference = torch.nn.MSELoss(reduction="mean")(model(batch.inputs), batch.targets)
    assert float(ours) == pytest.approx(float(reference), rel=1e-12)
