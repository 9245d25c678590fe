"""Plain data in and out of the repository: no ORM object leaves ``repository.py``.

Floats here are decoded Python floats (NaN and ±inf included, see :mod:`.codec`); whoever turns
them into JSON must map the non-finite ones (the ``*_kind`` fields say which they are).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from studies.records import TrialRecord, TrialStatus
from studies.store.codec import ValueKind
from studies.store.models import StudyStatus

T = TypeVar("T")


class TrialLike(Protocol):
    """What creating a trial needs; :class:`NewTrial` and ``studies.spec.PlannedTrial`` fit.

    ``config`` is a mapping or a pydantic model (``TrialConfig``), stored as its JSON dump.
    """

    @property
    def key(self) -> str: ...
    @property
    def config(self) -> Any: ...
    @property
    def optimizer(self) -> str: ...
    @property
    def eta(self) -> float | None: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def radius(self) -> float | None: ...
    @property
    def weight_decay(self) -> float | None: ...
    @property
    def seed(self) -> int: ...
    @property
    def extra_axes(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class NewTrial:
    """A trial to create: its key (unique in the study), its config and its axis values."""

    key: str
    config: Mapping[str, Any]
    optimizer: str
    eta: float | None  # None = ALI-G∞
    batch_size: int
    radius: float | None = None
    weight_decay: float | None = None
    seed: int = 0
    extra_axes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyInfo:
    """A study row."""

    id: str
    name: str
    task: str
    spec: dict[str, Any]
    tags: list[str]
    status: StudyStatus
    error: str | None
    ray_job_id: str | None
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class Progress:
    """How many trials of a study are in each status."""

    total: int = 0
    pending: int = 0
    running: int = 0
    completed: int = 0
    diverged: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def done(self) -> int:
        """Finished trials: completed + diverged + failed (a cancelled trial may run again)."""
        return self.completed + self.diverged + self.failed

    def as_dict(self) -> dict[str, int]:
        """Every count, ``done`` included (the API's ``progress`` object)."""
        return {
            "total": self.total,
            "done": self.done,
            "pending": self.pending,
            "running": self.running,
            "completed": self.completed,
            "diverged": self.diverged,
            "failed": self.failed,
            "cancelled": self.cancelled,
        }


@dataclass(frozen=True)
class TrialInfo:
    """A trial row, floats decoded."""

    id: int
    study_id: str
    key: str
    config: dict[str, Any]
    optimizer: str
    eta: float | None
    batch_size: int
    radius: float | None
    weight_decay: float | None
    seed: int
    extra_axes: dict[str, Any]
    status: TrialStatus
    final_objective: float | None  # NaN/±inf as floats; None = no result
    objective_kind: ValueKind | None
    metrics: dict[str, float | None]  # last reported values, NaN/±inf as floats
    reason: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    def record(self) -> TrialRecord:
        """The analysis' view: ``final_objective`` only when finite, missing metrics dropped."""
        final = self.final_objective if self.objective_kind == "finite" else None
        return TrialRecord(
            key=self.key,
            optimizer=self.optimizer,
            eta=self.eta,
            batch_size=self.batch_size,
            radius=self.radius,
            weight_decay=self.weight_decay,
            seed=self.seed,
            status=self.status,
            final_objective=final,
            metrics={k: v for k, v in self.metrics.items() if v is not None},
            extra_axes=dict(self.extra_axes),
        )


@dataclass(frozen=True)
class CurvePoint:
    """One point of a metric curve (``value`` may be NaN or ±inf)."""

    step: int
    name: str
    value: float


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next_cursor`` back for the next (None = last page)."""

    items: list[T]
    next_cursor: str | None
