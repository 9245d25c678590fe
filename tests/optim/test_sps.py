"""SPS_max: hand-computed steps, equivalence with ALI-G (c = 1), foreach vs reference, state."""

import copy
import inspect
import io
import math

import pytest
import torch

from optim.alig import AliG
from optim.exceptions import InvalidHyperparameterError, MissingClosureError
from optim.reference import SPSReference
from optim.sps import SPS
from tests.optim.helpers import assert_matches_reference


def quadratic_step(optimizer: SPS, w: torch.Tensor, a: float = 2.0, b: float = 1.0) -> float:
    """One step on f(w) = a/2 (w - b)^2; returns the loss before the step."""
    optimizer.zero_grad()
    loss = 0.5 * a * (w - b).pow(2).sum()
    loss.backward()
    optimizer.step(lambda: loss)
    return float(loss.detach())


def test_one_step_on_a_quadratic_is_the_polyak_step():
    # w0 = 3, a = 2, b = 1: L = 4, g = 4, ||g||^2 = 16.
    w = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    opt = SPS([w], max_lr=10.0)  # c = 0.5, f* = 0, eps = 1e-8
    quadratic_step(opt, w)
    gamma = 4.0 / (0.5 * 16.0 + 1e-8)
    assert opt.last_step_size == pytest.approx(gamma, rel=1e-15)
    assert opt.last_step_size == pytest.approx(0.5, rel=1e-8)
    assert opt.last_step_capped is False
    assert w.item() == pytest.approx(3.0 - gamma * 4.0, rel=1e-15)  # ≈ 1: the minimiser


def test_f_star_and_c_enter_the_step():
    w = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    opt = SPS([w], max_lr=10.0, c=2.0, f_star=1.0, eps=0.0)
    quadratic_step(opt, w)
    assert opt.last_step_size == pytest.approx((4.0 - 1.0) / (2.0 * 16.0), rel=1e-15)
    assert w.item() == pytest.approx(3.0 - 3.0 / 32.0 * 4.0, rel=1e-15)


def test_step_is_capped_at_max_lr():
    w = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    opt = SPS([w], max_lr=0.1)
    quadratic_step(opt, w)
    assert opt.last_step_size == 0.1
    assert opt.last_step_capped is True
    assert w.item() == pytest.approx(3.0 - 0.1 * 4.0, rel=1e-15)


def test_no_step_when_the_gradient_is_tiny():
    w = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    opt = SPS([w], max_lr=1e6)

    def closure() -> float:
        w.grad = torch.tensor([5e-9], dtype=torch.float64)  # ||g|| < 1e-8
        return 1.0  # the uncapped step would be ~1e8, capped at 1e6: a move of 5e-3

    opt.step(closure)
    assert w.item() == 3.0
    assert opt.last_step_size == 0.0
    assert opt.last_step_capped is False

    def closure_above() -> float:
        w.grad = torch.tensor([2e-8], dtype=torch.float64)
        return 1.0

    opt.step(closure_above)  # just above the threshold the (capped) step is taken
    assert opt.last_step_capped is True
    assert w.item() == pytest.approx(3.0 - 1e6 * 2e-8, rel=1e-12)


def test_loss_below_f_star_gives_no_ascent():
    w = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    opt = SPS([w], max_lr=1.0, f_star=10.0)  # L = 4 < f* = 10
    quadratic_step(opt, w)
    assert opt.last_step_size == 0.0
    assert w.item() == 3.0


def test_closure_that_backpropagates_itself():
    w = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    opt = SPS([w], max_lr=10.0)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (w - 1.0).pow(2).sum()
        loss.backward()
        return loss

    returned = opt.step(closure)
    assert float(returned.detach()) == 4.0
    assert w.item() == pytest.approx(3.0 - 4.0 / (0.5 * 16.0 + 1e-8) * 4.0, rel=1e-15)


# --- small MLP regression -------------------------------------------------------------------------


def make_problem(seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 4, generator=gen)
    y = torch.sin(x.sum(dim=1, keepdim=True)) + 0.1 * torch.randn(32, 1, generator=gen)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    return model, x, y


def one_step(opt: torch.optim.Optimizer, model: torch.nn.Module, x, y, i: int) -> float:
    """Step on mini-batch ``i % 4`` (of 8 samples); returns the step size used."""
    xb, yb = x[(i % 4) * 8 : (i % 4 + 1) * 8], y[(i % 4) * 8 : (i % 4 + 1) * 8]
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(xb), yb)
    loss.backward()
    opt.step(lambda: loss)
    return opt.last_step_size


def run(opt: torch.optim.Optimizer, model: torch.nn.Module, x, y, steps: int) -> list[float]:
    return [one_step(opt, model, x, y, i) for i in range(steps)]


def test_c_one_equals_alig_without_momentum():
    model, x, y = make_problem()
    twin = copy.deepcopy(model)
    sps = SPS(model.parameters(), max_lr=0.3, c=1.0, eps=1e-5)
    alig = AliG(twin.parameters(), max_lr=0.3, momentum=0.0, eps=1e-5)
    capped_seen = uncapped_seen = False
    for i in range(30):
        one_step(sps, model, x, y, i)
        one_step(alig, twin, x, y, i)
        assert sps.last_step_size == pytest.approx(alig.last_step_size, rel=1e-6)
        assert sps.last_step_capped == alig.last_step_capped
        capped_seen |= sps.last_step_capped
        uncapped_seen |= not sps.last_step_capped
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert capped_seen and uncapped_seen  # both branches of the min were exercised


def test_c_one_trajectory_differs_from_default_c():
    model, x, y = make_problem()
    twin = copy.deepcopy(model)
    run(SPS(model.parameters(), max_lr=10.0, c=1.0), model, x, y, 5)
    run(SPS(twin.parameters(), max_lr=10.0, c=0.5), twin, x, y, 5)
    assert not torch.allclose(model[0].weight, twin[0].weight)


def test_foreach_equals_reference():
    model, x, y = make_problem(1)
    twin = copy.deepcopy(model)
    fast = SPS(model.parameters(), max_lr=0.5, foreach=True)
    slow = SPS(twin.parameters(), max_lr=0.5, foreach=False)
    sizes_fast = run(fast, model, x, y, 30)
    sizes_slow = run(slow, twin, x, y, 30)
    assert sizes_fast == pytest.approx(sizes_slow, rel=1e-5)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert model[0].weight.grad is not None


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize(
    ("options", "second"),
    [
        ({"max_lr": 0.5}, {}),
        ({"max_lr": 5.0, "c": 1.0, "eps": 1e-3}, {"max_lr": 0.05}),
        ({"max_lr": 0.2, "f_star": 0.01}, {"max_lr": 1.0}),
    ],
)
def test_matches_the_reference_step_by_step(options, second, foreach):
    assert_matches_reference(
        lambda groups: SPS(groups, **options, foreach=foreach),
        SPSReference,
        **second,
    )


def test_sps_decreases_the_loss():
    model, x, y = make_problem(2)
    with torch.no_grad():
        before = float(torch.nn.functional.mse_loss(model(x), y))
    run(SPS(model.parameters(), max_lr=1.0), model, x, y, 60)
    with torch.no_grad():
        after = float(torch.nn.functional.mse_loss(model(x), y))
    assert after < 0.7 * before


def test_per_group_max_lr():
    w1 = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    w2 = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    opt = SPS([{"params": [w1]}, {"params": [w2], "max_lr": 0.01}], max_lr=10.0)
    opt.zero_grad()
    loss = (w1 - 1.0).pow(2).sum() + (w2 - 1.0).pow(2).sum()  # g = (4, 4), ||g||^2 = 32
    loss.backward()
    opt.step(lambda: loss)
    gamma = 8.0 / (0.5 * 32.0 + 1e-8)  # one global norm over both groups
    assert opt.last_step_sizes == pytest.approx([gamma, 0.01], rel=1e-15)
    assert w1.item() == pytest.approx(3.0 - gamma * 4.0, rel=1e-15)
    assert w2.item() == pytest.approx(3.0 - 0.04, rel=1e-15)


def test_state_dict_round_trip_continues_identically():
    model, x, y = make_problem(3)
    opt = SPS(
        [{"params": model[0].parameters()}, {"params": model[2].parameters(), "max_lr": 0.05}],
        max_lr=0.4,
    )
    run(opt, model, x, y, 5)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    twin = copy.deepcopy(model)
    restored = SPS([{"params": twin[0].parameters()}, {"params": twin[2].parameters()}], max_lr=7.0)
    restored.load_state_dict(saved)
    assert [g["max_lr"] for g in restored.param_groups] == [0.4, 0.05]
    sizes = run(opt, model, x, y, 10)
    sizes_restored = run(restored, twin, x, y, 10)
    assert sizes == sizes_restored
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


def test_state_dict_holds_every_hyperparameter_and_a_fresh_optimizer_continues_identically():
    hyperparameters = {"max_lr": 0.3, "c": 0.8, "f_star": 0.01, "eps": 1e-4}
    assert set(hyperparameters) == set(inspect.signature(SPS).parameters) - {"params", "foreach"}
    model, x, y = make_problem(4)
    opt = SPS(model.parameters(), **hyperparameters)
    run(opt, model, x, y, 5)
    saved = copy.deepcopy(opt.state_dict())
    group = saved["param_groups"][0]
    assert {name: group[name] for name in hyperparameters} == hyperparameters

    twin = copy.deepcopy(model)
    fresh = SPS(twin.parameters(), max_lr=7.0)  # c, f_star and eps at their defaults
    fresh.load_state_dict(saved)
    assert run(opt, model, x, y, 10) == run(fresh, twin, x, y, 10)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_lr": 0.0}, "max_lr"),
        ({"max_lr": -1.0}, "max_lr"),
        ({"max_lr": math.nan}, "max_lr"),
        ({"max_lr": math.inf}, "max_lr"),
        ({"max_lr": None}, "max_lr"),
        ({"max_lr": 1.0, "c": 0.0}, "c"),
        ({"max_lr": 1.0, "c": -0.5}, "c"),
        ({"max_lr": 1.0, "eps": -1e-8}, "eps"),
        ({"max_lr": 1.0, "f_star": math.inf}, "f_star"),
        ({"max_lr": 1.0, "f_star": "0"}, "f_star"),
    ],
)
def test_bad_hyperparameters(kwargs, field):
    w = torch.zeros(1, requires_grad=True)
    with pytest.raises(InvalidHyperparameterError, match=field):
        SPS([w], **kwargs)


def test_bad_group_max_lr():
    w = torch.zeros(1, requires_grad=True)
    with pytest.raises(InvalidHyperparameterError, match="max_lr"):
        SPS([{"params": [w], "max_lr": -2.0}], max_lr=1.0)


@pytest.mark.parametrize("override", [{"c": 1.0}, {"f_star": 0.5}, {"eps": 0.0}])
def test_groups_cannot_override_a_shared_hyperparameter(override):
    w = torch.zeros(1, requires_grad=True)
    field = next(iter(override))
    with pytest.raises(InvalidHyperparameterError, match=f"{field} is shared by all parameter"):
        SPS([{"params": [w], **override}], max_lr=1.0)


def test_missing_or_bad_closure():
    w = torch.tensor([3.0], requires_grad=True)
    opt = SPS([w], max_lr=1.0)
    with pytest.raises(MissingClosureError, match="closure"):
        opt.step()
    w.grad = torch.ones(1)
    with pytest.raises(MissingClosureError, match="scalar"):
        opt.step(lambda: torch.ones(3))
    assert issubclass(MissingClosureError, ValueError)
    assert w.item() == 3.0
