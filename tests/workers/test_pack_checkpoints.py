"""Checkpoints of packs: each member's state is written on its own, and a pack continued from
those states — the same members, or other packs of them as a new driver plans — ends exactly
where the uninterrupted pack ends (parameters, objectives, reports, outcomes).

The states go through the files a Tune checkpoint holds (``members/<key>/state.pt``), so what
is compared is what a resumed worker would read.
"""

from pathlib import Path
from typing import Any

import pytest
import torch

from studies.schedule import MultiStepSchedule
from tests.workers.test_checkpoints import scramble_process_state, without_wall_time
from tests.workers.test_packed_trainer import MEMBERS, TASKS, _trial
from workers.checkpoints import (
    PACK_MEMBER,
    checkpoint_info,
    latest_checkpoint_infos,
    member_directory,
    read_checkpoint,
    remove_checkpoints,
    write_checkpoint,
    write_pack_checkpoint,
)
from workers.exceptions import CheckpointError
from workers.packed_trainer import PackedRun
from workers.packing import plan_packs, runs_packed
from workers.trainer import Checkpointing

# epoch budgets long enough to continue across a multistep milestone; the DNC's step budget
CASES = {
    "matrix-factorisation": {"budget": 4, "schedule": MultiStepSchedule(kind="multistep",
                                                                        milestones=[2])},
    "rbf-classification": {"budget": 3},
    "dnc-copy": {"budget": 60},
}  # fmt: skip


def _trials(task: str, members=MEMBERS):
    options, _, batch = TASKS[task]
    extra = dict(CASES[task])
    budget = extra.pop("budget")
    return [_trial(task, options, budget, batch, m, **extra) for m in members]


class Recorder:
    """What a pack sends: every member's reports and outcome, and its checkpoints on disk
    (``<root>/ckpt-<n>`` after the n-th regular report)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root
        self.reports: dict[str, list[dict[str, float]]] = {}
        self.finals: dict[str, Any] = {}
        self.saved: list[Path] = []

    def report(self, progress, finals) -> None:
        for key, metrics in progress.items():
            self.reports.setdefault(key, []).append(metrics)
        self.finals.update(finals)

    def save(self, progress, states) -> None:
        self.report(progress, {})
        assert self.root is not None
        target = self.root / f"ckpt-{len(self.saved) + 1}"
        write_pack_checkpoint(target, states)
        self.saved.append(target)


def _run(trials, recorder: Recorder, every: int = 0, resume: Path | None = None) -> PackedRun:
    checkpointing = Checkpointing(every, recorder.save) if every else None
    run = PackedRun(trials, recorder.report, checkpointing)
    if resume is not None:
        scramble_process_state()  # a fresh worker's random states, not the saving one's
        run.load_member_states(
            {
                t.key: read_checkpoint(member_directory(resume, t.key), t.key, PACK_MEMBER)
                for t in trials
            }
        )
    run.run()
    return run


def _final_params(run: PackedRun) -> dict[str, list[torch.Tensor]]:
    """The parameters of the members that completed (a finished pack keeps them in its rows)."""
    return {key: [p.detach()[i] for p in run.params] for i, key in enumerate(run.rows)}


def _assert_same_end(whole, whole_run, part, part_run, keys, at: int, rtol: float = 0.0):
    """The continued members end as in the whole run: exactly (``rtol=0``), or within the
    packing contract's float64 tolerance when they continue in other packs (another pack
    composition rounds differently in the last bits, as packing itself does)."""
    got, want = _final_params(part_run), _final_params(whole_run)
    for key in keys:
        ours, theirs = part.finals[key], whole.finals[key]
        assert (ours.status, ours.steps, ours.epochs) == (
            theirs.status,
            theirs.steps,
            theirs.epochs,
        )
        assert ours.final_objective == pytest.approx(theirs.final_objective, rel=rtol, abs=0), key
        assert (key in got) == (key in want) == (theirs.status == "completed")
        for a, b in zip(got.get(key, []), want.get(key, []), strict=True):
            error = float(torch.linalg.vector_norm(a - b))
            assert error <= rtol * float(torch.linalg.vector_norm(b)), (key, error)
        # the continued run reports what the whole one reported after the checkpoint
        reports, expected = part.reports[key], whole.reports[key][at:]
        assert len(reports) == len(expected)
        for mine, other in zip(
            without_wall_time(reports), without_wall_time(expected), strict=True
        ):
            assert mine.keys() == other.keys()
            for name in other:
                assert mine[name] == pytest.approx(other[name], rel=rtol, abs=0), (key, name)


@pytest.mark.parametrize("task", sorted(CASES))
def test_a_pack_continued_from_its_checkpoint_ends_exactly_like_the_whole_run(
    task, float64, tmp_path
):
    trials = _trials(task)
    whole = Recorder(tmp_path)
    whole_run = _run(trials, whole, every=1)
    at = len(whole.saved) // 2
    assert at >= 1
    part = Recorder()
    part_run = _run(trials, part, resume=whole.saved[at - 1])
    _assert_same_end(whole, whole_run, part, part_run, [t.key for t in trials], at)
    # the clock continues from the checkpoint's
    first = trials[0].key
    assert part.reports[first][0]["wall_time"] >= whole.reports[first][at - 1]["wall_time"]


@pytest.mark.parametrize("task", ["matrix-factorisation", "dnc-copy"])
def test_members_continue_exactly_in_packs_a_new_driver_planned_differently(
    task, float64, tmp_path
):
    """A driver died: its successor plans the unfinished trials into other packs (here: two
    packs that split optimizers, forms and seeds across them); every member ends as in the
    uninterrupted pack."""
    trials = _trials(task)
    whole = Recorder(tmp_path)
    whole_run = _run(trials, whole, every=1)
    at = 2
    for keys in ([t.key for t in trials[::2]], [t.key for t in trials[1::2]]):
        members = [t for t in trials if t.key in keys]
        part = Recorder()
        part_run = _run(members, part, resume=whole.saved[at - 1])
        _assert_same_end(whole, whole_run, part, part_run, keys, at, rtol=1e-10)


@pytest.mark.parametrize("first", ["without", "with"])
def test_members_of_two_packs_continue_together_whatever_momentum_buffers_they_made(
    first, float64, tmp_path
):
    """Two packs checkpointed at the same point, one with momentum members (SGD and ALI-G make
    a momentum buffer) and one without (they make none): a new driver packs members of both
    together, and each ends as in its own uninterrupted pack, the momentum members with their
    buffers (either member first in its packed form)."""
    with_momentum = [
        ("sgd", 0.05, {"momentum": 0.9}, None, 0),
        ("alig", 0.1, {"momentum": 0.9}, None, 0),
    ]
    without = [("sgd", 0.02, {}, None, 1), ("alig", 0.2, {}, None, 1)]
    packs = {"with": _trials("matrix-factorisation", with_momentum),
             "without": _trials("matrix-factorisation", without)}  # fmt: skip
    wholes = {}
    for name, trials in packs.items():
        recorder = Recorder(tmp_path / name)
        wholes[name] = (recorder, _run(trials, recorder, every=1))
    at = 2
    second = "with" if first == "without" else "without"
    merged = [t for pair in zip(packs[first], packs[second], strict=True) for t in pair]
    states = {
        t.key: read_checkpoint(member_directory(wholes[name][0].saved[at - 1], t.key), t.key,
                               PACK_MEMBER)
        for name, trials in packs.items() for t in trials
    }  # fmt: skip
    part = Recorder()
    part_run = PackedRun(merged, part.report)
    part_run.load_member_states(states)
    assert all("momentum_buffer" in form.optimizer.state for form in part_run.forms)
    part_run.run()
    for name, trials in packs.items():
        whole, whole_run = wholes[name]
        _assert_same_end(whole, whole_run, part, part_run, [t.key for t in trials], at, 1e-10)


def test_member_states_whose_optimizer_states_do_not_fit_are_a_checkpoint_error(float64, tmp_path):
    """A state every member of a form keeps, missing from one member's checkpoint: the pack
    refuses it as a checkpoint (the worker then trains the pack from its start)."""
    trials = _trials("matrix-factorisation", [MEMBERS[3], ("adam", 1e-2, {}, None, 0)])
    recorder = Recorder(tmp_path)
    _run(trials, recorder, every=1)
    states = {
        t.key: read_checkpoint(member_directory(recorder.saved[0], t.key), t.key, PACK_MEMBER)
        for t in trials
    }
    del states[trials[1].key]["optimizer"]["state"]["exp_avg"]
    with pytest.raises(CheckpointError, match="1 of 2 member states have no 'exp_avg'"):
        PackedRun(trials, recorder.report).load_member_states(states)


def test_a_member_that_diverged_before_the_checkpoint_is_not_in_it(float64, tmp_path):
    trials = _trials("matrix-factorisation", [*MEMBERS[:3], ("sgd", 1e3, {}, None, 0)])
    recorder = Recorder(tmp_path)
    _run(trials, recorder, every=1)
    assert recorder.finals[trials[3].key].status == "diverged"
    saved = {p.name for p in (recorder.saved[0] / "members").iterdir()}
    assert saved == {t.key for t in trials[:3]}


def test_states_of_different_points_or_forms_do_not_continue_together(float64, tmp_path):
    trials = _trials("matrix-factorisation", MEMBERS[:3])
    recorder = Recorder(tmp_path)
    _run(trials, recorder, every=1)
    first, second = recorder.saved[:2]

    def state(directory: Path, key: str) -> dict:
        return read_checkpoint(member_directory(directory, key), key, PACK_MEMBER)

    mixed = {
        trials[0].key: state(first, trials[0].key),
        trials[1].key: state(second, trials[1].key),
    }
    with pytest.raises(CheckpointError, match="different points"):
        PackedRun(trials[:2], recorder.report).load_member_states(mixed)
    with pytest.raises(CheckpointError, match="no checkpoint for the members"):
        PackedRun(trials[:2], recorder.report).load_member_states(
            {trials[0].key: mixed[trials[0].key]}
        )
    # an alig member's state is not an sgd member's
    swapped = {
        trials[2].key: state(first, trials[0].key),
        trials[0].key: state(first, trials[0].key),
    }
    with pytest.raises(CheckpointError, match="packed form"):
        PackedRun([trials[0], trials[2]], recorder.report).load_member_states(swapped)
    # a member's state never continues an unpacked trial, nor the other way round
    with pytest.raises(CheckpointError, match="'pack-member' state"):
        read_checkpoint(member_directory(first, trials[0].key), trials[0].key)


def test_the_driver_finds_member_checkpoints_plans_them_and_removes_them(float64, tmp_path):
    """Tune's layout: <experiment>/<Tune trial>/checkpoint_<n>/members/<key>."""
    trials = _trials("matrix-factorisation", MEMBERS[:4])
    experiment = tmp_path / "study-1"
    recorder = Recorder(experiment / "train_pack_a")
    _run(trials[:3], recorder, every=1)
    # Tune's names for the two saved checkpoints of that Tune trial
    for n, directory in enumerate(recorder.saved[:2]):
        directory.rename(directory.parent / f"checkpoint_{n:06d}")
    solo = experiment / "train_solo" / "checkpoint_000000"
    solo.mkdir(parents=True)
    write_checkpoint(solo, trials[3].key, {"epochs": 1, "steps": 8, "curve": [{}]})
    found = latest_checkpoint_infos([experiment])
    assert {key: (info.kind, info.epoch) for key, info in found.items()} == {
        **{t.key: (PACK_MEMBER, 2) for t in trials[:3]},
        trials[3].key: ("trial", 1),
    }
    assert checkpoint_info(found[trials[0].key].path).reports == 2
    # a new driver: the members continue together, the unpacked trial alone, as it was
    packs = plan_packs(trials, slots=1, max_pack_size=128, checkpoints=found)
    assert sorted(sorted(t.key for t in p) for p in packs) == sorted(
        [sorted(t.key for t in trials[:3]), [trials[3].key]]
    )
    assert [runs_packed(p, found) for p in packs] == [len(p) == 3 for p in packs]
    # a pack of one that continues a member's state still runs as a pack
    (single,) = plan_packs(trials[:1], slots=1, max_pack_size=128, checkpoints=found)
    assert runs_packed(single, found) and not runs_packed(single, {})
    # members that finished lose their checkpoints; the pack's goes with its last member
    assert remove_checkpoints([experiment], {trials[0].key, trials[1].key}) == 4
    assert set(latest_checkpoint_infos([experiment])) == {trials[2].key, trials[3].key}
    assert remove_checkpoints([experiment], {trials[2].key, trials[3].key}) == 3
    assert latest_checkpoint_infos([experiment]) == {}
    assert not any(experiment.glob("*/checkpoint_*"))
