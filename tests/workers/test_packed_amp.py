"""Mixed precision in packs: each member scales its own loss, skips the steps on which its own
gradient overflowed, and backs off and grows its own scale, as its trial's
``torch.amp.GradScaler`` does (workers.precision).

AMP runs on CUDA only (``workers.precision.AMP_DTYPES``). The ``cpu_amp`` fixture lets it run
on the CPU in float16, with an initial loss scale of 2^24, which overflows float16 gradients,
and a growth interval of 3 steps: the members skip different steps, many times over, and grow
their scales back in between. The CUDA case runs where a GPU is present.
"""

import pytest
import torch

from tests.workers.test_pack_checkpoints import Recorder, _assert_same_end
from tests.workers.test_pack_checkpoints import _run as run_with_checkpoints
from tests.workers.test_packed_trainer import MEMBERS, TASKS, _packed, _trial
from workers import precision
from workers.checkpoints import PACK_MEMBER, member_directory, read_checkpoint
from workers.exceptions import CheckpointError
from workers.packed_trainer import PackedRun
from workers.precision import ScalerSettings
from workers.trainer import TrainingRun

FORCED = ScalerSettings(init_scale=2.0**24, growth_interval=3)
# seed-0 members only: one data stream, so any of them can share a pack with the others
SEED_0 = [m for m in MEMBERS if m[4] == 0] + [("adam", 1e-3, {}, None, 0)]


@pytest.fixture
def cpu_amp(monkeypatch):
    """``amp`` autocasts to float16 on the CPU too, with the overflowing scaler settings."""
    monkeypatch.setitem(precision.AMP_DTYPES, "cpu", torch.float16)
    monkeypatch.setattr(precision, "SCALER", FORCED)


def _amp_trials(task: str, members=MEMBERS, device: str = "cpu"):
    options, budget, batch = TASKS[task]
    trials = [_trial(task, options, budget, batch, m, amp=True) for m in members]
    if device != "cpu":
        trials = [
            type(t).of(t.optimizer, t.config.model_copy(update={"device": device}), {}, key=t.key)
            for t in trials
        ]
    return trials


def _scales(run: PackedRun) -> dict[str, tuple[float, int]]:
    assert run.scaler is not None
    return {
        key: (float(run.scaler.scale[i]), int(run.scaler.growth_tracker[i]))
        for i, key in enumerate(run.rows)
    }


def _adam_steps(run: TrainingRun) -> int:
    """How many steps a trial's torch Adam took (its skipped ones are not counted)."""
    first = next(iter(run.model.parameters()))
    return int(run.optimizer.state[first]["step"])


def _against_trials(trials, rtol: float) -> None:
    params, finals, reports, run = _packed(trials)
    scales = _scales(run)
    adam = next(f for f in run.forms if type(f.optimizer).__name__ == "PackedAdam")
    for trial in trials:
        alone = TrainingRun(trial.config, lambda metrics: None)
        result = alone.run()
        assert alone.scaler is not None
        # the loss scale: every skip and every growth of the trial's GradScaler, per member
        assert scales[trial.key] == (
            alone.scaler.get_scale(),
            int(alone.scaler._growth_tracker),
        ), trial.key
        if trial.config.optimizer == "adam":  # Adam's t counts the member's own steps
            position = run.rows.index(trial.key) - adam.start
            assert int(adam.optimizer.counts[position]) == _adam_steps(alone)
            assert _adam_steps(alone) < result.steps
        for p_pack, p_alone in zip(params[trial.key], alone.model.parameters(), strict=True):
            p_alone = p_alone.detach()
            error = float(torch.linalg.vector_norm(p_pack - p_alone))
            assert error <= rtol * float(torch.linalg.vector_norm(p_alone)), trial.key
        assert finals[trial.key].final_objective == pytest.approx(result.final_objective, rel=rtol)
        for got, want in zip(reports[trial.key], alone.curve, strict=True):
            for name in ("train_loss", "step_size_mean", "step_capped_fraction"):
                assert (name in got) == (name in want)
                if name in want:
                    assert got[name] == pytest.approx(want[name], rel=rtol), (trial.key, name)
    # the members skipped different steps: their scales went their own ways
    assert len(set(scales.values())) > 1
    assert min(scale for scale, _ in scales.values()) < FORCED.init_scale


def test_amp_members_follow_their_amp_trials_skip_for_skip(cpu_amp):
    """RBF's model has no bias, so a member's float16 arithmetic under ``vmap`` is its
    trial's (see docs/architecture.md, "Packed trials", on linear layers with a bias): every
    member ends with its trial's scale and growth count, parameters and reports."""
    _against_trials(_amp_trials("rbf-classification"), rtol=1e-6)


def test_an_amp_member_ends_as_it_ends_among_other_members(cpu_amp):
    """No member's overflow, skip or scale reaches another: on the DNC, each member ends bit
    for bit as it ends in a pack of the same size whose other members are other trials (twice
    their η: other losses, overflows and scales). The pack keeps its size so that every
    batched kernel is the same one: a pack of another size may round the same member's
    arithmetic otherwise (MKL picks its kernels by shape)."""
    trials = _amp_trials("dnc-copy", SEED_0)
    params, finals, _, run = _packed(trials)
    together = _scales(run)  # a finished pack keeps its rows and scales
    assert finals and all(f.status == "completed" for f in finals.values())
    moved = set()
    for index, trial in enumerate(trials):
        others = [
            (optimizer, 2 * eta, options, radius, seed)
            for i, (optimizer, eta, options, radius, seed) in enumerate(SEED_0)
            if i != index
        ]
        pack = [trial, *_amp_trials("dnc-copy", others)]
        own_params, own_finals, _, own_run = _packed(pack)
        assert all(f.status == "completed" for f in own_finals.values())  # nobody left
        for a, b in zip(params[trial.key], own_params[trial.key], strict=True):
            assert torch.equal(a, b), trial.key
        assert finals[trial.key].final_objective == own_finals[trial.key].final_objective
        own_scales = _scales(own_run)
        assert together[trial.key] == own_scales[trial.key]
        moved |= {own_scales[t.key] for t in pack[1:]} - set(together.values())
    assert moved  # the other members' overflows did differ


def test_an_amp_pack_continues_from_its_checkpoint_exactly(cpu_amp, tmp_path):
    """Each member's scale and growth count are in its checkpoint; a pack continued from the
    middle ends exactly like the whole run. A checkpoint of AMP members does not continue in
    a full-precision pack."""
    trials = _amp_trials("dnc-copy")
    whole = Recorder(tmp_path)
    whole_run = run_with_checkpoints(trials, whole, every=1)
    at = len(whole.saved) // 2
    part = Recorder()
    part_run = run_with_checkpoints(trials, part, resume=whole.saved[at - 1])
    _assert_same_end(whole, whole_run, part, part_run, [t.key for t in trials], at)

    options, budget, batch = TASKS["dnc-copy"]
    full = [_trial("dnc-copy", options, budget, batch, m) for m in MEMBERS]
    saved = whole.saved[at - 1]
    states = {
        f.key: read_checkpoint(member_directory(saved, t.key), t.key, PACK_MEMBER)
        for f, t in zip(full, trials, strict=True)
    }
    with pytest.raises(CheckpointError, match="precision"):
        PackedRun(full, lambda progress, finals: None).load_member_states(states)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_amp_members_on_cuda_follow_their_amp_trials(monkeypatch):
    """The CUDA path: float16 autocast as configured, the overflowing scaler settings."""
    monkeypatch.setattr(precision, "SCALER", FORCED)
    _against_trials(_amp_trials("rbf-classification", device="cuda"), rtol=1e-4)
