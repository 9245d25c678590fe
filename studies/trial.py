"""The trial type: one description of a trial, made once, used everywhere downstream.

- :class:`TrialConfig` — everything that determines one training run (what the trainer runs);
- :class:`Trial` — a trial of a study: its stable key, its axes (the heatmap row, η, batch size,
  radius, weight decay, seed, swept task options) and its config. Made once by the spec's
  expansion (:func:`studies.spec.expand_grid`, :func:`studies.spec.search_trial`), stored as one
  row (:mod:`studies.store.rows` is the only row↔object conversion), and sent to the workers as
  :meth:`Trial.to_json` / :meth:`Trial.from_json`;
- :class:`TrialRecord` — a stored trial: the same axes plus its state (status, result, attempts,
  timestamps). The store builds one per row; the API, the export, the driver and the analysis
  all read it (the analysis needs only the axes and the outcome, so tests build records by hand).

``eta=None`` is ALI-G∞ and sorts after every finite η (an infinite maximal learning rate).
A config's learning-rate ``schedule`` (:mod:`studies.schedule`; docs/algorithms.md,
"Learning-rate schedules") is part of the trial; the constant default is left out of the
config's dump, so a constant-schedule trial has the same JSON and key as before schedules.
See docs/architecture.md, section "The trial type".
"""

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from studies.schedule import ConstantSchedule, Schedule, schedule_budget_error
from studies.statuses import TRIAL_FINISHED, TrialStatus

ValueKind = Literal["finite", "nan", "inf", "-inf"]


class TrialConfig(BaseModel):
    """Everything that determines one training run; plain JSON, so it travels unchanged
    through SQL, Ray Tune and HTTP."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str  # a key of studies.catalog.tasks.TASKS
    task_options: dict[str, Any] = Field(default_factory=dict)  # validated by the task's model
    optimizer: str  # a key of studies.catalog.optimizers.OPTIMIZERS
    eta: Annotated[float, Field(gt=0)] | None  # max_lr / fraction / lr; None = ALI-G∞ only
    optimizer_options: dict[str, Any] = Field(default_factory=dict)  # e.g. {"momentum": 0.9}
    batch_size: Annotated[int, Field(ge=1)]
    radius: Annotated[float, Field(gt=0)] | None = None  # joint l2 ball; None = unconstrained
    weight_decay: Annotated[float, Field(ge=0)] | None = None  # for optimizers that take it
    seed: int = 0  # initialisation, data order, fresh batches
    budget: Annotated[int, Field(ge=1)]  # in the task's unit (steps or epochs)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when available
    threads: Annotated[int, Field(ge=1)] = 1  # torch CPU threads (the trial's CPU share)
    amp: bool = False  # mixed precision (CUDA only; ignored on the CPU)
    report_every: Annotated[int, Field(ge=1)] | None = None  # steps between reports (step tasks)
    divergence_factor: Annotated[float, Field(gt=1)] = 1e3  # loss > factor × (1 + L0) diverges
    # the baselines' learning-rate schedule in the budget's unit (Polyak-type methods ignore it)
    # left out of the dump when constant: configs (and so trial keys) made before schedules
    # existed stay the same
    schedule: Schedule = Field(
        default=ConstantSchedule(), exclude_if=lambda schedule: schedule.kind == "constant"
    )

    @model_validator(mode="after")
    def _schedule_fits(self) -> "TrialConfig":
        error = schedule_budget_error(self.schedule, self.budget)
        if error is not None:
            raise ValueError(f"schedule.{error}")
        return self


def trial_key(axes: Mapping[str, Any]) -> str:
    """A stable 16-hex key: the SHA-256 of the canonical JSON of the trial's defining values."""
    canonical = json.dumps(axes, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def eta_sort_key(eta: float | None) -> float:
    """Order η values with ALI-G∞ (``None``) last."""
    return math.inf if eta is None else eta


@dataclass(frozen=True)
class TrialAxes:
    """What identifies a trial within its study and places it in the analysis."""

    key: str
    optimizer: str  # the heatmap row: the entry's label, by default the registry name
    eta: float | None
    batch_size: int
    radius: float | None = None
    weight_decay: float | None = None
    seed: int = 0
    extra_axes: Mapping[str, Any] = field(default_factory=dict)  # swept task options (rank)


@dataclass(frozen=True, kw_only=True)
class Trial(TrialAxes):
    """A trial to run: its axes and its config (the axes are the config's values)."""

    config: TrialConfig

    @classmethod
    def of(
        cls, row: str, config: TrialConfig, extra_axes: Mapping[str, Any], key: str = ""
    ) -> Self:
        """The trial of heatmap row ``row`` running ``config``. Its key (unless given: a stored
        one) hashes both; the CPU share is not part of the science, so it is left out."""
        return cls(
            key=key or trial_key({"row": row, **config.model_dump(exclude={"threads"})}),
            optimizer=row,
            eta=config.eta,
            batch_size=config.batch_size,
            radius=config.radius,
            weight_decay=config.weight_decay,
            seed=config.seed,
            extra_axes=dict(extra_axes),
            config=config,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON form workers receive (Tune configs are plain data)."""
        return {
            "key": self.key,
            "optimizer": self.optimizer,
            "extra_axes": dict(self.extra_axes),
            "config": self.config.model_dump(mode="json"),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """The trial of :meth:`to_json`'s output (the config validated, the key kept)."""
        config = TrialConfig.model_validate(data["config"])
        return cls.of(data["optimizer"], config, data.get("extra_axes") or {}, data["key"])


@dataclass(frozen=True, kw_only=True)
class TrialRecord(TrialAxes):
    """A stored trial: axes, config and state. Floats are decoded (NaN/±inf included: the
    ``objective_kind`` says which); whoever writes JSON maps the non-finite ones to null."""

    status: TrialStatus = "pending"
    final_objective: float | None = None  # None = no result
    objective_kind: ValueKind | None = None
    metrics: Mapping[str, float | None] = field(default_factory=dict)  # last reported values
    reason: str | None = None  # why it diverged, failed or must run again
    attempts: int = 0  # runs started so far
    config: TrialConfig | None = None  # None only for records built by hand (analysis tests)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def value(self, metric: str = "final_objective") -> float | None:
        """The finite value of ``metric`` for a completed trial, else ``None``."""
        if self.status != "completed":
            return None
        raw = self.final_objective if metric == "final_objective" else self.metrics.get(metric)
        if raw is None or not math.isfinite(raw):
            return None
        return float(raw)

    @property
    def finished(self) -> bool:
        """Completed, diverged or failed: a result that a re-run never undoes."""
        return self.status in TRIAL_FINISHED

    @property
    def trial(self) -> Trial:
        """The trial this record stores (what a re-run sends to the workers)."""
        if self.config is None:
            raise ValueError(f"trial {self.key}: a record built without its config")
        return Trial.of(self.optimizer, self.config, self.extra_axes, self.key)
