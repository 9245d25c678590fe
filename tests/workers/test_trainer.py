"""The trial trainer: reports, objectives, divergence, AALIG's schedule, reproducibility."""

import json
import math

import pytest
import torch

from studies.trial import TrialConfig
from workers.divergence import DivergenceMonitor
from workers.exceptions import TaskConfigError
from workers.step_stats import StepSizeStats
from workers.trainer import TrainingRun, run_trial

MF = {"task": "matrix-factorisation", "task_options": {"rank": "true-model", "n_samples": 320},
      "batch_size": 32, "budget": 3, "device": "cpu"}  # fmt: skip


def test_reports_every_epoch_with_the_documented_metrics():
    reports = []
    result = run_trial({**MF, "optimizer": "alig", "eta": 1.0}, reports.append)
    assert [r["epoch"] for r in reports] == [1, 2, 3]
    assert [r["step"] for r in reports] == [8, 16, 24]
    for r in reports:
        assert {
            "train_loss",
            "val_loss",
            "step_size_mean",
            "step_capped_fraction",
            "wall_time",
        } <= set(r)
        assert 0.0 < r["step_size_mean"] <= 1.0
        assert 0.0 <= r["step_capped_fraction"] <= 1.0
    assert result.status == "completed" and result.steps == 24 and result.epochs == 3
    assert result.metrics == reports[-1]
    # epoch budget: the objective is the mean mini-batch loss of the last epoch
    assert result.final_objective == pytest.approx(reports[-1]["train_loss"])


def test_baselines_report_no_step_size():
    reports = []
    run_trial({**MF, "optimizer": "sgd", "eta": 0.01}, reports.append)
    assert "step_size_mean" not in reports[-1]


def test_same_seed_same_result_different_seed_different_result():
    a = run_trial({**MF, "optimizer": "sgd", "eta": 0.05, "seed": 3})
    b = run_trial({**MF, "optimizer": "sgd", "eta": 0.05, "seed": 3})
    c = run_trial({**MF, "optimizer": "sgd", "eta": 0.05, "seed": 4})
    assert a.final_objective == b.final_objective
    assert a.final_objective != c.final_objective


def test_divergence_stops_at_once_and_is_an_outcome():
    reports = []
    result = run_trial({**MF, "optimizer": "sgd", "eta": 50.0}, reports.append)
    assert result.status == "diverged"
    assert result.final_objective is None
    assert result.steps < 8  # stopped inside the first epoch
    assert "exceeded 1000" in result.reason or "loss became" in result.reason
    assert len(reports) == 1  # one last report with what was measured


def test_sgd_at_eta_1e4_diverges_within_a_few_steps_with_a_json_safe_record():
    result = run_trial({**MF, "task_options": {"rank": 4}, "optimizer": "sgd", "eta": 1e4})
    assert result.status == "diverged" and result.steps <= 3
    record = json.dumps(result.to_dict(), allow_nan=False)  # raises on NaN/inf
    assert json.loads(record)["final_objective"] is None


def test_divergence_monitor_thresholds():
    monitor = DivergenceMonitor(factor=10.0)
    assert monitor.check(2.0) is None  # first loss sets L0 = 2 -> limit 10 × 3 = 30
    assert monitor.check(29.0) is None
    assert "exceeded 10" in monitor.check(31.0)
    assert monitor.check(float("nan")) == "loss became nan"
    assert DivergenceMonitor().check(float("inf")) == "loss became inf"


def test_step_size_stats_flush():
    class Fake:
        last_step_size, last_step_capped = 0.5, True

    stats = StepSizeStats()
    stats.record(Fake())
    Fake.last_step_size, Fake.last_step_capped = 1.5, False
    stats.record(Fake())
    stats.record(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0))  # ignored
    assert stats.flush() == {"step_size_mean": 1.0, "step_capped_fraction": 0.5}
    assert stats.flush() == {}


def test_aalig_gets_per_sample_closure_and_epoch_end_from_the_trainer():
    trial = TrainingRun(TrialConfig(**{**MF, "optimizer": "aalig", "eta": 1.0, "budget": 4}),
                  lambda metrics: None)  # fmt: skip
    optimizer = trial.optimizer
    assert optimizer.n_samples == 256 and optimizer.epochs == 4
    result = trial.run()
    assert result.status == "completed"
    assert optimizer.epoch == 4  # end_epoch() once per epoch
    assert float(optimizer.aov.max()) > 0.0  # the AOVs rose from the lower bound 0


def test_weight_decay_and_radius_reach_the_optimizer():
    trial = TrainingRun(TrialConfig(**{**MF, "optimizer": "sgd", "eta": 0.01, "weight_decay": 1e-3,
                                 "radius": 0.5}), lambda m: None)  # fmt: skip
    assert trial.optimizer.param_groups[0]["weight_decay"] == 1e-3
    norm = torch.cat([p.detach().reshape(-1) for p in trial.model.parameters()]).norm()
    assert norm.item() <= 0.5 * (1 + 1e-6)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optimizer": "alig", "eta": 1.0, "weight_decay": 1e-4}, "alig takes no weight decay"),
        ({"optimizer": "sgd", "eta": 0.1, "optimizer_options": {"momentum": 2.0}}, "momentum"),
        ({"optimizer": "adam", "eta": 0.1, "task_options": {"rank": 3}}, r"task_options\.rank"),
        ({"optimizer": "nadam", "eta": 0.1}, "unknown optimizer 'nadam'"),
    ],
)
def test_bad_configs_are_task_config_errors(changes, message):
    with pytest.raises((TaskConfigError, ValueError), match=message):
        run_trial({**MF, **changes})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_requested_without_one_is_a_clear_error():
    with pytest.raises(TaskConfigError, match="device: 'cuda' was requested"):
        run_trial({**MF, "optimizer": "sgd", "eta": 0.1, "device": "cuda"})


def test_results_never_carry_non_finite_objectives():
    result = run_trial({**MF, "optimizer": "adam", "eta": 0.01})
    assert result.final_objective is not None and math.isfinite(result.final_objective)
