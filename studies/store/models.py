"""The ORM schema: ``studies`` ⟶ ``trials`` ⟶ ``metric_points`` (SQLAlchemy 2, typed).

The migration ``migrations/versions/0001_initial.py`` creates exactly this schema by hand; a test
compares the migrated database with :data:`Base.metadata`, so change both together.

Conventions:

- every timestamp is timezone-aware UTC in Python (:class:`UTCDateTime`);
- statuses and float kinds are short strings guarded by CHECK constraints, not native enums, so
  adding a value is a one-line migration on both SQLite and PostgreSQL;
- a float that may be NaN/±inf is a pair (float column, kind column), see :mod:`.codec`;
- constraint and index names come from :data:`NAMING_CONVENTION`, so they are the same on every
  database and in the migration;
- a column that holds user text is as long as :mod:`studies.text` says that kind of text may be
  (the spec validates against the same constant), so whatever validates also fits.
"""

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from studies.statuses import STUDY_STATUSES, TRIAL_STATUSES, StudyStatus, TrialStatus
from studies.store.codec import VALUE_KINDS
from studies.text import IDEMPOTENCY_KEY_MAX, LABEL_MAX, METRIC_NAME_MAX, NAME_MAX, TASK_MAX

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the only kind of datetime the store hands out)."""
    return datetime.now(UTC)


def _empty_dict() -> dict[str, Any]:
    return {}


def _empty_list() -> list[Any]:
    return []


def _in(column: str, values: tuple[str, ...]) -> str:
    """SQL for ``column IN (...)``, used by the CHECK constraints (here and in the migration)."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE``; always aware UTC in Python, also on SQLite.

    SQLite has no time zones: values are stored as naive UTC text (which sorts chronologically,
    so cursors can compare them) and get their ``tzinfo`` back when read. A naive datetime
    handed to the store is rejected: guessing its zone would silently shift timestamps.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store needs timezone-aware values")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with the project's constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
    }


class Timestamps:
    """``created_at`` / ``updated_at``, set by the ORM and by Core ``update()`` statements."""

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StudyRow(Timestamps, Base):
    """One submitted study: the validated spec and the study's lifecycle."""

    # prefixed: Optuna's RDB storage (search studies) owns "studies" and "trials" in the same DB
    __tablename__ = "sens_studies"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4().hex
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    task: Mapped[str] = mapped_column(String(TASK_MAX))
    spec: Mapped[dict[str, Any]]  # the validated spec as JSON
    tags: Mapped[list[str]] = mapped_column(default=_empty_list)
    status: Mapped[StudyStatus] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text)  # why it failed, for the API
    ray_job_id: Mapped[str | None] = mapped_column(String(128))
    # launches so far (the driver's Ray job of launch n is named after n; see studies.lifecycle)
    launch_attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A client-chosen key that makes POST /studies retryable; the hash of the request body
    # tells a genuine retry (same body) from a reuse of the key for another study (conflict).
    idempotency_key: Mapped[str | None] = mapped_column(String(IDEMPOTENCY_KEY_MAX), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # one entry per extension (studies.extension): when, what it added, trials added and reused
    extensions: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, default=_empty_list, server_default=text("'[]'")
    )

    trials: Mapped[list["TrialRow"]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        CheckConstraint(_in("status", STUDY_STATUSES), name="status"),
        Index(None, "created_at", "id"),  # the listing's keyset order
    )


class TrialRow(Timestamps, Base):
    """One trial of a study, keyed by its deterministic key within the study.

    The axis columns duplicate values from ``config`` so that listings can filter and sort in
    SQL; ``config`` stays the source of truth for what the trainer runs.
    """

    __tablename__ = "sens_trials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("sens_studies.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(128))
    config: Mapped[dict[str, Any]]
    optimizer: Mapped[str] = mapped_column(String(LABEL_MAX))  # the heatmap row label
    eta: Mapped[float | None] = mapped_column(Double)  # None = ALI-G∞ (an infinite max η)
    batch_size: Mapped[int] = mapped_column(Integer)
    radius: Mapped[float | None] = mapped_column(Double)
    weight_decay: Mapped[float | None] = mapped_column(Double)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    # the swept task options, e.g. {"rank": 10}
    extra_axes: Mapped[dict[str, Any]] = mapped_column(default=_empty_dict)
    status: Mapped[TrialStatus] = mapped_column(String(16), default="pending")
    final_objective: Mapped[float | None] = mapped_column(Double)  # NULL unless finite
    objective_kind: Mapped[str | None] = mapped_column(String(8))  # NULL = no result yet
    # the last reported values, encoded by codec.encode_metrics (non-finite ones tagged)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=_empty_dict)
    reason: Mapped[str | None] = mapped_column(Text)  # why it diverged or failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # runs started so far
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    study: Mapped[StudyRow] = relationship(back_populates="trials")

    __table_args__ = (
        UniqueConstraint("study_id", "key"),
        Index(None, "study_id", "status"),
        Index(None, "study_id", "optimizer"),
        CheckConstraint(_in("status", TRIAL_STATUSES), name="status"),
        CheckConstraint(_in("objective_kind", VALUE_KINDS), name="objective_kind"),
    )


class MetricPointRow(Base):
    """One reported value of one metric at one step of a trial (the curves)."""

    __tablename__ = "sens_metric_points"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("sens_trials.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(METRIC_NAME_MAX))
    value: Mapped[float | None] = mapped_column(Double)  # NULL unless kind == "finite"
    kind: Mapped[str] = mapped_column(String(8))

    __table_args__ = (
        # also the index that serves a curve (one trial, ordered by step)
        UniqueConstraint("trial_id", "step", "name"),
        CheckConstraint(_in("kind", VALUE_KINDS), name="kind"),
    )
