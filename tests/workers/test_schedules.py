"""Learning-rate schedules: the baselines' learning rate per unit equals the formula, η is the
initial value, Polyak-type methods are never scheduled (and say so)."""

import pytest
import torch

from studies.catalog.optimizers import OPTIMIZERS
from studies.trial import TrialConfig
from workers.exceptions import TaskConfigError
from workers.schedules import build_scheduler, current_lr, schedule_applies
from workers.trainer import TrainingRun, run_trial

MF = {"task": "matrix-factorisation", "task_options": {"rank": "true-model"},
      "batch_size": 250, "device": "cpu", "optimizer": "sgd", "eta": 0.1}  # fmt: skip

# Hand-computed learning rates at epochs 0, 1, … (η = 0.1); cos(π/4) = 0.7071068:
#   multistep [2, 4] × 0.5                  → 0.1, 0.1, 0.05, 0.05, 0.025, 0.025
#   cosine to 0.2 η over 4:  0.1 (0.2 + 0.8 (1 + cos(πt/4)) / 2)
#                                           → 0.1, 0.08828427, 0.06, 0.03171573
#   warm-up 2 from 0.25 η, then ×0.1 at 4: 0.25 η, (0.25 + 0.75 / 2) η, η, η, 0.1 η, 0.1 η
#   warm-up 2 from 0.5 η, then cosine over the remaining 4 units to 0:
#                                           → 0.05, 0.075, 0.1, 0.08535534, 0.05, 0.01464466
CASES = [
    ({"kind": "multistep", "milestones": [2, 4], "factor": 0.5}, 6,
     [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]),
    ({"kind": "cosine", "eta_min_factor": 0.2}, 4, [0.1, 0.08828427, 0.06, 0.03171573]),
    ({"kind": "warmup", "length": 2, "start_factor": 0.25,
      "then": {"kind": "multistep", "milestones": [4], "factor": 0.1}}, 6,
     [0.025, 0.0625, 0.1, 0.1, 0.01, 0.01]),
    ({"kind": "warmup", "length": 2, "start_factor": 0.5, "then": {"kind": "cosine"}}, 6,
     [0.05, 0.075, 0.1, 0.08535534, 0.05, 0.01464466]),
]  # fmt: skip


@pytest.mark.parametrize(("schedule", "epochs", "expected"), CASES)
def test_sgds_learning_rate_per_epoch_is_the_formula(schedule, epochs, expected):
    reports = []
    result = run_trial({**MF, "budget": epochs, "schedule": schedule}, reports.append)
    assert result.status == "completed"
    assert [r["lr"] for r in reports] == pytest.approx(expected, rel=1e-6)
    assert all("schedule_ignored" not in r for r in reports)


def test_eta_is_the_initial_value_and_a_constant_schedule_changes_nothing():
    multistep = {"kind": "multistep", "milestones": [1], "factor": 0.5}
    reports = []
    run_trial({**MF, "budget": 2, "eta": 0.03, "schedule": multistep}, reports.append)
    assert reports[0]["lr"] == pytest.approx(0.03) and reports[1]["lr"] == pytest.approx(0.015)
    constant = TrainingRun(TrialConfig(**MF, budget=2), lambda m: None)
    assert constant.scheduler is None
    result = constant.run()
    assert current_lr(constant.optimizer) == 0.1
    assert "lr" not in result.metrics and "schedule_ignored" not in result.metrics


def test_step_budgets_step_the_schedule_once_per_step():
    params = [torch.nn.Parameter(torch.zeros(3))]
    optimizer = torch.optim.SGD(params, lr=0.2)
    schedule = TrialConfig(
        task="dnc-copy", optimizer="sgd", eta=0.2, batch_size=1, budget=8,
        schedule={"kind": "multistep", "milestones": [3, 6], "factor": 0.5},
    ).schedule  # fmt: skip
    scheduler = build_scheduler(optimizer, "sgd", schedule, 8)
    seen = []
    for _ in range(8):
        seen.append(current_lr(optimizer))
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05])


def test_a_step_task_reports_the_learning_rate_of_each_step():
    reports = []
    run_trial(
        {"task": "dnc-copy", "optimizer": "adam", "eta": 1e-3, "batch_size": 2, "budget": 6,
         "report_every": 1, "device": "cpu",
         "schedule": {"kind": "warmup", "length": 2, "start_factor": 0.5}},
        reports.append,
    )  # fmt: skip
    assert [r["lr"] for r in reports] == pytest.approx([5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3, 1e-3])


def test_polyak_methods_ignore_the_schedule_and_say_so():
    polyak = {name for name, info in OPTIMIZERS.items() if not schedule_applies(name)}
    assert polyak == {"alig", "aalig", "sps", "l4mom", "l4adam"}
    assert all(schedule_applies(n) for n in ["sgd", "sgd-nesterov", "adam", "adamw", "rmsprop"])
    schedule = {"kind": "multistep", "milestones": [1, 2], "factor": 0.1}
    for name, eta in [("alig", 1.0), ("sps", 0.5), ("l4mom", 0.15)]:
        reports = []
        trial = TrainingRun(TrialConfig(**{**MF, "optimizer": name, "eta": eta}, budget=3,
                                        schedule=schedule), reports.append)  # fmt: skip
        assert trial.scheduler is None
        trial.run()
        assert [r["schedule_ignored"] for r in reports] == [1.0, 1.0, 1.0]
        assert all("lr" not in r for r in reports)
        if name in ("alig", "sps"):  # the cap is untouched
            assert trial.optimizer.param_groups[0]["max_lr"] == eta


def test_a_schedule_that_does_not_fit_the_budget_is_a_configuration_error():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = TrialConfig(
        **MF, budget=10, schedule={"kind": "multistep", "milestones": [5]}
    ).schedule
    with pytest.raises(TaskConfigError, match=r"schedule.milestones\[0\]: must be < the budget"):
        build_scheduler(optimizer, "sgd", schedule, 5)
    with pytest.raises(ValueError, match=r"schedule.length: the warm-up must be shorter"):
        TrialConfig(**MF, budget=3, schedule={"kind": "warmup", "length": 3})
