"""One cell of the optimizer × η table: the seeds of one configuration, summarised.

Each trial of the cell has one outcome for the metric:

- *finite*: completed with a finite value (``TrialRecord.value``);
- *diverged*: stored as ``diverged``, or completed with a non-finite value (which is a
  divergence the trainer did not catch);
- *failed*: stored as ``failed`` (an error, not a property of the optimizer);
- *unknown*: pending, running, cancelled, or completed without this metric.

The cell's status, with ``n_ok`` finite outcomes among ``n_total`` trials:

- ``ok``: ``n_ok == n_total > 0``, every seed finished with a finite value;
- ``partial``: ``0 < n_ok < n_total``, some seeds finite, the others diverged, failed or not done;
- ``diverged``: ``n_ok == 0`` and at least one seed diverged;
- ``failed``: ``n_ok == 0``, none diverged, at least one failed;
- ``missing``: nothing else (no trial at all, or only unfinished ones).

The cell's value is the median over the finite values (``None`` when there is none); ``low`` and
``high`` are their minimum and maximum (the band of a sensitivity plot).

A cell is *reliable* at a ``min_finite_fraction`` f (default 1: every seed) when it has a finite
value and at least ``f · n_total`` of its seeds are finite: the good-η range and tunability count
only reliable cells as working, so a cell where one seed of three diverged is not "good" by
default (its median of the two survivors would flatter the optimizer).
"""

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from studies.trial import TrialRecord

CellStatus = Literal["ok", "partial", "diverged", "failed", "missing"]
Outcome = Literal["finite", "diverged", "failed", "unknown"]


def outcome(record: TrialRecord, metric: str) -> Outcome:
    """How ``record`` counts for ``metric`` (see the module docstring)."""
    if record.value(metric) is not None:
        return "finite"
    if record.status == "diverged":
        return "diverged"
    if record.status == "failed":
        return "failed"
    if record.status == "completed":
        raw = record.final_objective if metric == "final_objective" else record.metrics.get(metric)
        if raw is not None and not math.isfinite(raw):
            return "diverged"
    return "unknown"


@dataclass(frozen=True)
class Cell:
    """The summary of the trials of one (optimizer, η) in one slice."""

    status: CellStatus
    value: float | None  # median of the finite values
    low: float | None  # min of the finite values
    high: float | None  # max of the finite values
    n_ok: int  # trials with a finite value
    n_diverged: int
    n_failed: int
    n_total: int  # all trials of the cell, whatever their state
    finite_values: tuple[float, ...] = ()  # the seeds' finite values


DEFAULT_MIN_FINITE_FRACTION = 1.0


def check_fraction(min_finite_fraction: float) -> float:
    """``min_finite_fraction`` unchanged, or ValueError unless it is in (0, 1]."""
    if not (isinstance(min_finite_fraction, int | float) and 0 < min_finite_fraction <= 1):
        raise ValueError(f"min_finite_fraction must be in (0, 1], got {min_finite_fraction!r}")
    return float(min_finite_fraction)


def reliable(n_ok: int, n_total: int, min_finite_fraction: float) -> bool:
    """Whether a cell with ``n_ok`` finite seeds of ``n_total`` counts as working."""
    return n_ok > 0 and n_ok >= min_finite_fraction * n_total - 1e-12


def summarise(records: Sequence[TrialRecord], metric: str) -> Cell:
    """The :class:`Cell` of ``records`` (the seeds of one configuration) for ``metric``."""
    values = [v for r in records if (v := r.value(metric)) is not None]
    outcomes = [outcome(r, metric) for r in records]
    n_ok, n_total = len(values), len(records)
    n_diverged, n_failed = outcomes.count("diverged"), outcomes.count("failed")
    status: CellStatus
    if n_ok and n_ok == n_total:
        status = "ok"
    elif n_ok:
        status = "partial"
    elif n_diverged:
        status = "diverged"
    elif n_failed:
        status = "failed"
    else:
        status = "missing"
    return Cell(
        status=status,
        value=float(statistics.median(values)) if values else None,
        low=min(values) if values else None,
        high=max(values) if values else None,
        n_ok=n_ok,
        n_diverged=n_diverged,
        n_failed=n_failed,
        n_total=n_total,
        finite_values=tuple(values),
    )
