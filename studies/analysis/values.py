"""Final or best: which value of each trial the analyses read (DeepOBS's two modes).

Every analysis reads one number per trial, ``TrialRecord.value(metric)``. With ``value="final"``
(the default) that is the stored final value: the final objective (the task's objective at the
end of training, e.g. the mean training loss of the last report window), or the metric's last
reported value. With ``value="best"`` it is the best value the trial reached during training:

    best = best of { the final value, every finite point of the metric's stored curve }

in the analysis' direction (the minimum when minimising, the maximum when maximising). The curve
of a metric is the one of the same name, but for ``final_objective``, whose curve is
``train_loss``: the trainer reports the mean training loss of each report interval, the same
statistic the final objective takes over the last window (an epoch for epoch budgets, exactly;
the last ``min(100, budget // 100)`` steps for step budgets, where a report covers
``report_every`` steps). The final value is one of the values seen during training, so
``best ≤ final`` (minimising) holds for every trial, whatever the windows.

:func:`choose_values` maps records to the chosen value once, before any analysis runs, so every
analysis (heatmap, good-η range, tunability, importance, sensitivity) reads the best value
through the same ``record.value(metric)`` it always reads. Only a trial with a finite final value
(completed) gets its best value: a diverged, failed or unfinished trial keeps its outcome. A
diverged trial's best value before divergence is a real number (:func:`best_value` gives it,
the export shows it), but the trial stays diverged, so it is never a good cell and every
analysis treats its seeds as it always does. Metrics that are reported with the final result
only (:data:`FINAL_ONLY`, e.g. ``objective_median``) have no curve, and ``best`` is refused for
them (``ValueError``).

The curves are read from the store by the caller and passed as :data:`Extremes`: per trial key
and curve name, the smallest and largest finite point (:class:`CurveExtremes`).
"""

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from studies.analysis._common import Direction, check_direction, sign
from studies.trial import TrialRecord

ValueMode = Literal["final", "best"]
VALUE_MODES: tuple[str, ...] = get_args(ValueMode)
DEFAULT_VALUE: ValueMode = "final"

# a metric whose stored curve has another name: the final objective is a trailing mean of the
# training loss, whose reported points are the train_loss curve
CURVE_OF: dict[str, str] = {"final_objective": "train_loss"}
# reported with the final result only, never as curve points (workers/store_callback.py's
# FINAL_ONLY_METRICS; tests/studies/test_profiles.py checks the two agree)
FINAL_ONLY: frozenset[str] = frozenset({"objective_median", "schedule_ignored"})


@dataclass(frozen=True)
class CurveExtremes:
    """The smallest and largest finite point of one stored curve of one trial."""

    low: float
    high: float


# trial key -> curve name -> its extremes (a trial without points of a curve: absent)
Extremes = Mapping[str, Mapping[str, CurveExtremes]]


def check_value(value: str) -> ValueMode:
    """``value`` unchanged, or a ``ValueError`` that names the allowed values."""
    if value not in VALUE_MODES:
        raise ValueError(f"value must be one of {list(VALUE_MODES)}, got {value!r}")
    return value  # type: ignore[return-value]


def curve_name(metric: str) -> str:
    """The stored curve that holds ``metric``'s statistic; ``ValueError`` for a metric reported
    with the final result only (it has no curve to take a best value from)."""
    if metric in FINAL_ONLY:
        raise ValueError(
            f"value: best needs the curve of {metric!r}, which is reported with the final "
            "result only; use value=final"
        )
    return CURVE_OF.get(metric, metric)


def best_value(
    record: TrialRecord, metric: str, direction: Direction, extremes: Extremes
) -> float | None:
    """The best value ``record`` reached for ``metric``: the best of its finite final value (a
    completed trial's) and its curve's finite points, in ``direction``; ``None`` when it has
    neither. Any status: a diverged trial's best before divergence is a number too."""
    check_direction(direction)
    candidates = []
    final = record.value(metric)
    if final is not None:
        candidates.append(final)
    extreme = extremes.get(record.key, {}).get(curve_name(metric))
    if extreme is not None:
        candidates.append(extreme.low if direction == "minimize" else extreme.high)
    if not candidates:
        return None
    s = sign(direction)
    return min(candidates, key=lambda v: s * v)


def _with_value(record: TrialRecord, metric: str, value: float) -> TrialRecord:
    if metric == "final_objective":
        return dataclasses.replace(record, final_objective=value, objective_kind="finite")
    return dataclasses.replace(record, metrics={**record.metrics, metric: value})


def choose_values(
    records: Sequence[TrialRecord],
    value: str,
    metric: str = "final_objective",
    direction: Direction = "minimize",
    extremes: Extremes | None = None,
) -> list[TrialRecord]:
    """``records`` with ``metric`` holding the chosen value (see the module docstring).

    ``value="final"``: the records unchanged. ``value="best"``: each record with a finite final
    value gets its :func:`best_value` (``extremes`` are the curves' extremes; none given: no
    curve, so the final value); every other record is unchanged. ``ValueError`` for an
    unknown ``value``, or ``best`` of a metric without a curve.
    """
    check_value(value)
    check_direction(direction)
    if value == "final":
        return list(records)
    curve_name(metric)  # refuse a final-only metric even when no trial has finished yet
    known = extremes or {}
    chosen = []
    for record in records:
        if record.value(metric) is None:
            chosen.append(record)  # diverged, failed, unfinished: its outcome stays
            continue
        best = best_value(record, metric, direction, known)
        assert best is not None  # its final value is a candidate
        chosen.append(_with_value(record, metric, best))
    return chosen
