"""ALI-G against the paper's toy examples, a reference implementation and its own slow path."""

import copy
import inspect
import io
import math

import pytest
import torch
from pytorch_optimizer import AliG as ReferenceAliG

from optim.alig import AliG
from optim.exceptions import InvalidHyperparameterError, MissingClosureError
from optim.reference import AliGReference
from tests.optim.helpers import assert_matches_reference, batches, flat, mlp, regression_data


def figure2_run(max_lr: float | None, steps: int) -> list[float]:
    """f(w) = w² − |w|³ from w = 0.6 with eps = 0 (the paper's Figure 2); the iterates."""
    w = torch.tensor([0.6], dtype=torch.float64, requires_grad=True)
    optimizer = AliG([w], max_lr=max_lr, eps=0.0)
    iterates = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (w.pow(2) - w.abs().pow(3)).sum()
        loss.backward()
        optimizer.step(lambda loss=loss: loss)
        iterates.append(w.item())
    return iterates


def test_figure2_alig_infinity_oscillates_between_plus_and_minus_0_6():
    # At ±0.6: f = 0.144, f' = ±0.12, so the Polyak step is exactly 0.144 / 0.0144 = 10 and the
    # iterate jumps to ∓0.6. The orbit is unstable (rounding errors grow ~16× per step), so
    # float64 can hold it for a handful of steps only.
    iterates = figure2_run(None, 6)
    for k, w in enumerate(iterates):
        assert w == pytest.approx(0.6 * (-1) ** (k + 1), abs=1e-6)


def test_figure2_step_of_alig_infinity_is_exactly_ten():
    w = torch.tensor([0.6], dtype=torch.float64, requires_grad=True)
    optimizer = AliG([w], max_lr=None, eps=0.0)
    loss = (w.pow(2) - w.abs().pow(3)).sum()
    loss.backward()
    optimizer.step(lambda: loss)
    assert optimizer.last_step_size == pytest.approx(10.0, rel=1e-12)
    assert optimizer.last_step_capped is False


@pytest.mark.parametrize("max_lr", [1.0, 9.9])
def test_figure2_capped_alig_converges_to_zero(max_lr):
    iterates = figure2_run(max_lr, 100)
    assert abs(iterates[-1]) < 1e-6


def test_capped_step_is_reported():
    iterates_w = torch.tensor([0.6], dtype=torch.float64, requires_grad=True)
    optimizer = AliG([iterates_w], max_lr=1.0, eps=0.0)
    loss = (iterates_w.pow(2) - iterates_w.abs().pow(3)).sum()
    loss.backward()
    optimizer.step(lambda: loss)
    assert optimizer.last_step_size == 1.0
    assert optimizer.last_step_capped is True
    assert iterates_w.item() == pytest.approx(0.6 - 0.12)


def test_polyak_step_is_newton_step_on_root_finding():
    # In 1-D the Polyak step with f* = 0 is w - (f / f'^2) f' = w - f / f': Newton-Raphson on
    # f(w) = 0. For the convex f(w) = w^2 - 4 started right of its root w* = 2 (so f > 0 all the
    # way), ALI-G∞ must reproduce Newton's iterates w - (w^2 - 4) / (2w) exactly.
    w = torch.tensor([5.0], dtype=torch.float64, requires_grad=True)
    optimizer = AliG([w], max_lr=None, eps=0.0)
    expected = 5.0
    for _ in range(8):
        optimizer.zero_grad()
        loss = (w.pow(2) - 4).sum()
        loss.backward()
        optimizer.step(lambda loss=loss: loss)
        expected = expected - (expected**2 - 4) / (2 * expected)
        assert w.item() == pytest.approx(expected, rel=1e-12)
    assert w.item() == pytest.approx(2.0, abs=1e-10)


def test_negative_loss_never_gives_an_ascent_step():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    optimizer = AliG([w], max_lr=10.0)
    loss = w.pow(2).sum() - 100.0  # negative
    loss.backward()
    optimizer.step(lambda: loss)
    assert optimizer.last_step_size == 0.0
    assert torch.equal(w.detach(), torch.tensor([1.0, -2.0]))


def train(model, optimizer, steps: int = 50) -> list[float]:
    x, y = regression_data()
    losses = []
    for step in range(steps):
        _, xb, yb = batches(step, x, y)
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        optimizer.step(lambda loss=loss: loss)
        losses.append(loss.item())
    return losses


def mse_step(model, optimizer, xb, yb) -> None:
    """One step of ``optimizer`` on the mean squared error of ``model`` on ``(xb, yb)``."""
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(xb), yb)
    loss.backward()
    optimizer.step(lambda loss=loss: float(loss.detach()))


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_capped_trajectory_equals_pytorch_optimizer_alig(momentum):
    ours, theirs = mlp(), mlp()
    optimizer = AliG(ours.parameters(), max_lr=0.1, momentum=momentum, eps=1e-6)
    reference = ReferenceAliG(theirs.parameters(), max_lr=0.1, momentum=momentum)
    x, y = regression_data()
    capped = 0
    for step in range(50):
        _, xb, yb = batches(step, x, y)
        mse_step(ours, optimizer, xb, yb)
        mse_step(theirs, reference, xb, yb)
        torch.testing.assert_close(flat(ours), flat(theirs), rtol=1e-5, atol=1e-6)
        capped += optimizer.last_step_capped
    assert capped >= 10, capped  # η binds (50 of 50 steps without momentum, 15 with, here)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("max_lr", [0.1, None])
def test_every_step_equals_pytorch_optimizer_alig(momentum, max_lr):
    # Each of 50 steps along our trajectory, taken by both optimizers from the same parameters
    # and momentum buffers. ALI-G∞'s trajectory itself cannot be compared to 1e-5: the reference
    # squares and sums the gradient norms in float32 where we do it in double, and on this
    # problem one such 6e-8 relative change of a single uncapped step grows to ~1e-4 relative
    # in the parameters within 50 steps (measured), whoever is right.
    ours, theirs = mlp(), mlp()
    optimizer = AliG(ours.parameters(), max_lr=max_lr, momentum=momentum, eps=1e-6)
    reference = ReferenceAliG(theirs.parameters(), max_lr=max_lr, momentum=momentum)
    x, y = regression_data()
    for step in range(50):
        _, xb, yb = batches(step, x, y)
        theirs.load_state_dict(ours.state_dict())
        for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
            if (buffer := optimizer.state[p].get("momentum_buffer")) is not None:
                reference.state[q]["momentum_buffer"] = buffer.clone()
        mse_step(ours, optimizer, xb, yb)
        mse_step(theirs, reference, xb, yb)
        torch.testing.assert_close(flat(ours), flat(theirs), rtol=1e-5, atol=1e-6)
        their_step_size = reference.param_groups[0]["step_size"]
        assert optimizer.last_step_size == pytest.approx(their_step_size, rel=1e-6)


@pytest.mark.parametrize("radius", [None, 2.0])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_foreach_matches_forloop(momentum, radius):
    # float64 so that the two summation orders agree to ~1e-12 over all 50 steps
    fast, slow = mlp(dtype=torch.float64), mlp(dtype=torch.float64)
    groups_fast = [
        {"params": list(fast[0].parameters())},
        {"params": list(fast[2].parameters()), "max_lr": 0.05},
    ]
    groups_slow = [
        {"params": list(slow[0].parameters())},
        {"params": list(slow[2].parameters()), "max_lr": 0.05},
    ]
    a = AliG(groups_fast, max_lr=0.5, momentum=momentum, radius=radius, foreach=True)
    b = AliG(groups_slow, max_lr=0.5, momentum=momentum, radius=radius, foreach=False)
    x, y = regression_data(dtype=torch.float64)
    for step in range(50):
        _, xb, yb = batches(step, x, y)
        for model, opt in ((fast, a), (slow, b)):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            loss.backward()
            opt.step(lambda loss=loss: loss)
        assert a.last_step_sizes == pytest.approx(b.last_step_sizes, rel=1e-10)
        torch.testing.assert_close(flat(fast), flat(slow), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize(
    ("options", "second"),
    [
        ({"max_lr": 0.5}, {}),
        ({"max_lr": 0.5, "momentum": 0.9}, {"max_lr": 0.05}),
        ({"max_lr": None, "momentum": 0.5, "eps": 1e-3}, {"max_lr": 0.2, "momentum": 0.9}),
        ({"max_lr": 1.0, "momentum": 0.9, "radius": 2.0}, {"momentum": 0.0}),
    ],
)
def test_matches_the_reference_step_by_step(options, second, foreach):
    optimizer, _ = assert_matches_reference(
        lambda groups: AliG(groups, **options, foreach=foreach),
        AliGReference,
        **second,
    )
    assert optimizer.last_step_size is not None


def test_projection_keeps_global_norm_within_radius():
    model = mlp()
    initial = flat(model).norm().item()
    radius = initial / 3
    optimizer = AliG(model.parameters(), max_lr=5.0, radius=radius)
    assert flat(model).norm().item() == pytest.approx(radius, rel=1e-5)  # at construction
    x, y = regression_data()
    for step in range(30):
        _, xb, yb = batches(step, x, y)
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        optimizer.step(lambda loss=loss: loss)
        assert flat(model).norm().item() <= radius * (1 + 1e-6)


def test_projection_is_joint_over_all_groups():
    a = torch.full((3,), 2.0, requires_grad=True)
    b = torch.full((4,), 2.0, requires_grad=True)
    AliG([{"params": [a]}, {"params": [b]}], max_lr=1.0, radius=1.0)
    joint = torch.cat([a.detach(), b.detach()])
    assert joint.norm().item() == pytest.approx(1.0, rel=1e-6)
    # one common scale: the direction is unchanged
    assert torch.allclose(a.detach(), torch.full((3,), 2.0 / math.sqrt(28.0)))


def test_loss_decreases_on_regression():
    model = mlp()
    losses = train(model, AliG(model.parameters(), max_lr=1.0, momentum=0.9), steps=100)
    assert sum(losses[-10:]) / 10 < 0.2 * sum(losses[:10]) / 10


def test_state_dict_round_trip_continues_identically():
    model = mlp()
    optimizer = AliG(model.parameters(), max_lr=0.5, momentum=0.9)
    train(model, optimizer, steps=10)
    twin = copy.deepcopy(model)
    twin_optimizer = AliG(twin.parameters(), max_lr=123.0, momentum=0.1)
    twin_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    assert twin_optimizer.param_groups[0]["max_lr"] == 0.5
    train(model, optimizer, steps=10)
    train(twin, twin_optimizer, steps=10)
    assert torch.equal(flat(model), flat(twin))


def test_state_dict_holds_every_hyperparameter_and_a_fresh_optimizer_continues_identically():
    hyperparameters = {"max_lr": 0.3, "momentum": 0.9, "radius": 4.0, "eps": 1e-3}
    assert set(hyperparameters) == set(inspect.signature(AliG).parameters) - {"params", "foreach"}
    model = mlp()
    optimizer = AliG(model.parameters(), **hyperparameters)
    train(model, optimizer, steps=5)
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    group = saved["param_groups"][0]
    assert {name: group[name] for name in hyperparameters} == hyperparameters

    twin = copy.deepcopy(model)
    fresh = AliG(twin.parameters())  # every hyperparameter at its default: the saved ones win
    fresh.load_state_dict(saved)
    assert train(model, optimizer, steps=10) == train(twin, fresh, steps=10)
    assert torch.equal(flat(model), flat(twin))


def test_works_under_grad_scaler_with_positional_closure():
    # On CPU a disabled scaler is the identity; the enabled form needs a device with AMP support.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = mlp().to(device)
    optimizer = AliG(model.parameters(), max_lr=1.0)
    scaler = torch.amp.GradScaler(device, enabled=device == "cuda", init_scale=1024.0)
    x, y = (t.to(device) for t in regression_data())
    before = flat(model)
    loss = torch.nn.functional.mse_loss(model(x), y)
    scaler.scale(loss).backward()
    scaler.step(optimizer, lambda: loss)  # the unscaled loss; .grad is unscaled by the scaler
    scaler.update()
    unscaled = mlp().to(device)
    reference = AliG(unscaled.parameters(), max_lr=1.0)
    torch.nn.functional.mse_loss(unscaled(x), y).backward()
    reference.step(lambda: torch.nn.functional.mse_loss(unscaled(x), y).detach())
    assert optimizer.last_step_size == pytest.approx(reference.last_step_size, rel=1e-4)
    assert not torch.equal(flat(model), before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    cpu, gpu = mlp(), mlp().cuda()
    a = AliG(cpu.parameters(), max_lr=0.5, momentum=0.9, radius=5.0)
    b = AliG(gpu.parameters(), max_lr=0.5, momentum=0.9, radius=5.0)
    x, y = regression_data()
    for step in range(20):
        _, xb, yb = batches(step, x, y)
        for model, opt, dev in ((cpu, a, "cpu"), (gpu, b, "cuda")):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(xb.to(dev)), yb.to(dev))
            loss.backward()
            opt.step(lambda loss=loss: loss)
    torch.testing.assert_close(flat(gpu).cpu(), flat(cpu), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_lr": -1.0}, "max_lr"),
        ({"max_lr": 0.0}, "max_lr"),
        ({"max_lr": float("nan")}, "max_lr"),
        ({"max_lr": float("inf")}, "max_lr"),
        ({"momentum": -0.1}, "momentum"),
        ({"momentum": 1.0}, "momentum"),
        ({"radius": 0.0}, "radius"),
        ({"radius": -3.0}, "radius"),
        ({"eps": -1e-5}, "eps"),
    ],
)
def test_bad_hyperparameters_name_the_field(kwargs, field):
    with pytest.raises(InvalidHyperparameterError, match=field):
        AliG(mlp().parameters(), **kwargs)


def test_bad_group_override_is_rejected():
    with pytest.raises(ValueError, match="max_lr"):
        AliG([{"params": mlp().parameters(), "max_lr": -2.0}], max_lr=1.0)


@pytest.mark.parametrize("override", [{"radius": 1.0}, {"eps": 0.1}])
def test_groups_cannot_override_a_shared_hyperparameter(override):
    field = next(iter(override))
    with pytest.raises(InvalidHyperparameterError, match=f"{field} is shared by all parameter"):
        AliG([{"params": mlp().parameters(), **override}], max_lr=1.0)


def test_missing_closure_says_how_to_fix_it():
    model = mlp()
    optimizer = AliG(model.parameters(), max_lr=1.0)
    with pytest.raises(MissingClosureError, match=r"optimizer\.step\(lambda: loss\)"):
        optimizer.step()
    with pytest.raises(ValueError, match="scalar"):
        optimizer.step(lambda: torch.ones(3))
