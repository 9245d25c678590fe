"""Plain data out of the repository besides :class:`studies.trial.TrialRecord`: no ORM object
leaves ``repository.py``.

Floats here are decoded Python floats (NaN and ±inf included, see :mod:`.codec`); whoever turns
them into JSON must map the non-finite ones (the ``*_kind`` fields say which they are).
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from studies.statuses import StudyStatus

T = TypeVar("T")


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
    launch_attempt: int  # launches so far (0 = never launched)
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # one entry per extension, oldest first (studies.extension.history_entry)
    extensions: list[dict[str, Any]] = field(default_factory=list)


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
