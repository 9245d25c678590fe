"""The TensorFlow-1 variants ``rmsprop-tf`` and ``adagrad-tf``: TF1's update rules, checked
against steps computed by hand (exact decimals, see docs/algorithms.md, section Baselines)."""

import copy
import math

import pytest
import torch

from optim.exceptions import InvalidHyperparameterError
from optim.registry import build_optimizer
from optim.tf_adagrad import TFAdagrad
from optim.tf_rmsprop import TFRMSprop
from tests.optim.helpers import flat, mlp, regression_data

F64 = torch.float64
GRADS = (0.5, -0.25)  # g1, g2 on one scalar w0 = 0, lr = 0.01
LR = 0.01
# Hand-computed (Decimal, 40 digits): TF1 RMSProp (decay 0.9, eps 1e-10, ms0 = 1):
# ms1 = 0.925, Δ1 = -0.01·0.5/sqrt(0.925 + 1e-10); ms2 = 0.83875, Δ2 = 0.01·0.25/sqrt(0.83875 + 1e-10)
RMSPROP_TF_STEPS = (-0.005198752448819350, 0.002729755452000343)
# TF1 Adagrad (acc0 = 0.1, no eps): acc1 = 0.35, Δ1 = -0.005/sqrt(0.35); acc2 = 0.4125
ADAGRAD_TF_STEPS = (-0.008451542547285166, 0.003892494720807615)


def scalar_steps(optimizer_class, grads=GRADS, **options) -> list[float]:
    """The parameter changes of a float64 scalar w0 = 0 fed the gradients ``grads``."""
    w = torch.zeros(1, dtype=F64, requires_grad=True)
    optimizer = optimizer_class([w], lr=LR, **options)
    deltas = []
    for g in grads:
        before = w.item()
        w.grad = torch.tensor([g], dtype=F64)
        optimizer.step()
        deltas.append(w.item() - before)
    return deltas


def test_rmsprop_tf_first_two_steps_match_the_hand_computed_values():
    assert scalar_steps(TFRMSprop) == pytest.approx(RMSPROP_TF_STEPS, rel=1e-9)
    # and the same numbers as the formulas in Python floats
    ms1 = 0.9 * 1.0 + 0.1 * 0.5**2
    ms2 = 0.9 * ms1 + 0.1 * 0.25**2
    by_formula = (-LR * 0.5 / math.sqrt(ms1 + 1e-10), LR * 0.25 / math.sqrt(ms2 + 1e-10))
    assert by_formula == pytest.approx(RMSPROP_TF_STEPS, rel=1e-12)


def test_adagrad_tf_first_two_steps_match_the_hand_computed_values():
    assert scalar_steps(TFAdagrad) == pytest.approx(ADAGRAD_TF_STEPS, rel=1e-9)
    by_formula = (-LR * 0.5 / math.sqrt(0.35), LR * 0.25 / math.sqrt(0.4125))
    assert by_formula == pytest.approx(ADAGRAD_TF_STEPS, rel=1e-12)


def test_torch_rmsprop_first_step_is_about_19_times_larger():
    """Why the variant exists: torch's v starts at 0 (TF1's ms at 1) and smooths with 0.99."""
    torch_step = scalar_steps(torch.optim.RMSprop, grads=GRADS[:1])[0]
    assert torch_step == pytest.approx(-0.09999998, rel=1e-9)
    assert torch_step / RMSPROP_TF_STEPS[0] == pytest.approx(19.235, rel=1e-4)
    torch_adagrad = scalar_steps(torch.optim.Adagrad, grads=GRADS[:1])[0]
    assert torch_adagrad / ADAGRAD_TF_STEPS[0] == pytest.approx(1.1832, rel=1e-4)


def test_rmsprop_tf_momentum_accumulates_the_scaled_steps():
    """TF1: mom <- μ mom + lr g / sqrt(ms + eps); w <- w - mom."""
    deltas = scalar_steps(TFRMSprop, momentum=0.5)
    first = -RMSPROP_TF_STEPS[0]  # lr g1 / sqrt(ms1 + eps)
    second = -RMSPROP_TF_STEPS[1]
    assert deltas == pytest.approx([-first, -(0.5 * first + second)], rel=1e-9)


def test_options_change_the_rule_as_documented():
    # initial_accumulator 0 with eps: the first step is lr g / sqrt((1-ρ) g² + ε) ≈ lr / sqrt(0.1)
    (step,) = scalar_steps(TFRMSprop, grads=(0.5,), initial_accumulator=0.0)
    assert step == pytest.approx(-LR * 0.5 / math.sqrt(0.025 + 1e-10), rel=1e-12)
    (step,) = scalar_steps(TFAdagrad, grads=(0.5,), initial_accumulator=1.0)
    assert step == pytest.approx(-LR * 0.5 / math.sqrt(1.25), rel=1e-12)


@pytest.mark.parametrize("name", ["rmsprop-tf", "adagrad-tf"])
def test_state_dict_round_trip_continues_identically(name):
    x, y = regression_data(n=32)
    options = {"momentum": 0.9} if name == "rmsprop-tf" else {}

    def steps(model, optimizer, count):
        for _ in range(count):
            optimizer.zero_grad()
            (model(x) - y).pow(2).mean().backward()
            optimizer.step()

    model = mlp()
    optimizer = build_optimizer(name, model.parameters(), 0.01, **options)
    steps(model, optimizer, 3)
    saved_model, saved = model.state_dict(), copy.deepcopy(optimizer.state_dict())
    twin = mlp(seed=5)
    twin.load_state_dict(saved_model)
    twin_optimizer = build_optimizer(name, twin.parameters(), 0.01, **options)
    twin_optimizer.load_state_dict(saved)
    steps(model, optimizer, 4)
    steps(twin, twin_optimizer, 4)
    torch.testing.assert_close(flat(twin), flat(model), rtol=0, atol=0)
    state = next(iter(optimizer.state.values()))
    assert state["step"] == 7
    assert set(state) == ({"step", "ms", "mom"} if name == "rmsprop-tf" else {"step", "acc"})


@pytest.mark.parametrize("name", ["rmsprop-tf", "adagrad-tf"])
def test_radius_through_the_registry_is_enforced(name):
    model = mlp()
    radius = flat(model).norm().item() / 2
    optimizer = build_optimizer(name, model.parameters(), 0.05, radius)
    assert flat(model).norm().item() == pytest.approx(radius, rel=1e-5)  # at construction
    x, y = regression_data(n=32)
    for _ in range(5):
        optimizer.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        optimizer.step()
        assert flat(model).norm().item() <= radius * (1 + 1e-5)


def test_parameter_groups_may_differ_and_are_checked():
    model = mlp()
    groups = [
        {"params": list(model[0].parameters())},
        {"params": list(model[2].parameters()), "lr": 0.5, "decay": 0.5},
    ]
    optimizer = TFRMSprop(groups, lr=0.1)
    assert [g["decay"] for g in optimizer.param_groups] == [0.9, 0.5]
    with pytest.raises(InvalidHyperparameterError, match="decay"):
        TFRMSprop([{"params": list(model[0].parameters()), "decay": 1.5}], lr=0.1)
    with pytest.raises(InvalidHyperparameterError, match="initial_accumulator"):
        TFAdagrad(model.parameters(), lr=0.1, initial_accumulator=-1.0)


def test_sparse_gradients_are_refused():
    w = torch.zeros(3, requires_grad=True)
    w.grad = torch.tensor([1.0, 0.0, 0.0]).to_sparse()
    with pytest.raises(InvalidHyperparameterError, match="sparse"):
        TFAdagrad([w], lr=0.1).step()
