"""AALIG: the step size, the AOV schedule, its two code paths and its saved state."""

import copy
import inspect
import io

import pytest
import torch

from optim.aalig import AALIG
from optim.alig import AliG
from optim.aov_schedule import section_ends
from optim.exceptions import InvalidHyperparameterError, MissingClosureError
from optim.reference import AALIGReference
from tests.optim.helpers import assert_matches_reference, batches, flat, mlp, regression_data

F64 = torch.float64


def feed(optimizer: AALIG, indices: list[int], losses: list[float]) -> None:
    """One step on given per-sample losses with no gradient (so the parameters cannot move)."""
    optimizer.zero_grad(set_to_none=True)
    optimizer.step(lambda: (torch.tensor(indices), torch.tensor(losses, dtype=F64)))


def scalar_optimizer(**kwargs) -> AALIG:
    """AALIG on one float64 scalar (AOVs in float64), eps = 0 so a zero gradient is no step."""
    w = torch.zeros(1, dtype=F64, requires_grad=True)
    options = {"max_lr": 1.0, "momentum": 0.0, "eps": 0.0} | kwargs
    return AALIG([w], **options)


# ---------------------------------------------------------------- 1. AOV updates by hand


def test_aov_updates_by_hand_over_three_sections():
    # epochs = sections = 3: every epoch closes a section; B = 0 so a = d = 0 at the start.
    # One epoch per section, so the reference lbar is that epoch's loss.
    #
    # z0 never reached, lbar = 2, 1.5, 1.5:
    #   S1: 2 > 0      -> d = 1,      a = 1
    #   S2: 1.5 > 1    -> d = 0.25,   a = 1.25
    #   S3: 1.5 > 1.25 -> d = 0.125,  a = 1.375
    # z1 reached once, lbar = 4, 1, 3:
    #   S1: 4 > 0      -> d = 2,      a = 2
    #   S2: 1 <= 2     -> reached:    a = max(0, 2 - 2/2) = 1,   d stays 2
    #   S3: 3 > 1      -> d = 1,      a = 2
    # z2 reached twice, lbar = 8, 2, 1:
    #   S1: 8 > 0      -> d = 4,      a = 4
    #   S2: 2 <= 4     -> reached:    a = 4 - 4/2 = 2,           d stays 4
    #   S3: 1 <= 2     -> reached:    a = max(0, 2 - 4/2) = 0    (down by the same 2 again)
    # z3 not seen in section 2, lbar = 2, -, 0.5:
    #   S1: 2 > 0      -> d = 1,      a = 1
    #   S2: no reference: a stays 1
    #   S3: 0.5 <= 1   -> reached:    a = max(0, 1 - 1/2) = 0.5
    optimizer = scalar_optimizer(n_samples=4, epochs=3, sections=3)
    assert optimizer.section_ends == (1, 2, 3)
    assert torch.equal(optimizer.aov, torch.zeros(4, dtype=F64))

    feed(optimizer, [0, 1, 2, 3], [2.0, 4.0, 8.0, 2.0])
    assert optimizer.end_epoch() is True
    assert optimizer.aov.tolist() == [1.0, 2.0, 4.0, 1.0]

    feed(optimizer, [0, 1, 2], [1.5, 1.0, 2.0])
    assert optimizer.end_epoch() is True
    assert optimizer.aov.tolist() == [1.25, 1.0, 2.0, 1.0]

    feed(optimizer, [3, 1], [0.5, 3.0])  # two batches in the last epoch
    feed(optimizer, [0, 2], [1.5, 1.0])
    assert optimizer.end_epoch() is True
    assert optimizer.aov.tolist() == [1.375, 2.0, 0.0, 0.5]


def test_aov_reached_three_times_stops_at_the_lower_bound():
    # B = 0.5, lbar = 4.5 then 0.5 three times: S1: d = 2, a = 2.5; S2: a = 1.5; S3: a = 0.5;
    # S4: max(0.5, 0.5 - 1) = 0.5 (clamped at B).
    optimizer = scalar_optimizer(n_samples=1, epochs=4, sections=4, lower_bound=0.5)
    expected = [2.5, 1.5, 0.5, 0.5]
    for loss, aov in zip([4.5, 0.5, 0.5, 0.5], expected, strict=True):
        feed(optimizer, [0], [loss])
        assert optimizer.end_epoch() is True
        assert optimizer.aov.tolist() == [aov]


def test_aov_is_used_by_the_step():
    # After one section with lbar = 2: a = 1. A batch with loss 1 is then "reached": no step.
    optimizer = scalar_optimizer(n_samples=1, epochs=2, sections=2)
    feed(optimizer, [0], [2.0])
    optimizer.end_epoch()
    w = optimizer.param_groups[0]["params"][0]
    optimizer.zero_grad()
    loss = (1.0 + w * 3.0).sum()  # l = 1 at w = 0, gradient 3
    loss.backward()
    optimizer.step(lambda: (torch.tensor([0]), loss.reshape(1)))
    assert optimizer.last_step_size == 0.0
    assert w.item() == 0.0


# ---------------------------------------------------------------- 2. best epoch of a section


def test_reference_is_the_lowest_mean_epoch_not_the_last():
    # epochs = 4, sections = 2: sections close after epochs 2 and 4.
    # Section 1: epoch 1 losses [1, 3] (mean 2), epoch 2 [2, 2.5] (mean 2.25) -> lbar = [1, 3]
    #   (the last epoch would give a = [1, 1.25], the per-sample minimum [0.5, 1.25]):
    #   z0: d = 0.5, a = 0.5;   z1: d = 1.5, a = 1.5
    # Section 2: epoch 3 [3, 3] (mean 3), epoch 4 [2, 1] (mean 1.5) -> lbar = [2, 1]:
    #   z0: 2 > 0.5 -> d = 0.75, a = 1.25;   z1: 1 <= 1.5 -> a = 1.5 - 1.5 / 2 = 0.75
    optimizer = scalar_optimizer(n_samples=2, epochs=4, sections=2)
    assert optimizer.section_ends == (2, 4)
    closed = []
    for losses in ([1.0, 3.0], [2.0, 2.5], [3.0, 3.0], [2.0, 1.0]):
        feed(optimizer, [0, 1], losses)
        closed.append(optimizer.end_epoch())
        if len(closed) == 2:
            assert optimizer.aov.tolist() == [0.5, 1.5]
    assert closed == [False, True, False, True]
    assert optimizer.last_epoch_mean == 1.5
    assert optimizer.aov.tolist() == [1.25, 0.75]


def test_samples_missing_from_the_best_epoch_use_their_best_epoch_that_saw_them():
    # One section of 2 epochs. Epoch 1 sees z0, z1, z2 with [1, 1, 4] (mean 2); epoch 2 sees
    # z0, z1 only with [0.5, 0.5] (mean 0.5, the best). z0, z1: lbar = 0.5 -> a = 0.25;
    # z2: lbar = 4 from epoch 1 -> a = 2; z3 is never seen and keeps a = B = 0.
    optimizer = scalar_optimizer(n_samples=4, epochs=2, sections=1)
    feed(optimizer, [0, 1, 2], [1.0, 1.0, 4.0])
    assert optimizer.end_epoch() is False
    feed(optimizer, [1, 0], [0.5, 0.5])
    assert optimizer.end_epoch() is True
    assert optimizer.aov.tolist() == [0.25, 0.25, 2.0, 0.0]


# ---------------------------------------------------------------- 3. fewer epochs than K


def test_fewer_epochs_than_sections_updates_every_epoch_and_at_the_end():
    # epochs = 3 < sections = 10: three updates, the last at the end. Loss 1 every epoch:
    # a = 0.5, 0.75, 0.875 (never reached).
    optimizer = scalar_optimizer(n_samples=1, epochs=3, sections=10)
    assert optimizer.section_ends == (1, 2, 3)
    aovs, closed = [], []
    for _ in range(3):
        feed(optimizer, [0], [1.0])
        closed.append(optimizer.end_epoch())
        aovs.append(optimizer.aov.item())
    assert closed == [True, True, True]
    assert aovs == [0.5, 0.75, 0.875]
    # past the budget no section closes and the AOVs stay
    feed(optimizer, [0], [5.0])
    assert optimizer.end_epoch() is False
    assert optimizer.aov.item() == 0.875
    assert optimizer.epoch == 4


@pytest.mark.parametrize(
    ("epochs", "sections", "ends"),
    [
        (20, 10, (2, 4, 6, 8, 10, 12, 14, 16, 18, 20)),
        (25, 10, (3, 5, 8, 10, 13, 15, 18, 20, 23, 25)),
        (7, 3, (3, 5, 7)),
        (1, 10, (1,)),
        (5, 1, (5,)),
    ],
)
def test_section_schedule(epochs, sections, ends):
    assert section_ends(epochs, sections) == ends


# ---------------------------------------------------------------- 4. foreach == reference


def train(model, optimizer: AALIG, steps: int, start: int = 0, dtype=torch.float32) -> list[float]:
    """Steps ``start .. start + steps - 1`` on the regression data (4 batches of 16 per epoch)."""
    x, y = regression_data(dtype=dtype)
    means = []
    for step in range(start, start + steps):
        index, xb, yb = batches(step, x, y)

        def closure(model=model, xb=xb, yb=yb, index=index):
            optimizer.zero_grad()
            losses = (model(xb) - yb).pow(2).squeeze(1)
            losses.mean().backward()
            return index, losses

        indices, losses = optimizer.step(closure)
        assert indices is index
        means.append(losses.mean().item())
        if (step + 1) % 4 == 0:
            optimizer.end_epoch()
    return means


def two_groups(model) -> list[dict]:
    return [
        {"params": list(model[0].parameters())},
        {"params": list(model[2].parameters()), "max_lr": 0.05},
    ]


def test_foreach_matches_reference_path():
    # float64 so that the two summation orders agree to ~1e-12 over all 50 steps
    fast, slow = mlp(dtype=F64), mlp(dtype=F64)
    options = {"max_lr": 0.5, "n_samples": 64, "epochs": 13, "sections": 5}
    options |= {"momentum": 0.9, "weight_decay": 1e-4}
    a = AALIG(two_groups(fast), **options, foreach=True)
    b = AALIG(two_groups(slow), **options, foreach=False)
    x, y = regression_data(dtype=F64)
    capped = 0
    for step in range(50):
        index, xb, yb = batches(step, x, y)
        for model, opt in ((fast, a), (slow, b)):
            opt.zero_grad()
            losses = (model(xb) - yb).pow(2).squeeze(1)
            losses.mean().backward()
            opt.step(lambda index=index, losses=losses: (index, losses))
            if (step + 1) % 4 == 0:
                assert opt.end_epoch() == ((step + 1) // 4 in a.section_ends)
        assert a.last_step_sizes == pytest.approx(b.last_step_sizes, rel=1e-10)
        capped += a.last_step_capped
        torch.testing.assert_close(flat(fast), flat(slow), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(a.aov, b.aov, rtol=1e-10, atol=1e-12)
    assert a.aov.gt(0).all()  # the sections closed after epochs 3, 6, 8, 11 moved every AOV
    assert 0 < capped < 50  # both regimes were exercised
    assert torch.isfinite(flat(fast)).all()


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize(
    ("options", "second"),
    [
        ({"momentum": 0.0}, {}),
        ({"momentum": 0.9, "weight_decay": 1e-4}, {"max_lr": 0.05, "momentum": 0.5}),
        (
            {"momentum": 0.9, "sections": 3, "lower_bound": 0.01, "eps": 1e-3},
            {"weight_decay": 1e-2},
        ),
    ],
)
def test_matches_the_reference_step_by_step(options, second, foreach):
    # 64 samples, 4 steps an epoch, 40 steps = 10 epochs: sections close after epochs 3, 6, 8,
    # 11 (5 sections of 13 epochs) or 5, 9 (3 sections).
    options = {"max_lr": 0.5, "n_samples": 64, "epochs": 13, "sections": 5} | options
    optimizer, reference = assert_matches_reference(
        lambda groups: AALIG(groups, **options, foreach=foreach),
        AALIGReference,
        steps=40,
        **second,
    )
    assert optimizer.epoch == reference.epoch == 10
    expected = torch.tensor(reference.aov, dtype=F64)
    torch.testing.assert_close(optimizer.aov, expected, rtol=1e-12, atol=1e-14)
    assert optimizer.aov.gt(options.get("lower_bound", 0.0)).any()  # the sections moved them


def test_loss_decreases_on_regression():
    model = mlp()
    optimizer = AALIG(model.parameters(), max_lr=1.0, n_samples=64, epochs=25, momentum=0.9)
    means = train(model, optimizer, steps=100)
    assert sum(means[-8:]) / 8 < 0.2 * sum(means[:8]) / 8


def test_plain_aalig_without_aovs_is_alig_without_radius():
    # With a = B = 0 (no section closed yet) and no decay, AALIG's step is ALI-G's.
    ours, theirs = mlp(dtype=F64), mlp(dtype=F64)
    optimizer = AALIG(ours.parameters(), max_lr=0.5, n_samples=64, epochs=10, momentum=0.9)
    alig = AliG(theirs.parameters(), max_lr=0.5, momentum=0.9, eps=1e-9)  # AALIG's default δ
    x, y = regression_data(dtype=F64)
    for step in range(3):  # within the first epoch
        index, xb, yb = batches(step, x, y)
        optimizer.zero_grad()
        losses = (ours(xb) - yb).pow(2).squeeze(1)
        losses.mean().backward()
        optimizer.step(lambda index=index, losses=losses: (index, losses))
        alig.zero_grad()
        loss = (theirs(xb) - yb).pow(2).squeeze(1).mean()
        loss.backward()
        alig.step(lambda loss=loss: loss)
        assert optimizer.last_step_size == pytest.approx(alig.last_step_size, rel=1e-12)
        torch.testing.assert_close(flat(ours), flat(theirs), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- 5. the step by hand


X = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=F64)  # l_z(w) = x_z . w


def linear_step(optimizer: AALIG, w: torch.Tensor, indices: list[int]) -> None:
    optimizer.zero_grad()
    losses = X[indices] @ w
    losses.mean().backward()
    optimizer.step(lambda: (torch.tensor(indices), losses))


def hand_optimizer(**kwargs) -> tuple[AALIG, torch.Tensor]:
    """w = (1, 1); AOVs a = (1, 0.5, 2) set by one closed section with lbar = (2, 1, 4)."""
    w = torch.ones(2, dtype=F64, requires_grad=True)
    optimizer = AALIG([w], n_samples=3, epochs=1, sections=1, **kwargs)
    feed(optimizer, [0, 1, 2], [2.0, 1.0, 4.0])  # no gradient and eps = 0: no step
    assert torch.equal(w.detach(), torch.ones(2, dtype=F64))
    assert optimizer.end_epoch() is True
    assert optimizer.aov.tolist() == [1.0, 0.5, 2.0]
    return optimizer, w


@pytest.mark.parametrize("foreach", [True, False])
def test_step_size_and_weight_decay_by_hand(foreach):
    # Batch z = (1, 2) at w = (1, 1): l = (1, 2), mean 1.5; g = (x1 + x2) / 2 = (0.5, 1),
    # ||g||^2 = 1.25; the batch's AOVs (0.5, 2) have mean 1.25 (all three: 7/6).
    # gamma = (1.5 - 1.25) / 1.25 = 0.2 (eps = 0), under max_lr = 10.
    # w <- w - 0.2 (g + 0.1 w) = (1 - 0.2 * 0.6, 1 - 0.2 * 1.1) = (0.88, 0.78)
    # (decay inside ||.||^2 would give gamma = 0.25 / 1.57).
    optimizer, w = hand_optimizer(
        max_lr=10.0, momentum=0.0, weight_decay=0.1, eps=0.0, foreach=foreach
    )
    linear_step(optimizer, w, [1, 2])
    assert optimizer.last_step_size == pytest.approx(0.2, rel=1e-12)
    assert optimizer.last_step_capped is False
    torch.testing.assert_close(w.detach(), torch.tensor([0.88, 0.78], dtype=F64))


@pytest.mark.parametrize("foreach", [True, False])
def test_step_is_capped_at_max_lr(foreach):
    # Same step with max_lr = 0.1 < 0.2: w <- w - 0.1 (g + 0.1 w) = (0.94, 0.89).
    optimizer, w = hand_optimizer(
        max_lr=0.1, momentum=0.0, weight_decay=0.1, eps=0.0, foreach=foreach
    )
    linear_step(optimizer, w, [1, 2])
    assert optimizer.last_step_size == 0.1
    assert optimizer.last_step_capped is True
    torch.testing.assert_close(w.detach(), torch.tensor([0.94, 0.89], dtype=F64))


def test_eps_enters_the_denominator():
    # eps = 0.0025: gamma = 0.25 / 1.2525; no decay: w <- w - gamma g.
    optimizer, w = hand_optimizer(max_lr=10.0, momentum=0.0, eps=0.0025)
    linear_step(optimizer, w, [1, 2])
    gamma = 0.25 / 1.2525
    assert optimizer.last_step_size == pytest.approx(gamma, rel=1e-12)
    torch.testing.assert_close(w.detach(), torch.tensor([1 - 0.5 * gamma, 1 - gamma], dtype=F64))


@pytest.mark.parametrize("foreach", [True, False])
def test_momentum_is_nesterov_on_the_gradient_without_decay(foreach):
    # gamma = 0.2 as above, mu = 0.5, lambda = 0.1:
    #   w' = w - 0.2 (g + 0.1 w) = (0.88, 0.78);  v = -0.2 g = (-0.1, -0.2);  w = w' + 0.5 v
    #   = (0.83, 0.68)   (v with the decay term would give (0.82, 0.67)).
    # Next batch z = (0,) at w = (0.83, 0.68): l = 0.83 <= a_0 = 1, so gamma = 0: no gradient
    # step and no decay, but the momentum carries on: v = 0.5 v = (-0.05, -0.1),
    #   w = w + 0.5 v = (0.805, 0.63).
    optimizer, w = hand_optimizer(
        max_lr=10.0, momentum=0.5, weight_decay=0.1, eps=0.0, foreach=foreach
    )
    linear_step(optimizer, w, [1, 2])
    torch.testing.assert_close(w.detach(), torch.tensor([0.83, 0.68], dtype=F64))
    linear_step(optimizer, w, [0])
    assert optimizer.last_step_size == 0.0
    assert optimizer.last_step_capped is False
    torch.testing.assert_close(w.detach(), torch.tensor([0.805, 0.63], dtype=F64))


def test_no_step_when_the_batch_loss_is_at_or_below_its_aovs():
    # lower_bound 3: every a = 3 >= l = (1, 2): gamma = 0 and, without momentum, w is unchanged
    # (weight decay included: it only acts through gamma).
    w = torch.ones(2, dtype=F64, requires_grad=True)
    optimizer = AALIG(
        [w], max_lr=10.0, n_samples=3, epochs=1, momentum=0.0, weight_decay=0.1, lower_bound=3.0
    )
    linear_step(optimizer, w, [1, 2])
    assert optimizer.last_step_size == 0.0
    assert torch.equal(w.detach(), torch.ones(2, dtype=F64))


def test_one_global_norm_and_per_group_max_lr():
    # Two groups, one coordinate each: l = 2 a + b at (1, 1), g = (2, 1), ||g||^2 = 5 over both
    # groups: gamma = 3 / 5 = 0.6; group 2 caps it at 0.1.
    a = torch.ones(1, dtype=F64, requires_grad=True)
    b = torch.ones(1, dtype=F64, requires_grad=True)
    optimizer = AALIG(
        [{"params": [a]}, {"params": [b], "max_lr": 0.1}],
        max_lr=1.0,
        n_samples=1,
        epochs=1,
        momentum=0.0,
        eps=0.0,
    )
    loss = 2 * a + b
    loss.sum().backward()
    optimizer.step(lambda: (torch.tensor([0]), loss.detach()))
    assert optimizer.last_step_sizes == pytest.approx([0.6, 0.1], rel=1e-12)
    assert optimizer.last_step_capped is False
    assert a.item() == pytest.approx(1 - 0.6 * 2, rel=1e-12)
    assert b.item() == pytest.approx(1 - 0.1 * 1, rel=1e-12)


# ---------------------------------------------------------------- 6. saved state


def test_state_dict_round_trip_continues_identically():
    # 64 samples, 4 steps an epoch; sections close after epochs 2, 4, 6. Save after 2 epochs
    # and one more step (so the epoch buffer is half full and the AOVs have moved once).
    model = mlp()
    options = {"max_lr": 0.5, "n_samples": 64, "epochs": 6, "sections": 3}
    optimizer = AALIG(model.parameters(), **options, momentum=0.9, weight_decay=1e-4)
    train(model, optimizer, steps=9)
    assert optimizer.aov.gt(0).all()

    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    twin = mlp(seed=7)
    twin.load_state_dict(saved["model"])
    # different constructor arguments: the saved ones win, as torch does for param_groups
    twin_optimizer = AALIG(twin.parameters(), max_lr=9.0, n_samples=64, epochs=60, momentum=0.1)
    twin_optimizer.load_state_dict(saved["optimizer"])
    assert twin_optimizer.section_ends == (2, 4, 6)
    assert twin_optimizer.epoch == 2
    assert torch.equal(twin_optimizer.aov, optimizer.aov)

    ours = train(model, optimizer, steps=15, start=9)
    theirs = train(twin, twin_optimizer, steps=15, start=9)
    assert ours == theirs
    assert torch.equal(flat(model), flat(twin))
    assert torch.equal(optimizer.aov, twin_optimizer.aov)
    assert optimizer.epoch == twin_optimizer.epoch == 6


def test_state_dict_holds_every_hyperparameter_and_a_fresh_optimizer_continues_identically():
    hyperparameters = {"max_lr": 0.4, "n_samples": 64, "epochs": 6, "momentum": 0.5}
    hyperparameters |= {"weight_decay": 1e-3, "sections": 3, "lower_bound": 0.01, "eps": 1e-4}
    assert set(hyperparameters) == set(inspect.signature(AALIG).parameters) - {"params", "foreach"}
    model = mlp()
    optimizer = AALIG(model.parameters(), **hyperparameters)
    train(model, optimizer, steps=9)
    saved = copy.deepcopy(optimizer.state_dict())
    group = saved["param_groups"][0]
    assert {name: group[name] for name in hyperparameters} == hyperparameters

    twin = copy.deepcopy(model)
    # the required arguments only, all different: the saved hyperparameters win
    fresh = AALIG(twin.parameters(), max_lr=9.0, n_samples=10, epochs=60)
    fresh.load_state_dict(saved)
    assert fresh.section_ends == (2, 4, 6)
    assert train(model, optimizer, steps=15, start=9) == train(twin, fresh, steps=15, start=9)
    assert torch.equal(flat(model), flat(twin))
    assert torch.equal(optimizer.aov, fresh.aov)


def test_load_state_dict_rejects_a_state_of_another_version():
    optimizer = scalar_optimizer(n_samples=1, epochs=1, sections=1)
    state = optimizer.state_dict()
    state["aalig"]["version"] = 1
    with pytest.raises(InvalidHyperparameterError, match="version 1"):
        scalar_optimizer(n_samples=1, epochs=1, sections=1).load_state_dict(state)


def test_round_trip_keeps_the_partial_epoch():
    # The reference of the section includes the losses recorded before saving.
    optimizer = scalar_optimizer(n_samples=2, epochs=1, sections=1)
    feed(optimizer, [0], [2.0])
    twin = scalar_optimizer(n_samples=2, epochs=1, sections=1)
    twin.load_state_dict(optimizer.state_dict())
    feed(twin, [1], [4.0])
    assert twin.end_epoch() is True
    assert twin.aov.tolist() == [1.0, 2.0]


def test_state_dict_does_not_alias_the_live_buffers():
    optimizer = scalar_optimizer(n_samples=1, epochs=2, sections=2)
    feed(optimizer, [0], [2.0])
    state = optimizer.state_dict()
    optimizer.end_epoch()
    assert optimizer.aov.item() == 1.0
    assert state["aalig"]["aov"].item() == 0.0
    assert state["aalig"]["epoch_loss"].item() == 2.0


def test_deepcopy_keeps_the_aovs():
    optimizer = scalar_optimizer(n_samples=1, epochs=2, sections=2)
    feed(optimizer, [0], [2.0])
    optimizer.end_epoch()
    clone = copy.deepcopy(optimizer)
    assert clone.aov.tolist() == [1.0]
    assert clone.epoch == 1
    feed(clone, [0], [4.0])
    assert clone.end_epoch() is True
    assert clone.aov.tolist() == [2.5]
    assert optimizer.aov.tolist() == [1.0]


def test_load_state_dict_rejects_a_state_without_aovs():
    model = mlp()
    alig_state = AliG(model.parameters(), max_lr=1.0).state_dict()
    optimizer = AALIG(model.parameters(), max_lr=1.0, n_samples=4, epochs=1)
    with pytest.raises(InvalidHyperparameterError, match="aalig"):
        optimizer.load_state_dict(alig_state)


# ---------------------------------------------------------------- 7. bad input


REQUIRED = {"max_lr": 1.0, "n_samples": 10, "epochs": 5}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_lr": 0.0}, "max_lr"),
        ({"max_lr": -1.0}, "max_lr"),
        ({"max_lr": float("inf")}, "max_lr"),
        ({"max_lr": None}, "max_lr"),
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": 2.5}, "n_samples"),
        ({"epochs": 0}, "epochs"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"sections": 0}, "sections"),
        ({"sections": True}, "sections"),
        ({"lower_bound": float("-inf")}, "lower_bound"),
        ({"lower_bound": float("nan")}, "lower_bound"),
        ({"eps": -1e-5}, "eps"),
    ],
)
def test_bad_hyperparameters_name_the_field(kwargs, field):
    with pytest.raises(InvalidHyperparameterError, match=field):
        AALIG(mlp().parameters(), **(REQUIRED | kwargs))


@pytest.mark.parametrize("override", [{"max_lr": -2.0}, {"weight_decay": -1.0}, {"momentum": 2.0}])
def test_bad_group_override_is_rejected(override):
    field = next(iter(override))
    with pytest.raises(InvalidHyperparameterError, match=field):
        AALIG([{"params": mlp().parameters(), **override}], **REQUIRED)


@pytest.mark.parametrize(
    "override",
    [{"n_samples": 20}, {"epochs": 2}, {"sections": 3}, {"lower_bound": 1.0}, {"eps": 0.0}],
)
def test_groups_cannot_override_a_shared_hyperparameter(override):
    field = next(iter(override))
    with pytest.raises(InvalidHyperparameterError, match=f"{field} is shared by all parameter"):
        AALIG([{"params": mlp().parameters(), **override}], **REQUIRED)


def test_missing_closure_says_how_to_fix_it():
    optimizer = AALIG(mlp().parameters(), **REQUIRED)
    with pytest.raises(MissingClosureError, match="AALIG"):
        optimizer.step()
    with pytest.raises(MissingClosureError, match="indices, per_sample_losses"):
        optimizer.step(lambda: torch.tensor(1.0))


@pytest.mark.parametrize(
    ("indices", "losses", "field"),
    [
        ([0, 10], [1.0, 1.0], r"indices must lie in \[0, n_samples=10\), got 10"),
        ([-1, 3], [1.0, 1.0], r"indices must lie in .* got -1"),
        ([0, 1, 2], [1.0, 1.0], "indices and per_sample_losses must have the same length"),
        ([0.0, 1.0], [1.0, 1.0], "indices must be a 1-D integer tensor"),
        ([[0, 1]], [[1.0, 1.0]], "indices must be a 1-D integer tensor"),
        ([0, 1], [[1.0], [1.0]], "per_sample_losses must be a 1-D float tensor"),
        ([0, 1], [1, 1], "per_sample_losses must be a 1-D float tensor"),
        (torch.zeros(0, dtype=torch.long), torch.zeros(0), "indices: the batch is empty"),
    ],
)
def test_bad_batches_are_rejected_before_anything_changes(indices, losses, field):
    w = torch.ones(2, requires_grad=True)
    optimizer = AALIG([w], momentum=0.0, **REQUIRED)
    w.grad = torch.ones(2)

    def closure():
        return torch.as_tensor(indices), torch.as_tensor(losses)

    with pytest.raises(InvalidHyperparameterError, match=field):
        optimizer.step(closure)
    assert torch.equal(w.detach(), torch.ones(2))
    assert optimizer.last_step_size is None
    optimizer.end_epoch()
    assert optimizer.last_epoch_mean is None  # nothing was recorded
    assert optimizer.aov.eq(0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_buffers_live_on_the_parameters_device_and_match_cpu():
    cpu, gpu = mlp(), mlp().cuda()
    options = {"max_lr": 0.5, "n_samples": 64, "epochs": 4, "sections": 2, "momentum": 0.9}
    a, b = AALIG(cpu.parameters(), **options), AALIG(gpu.parameters(), **options)
    assert b.aov.device.type == "cuda"
    assert b.aov.dtype == torch.float32
    x, y = regression_data()
    for step in range(16):
        index, xb, yb = batches(step, x, y)  # CPU indices and losses on the parameters' device
        for model, opt, dev in ((cpu, a, "cpu"), (gpu, b, "cuda")):
            opt.zero_grad()
            losses = (model(xb.to(dev)) - yb.to(dev)).pow(2).squeeze(1)
            losses.mean().backward()
            opt.step(lambda index=index, losses=losses: (index, losses))
            if (step + 1) % 4 == 0:
                opt.end_epoch()
    torch.testing.assert_close(flat(gpu).cpu(), flat(cpu), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b.aov.cpu(), a.aov, rtol=1e-4, atol=1e-5)


def test_default_eps_is_the_authors_delta():
    # Alasdair-P/alig_plus hard-codes δ = 1e-9 in the step's denominator.
    optimizer = AALIG([torch.zeros(1, requires_grad=True)], max_lr=1.0, n_samples=1, epochs=1)
    assert optimizer.defaults["eps"] == 1e-9
