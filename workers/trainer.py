"""Run one trial: any registered optimizer on any registered task, honestly and reproducibly.

``run_trial(config, report)`` seeds everything, builds the task, model and optimizer from their
registries, trains within the budget (steps or epochs, the task's unit) on the CPU or CUDA, and
calls ``report(metrics)`` after every epoch (epoch budgets) or every ``report_every`` steps (step
budgets) with:

- ``step``, ``epoch``: progress so far; ``train_loss``: mean mini-batch loss since the last report;
- ``val_loss`` / ``val_accuracy`` (…) where the task has a validation set;
- ``step_size_mean`` and ``step_capped_fraction`` for optimizers that expose their step size;
- ``lr``: the learning rate of the last step, for a baseline under a non-constant schedule;
  ``schedule_ignored = 1`` instead for a Polyak-type optimizer (alig, aalig, sps, l4mom, l4adam)
  in a study with a non-constant schedule: its η is a cap or a fraction, never scheduled;
- ``wall_time``: seconds since the trial started.

The study's learning-rate ``schedule`` (:mod:`workers.schedules`) is a ``torch.optim.lr_scheduler``
stepped once per unit of the budget: after every epoch's report (epoch budgets) or after every
optimizer step (step budgets); η is its initial value.

It returns a :class:`TrialResult` whose ``status`` is ``completed`` or ``diverged`` and whose
``final_objective`` is the task's objective: the mean training loss over the last
``min(window, max(1, budget // 100))`` steps for step budgets (window 100, the DNC paper's
setting: 1% of the budget when the budget is shorter than 10,000 steps), and the mean training
loss over the last epoch (as seen online) for epoch budgets. A trial diverges when its loss is
not finite or exceeds ``divergence_factor × (1 + initial loss)``; it then stops at once and its
objective is ``None``.

AALIG gets its per-sample closure and the ``end_epoch()`` calls from here, never from task code.

**Checkpoints.** With ``checkpointing`` (:class:`Checkpointing`), every ``every``-th report goes
to ``checkpointing.save(metrics, state)`` instead of ``report``, with the run's whole state
(:meth:`TrainingRun.state_dict`, written to disk by :mod:`workers.checkpoints`): after every N
epochs (epoch budgets), after every N reports of ``report_every`` steps (step budgets). A report
that ends a trial as diverged never carries one. ``run_trial(config, resume=state)`` continues
such a state in a fresh process and ends exactly where the uninterrupted run ends: the same
parameters, objective, reports and outcome (``wall_time`` aside, which continues from the
checkpoint's). Step budgets resume exactly because their stream (the DNC's sequences) is drawn
from the trial's generator batch by batch, as the loop asks for it.
"""

import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from optim.closure import step_with_closure
from optim.exceptions import OptimError
from optim.registry import build_optimizer
from studies.catalog.optimizers import optimizer_info
from studies.trial import TrialConfig
from workers.checkpoints import rng_state, set_rng_state
from workers.divergence import DivergenceMonitor
from workers.exceptions import TaskConfigError
from workers.precision import amp_dtype, autocast, grad_scaler, skipped_step
from workers.schedules import build_scheduler, current_lr
from workers.step_stats import StepSizeStats
from workers.tasks.base import Batch, Task
from workers.tasks.registry import build_task

Report = Callable[[dict[str, float]], None]
# a report that also carries the run's state to checkpoint: (metrics, TrainingRun.state_dict())
SaveReport = Callable[[dict[str, float], dict[str, Any]], None]
DEFAULT_REPORTS_PER_TRIAL = 20  # step budgets: report every budget // 20 steps by default


@dataclass
class TrialResult:
    """The outcome of a trial; ``metrics`` holds the last reported values."""

    status: Literal["completed", "diverged"]
    final_objective: float | None
    steps: int
    epochs: int
    wall_time: float
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None  # why it diverged

    @classmethod
    def ended(
        cls,
        objective: float | None,
        reason: str | None,
        *,
        steps: int,
        epochs: int,
        wall_time: float,
        metrics: dict[str, float],
    ) -> "TrialResult":
        """How a trial ended: ``diverged`` with a ``reason``, else ``completed`` with its
        objective; a non-finite final objective is a divergence too."""
        if objective is not None and not math.isfinite(objective):
            objective, reason = None, "final objective is not finite"
        status: Literal["completed", "diverged"] = "diverged" if reason else "completed"
        return cls(status, objective, steps, epochs, wall_time, dict(metrics), reason)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: non-finite numbers (a diverged trial's last metrics) become None."""
        return {
            "status": self.status,
            "final_objective": _finite_or_none(self.final_objective),
            "steps": self.steps,
            "epochs": self.epochs,
            "wall_time": self.wall_time,
            "metrics": {k: _finite_or_none(v) for k, v in self.metrics.items()},
            "reason": self.reason,
        }


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class Checkpointing:
    """When a trial checkpoints (every ``every``-th report; 0: never) and how (``save``: a
    trial's ``(metrics, state)``, a pack's ``(progress, states)`` keyed by member)."""

    every: int
    save: SaveReport | Callable[[dict[str, dict[str, float]], dict[str, Any]], None]

    def due(self, reports: int) -> bool:
        """Whether the ``reports``-th report (1-based) carries a checkpoint."""
        return self.every > 0 and reports % self.every == 0


def resolve_device(requested: str) -> torch.device:
    """``auto`` is CUDA when present; asking for CUDA without one is a configuration error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise TaskConfigError("device: 'cuda' was requested but no CUDA device is available")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a reproducible trial."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _optimizer_options(config: TrialConfig, task: Task) -> dict[str, Any]:
    """The optimizer's options: the config's, plus what the trial decides (decay, AALIG's data)."""
    options = dict(config.optimizer_options)
    if config.weight_decay is not None:
        if not optimizer_info(config.optimizer).takes_weight_decay:
            raise TaskConfigError(
                f"weight_decay: {config.optimizer} takes no weight decay"
                + (" (use radius instead)" if config.optimizer == "alig" else "")
            )
        options["weight_decay"] = config.weight_decay
    if optimizer_info(config.optimizer).closure == "per-sample":
        if task.n_train is None or task.spec.budget_unit != "epochs":
            raise TaskConfigError(
                f"optimizer: {config.optimizer} needs a finite training set and an epoch budget; "
                f"{task.name} has infinite data"
            )
        options.update(n_samples=task.n_train, epochs=config.budget)
        options.setdefault("lower_bound", task.loss_lower_bound)
    return options


class TrainingRun:
    """The state of one running trial (model, optimizer, monitors) and its training step."""

    def __init__(
        self, config: TrialConfig, report: Report, checkpointing: Checkpointing | None = None
    ) -> None:
        self.config = config
        self.report_fn = report
        self.checkpointing = checkpointing
        self.device = resolve_device(config.device)
        # More threads than the trial's CPU share makes OpenMP spin against other trials: a
        # 10×6 model ran 60× slower with 2 threads than with 1 on a loaded 2-core machine.
        torch.set_num_threads(config.threads)
        seed_everything(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.task = build_task(
            config.task, config.task_options, seed=config.seed, device=self.device
        )
        self.unit = self.task.spec.budget_unit
        torch.manual_seed(config.seed)  # the model's initialisation depends on the seed only
        self.model = self.task.build_model().to(self.device)
        self.model.train()
        try:
            self.optimizer = build_optimizer(
                config.optimizer,
                self.model.parameters(),
                config.eta,
                config.radius,
                **_optimizer_options(config, self.task),
            )
        except OptimError as error:
            raise TaskConfigError(f"{config.optimizer}: {error}") from error
        self.closure_kind = optimizer_info(config.optimizer).closure
        self.clip = self.task.grad_clip_norm(config.optimizer)
        self.precision = amp_dtype(config.amp, self.device)  # None: full precision
        self.scaler = grad_scaler(self.device) if self.precision is not None else None
        self.monitor = DivergenceMonitor(config.divergence_factor)
        self.step_stats = StepSizeStats()
        # the baselines' learning-rate schedule, stepped once per budget unit; None when the
        # schedule is constant or the optimizer is Polyak-type (workers/schedules.py)
        self.scheduler = build_scheduler(
            self.optimizer, config.optimizer, config.schedule, config.budget
        )
        self.schedule_ignored = self.scheduler is None and config.schedule.kind != "constant"
        self.step_lr: float | None = None  # the learning rate of the last step (when scheduled)
        self.started = time.perf_counter()
        self.steps = 0
        self.epochs = 0
        self.interval_losses: list[float] = []
        self.last_metrics: dict[str, float] = {}
        self.curve: list[dict[str, float]] = []  # every report so far, in order
        # the loops' running objectives: the last epoch's losses, the trailing window of steps
        self.epoch_losses: list[float] = []
        self.recent: deque[float] = deque(maxlen=_objective_window(self))

    def train_step(self, batch: Batch) -> str | None:
        """One optimizer step on ``batch``; returns a divergence reason or ``None``."""
        batch = batch.to(self.device)
        with autocast(self.device, self.precision):
            per_sample = self.task.per_sample_loss(self.model, batch)
        if per_sample.dtype in (torch.float16, torch.bfloat16):  # autocast: reduce in float32
            per_sample = per_sample.float()
        loss = per_sample.mean()
        value = float(loss.detach())
        reason = self.monitor.check(value)
        if reason is not None:
            return reason
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        if self.clip is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        scale = self.scaler.get_scale() if self.scaler is not None else None
        step_with_closure(
            self.optimizer, self.closure_kind, loss, per_sample, batch.indices, self.scaler
        )
        if self.scaler is not None:
            self.scaler.update()
        if not skipped_step(self.scaler, scale):  # a skipped step has no step size
            self.step_stats.record(self.optimizer)
        self.steps += 1
        if self.scheduler is not None:
            self.step_lr = current_lr(self.optimizer)
            if self.unit == "steps":
                self.scheduler.step()
        self.interval_losses.append(value)
        return None

    def report(self, checkpoint: bool = True) -> dict[str, float]:
        """Evaluate, send one report (with a checkpoint when one is due and ``checkpoint``)
        and return its metrics."""
        metrics: dict[str, float] = {"step": self.steps, "epoch": self.epochs}
        if self.interval_losses:
            metrics["train_loss"] = sum(self.interval_losses) / len(self.interval_losses)
        metrics.update(self.task.evaluate(self.model, self.config.batch_size))
        metrics.update(self.step_stats.flush())
        if self.step_lr is not None:
            metrics["lr"] = self.step_lr
        if self.schedule_ignored:
            metrics["schedule_ignored"] = 1.0
        metrics["wall_time"] = time.perf_counter() - self.started
        self.interval_losses = []
        self.last_metrics = metrics
        self.curve.append(metrics)
        if checkpoint and self.checkpointing and self.checkpointing.due(len(self.curve)):
            self.checkpointing.save(metrics, self.state_dict())
        else:
            self.report_fn(metrics)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """Everything the rest of the run depends on (see :mod:`workers.checkpoints`).

        The tensors are the live ones: serialise the state before the next step.
        """
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "monitor": self.monitor.state_dict(),
            "step_stats": self.step_stats.state_dict(),
            "steps": self.steps,
            "epochs": self.epochs,
            "step_lr": self.step_lr,
            "interval_losses": list(self.interval_losses),
            "epoch_losses": list(self.epoch_losses),
            "recent": list(self.recent),
            "curve": [dict(metrics) for metrics in self.curve],
            "wall_time": time.perf_counter() - self.started,
            "rng": rng_state(self.generator),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (of a run of the same config, in a fresh run)."""
        if (state["scheduler"] is None) != (self.scheduler is None) or (
            state["scaler"] is None
        ) != (self.scaler is None):
            raise TaskConfigError("resume: the checkpoint was taken with another schedule or AMP")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.monitor.load_state_dict(state["monitor"])
        self.step_stats.load_state_dict(state["step_stats"])
        self.steps, self.epochs = int(state["steps"]), int(state["epochs"])
        self.step_lr = state["step_lr"]
        self.interval_losses = list(state["interval_losses"])
        self.epoch_losses = list(state["epoch_losses"])
        self.recent = deque(state["recent"], maxlen=self.recent.maxlen)
        self.curve = [dict(metrics) for metrics in state["curve"]]
        self.last_metrics = dict(self.curve[-1]) if self.curve else {}
        self.started = time.perf_counter() - float(state["wall_time"])
        set_rng_state(state["rng"], self.generator)  # last: building the run drew from them

    def run(self) -> TrialResult:
        """Train to the end of the budget (or the divergence) with the task's schedule."""
        return SCHEDULES[self.unit](self)

    def result(self, objective: float | None, reason: str | None) -> TrialResult:
        return TrialResult.ended(
            objective, reason, steps=self.steps, epochs=self.epochs,
            wall_time=time.perf_counter() - self.started, metrics=self.last_metrics,
        )  # fmt: skip


def _objective_window(trial: TrainingRun) -> int:
    """Step budgets: how many trailing steps the objective averages."""
    budget = trial.config.budget
    return min(getattr(trial.task.options, "objective_window", 100), max(1, budget // 100))


def _run_epochs(trial: TrainingRun) -> TrialResult:
    """Epoch budget: report after every epoch; the objective is the last epoch's mean loss.

    Starts at ``trial.epochs`` (a resumed run); a checkpoint is taken at an epoch's report,
    after everything the epoch changes (AALIG's ``end_epoch``, the schedule's step).
    """
    end_epoch = getattr(trial.optimizer, "end_epoch", None)
    for _ in range(trial.epochs, trial.config.budget):
        trial.epoch_losses = []
        for batch in trial.task.train_batches(trial.config.batch_size, trial.generator):
            reason = trial.train_step(batch)
            if reason is not None:
                trial.report(checkpoint=False)
                return trial.result(None, reason)
            trial.epoch_losses.append(trial.interval_losses[-1])
        trial.epochs += 1
        if end_epoch is not None:
            end_epoch()
        # epoch budgets: the schedule moves once per epoch (before the report, so that a
        # checkpoint taken there holds it; the report's ``lr`` is the epoch's, taken per step)
        if trial.scheduler is not None:
            trial.scheduler.step()
        trial.report()
    losses = trial.epoch_losses
    objective = sum(losses) / len(losses) if losses else None
    return trial.result(objective, None)


def _run_steps(trial: TrainingRun) -> TrialResult:
    """Step budget: report every ``report_every`` steps; the objective is a trailing mean.

    The result's metrics also carry ``objective_median``, the median of the same trailing window:
    a spike-robust companion metric, never the objective.
    """
    budget = trial.config.budget
    every = trial.config.report_every or max(1, budget // DEFAULT_REPORTS_PER_TRIAL)
    recent = trial.recent
    # a resumed run draws the rest of the stream from the generator's checkpointed state
    batches: Iterator[Batch] = iter(
        trial.task.train_batches(trial.config.batch_size, trial.generator)
    )
    for _ in range(trial.steps, budget):
        reason = trial.train_step(next(batches))
        if reason is not None:
            trial.report(checkpoint=False)
            return trial.result(None, reason)
        recent.append(trial.interval_losses[-1])
        if trial.steps % every == 0 or trial.steps == budget:
            trial.report()
    # a new dict: the last report's metrics, already handed to ``report``, stay as they were
    trial.last_metrics = {**trial.last_metrics, "objective_median": float(np.median(recent))}
    return trial.result(sum(recent) / len(recent), None)


SCHEDULES: dict[str, Callable[[TrainingRun], TrialResult]] = {
    "epochs": _run_epochs,
    "steps": _run_steps,
}


def run_trial(
    config: TrialConfig | dict[str, Any],
    report: Report | None = None,
    *,
    checkpointing: Checkpointing | None = None,
    resume: dict[str, Any] | None = None,
) -> TrialResult:
    """Train one trial to the end of its budget or its divergence (see the module docstring),
    checkpointing as ``checkpointing`` says and continuing from the state ``resume`` if given.

    Raises :class:`~workers.exceptions.TaskConfigError` for a configuration that cannot run
    (unknown task or option, an optimizer unfit for the task, CUDA requested without one).
    """
    if not isinstance(config, TrialConfig):
        config = TrialConfig.model_validate(config)
    trial = TrainingRun(config, report or (lambda metrics: None), checkpointing)
    if resume is not None:
        trial.load_state_dict(resume)
    return trial.run()
