"""Learning-rate schedules as a study states them (``schedule`` in the spec and in each
trial's config): constant, multistep, cosine, or a linear warm-up followed by one of those.

Units are the task's budget unit (epochs or steps). ``workers/schedules.py`` builds the matching
``torch.optim.lr_scheduler``; Polyak-type optimizers ignore schedules (their η is a cap or a
fraction). See docs/algorithms.md, section "Learning-rate schedules".
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _ScheduleModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConstantSchedule(_ScheduleModel):
    """The learning rate stays η (the default)."""

    kind: Literal["constant"] = "constant"


class MultiStepSchedule(_ScheduleModel):
    """η × factor^k after the k-th milestone (torch's ``MultiStepLR``); milestones count units
    (epochs or steps, the task's budget unit) from the start of training."""

    kind: Literal["multistep"]
    milestones: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]
    factor: Annotated[float, Field(gt=0, le=1)] = 0.1

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        for i in range(1, len(value)):
            if value[i] <= value[i - 1]:
                raise ValueError(
                    f"[{i}] must be greater than the milestone before it ({value[i - 1]})"
                )
        return value


class CosineSchedule(_ScheduleModel):
    """Cosine annealing from η to ``eta_min_factor × η`` over the whole budget (torch's
    ``CosineAnnealingLR``; after a warm-up: over the rest of the budget)."""

    kind: Literal["cosine"]
    eta_min_factor: Annotated[float, Field(ge=0, le=1)] = 0.0


class WarmupSchedule(_ScheduleModel):
    """A linear warm-up from ``start_factor × η`` to η over the first ``length`` units (torch's
    ``LinearLR``), then the ``then`` schedule (``SequentialLR``): η is the value the warm-up
    reaches; ``then``'s milestones still count from the start of training."""

    kind: Literal["warmup"]
    length: Annotated[int, Field(ge=1)]  # units of warm-up; shorter than the budget
    start_factor: Annotated[float, Field(gt=0, le=1)] = 0.1
    then: Annotated[
        ConstantSchedule | MultiStepSchedule | CosineSchedule, Field(discriminator="kind")
    ] = ConstantSchedule()


Schedule = Annotated[
    ConstantSchedule | MultiStepSchedule | CosineSchedule | WarmupSchedule,
    Field(discriminator="kind"),
]
SCHEDULE_KINDS = ("constant", "multistep", "cosine", "warmup")


def schedule_budget_error(schedule: Any, budget: int, unit: str = "units") -> str | None:
    """``field: message`` (relative to the schedule) when ``schedule`` does not fit in
    ``budget`` units, else None: the warm-up must be shorter than the budget, and every
    milestone must fall after the warm-up and before the end of the budget."""
    prefix, start = "", 0
    if isinstance(schedule, WarmupSchedule):
        if schedule.length >= budget:
            return f"length: the warm-up must be shorter than the budget ({budget} {unit})"
        prefix, start, schedule = "then.", schedule.length, schedule.then
    if isinstance(schedule, MultiStepSchedule):
        for i, milestone in enumerate(schedule.milestones):
            if milestone >= budget:
                return (
                    f"{prefix}milestones[{i}]: must be < the budget ({budget} {unit}), "
                    f"got {milestone}"
                )
            if milestone <= start:
                return f"{prefix}milestones[{i}]: must be after the warm-up (> {start})"
    return None
