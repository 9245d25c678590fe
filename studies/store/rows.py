"""The one conversion between table rows and domain objects.

A :class:`~studies.trial.Trial` becomes the INSERT values of a ``sens_trials`` row
(:func:`trial_values`); a row becomes a :class:`~studies.trial.TrialRecord` (:func:`trial_record`)
with its floats decoded; a ``sens_studies`` row becomes a :class:`~.read_models.StudyInfo`. Nothing
else in the project reads ORM attributes.
"""

from dataclasses import fields
from datetime import datetime
from typing import Any

from studies.store.codec import decode_float, decode_metrics
from studies.store.models import StudyRow, TrialRow
from studies.store.read_models import StudyInfo
from studies.trial import Trial, TrialConfig, TrialRecord


def trial_values(study_id: str, trial: Trial, now: datetime) -> dict[str, Any]:
    """The INSERT values of a new (pending) trial; every column explicit (multi-row VALUES)."""
    return {
        "study_id": study_id,
        "key": trial.key,
        "config": trial.config.model_dump(mode="json"),
        "optimizer": trial.optimizer,
        "eta": trial.eta,
        "batch_size": trial.batch_size,
        "radius": trial.radius,
        "weight_decay": trial.weight_decay,
        "seed": trial.seed,
        "extra_axes": dict(trial.extra_axes),
        "status": "pending",
        "final_objective": None,
        "objective_kind": None,
        "metrics": {},
        "reason": None,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "finished_at": None,
    }


# columns that hold a domain field of the same name as they are
_TRIAL_FIELDS = (
    "key", "optimizer", "eta", "batch_size", "radius", "weight_decay", "seed", "status",
    "objective_kind", "reason", "attempts", "created_at", "updated_at", "started_at",
    "finished_at",
)  # fmt: skip
_STUDY_FIELDS = tuple(field.name for field in fields(StudyInfo))


def trial_record(row: TrialRow) -> TrialRecord:
    """The stored trial of ``row`` (NaN/±inf decoded)."""
    return TrialRecord(
        **{name: getattr(row, name) for name in _TRIAL_FIELDS},
        extra_axes=dict(row.extra_axes),
        final_objective=decode_float(row.final_objective, row.objective_kind),
        metrics=decode_metrics(row.metrics),
        config=TrialConfig.model_validate(row.config),
    )


def study_info(row: StudyRow) -> StudyInfo:
    """The study of ``row`` (every field is the column of the same name; lists copied)."""
    values = {name: getattr(row, name) for name in _STUDY_FIELDS}
    extensions = [dict(entry) for entry in row.extensions or []]
    return StudyInfo(**{**values, "tags": list(row.tags), "extensions": extensions})
