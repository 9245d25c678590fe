"""The dnc-copy task: repeat-copy data, DNC addressing against hand computations, the model, and a
short training run that must reduce the loss."""

import math

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from studies.catalog.tasks import TASKS, DncCopyOptions
from studies.trial import TrialConfig
from workers.tasks.base import Batch
from workers.tasks.dnc import (
    HELDOUT_BATCH_SIZE,
    DncCopyTask,
    bit_errors,
    masked_sigmoid_cross_entropy,
    repeat_copy_batch,
    sigmoid_cross_entropy,
)
from workers.tasks.dnc_model import (
    DNC,
    KEY_STRENGTH_ACTIVATIONS,
    MemoryAccess,
    allocation_weights,
    content_weights,
    directional_read_weights,
    erase_and_write,
    read_weights,
    update_link,
    update_precedence,
    update_usage,
    write_allocation_weights,
)

CPU = torch.device("cpu")


def make_task(seed: int = 0, **options: object) -> DncCopyTask:
    return DncCopyTask(DncCopyOptions(**options), seed=seed, device=CPU)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def decode_sample(obs: torch.Tensor, bits: int) -> tuple[int, int, torch.Tensor]:
    """(L, R, pattern) read back from one observation sequence [T, bits + 2]."""
    assert obs[0, bits] == 1.0 and obs[0, :bits].abs().sum() == 0  # start flag alone
    repeat_step = int(torch.nonzero(obs[:, bits + 1]).squeeze())
    length = repeat_step - 1
    repeats = round(float(obs[repeat_step, bits + 1]) * 10)
    return length, repeats, obs[1 : 1 + length, :bits]


def test_batch_shapes_and_structure() -> None:
    options = DncCopyOptions(max_length=3, max_repeats=3)
    obs, target, mask = repeat_copy_batch(options, 32, torch.Generator().manual_seed(1))
    steps = obs.shape[1]
    assert obs.shape == (32, steps, options.bits + 2)
    assert target.shape == (32, steps, options.bits + 1)
    assert mask.shape == (32, steps)
    seen_lengths, seen_repeats, totals = set(), set(), []
    for b in range(32):
        length, repeats, pattern = decode_sample(obs[b], options.bits)
        seen_lengths.add(length)
        seen_repeats.add(repeats)
        # R / 10 in the repeat channel, on its own row
        assert float(obs[b, length + 1, options.bits + 1]) == pytest.approx(repeats / 10)
        assert obs[b, length + 1, : options.bits + 1].abs().sum() == 0
        assert set(pattern.unique().tolist()) <= {0.0, 1.0}
        total = length * (repeats + 1) + 3
        totals.append(total)
        # after the repeat row the observation is all zeros (output phase and padding)
        assert obs[b, length + 2 :].abs().sum() == 0
        # target: zeros, the pattern tiled R times, the end marker, then padding
        start = length + 2
        assert target[b, :start].abs().sum() == 0
        tiled = pattern.repeat(repeats, 1)
        assert torch.equal(target[b, start : start + length * repeats, : options.bits], tiled)
        assert target[b, start : start + length * repeats, options.bits].abs().sum() == 0
        end = start + length * repeats
        assert target[b, end, options.bits] == 1.0 and target[b, end, : options.bits].sum() == 0
        assert target[b, end + 1 :].abs().sum() == 0
        # the mask covers exactly the target steps (copies + end marker); padding is masked out
        expected_mask = torch.zeros(steps)
        expected_mask[start : end + 1] = 1.0
        assert torch.equal(mask[b], expected_mask)
    # the batch is as long as its longest sample; L and R cover exactly their ranges
    assert steps == max(totals)
    assert seen_lengths == {1, 2, 3} and seen_repeats == {1, 2, 3}


def test_batches_reproducible_from_generator() -> None:
    task = make_task()
    a = next(task.train_batches(16, torch.Generator().manual_seed(7)))
    b = next(task.train_batches(16, torch.Generator().manual_seed(7)))
    c = next(task.train_batches(16, torch.Generator().manual_seed(8)))
    assert isinstance(a, Batch) and a.indices is None and len(a) == 16
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert torch.equal(a.extras["mask"], b.extras["mask"])
    assert not (a.inputs.shape == c.inputs.shape and torch.equal(a.inputs, c.inputs))
    # an endless stream of fresh batches
    stream = task.train_batches(16, torch.Generator().manual_seed(7))
    first, second = next(stream), next(stream)
    assert not (
        first.inputs.shape == second.inputs.shape and torch.equal(first.inputs, second.inputs)
    )


def test_loss_and_bit_errors_by_hand() -> None:
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    logits = torch.tensor([[[2.0, -1.0], [3.0, 0.5], [-4.0, 4.0]]])
    mask = torch.tensor([[0.0, 1.0, 1.0]])
    # step 1: -log(1 - σ(3)) - log σ(0.5); step 2: -log σ(-4) - log σ(4)
    expected = (
        math.log1p(math.exp(3.0))
        + math.log1p(math.exp(-0.5))
        + math.log1p(math.exp(4.0))
        + math.log1p(math.exp(-4.0))
    )
    loss = masked_sigmoid_cross_entropy(logits, target, mask)
    assert loss.shape == (1,)
    assert float(loss[0]) == pytest.approx(expected, rel=1e-5)
    # wrong bits on masked steps: step 1 channel 0, step 2 channel 0 (step 0 is masked)
    assert float(bit_errors(logits, target, mask)[0]) == 2.0


def test_the_loss_at_the_logit_clip_is_tensorflows_floor_plain_and_packed() -> None:
    """At the ±20 clip every bit costs log1p(e^-20) ≈ 2.06e-9, for either target, alone and
    under vmap alike (torch's binary_cross_entropy_with_logits gives 0 there under vmap, which
    stopped packed ALI-G members at the floor)."""
    from torch.func import vmap

    mpmath.mp.dps = 50
    logits = torch.tensor([[[20.0, -20.0], [-20.0, 20.0], [3.0, -0.5]]])  # [B=1, T=3, C=2]
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    floor = math.log1p(math.exp(-20.0))
    plain = masked_sigmoid_cross_entropy(logits, target, mask)
    assert float(plain[0]) == pytest.approx(4 * floor, rel=1e-6)
    packed = vmap(masked_sigmoid_cross_entropy)(logits[None], target[None], mask[None])[0]
    assert torch.equal(packed, plain)
    moderate = torch.linspace(-30, 30, 61)
    for z in (0.0, 1.0):
        t = torch.full_like(moderate, z)
        assert torch.equal(vmap(sigmoid_cross_entropy)(moderate[None], t[None])[0],
                           sigmoid_cross_entropy(moderate, t))  # fmt: skip
        # -z log σ(x) - (1 - z) log(1 - σ(x)) in 50 digits (torch's own loses the tails)
        reference = torch.tensor([
            float(-(z * mpmath.log(mpmath.mpf(1) / (1 + mpmath.exp(-x)))
                    + (1 - z) * mpmath.log(mpmath.mpf(1) / (1 + mpmath.exp(x)))))
            for x in moderate.double().tolist()
        ], dtype=torch.float64)  # fmt: skip
        assert torch.allclose(sigmoid_cross_entropy(moderate.double(), t.double()), reference,
                              rtol=1e-12, atol=0)  # fmt: skip


def test_task_contract() -> None:
    task = make_task()
    assert task.name == "dnc-copy" and task.name in TASKS
    assert task.n_train is None
    assert task.grad_clip_norm("adam") == 50.0
    assert task.grad_clip_norm("sgd") == 50.0
    for name in ("alig", "aalig", "l4mom", "l4adam"):
        assert task.grad_clip_norm(name) is None
    torch.manual_seed(0)
    model = task.build_model()
    metrics = task.evaluate(model, 16)
    assert set(metrics) == {"val_loss", "val_bit_errors", "heldout_loss", "heldout_bit_errors"}
    assert all(math.isfinite(v) for v in metrics.values())
    assert task.evaluate(model, 16) == metrics  # the same held-out data each time
    # every metric the task reports (and the trainer's median) is in the catalog entry
    assert set(metrics) | {"final_objective", "objective_median"} <= set(TASKS[task.name].metrics)
    with pytest.raises(TypeError):
        DncCopyTask(TASKS["matrix-factorisation"].options(), seed=0, device=CPU)


# ---------------------------------------------------------------------------------------------
# addressing
# ---------------------------------------------------------------------------------------------


def test_content_weights_cosine_softmax() -> None:
    memory = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    keys = torch.tensor([[[2.0, 0.0]]])  # the key's scale must not matter: cosine
    strengths = torch.tensor([[3.0]])
    cosines = [1.0, 0.0, 1.0 / math.sqrt(2.0)]
    z = sum(math.exp(3.0 * c) for c in cosines)
    expected = torch.tensor([[[math.exp(3.0 * c) / z for c in cosines]]])
    got = content_weights(memory, keys, strengths)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # a larger strength sharpens towards the best match
    sharp = content_weights(memory, keys, torch.tensor([[50.0]]))
    assert float(sharp[0, 0, 0]) > 0.99


def test_allocation_weights_by_hand() -> None:
    usage = torch.tensor([[0.5, 0.1, 0.9]])
    # free-est first: slot 1 gets 1 − 0.1; slot 0 gets (1 − 0.5)·0.1; slot 2 (1 − 0.9)·0.1·0.5
    expected = torch.tensor([[0.05, 0.9, 0.005]])
    torch.testing.assert_close(allocation_weights(usage), expected, atol=1e-5, rtol=0)
    # a permutation that is not its own inverse checks the unsorting direction
    cyclic = allocation_weights(torch.tensor([[0.5, 0.9, 0.1]]))
    torch.testing.assert_close(cyclic, torch.tensor([[0.05, 0.005, 0.9]]), atol=1e-5, rtol=0)
    # ties go to the lower index (stable sort), as the reference's top_k
    tied = allocation_weights(torch.tensor([[0.2, 0.2, 1.0]]))
    torch.testing.assert_close(tied, torch.tensor([[0.8, 0.16, 0.0]]), atol=1e-5, rtol=0)
    # an empty memory allocates (almost) all to slot 0
    assert float(allocation_weights(torch.zeros(1, 4))[0, 0]) == pytest.approx(1.0, abs=1e-5)
    # differentiable in the usage values
    u = usage.clone().requires_grad_(True)
    (allocation_weights(u) * torch.tensor([[1.0, 2.0, 3.0]])).sum().backward()
    assert u.grad is not None and torch.isfinite(u.grad).all() and u.grad.abs().sum() > 0
    # per write head: the second head avoids what the first one (fully gated) took
    heads = write_allocation_weights(torch.tensor([[0.5, 0.1, 0.9]]), torch.tensor([[1.0, 1.0]]))
    assert heads.shape == (1, 2, 3)
    assert int(heads[0, 0].argmax()) == 1 and int(heads[0, 1].argmax()) == 0


def test_usage_update_by_hand() -> None:
    prev_usage = torch.tensor([[0.5, 0.0, 0.2]])
    prev_write = torch.tensor([[[0.5, 1.0, 0.0]]])
    free_gates = torch.tensor([[1.0, 0.5]])
    prev_read = torch.tensor([[[0.5, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    # after write: u + w − u w = [0.75, 1, 0.2]; retention ψ = [(1 − 0.5)·1, 1, 1·(1 − 0.5)]
    expected = torch.tensor([[0.375, 1.0, 0.1]])
    got = update_usage(prev_usage, prev_write, free_gates, prev_read)
    torch.testing.assert_close(got, expected)
    # no gradient through the previous write weights (as the reference's stop_gradient)
    w = prev_write.clone().requires_grad_(True)
    f = free_gates.clone().requires_grad_(True)
    update_usage(prev_usage, w, f, prev_read).sum().backward()
    assert w.grad is None and f.grad is not None and f.grad.abs().sum() > 0


def test_link_and_precedence_update_by_hand() -> None:
    write = torch.tensor([[[0.1, 0.2, 0.3]]])
    precedence = torch.tensor([[[0.5, 0.3, 0.2]]])
    prev_link = torch.ones(1, 1, 3, 3) - torch.eye(3)
    link = update_link(prev_link, precedence, write)
    assert torch.equal(torch.diagonal(link[0, 0]), torch.zeros(3))
    # L[i, j] = (1 − w_i − w_j)·1 + w_i p_j
    assert float(link[0, 0, 0, 1]) == pytest.approx(1 - 0.1 - 0.2 + 0.1 * 0.3)
    assert float(link[0, 0, 2, 0]) == pytest.approx(1 - 0.3 - 0.1 + 0.3 * 0.5)
    assert float(link[0, 0, 1, 2]) == pytest.approx(1 - 0.2 - 0.3 + 0.2 * 0.2)
    # p' = (1 − Σ w) p + w = 0.4 p + w
    torch.testing.assert_close(
        update_precedence(precedence, write), torch.tensor([[[0.3, 0.32, 0.38]]])
    )
    # a sharp write to slot 2 right after slot 0 was written: L[2, 0] = 1, everything else 0
    sharp = update_link(
        torch.zeros(1, 1, 3, 3), torch.tensor([[[1.0, 0.0, 0.0]]]), torch.tensor([[[0, 0, 1.0]]])
    )
    expected = torch.zeros(1, 1, 3, 3)
    expected[0, 0, 2, 0] = 1.0
    assert torch.equal(sharp, expected)
    # following the link: forward from slot 0 lands on slot 2, backward from slot 2 on slot 0
    at0 = torch.tensor([[[1.0, 0.0, 0.0]]])
    at2 = torch.tensor([[[0.0, 0.0, 1.0]]])
    fwd = directional_read_weights(sharp, at0, forward=True)
    bwd = directional_read_weights(sharp, at2, forward=False)
    assert fwd.shape == (1, 1, 1, 3)
    assert torch.equal(fwd[0, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.equal(bwd[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))


def test_read_weights_mix_modes() -> None:
    modes = torch.tensor([[[0.2, 0.3, 0.5]]])  # [backward, forward, content]
    content = torch.tensor([[[0.0, 0.0, 1.0]]])
    forward = torch.tensor([[[[0.0, 1.0, 0.0]]]])
    backward = torch.tensor([[[[1.0, 0.0, 0.0]]]])
    got = read_weights(modes, content, forward, backward)
    torch.testing.assert_close(got, torch.tensor([[[0.2, 0.3, 0.5]]]))


def test_erase_and_write_by_hand() -> None:
    memory = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    write = torch.tensor([[[1.0, 0.5]]])
    erase = torch.tensor([[[1.0, 0.5]]])
    values = torch.tensor([[[10.0, 20.0]]])
    # M ∘ (1 − w e^T) + w v^T
    expected = torch.tensor([[[0.0 + 10.0, 1.0 + 20.0], [1.5 + 5.0, 3.0 + 10.0]]])
    torch.testing.assert_close(erase_and_write(memory, write, erase, values), expected)


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------


def test_parameter_count() -> None:
    torch.manual_seed(0)
    model = make_task().build_model()
    count = sum(p.numel() for p in model.parameters())
    print(f"DNC parameters: {count}")
    assert 35_000 <= count <= 55_000
    # LSTM (6 + 64 + 64 → 4·64, one bias) + interface (64 → 135) + output (128 → 5)
    assert count == (134 * 256 + 256) + (64 * 135 + 135) + (128 * 5 + 5)


def test_logits_clipped() -> None:
    task = make_task()
    torch.manual_seed(0)
    model = task.build_model()
    assert isinstance(model, DNC)
    with torch.no_grad():
        model.output_linear.weight.mul_(1_000.0)
    batch = next(task.train_batches(16, torch.Generator().manual_seed(0)))
    with torch.no_grad():
        logits = model(batch.inputs)
    assert logits.shape == batch.targets.shape
    assert float(logits.abs().max()) == pytest.approx(task.opts.clip_value)


def test_gradients_reach_every_parameter() -> None:
    task = make_task()
    torch.manual_seed(0)
    model = task.build_model()
    batch = next(task.train_batches(16, torch.Generator().manual_seed(0)))
    loss = task.per_sample_loss(model, batch)
    assert loss.shape == (16,) and (loss > 0).all()
    loss.mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    # every slice of the interface layer (keys, gates, modes, ...) gets a gradient
    interface = model.access.interface.weight.grad
    assert interface is not None
    assert (interface.abs().sum(dim=1) > 0).all()


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------


def test_adam_reduces_loss() -> None:
    task = make_task(seed=0)
    torch.manual_seed(0)
    model = task.build_model()
    # lr 3e-3: over seeds 0-3 the last-20/first-20 ratio is 0.59-0.67 (0.74-0.83 at 1e-3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    clip = task.grad_clip_norm("adam")
    assert clip is not None
    batches = task.train_batches(16, torch.Generator().manual_seed(0))
    losses = []
    for _ in range(150):
        loss = task.per_sample_loss(model, next(batches)).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    print(f"mean loss, first 20 steps {first:.3f}, last 20 steps {last:.3f}")
    assert all(math.isfinite(v) for v in losses)
    assert last < 0.8 * first


# ---------------------------------------------------------------------------------------------
# key strengths, held-out set, robust objective
# ---------------------------------------------------------------------------------------------


def _access_with_bias(key_strength: str | None, bias: torch.Tensor) -> MemoryAccess:
    """A memory whose interface ignores its input and outputs ``bias`` (pre-activations)."""
    extra = {} if key_strength is None else {"key_strength": key_strength}
    access = MemoryAccess(3, memory_slots=4, word_size=2, read_heads=2, write_heads=1, **extra)
    with torch.no_grad():
        access.interface.weight.zero_()
        access.interface.bias.copy_(bias)
    return access


@pytest.mark.parametrize(
    ("key_strength", "expected"),
    [
        (None, lambda x: F.softplus(x)),  # the default is the reference's plain softplus
        ("softplus", lambda x: F.softplus(x)),
        ("oneplus", lambda x: 1.0 + F.softplus(x)),
    ],
)
def test_key_strength_activation(key_strength: str | None, expected) -> None:
    # interface layout with K=1, R=2, W=2: write vec 2, erase 2, free 2, alloc 1, write gate 1,
    # read modes 2·3, write key 2, write strength 1, read keys 4, read strengths 2 → 23
    size = 2 + 2 + 2 + 1 + 1 + 6 + 2 + 1 + 4 + 2
    bias = torch.linspace(-3.0, 3.0, size)
    access = _access_with_bias(key_strength, bias)
    xi = access.parse_interface(torch.zeros(1, 3))
    write_pre, read_pre = bias[16:17], bias[21:23]
    torch.testing.assert_close(xi.write_strengths[0], expected(write_pre))
    torch.testing.assert_close(xi.read_strengths[0], expected(read_pre))
    # known values: softplus(0) = log 2, softplus(-3) = log(1 + e^-3)
    zero = _access_with_bias(key_strength, torch.zeros(size)).parse_interface(torch.zeros(1, 3))
    offset = 1.0 if key_strength == "oneplus" else 0.0
    assert float(zero.read_strengths[0, 0].detach()) == pytest.approx(
        offset + math.log(2.0), rel=1e-6
    )


def test_key_strength_option_default_and_wiring() -> None:
    assert DncCopyOptions().key_strength == "softplus"  # DeepMind's reference
    assert set(KEY_STRENGTH_ACTIVATIONS) == {"softplus", "oneplus"}
    for choice in ("softplus", "oneplus"):
        torch.manual_seed(0)
        model = make_task(key_strength=choice).build_model()
        assert isinstance(model, DNC) and model.access.key_strength == choice
    with pytest.raises(ValueError):
        DncCopyOptions(key_strength="exp")  # type: ignore[arg-type]


def test_other_interface_activations_match_the_reference() -> None:
    """Erase, free, allocation and write gates are sigmoids; read modes a softmax per head."""
    size = 23
    bias = torch.linspace(-2.0, 2.0, size)
    xi = _access_with_bias(None, bias).parse_interface(torch.zeros(1, 3))
    torch.testing.assert_close(xi.write_vectors[0, 0], bias[0:2])  # linear
    torch.testing.assert_close(xi.erase_vectors[0, 0], torch.sigmoid(bias[2:4]))
    torch.testing.assert_close(xi.free_gates[0], torch.sigmoid(bias[4:6]))
    torch.testing.assert_close(xi.allocation_gates[0], torch.sigmoid(bias[6:7]))
    torch.testing.assert_close(xi.write_gates[0], torch.sigmoid(bias[7:8]))
    torch.testing.assert_close(xi.read_modes[0], torch.softmax(bias[8:14].reshape(2, 3), dim=-1))
    torch.testing.assert_close(xi.write_keys[0, 0], bias[14:16])  # linear
    torch.testing.assert_close(xi.read_keys[0], bias[17:21].reshape(2, 2))  # linear


def test_heldout_set_fixed_across_trial_seeds() -> None:
    a, b = make_task(seed=0).heldout_set(), make_task(seed=12345).heldout_set()
    assert len(a) == DncCopyOptions().heldout_batches == 8
    assert sum(obs.shape[0] for obs, _, _ in a) == 8 * HELDOUT_BATCH_SIZE == 128
    for (oa, ta, ma), (ob, tb, mb) in zip(a, b, strict=True):
        assert torch.equal(oa, ob) and torch.equal(ta, tb) and torch.equal(ma, mb)
    # the batches differ from one another (one stream, not one batch repeated)
    assert not all(x[0].shape == a[0][0].shape and torch.equal(x[0], a[0][0]) for x in a[1:])
    # the size is an option; the first batches are the same stream
    small = make_task(seed=3, heldout_batches=2).heldout_set()
    assert len(small) == 2 and torch.equal(small[0][0], a[0][0])
    # the held-out loss is the mean over all 128 sequences, the same for any trial seed
    torch.manual_seed(0)
    model = make_task().build_model()
    m0, m1 = make_task(seed=0).evaluate(model, 16), make_task(seed=7).evaluate(model, 16)
    assert m0["heldout_loss"] == m1["heldout_loss"]
    with torch.no_grad():
        expected = torch.cat([masked_sigmoid_cross_entropy(model(o), t, m) for o, t, m in a]).mean()
    assert m0["heldout_loss"] == pytest.approx(float(expected), rel=1e-6)


def test_objective_median_of_the_trailing_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer's ``objective_median``: the median of the same window as the mean."""
    from workers.trainer import TrainingRun

    # budget 500 → window min(100, 500 // 100) = 5; the last five losses are 1, 9, 2, 1000, 3
    losses = [5.0] * 495 + [1.0, 9.0, 2.0, 1000.0, 3.0]
    config = TrialConfig(
        task="dnc-copy",
        task_options={"controller_size": 4, "memory_slots": 2, "word_size": 2, "read_heads": 1,
                      "heldout_batches": 1},
        optimizer="sgd",
        eta=0.1,
        batch_size=2,
        budget=len(losses),
        report_every=len(losses),
        device="cpu",
    )  # fmt: skip
    reports: list[dict[str, float]] = []
    run = TrainingRun(config, reports.append)
    stream = iter(losses)

    def fake_step(batch: Batch) -> None:
        run.steps += 1
        run.interval_losses.append(next(stream))
        return None

    monkeypatch.setattr(run, "train_step", fake_step)
    result = run.run()
    assert result.status == "completed"
    assert result.final_objective == pytest.approx((1 + 9 + 2 + 1000 + 3) / 5)
    assert result.metrics["objective_median"] == 3.0 == float(np.median(losses[-5:]))
    assert "objective_median" not in reports[-1]  # a result metric, not a progress report
    assert "heldout_loss" in result.metrics
