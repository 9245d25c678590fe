"""The optimizer registry: every entry trains, bad input is rejected with a useful message."""

import math

import pytest
import torch

from optim.closure import step_with_closure
from optim.exceptions import InvalidHyperparameterError, UnknownOptimizerError
from optim.registry import OPTIMIZERS, build_optimizer, optimizer_info
from tests.optim.helpers import flat, mlp, regression_data

NAMES = [
    "alig", "aalig", "sgd", "sgd-nesterov", "adam", "adamw", "amsgrad", "adagrad", "adagrad-tf",
    "rmsprop", "rmsprop-tf", "sps", "l4mom", "l4adam",
]  # fmt: skip
SENSIBLE_ETA = {
    "alig": 1.0, "aalig": 1.0, "sgd": 0.05, "sgd-nesterov": 0.02, "adam": 0.01, "adamw": 0.01,
    "amsgrad": 0.01, "adagrad": 0.05, "adagrad-tf": 0.05, "rmsprop": 0.005, "rmsprop-tf": 0.05,
    "sps": 1.0, "l4mom": 0.15, "l4adam": 0.15,
}  # fmt: skip


def test_registry_has_exactly_the_documented_names():
    assert list(OPTIMIZERS) == NAMES


def train(name: str, steps: int = 20, radius: float | None = None) -> tuple[list[float], object]:
    model = mlp()
    x, y = regression_data(n=64)
    batch, n = 16, 64
    epochs = steps * batch // n
    options = {"n_samples": n, "epochs": epochs} if name == "aalig" else {}
    optimizer = build_optimizer(name, model.parameters(), SENSIBLE_ETA[name], radius, **options)
    info = optimizer_info(name)
    losses = []
    for step in range(steps):
        indices = torch.arange(step * batch, (step + 1) * batch) % n
        optimizer.zero_grad()
        per_sample = (model(x[indices]) - y[indices]).pow(2).squeeze(1)
        loss = per_sample.mean()
        loss.backward()
        step_with_closure(optimizer, info.closure, loss, per_sample, indices)
        losses.append(loss.item())
        if (step + 1) * batch % n == 0 and hasattr(optimizer, "end_epoch"):
            optimizer.end_epoch()
    return losses, (model, optimizer)


@pytest.mark.parametrize("name", NAMES)
def test_every_entry_trains_a_regression_downward(name):
    losses, _ = train(name)
    assert all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.7 * first, f"{name}: {first:.4f} -> {last:.4f}"


@pytest.mark.parametrize("name", NAMES)
def test_radius_constrains_every_entry(name):
    radius = flat(mlp()).norm().item() / 2
    _, (model, _) = train(name, steps=8, radius=radius)
    assert flat(model).norm().item() <= radius * (1 + 1e-5)


def test_alig_accepts_eta_none_as_alig_infinity_and_others_do_not():
    assert build_optimizer("alig", mlp().parameters(), None).param_groups[0]["max_lr"] is None
    with pytest.raises(InvalidHyperparameterError, match="only alig"):
        build_optimizer("sgd", mlp().parameters(), None)


def test_step_size_reporting_flags_match_the_optimizers():
    for name, info in OPTIMIZERS.items():
        _, (_, optimizer) = train(name, steps=4)
        has = getattr(optimizer, "last_step_size", None) is not None
        assert has == info.reports_step_size, name


def test_options_are_forwarded_and_defaults_documented():
    optimizer = build_optimizer("sgd", mlp().parameters(), 0.1, momentum=0.5)
    assert optimizer.param_groups[0]["momentum"] == 0.5
    nesterov = build_optimizer("sgd-nesterov", mlp().parameters(), 0.1)
    assert nesterov.param_groups[0]["nesterov"] is True
    assert nesterov.param_groups[0]["momentum"] == 0.9
    assert build_optimizer("amsgrad", mlp().parameters(), 0.1).param_groups[0]["amsgrad"]
    assert OPTIMIZERS["aalig"].defaults()["sections"] == 10
    assert OPTIMIZERS["aalig"].defaults()["eps"] == 1e-9  # the authors' hard-coded δ
    tf_rmsprop = build_optimizer("rmsprop-tf", mlp().parameters(), 0.1, momentum=0.5)
    assert {k: tf_rmsprop.param_groups[0][k] for k in ("lr", "decay", "momentum", "eps")} == {
        "lr": 0.1, "decay": 0.9, "momentum": 0.5, "eps": 1e-10,
    }  # fmt: skip
    assert tf_rmsprop.param_groups[0]["initial_accumulator"] == 1.0
    tf_adagrad = build_optimizer("adagrad-tf", mlp().parameters(), 0.1)
    assert tf_adagrad.param_groups[0]["initial_accumulator"] == 0.1


@pytest.mark.parametrize(
    ("name", "eta", "options", "message"),
    [
        ("sgd", -0.1, {}, "eta must be finite and > 0, got -0.1"),
        ("sgd", 0.0, {}, "eta must be finite and > 0"),
        ("adam", float("nan"), {}, "eta must not be NaN"),
        ("alig", float("inf"), {}, "eta must be finite"),
        ("alig", 1.0, {"momentum": -0.5}, "momentum must be in"),
        ("sgd", 0.1, {"momentum": float("nan")}, "momentum must not be NaN"),
        ("sgd", 0.1, {"nesterov": True}, r"option\(s\) nesterov; accepted: momentum, weight_decay"),
        ("adam", 0.1, {"betas": (0.9, 1.5)}, r"betas\[1\] must be in"),
        ("aalig", 1.0, {"epochs": 3}, "option 'n_samples' is required"),
        ("sgd-nesterov", 0.1, {"momentum": 0.0}, "momentum must be > 0"),
        ("alig", "big", {}, "eta must be a number"),
        ("rmsprop-tf", 0.1, {"decay": 1.0}, "decay must be in"),
        ("rmsprop-tf", 0.1, {"eps": 0.0}, "eps must be finite and > 0"),
        ("adagrad-tf", 0.1, {"initial_accumulator": 0.0}, "initial_accumulator must be"),
        ("adagrad-tf", 0.1, {"eps": 1e-10}, r"option\(s\) eps; accepted: initial_accumulator"),
    ],
)
def test_bad_input_names_the_field(name, eta, options, message):
    with pytest.raises(InvalidHyperparameterError, match=message):
        build_optimizer(name, mlp().parameters(), eta, **options)


@pytest.mark.parametrize("radius", [0.0, -1.0, float("nan")])
def test_bad_radius_is_rejected(radius):
    with pytest.raises(InvalidHyperparameterError, match="radius"):
        build_optimizer("sgd", mlp().parameters(), 0.1, radius)


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(UnknownOptimizerError, match="unknown optimizer 'lbfgs'; valid names: alig"):
        build_optimizer("lbfgs", mlp().parameters(), 0.1)
    with pytest.raises(ValueError, match="l4adam"):
        optimizer_info("nope")


def test_per_sample_step_without_indices_is_a_clear_error():
    model = mlp()
    optimizer = build_optimizer("aalig", model.parameters(), 1.0, n_samples=4, epochs=1)
    loss = model(torch.ones(4, 5)).pow(2).mean()
    loss.backward()
    with pytest.raises(ValueError, match="per-sample losses"):
        step_with_closure(optimizer, "per-sample", loss)
