"""L4 (L4Mom, L4Adam): hand-computed steps, L_min, convergence, foreach vs reference, state."""

import copy
import inspect
import io
import itertools
import math

import pytest
import torch

from optim.exceptions import InvalidHyperparameterError, MissingClosureError
from optim.l4 import L4, L4Adam, L4Mom
from optim.reference import L4Reference
from tests.optim.helpers import assert_matches_reference

DIRECTIONS = ["momentum", "adam"]


def tiny_loss(w0: torch.Tensor, w1: torch.Tensor) -> torch.Tensor:
    """(w0 - 3)^2 + 2 w1^2 + w0 w1 / 2: at (1, -2) the loss is 11 and the gradient (-5, -7.5)."""
    return (w0 - 3.0).pow(2).sum() + 2.0 * w1.pow(2).sum() + 0.5 * (w0 * w1).sum()


def tiny_params() -> tuple[torch.Tensor, torch.Tensor]:
    w0 = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    w1 = torch.tensor([-2.0], dtype=torch.float64, requires_grad=True)
    return w0, w1


def tiny_step(opt: torch.optim.Optimizer, w0: torch.Tensor, w1: torch.Tensor) -> float:
    opt.zero_grad()
    loss = tiny_loss(w0, w1)
    loss.backward()
    opt.step(lambda: loss)
    return float(loss.detach())


def test_first_step_momentum_by_hand():
    w0, w1 = tiny_params()
    opt = L4([w0, w1], direction="momentum")
    tiny_step(opt, w0, w1)
    # L = 11, g = (-5, -7.5); first step: bias-corrected momentum = g, <v, g> = 81.25,
    # L_min = 0.75 * 11 = 8.25, eta = 0.15 * (11 - 0.9 * 8.25) / 81.25 = 0.0066.
    assert opt.last_min_loss == pytest.approx(8.25, rel=1e-15)
    assert opt.last_step_size == pytest.approx(0.0066, rel=1e-12)
    assert opt.last_step_capped is False
    assert w0.item() == pytest.approx(1.0 + 0.0066 * 5.0, rel=1e-12)
    assert w1.item() == pytest.approx(-2.0 + 0.0066 * 7.5, rel=1e-12)


def test_first_step_adam_by_hand():
    w0, w1 = tiny_params()
    opt = L4([w0, w1], direction="adam")
    tiny_step(opt, w0, w1)
    g = torch.tensor([-5.0, -7.5], dtype=torch.float64)
    m_hat = (0.1 * g) / (1 - 0.9)
    s_hat = (0.001 * g * g) / (1 - 0.999)
    v = m_hat / (s_hat.sqrt() + 1e-4)  # = g / (|g| + 1e-4)
    dot = float(v @ m_hat)
    assert dot == pytest.approx(25.0 / 5.0001 + 56.25 / 7.5001, rel=1e-12)
    eta = 0.15 * (11.0 - 0.9 * 0.75 * 11.0) / (dot + 1e-12)
    assert opt.last_step_size == pytest.approx(eta, rel=1e-12)
    assert opt.last_step_size == pytest.approx(0.53625 / 12.4998, rel=1e-4)
    expected = torch.tensor([1.0, -2.0], dtype=torch.float64) - eta * v
    assert w0.item() == pytest.approx(expected[0].item(), rel=1e-12)
    assert w1.item() == pytest.approx(expected[1].item(), rel=1e-12)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("foreach", [True, False])
def test_several_steps_match_the_formulas(direction, foreach):
    w0, w1 = tiny_params()
    r0, r1 = tiny_params()
    # two groups: <v, g> and L_min are global, the step is the same for both
    opt = L4(
        [{"params": [w0]}, {"params": [w1]}], fraction=0.3, direction=direction, foreach=foreach
    )
    reference = L4Reference([{"params": [r0]}, {"params": [r1]}], **opt.defaults)
    etas = []
    for _ in range(6):
        tiny_step(opt, w0, w1)
        tiny_step(reference, r0, r1)
        eta = reference.last_step_sizes[0]
        assert reference.last_step_sizes == [eta, eta]
        etas.append(opt.last_step_size)
        assert opt.last_step_sizes == pytest.approx([eta, eta], rel=1e-10)
        assert opt.last_min_loss == pytest.approx(reference.last_min_loss, rel=1e-12)
        expected = torch.cat([r0, r1]).detach()
        torch.testing.assert_close(torch.cat([w0, w1]).detach(), expected, rtol=1e-10, atol=1e-12)
    assert len(set(etas)) == len(etas)  # the step size really adapts


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize(
    ("options", "second"),
    [
        ({"direction": "momentum"}, {}),
        ({"direction": "momentum", "fraction": 0.3, "gamma_l": 0.5}, {"fraction": 0.05}),
        ({"direction": "adam"}, {}),
        (
            {"direction": "adam", "beta1": 0.8, "adam_eps": 1e-3, "forget_time": 10.0},
            {"fraction": 0.3},
        ),
    ],
)
def test_matches_the_reference_step_by_step(options, second, foreach):
    optimizer, reference = assert_matches_reference(
        lambda groups: L4(groups, **options, foreach=foreach),
        L4Reference,
        **second,
    )
    assert optimizer.last_min_loss == pytest.approx(reference.last_min_loss, rel=1e-12)
    assert optimizer.min_loss == pytest.approx(reference.min_loss, rel=1e-12)
    assert optimizer.num_steps == reference.num_steps == 24


def test_min_loss_evolution():
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    grad = torch.tensor([3.0, 4.0], dtype=torch.float64)  # constant: bias-corrected m = grad
    opt = L4([w], direction="momentum")
    assert opt.min_loss is None and opt.num_steps == 0
    used, stored = [], []
    for loss in (10.0, 5.0, 8.0):

        def closure(loss: float = loss) -> float:
            w.grad = grad.clone()
            return loss

        opt.step(closure)
        used.append(opt.last_min_loss)
        stored.append(opt.min_loss)
        assert opt.last_step_size == pytest.approx(
            0.15 * (loss - 0.9 * opt.last_min_loss) / 25.0, rel=1e-10
        )
    assert used == pytest.approx([7.5, 5.0, 5.005], rel=1e-14)  # 0.75 L, then min(L_min, L)
    assert stored == pytest.approx([7.5075, 5.005, 5.010005], rel=1e-14)  # grows by 1.001
    assert opt.num_steps == 3


def test_loss_below_target_gives_no_ascent():
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = L4([w], direction="adam")

    def closure(loss: float) -> float:
        w.grad = torch.tensor([1.0, -1.0], dtype=torch.float64)
        return loss

    opt.step(lambda: closure(100.0))  # L_min = 75, stored 75.075
    before = w.detach().clone()
    opt.step(lambda: closure(-50.0))  # L - 0.9 L_min < 0
    assert opt.last_step_size == 0.0
    assert torch.equal(w.detach(), before)


# --- regression problems --------------------------------------------------------------------------


def least_squares(seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 5, generator=gen)
    w_true = torch.randn(5, 1, generator=gen)
    y = x @ w_true + 0.5 + 0.01 * torch.randn(64, 1, generator=gen)
    torch.manual_seed(seed)
    return torch.nn.Linear(5, 1), x, y


def mlp_problem(seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 4, generator=gen)
    y = torch.sin(x.sum(dim=1, keepdim=True)) + 0.1 * torch.randn(32, 1, generator=gen)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    return model, x, y


def one_step(opt: L4, model: torch.nn.Module, x, y, i: int, batch: int = 8) -> float:
    """Step on mini-batch ``i`` (cycling); returns the step size used."""
    k = x.shape[0] // batch
    xb, yb = x[(i % k) * batch : (i % k + 1) * batch], y[(i % k) * batch : (i % k + 1) * batch]
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(xb), yb)
    loss.backward()
    opt.step(lambda: loss)
    return opt.last_step_size


def full_loss(model: torch.nn.Module, x, y) -> float:
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(model(x), y))


@pytest.mark.parametrize("cls", [L4Mom, L4Adam])
def test_decreases_a_least_squares_loss(cls):
    model, x, y = least_squares()
    opt = cls(model.parameters())
    losses = [full_loss(model, x, y)]
    for i in range(50):
        one_step(opt, model, x, y, i, batch=64)  # full batch
        losses.append(full_loss(model, x, y))
    # With L_min tracking the loss, each step removes about fraction * (1 - gamma_l) = 1.5% of
    # it to first order: 50 steps leave about 0.985^50 = 47% (0.42 here).
    assert losses[-1] < 0.5 * losses[0], losses
    assert all(b < a for a, b in itertools.pairwise(losses)), losses


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_foreach_equals_reference(direction):
    model, x, y = mlp_problem(1)
    twin = copy.deepcopy(model)
    fast = L4(model.parameters(), direction=direction, foreach=True)
    slow = L4(twin.parameters(), direction=direction, foreach=False)
    sizes_fast = [one_step(fast, model, x, y, i) for i in range(30)]
    sizes_slow = [one_step(slow, twin, x, y, i) for i in range(30)]
    assert sizes_fast == pytest.approx(sizes_slow, rel=1e-4)
    assert fast.min_loss == pytest.approx(slow.min_loss, rel=1e-5)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    assert full_loss(model, x, y) < full_loss(mlp_problem(1)[0], x, y)  # it did move somewhere


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_state_dict_round_trip_continues_identically(direction):
    model, x, y = mlp_problem(2)
    opt = L4(
        [{"params": model[0].parameters()}, {"params": model[2].parameters(), "fraction": 0.05}],
        fraction=0.2,
        direction=direction,
    )
    for i in range(10):
        one_step(opt, model, x, y, i)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    twin = copy.deepcopy(model)
    restored = L4(
        [{"params": twin[0].parameters()}, {"params": twin[2].parameters()}],
        fraction=0.9,
        direction=direction,
    )
    restored.load_state_dict(saved)
    assert [g["fraction"] for g in restored.param_groups] == [0.2, 0.05]
    assert restored.num_steps == 10
    assert restored.min_loss == opt.min_loss

    fresh_twin = copy.deepcopy(model)
    fresh = L4(
        [{"params": fresh_twin[0].parameters()}, {"params": fresh_twin[2].parameters()}],
        fraction=0.2,
        direction=direction,
    )
    for i in range(10, 20):
        eta = one_step(opt, model, x, y, i)
        assert one_step(restored, twin, x, y, i) == eta
        assert opt.last_step_sizes == restored.last_step_sizes
        one_step(fresh, fresh_twin, x, y, i)
    assert restored.min_loss == opt.min_loss and restored.num_steps == opt.num_steps == 20
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)
    # without the loaded state (fresh moments and L_min) the trajectory is different
    assert not torch.allclose(model[0].weight, fresh_twin[0].weight)


def test_state_dict_holds_every_hyperparameter_and_a_fresh_optimizer_continues_identically():
    hyperparameters = {
        "fraction": 0.2,
        "direction": "adam",
        "gamma_l": 0.8,
        "init_factor": 0.5,
        "forget_time": 100.0,
        "beta1": 0.8,
        "beta2": 0.99,
        "adam_eps": 1e-3,
        "eps": 1e-10,
    }
    assert set(hyperparameters) == set(inspect.signature(L4).parameters) - {"params", "foreach"}
    model, x, y = mlp_problem(3)
    opt = L4(model.parameters(), **hyperparameters)
    for i in range(5):
        one_step(opt, model, x, y, i)
    saved = copy.deepcopy(opt.state_dict())
    group = saved["param_groups"][0]
    assert {name: group[name] for name in hyperparameters} == hyperparameters

    twin = copy.deepcopy(model)
    fresh = L4(twin.parameters())  # every hyperparameter at its default: the saved ones win
    fresh.load_state_dict(saved)
    assert fresh.direction == "adam"
    for i in range(5, 15):
        assert one_step(opt, model, x, y, i) == one_step(fresh, twin, x, y, i)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


def test_named_variants():
    w = torch.zeros(1, requires_grad=True)
    assert L4Mom([w]).direction == "momentum"
    assert L4Adam([w], 0.3).direction == "adam"
    assert L4Adam([w], fraction=0.3).param_groups[0]["fraction"] == 0.3
    assert L4([w]).direction == "momentum"
    with pytest.raises(TypeError):
        L4Adam([w], direction="momentum")


# --- bad inputs -----------------------------------------------------------------------------------


def test_unknown_direction_names_the_valid_ones():
    w = torch.zeros(1, requires_grad=True)
    with pytest.raises(InvalidHyperparameterError, match="direction") as info:
        L4([w], direction="sgd")
    assert "'momentum'" in str(info.value) and "'adam'" in str(info.value)
    assert "'sgd'" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"fraction": 0.0}, "fraction"),
        ({"fraction": -0.1}, "fraction"),
        ({"fraction": math.nan}, "fraction"),
        ({"gamma_l": 1.5}, "gamma_l"),
        ({"init_factor": -0.1}, "init_factor"),
        ({"forget_time": 0.0}, "forget_time"),
        ({"beta1": 1.0}, "beta1"),
        ({"beta2": -0.1}, "beta2"),
        ({"adam_eps": 0.0}, "adam_eps"),
        ({"eps": -1e-12}, "eps"),
    ],
)
def test_bad_hyperparameters(kwargs, field):
    w = torch.zeros(1, requires_grad=True)
    with pytest.raises(InvalidHyperparameterError, match=field):
        L4([w], **kwargs)


def test_bad_group_fraction():
    w = torch.zeros(1, requires_grad=True)
    with pytest.raises(InvalidHyperparameterError, match="fraction"):
        L4([{"params": [w], "fraction": 0.0}])


@pytest.mark.parametrize("override", [{"direction": "adam"}, {"beta1": 0.5}, {"eps": 0.0}])
def test_groups_cannot_override_a_shared_hyperparameter(override):
    w = torch.zeros(1, requires_grad=True)
    field = next(iter(override))
    with pytest.raises(InvalidHyperparameterError, match=f"{field} is shared by all parameter"):
        L4([{"params": [w], **override}])


def test_missing_closure():
    w = torch.ones(1, requires_grad=True)
    opt = L4([w])
    w.grad = torch.ones(1)
    with pytest.raises(MissingClosureError, match="closure"):
        opt.step()
    assert opt.num_steps == 0 and opt.min_loss is None
    assert w.item() == 1.0
