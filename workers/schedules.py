"""The baselines' learning-rate schedules as ``torch.optim.lr_scheduler`` objects.

A study's ``schedule`` (:data:`studies.schedule.Schedule`; docs/algorithms.md, "Learning-rate
schedules") is counted in the task's budget unit: the trainer calls ``scheduler.step()`` once per
epoch for epoch budgets and once per step for step budgets, always after the unit's optimizer
steps. η (the trial's ``eta``) is the schedule's initial value — for a warm-up, the value the
warm-up reaches — and at unit t (0-based) the learning rate is η × m(t) with

- ``constant``: m(t) = 1 (no scheduler is built);
- ``multistep``: m(t) = factor^(number of milestones ≤ t)  (``MultiStepLR``);
- ``cosine``: m(t) = f + (1 − f)(1 + cos(π t / T)) / 2, f = ``eta_min_factor``, T = the budget
  (``CosineAnnealingLR``);
- ``warmup``: m(t) = s + (1 − s) t / L for t < L (s = ``start_factor``, L = ``length``;
  ``LinearLR``), then the ``then`` schedule (``SequentialLR``) with its milestones counted from the
  start of training and a cosine annealed over the remaining T − L units.

Polyak-type optimizers — those whose η is not a learning rate (``eta_meaning`` ``max_lr`` or
``fraction`` in the catalog: alig, aalig, sps, l4mom, l4adam) — take their step size from the loss;
their η is a cap or a fraction that a schedule must not move. :func:`build_scheduler` returns
``None`` for them, and the trainer reports ``schedule_ignored = 1`` with every report of such a
trial when the study's schedule is not constant.
"""

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    SequentialLR,
)

from studies.catalog.optimizers import optimizer_info
from studies.schedule import (
    ConstantSchedule,
    CosineSchedule,
    MultiStepSchedule,
    Schedule,
    WarmupSchedule,
    schedule_budget_error,
)
from workers.exceptions import TaskConfigError


def schedule_applies(optimizer: str) -> bool:
    """Whether a learning-rate schedule moves ``optimizer``'s η: only where η is a learning rate
    (not a Polyak method's maximal learning rate or L4's fraction)."""
    return optimizer_info(optimizer).eta_meaning == "lr"


def build_scheduler(
    optimizer: Optimizer, name: str, schedule: Schedule, budget: int
) -> LRScheduler | None:
    """The scheduler of ``schedule`` over ``budget`` units for the optimizer registered as
    ``name``, or ``None`` for a constant schedule or an optimizer that ignores schedules."""
    if schedule.kind == "constant" or not schedule_applies(name):
        return None
    error = schedule_budget_error(schedule, budget)
    if error is not None:
        raise TaskConfigError(f"schedule.{error}")
    if isinstance(schedule, WarmupSchedule):
        warmup = LinearLR(
            optimizer, start_factor=schedule.start_factor, end_factor=1.0,
            total_iters=schedule.length,
        )  # fmt: skip
        rest = _plain(optimizer, schedule.then, budget - schedule.length, offset=schedule.length)
        return SequentialLR(optimizer, [warmup, rest], milestones=[schedule.length])
    return _plain(optimizer, schedule, budget, offset=0)


def _plain(
    optimizer: Optimizer,
    schedule: ConstantSchedule | MultiStepSchedule | CosineSchedule,
    length: int,
    offset: int,
) -> LRScheduler:
    """A schedule without warm-up over ``length`` units that start ``offset`` units into
    training (``SequentialLR`` restarts the count of the scheduler it switches to)."""
    if isinstance(schedule, MultiStepSchedule):
        milestones = [m - offset for m in schedule.milestones]
        return MultiStepLR(optimizer, milestones=milestones, gamma=schedule.factor)
    if isinstance(schedule, CosineSchedule):
        eta = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"])
        return CosineAnnealingLR(optimizer, T_max=length, eta_min=schedule.eta_min_factor * eta)
    return ConstantLR(optimizer, factor=1.0, total_iters=0)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the optimizer's first parameter group."""
    return float(optimizer.param_groups[0]["lr"])
