"""A pack trains each member exactly as its trial would train alone.

For every packable task, a pack mixing optimizers, η, radii and seeds is trained with
:class:`workers.packed_trainer.PackedRun` and each member's trial alone with
:class:`workers.trainer.TrainingRun`: in float64 over ≥ 50 steps every member's parameters must
agree to 1e-10 relative, its objective and reported metrics too; in float32 over 20 steps,
to 1e-5. Divergence: a member that blows up is reported diverged at once, leaves the pack, and
the others' numbers do not change.
"""

import math

import pytest
import torch

from studies.trial import Trial, TrialConfig
from workers.packed_trainer import PackedRun, packable_trial
from workers.trainer import TrainingRun

# task, options, budget (in the task's unit): small, but ≥ 50 steps each
TASKS = {
    "dnc-copy": ({"memory_slots": 8, "word_size": 4, "controller_size": 16, "max_length": 3,
                  "max_repeats": 2, "heldout_batches": 1}, 50, 4),
    "matrix-factorisation": ({"n_samples": 120}, 5, 10),
    "rbf-classification": ({"n_samples": 100, "n_features": 4}, 7, 10),
    "digits": ({}, 1, 16),
}  # fmt: skip

# (optimizer, η, options, radius, seed): several forms, η values, a radius and two seeds
MEMBERS = [
    ("alig", 0.1, {"momentum": 0.9}, None, 0),
    ("alig", None, {}, 30.0, 1),
    ("sgd", 0.05, {"momentum": 0.9}, None, 0),
    ("adam", 1e-3, {}, None, 1),
    ("rmsprop-tf", 1e-3, {}, None, 0),
    ("l4mom", 0.15, {}, None, 0),
]


def _trial(task: str, options: dict, budget: int, batch: int, member: tuple, **extra) -> Trial:
    optimizer, eta, opts, radius, seed = member
    extra.setdefault("device", "cpu")
    config = TrialConfig(
        task=task, task_options=options, optimizer=optimizer, eta=eta, optimizer_options=opts,
        batch_size=batch, radius=radius, seed=seed, budget=budget, threads=1,
        report_every=10, **extra,
    )  # fmt: skip
    return Trial.of(optimizer, config, {}, key=f"{optimizer}-{eta}-{radius}-{seed}")


def _alone(trial: Trial):
    reports: list[dict] = []
    run = TrainingRun(trial.config, reports.append)
    result = run.run()
    return [p.detach() for p in run.model.parameters()], result, reports


def _packed(trials: list[Trial], compile: bool = False):
    reports: dict[str, list[dict]] = {t.key: [] for t in trials}
    finals = {}

    def report(progress, ended):
        for key, metrics in progress.items():
            reports[key].append(metrics)
        finals.update(ended)

    run = PackedRun(trials, report, compile=compile)
    run.run()
    params = {key: [p.detach()[i] for p in run.params] for i, key in enumerate(run.rows)}
    return params, finals, reports, run


def _assert_params_close(got: list, want: list, rtol: float, key: str) -> None:
    """Each tensor of ``got`` within ``rtol`` of ``want``'s, relative to the tensor's norm: the
    DNC's allocation sorts its usage, which turns rounding differences in single tiny entries
    into larger relative ones."""
    for p_got, p_want in zip(got, want, strict=True):
        error = float(torch.linalg.vector_norm(p_got - p_want))
        assert error <= rtol * float(torch.linalg.vector_norm(p_want)), (key, error)


def _compare(trials, rtol, compile: bool = False):
    packed_params, finals, packed_reports, run = _packed(trials, compile)
    for trial in trials:
        params, result, reports = _alone(trial)
        _assert_params_close(packed_params[trial.key], params, rtol, trial.key)
        final = finals[trial.key]
        assert final.status == result.status
        assert final.steps == result.steps
        assert final.final_objective == pytest.approx(result.final_objective, rel=rtol)
        assert len(packed_reports[trial.key]) == len(reports)
        for got, want in zip(packed_reports[trial.key], reports, strict=True):
            assert set(got) == set(want)
            for name in want:
                if name != "wall_time":
                    assert got[name] == pytest.approx(want[name], rel=rtol, abs=rtol * 1e-3), name
    return run


@pytest.mark.parametrize("task", sorted(TASKS))
def test_members_follow_their_trials_exactly_in_float64(task, float64):
    options, budget, batch = TASKS[task]
    trials = [_trial(task, options, budget, batch, m) for m in MEMBERS]
    _compare(trials, 1e-10)


@pytest.mark.parametrize("task", ["dnc-copy", "matrix-factorisation"])
def test_members_follow_their_trials_in_float32(task):
    options, _, batch = TASKS[task]
    budget = 20 if task == "dnc-copy" else 2
    trials = [_trial(task, options, budget, batch, m) for m in MEMBERS]
    _compare(trials, 1e-5)


def test_a_diverging_member_leaves_the_pack_and_changes_nobody(float64):
    options, budget, batch = TASKS["matrix-factorisation"]
    stable = [_trial("matrix-factorisation", options, budget, batch, m) for m in MEMBERS[:3]]
    blowup = _trial("matrix-factorisation", options, budget, batch, ("sgd", 1e3, {}, None, 0))
    _, finals, reports, run = _packed([*stable, blowup])
    assert finals[blowup.key].status == "diverged"
    assert finals[blowup.key].steps < 10
    assert "loss" in finals[blowup.key].reason
    assert len(run.members) == 0  # everyone ended
    _, finals_alone, _ = _packed(stable)[:3]
    for trial in stable:
        assert finals[trial.key].status == "completed"
        assert finals[trial.key].final_objective == finals_alone[trial.key].final_objective
    _, result, reports_alone = _alone(blowup)
    assert result.status == "diverged" and result.steps == finals[blowup.key].steps
    assert reports[blowup.key][-1]["train_loss"] == pytest.approx(reports_alone[-1]["train_loss"])


def test_schedules_move_the_baselines_eta_per_member(float64):
    from studies.schedule import CosineSchedule

    options, budget, batch = TASKS["matrix-factorisation"]
    trials = [
        _trial(
            "matrix-factorisation",
            options,
            budget,
            batch,
            m,
            schedule=CosineSchedule(kind="cosine"),
        )
        for m in MEMBERS[:4]
    ]
    _compare(trials, 1e-10)


def test_what_packs():
    base = {"task": "matrix-factorisation", "batch_size": 10, "budget": 1}
    assert packable_trial(TrialConfig(optimizer="alig", eta=0.1, **base))
    assert not packable_trial(TrialConfig(optimizer="aalig", eta=0.1, **base))
    # mixed precision packs: each member keeps its own loss scale (tests/workers/test_packed_amp.py)
    assert packable_trial(TrialConfig(optimizer="sgd", eta=0.1, amp=True, **base))
    assert math.isfinite(1.0)
