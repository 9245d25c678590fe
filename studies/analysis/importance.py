"""Which hyperparameter matters most for the metric: Optuna's fANOVA and PED-ANOVA evaluators.

The finished trials are copied into an in-memory Optuna study with
``optuna.trial.create_trial`` and handed to ``optuna.importance.get_param_importances``, once per
evaluator; each result is normalised to sum 1.

Parameters, one per axis that takes at least 2 values among the usable trials:

- ``eta``: ``log10 η``. fANOVA measures variance under a uniform measure over each parameter's
  raw range (Optuna's fANOVA does not undo a log distribution), so the logarithm is taken here
  and both evaluators see decades. ALI-G∞ (``None``) is placed one decade above the largest
  finite η: it is the limit of an ever larger cap, and keeps η a single ordered axis.
- ``radius``: ``log10 r`` likewise; unconstrained (``None``) is one decade above the largest
  finite radius (an ever larger ball).
- ``batch_size``: ``log2`` of the batch size (grids are powers of two).
- ``weight_decay``: as is; ``None`` (no decay) is 0.
- every key of ``extra_axes``: a float parameter when all its values are numbers, else a
  categorical one.
- ``optimizer``: categorical, when the trials of several optimizers are analysed together.

Only trials with a finite value of the metric are used (``TrialRecord.value``). Diverged trials
are left out rather than given a made-up penalty, which would dominate fANOVA's variance; failed
ones say nothing about the hyperparameters. Their number is reported as ``n_excluded`` (finished
trials without a finite value). fANOVA runs with a fixed seed so that answers are reproducible.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
)

from studies.analysis._common import Direction, check_direction, json_safe
from studies.analysis.slicing import axis_names, axis_value
from studies.statuses import TRIAL_FINISHED
from studies.trial import TrialRecord

if TYPE_CHECKING:
    from optuna.importance import BaseImportanceEvaluator

# optuna.importance is imported only when used: it pulls in scikit-learn (seconds), which the
# heatmap and robustness endpoints should not pay for


def _fanova(seed: int) -> "BaseImportanceEvaluator":
    from optuna.importance import FanovaImportanceEvaluator

    return FanovaImportanceEvaluator(seed=seed)


def _ped_anova(seed: int) -> "BaseImportanceEvaluator":
    from optuna.importance import PedAnovaImportanceEvaluator

    return PedAnovaImportanceEvaluator()  # deterministic: no seed to set


# name -> factory(seed); a registry so the service can list and validate evaluator names
EVALUATORS: dict[str, Callable[[int], "BaseImportanceEvaluator"]] = {
    "fanova": _fanova,
    "ped_anova": _ped_anova,
}


@dataclass(frozen=True)
class Importance:
    """Normalised importances of the varying hyperparameters, per evaluator."""

    importances: dict[str, dict[str, float]]  # evaluator -> parameter -> importance (sum 1)
    params: list[str]  # the parameters analysed (axes with at least 2 values)
    metric: str
    direction: Direction
    optimizer: str | None  # the optimizer analysed, or None for all of them together
    n_trials: int  # trials used (finite value of the metric)
    n_excluded: int  # finished trials left out: diverged, failed, or no finite value

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data (non-finite floats become ``None``)."""
        return json_safe(asdict(self))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _log_with_inf_above(values: Sequence[float | None], base: float) -> list[float]:
    # None (no cap / no constraint) sits one unit of log above the largest finite value
    finite = [math.log(v, base) for v in values if v is not None]
    top = max(finite) + 1.0 if finite else 0.0
    return [top if v is None else math.log(v, base) for v in values]


def _encode_axis(axis: str, raw: Sequence[Any]) -> tuple[list[Any], BaseDistribution] | None:
    """The parameter values of one axis and their distribution; ``None`` if it does not vary."""
    values: list[Any]
    if axis in ("eta", "radius"):
        values = _log_with_inf_above(raw, 10.0)
    elif axis == "batch_size":
        values = [math.log2(v) for v in raw]
    elif axis == "weight_decay":
        values = [0.0 if v is None else float(v) for v in raw]
    elif all(_is_number(v) for v in raw):
        values = [float(v) for v in raw]
    else:
        # Optuna's choices must be None/bool/int/float/str: anything else goes in as its text
        values = [
            v if v is None or isinstance(v, bool | int | float | str) else repr(v) for v in raw
        ]
        choices = tuple(dict.fromkeys(values))
        return (values, CategoricalDistribution(choices)) if len(choices) >= 2 else None
    low, high = min(values), max(values)
    return (values, FloatDistribution(low, high)) if high > low else None


def importance(
    records: Sequence[TrialRecord],
    metric: str = "final_objective",
    direction: Direction = "minimize",
    optimizer: str | None = None,
    evaluators: Sequence[str] = ("fanova", "ped_anova"),
    seed: int = 0,
) -> Importance:
    """Importances of the hyperparameters for ``metric`` (see the module docstring).

    ``optimizer`` restricts the analysis to one optimizer; ``None`` analyses all records with
    the optimizer as a categorical parameter. Raises ``ValueError`` for an unknown evaluator,
    fewer than 2 usable trials, or no axis that takes at least 2 values.
    """
    check_direction(direction)
    unknown = [name for name in evaluators if name not in EVALUATORS]
    if unknown or not evaluators:
        raise ValueError(f"evaluators must be among {sorted(EVALUATORS)}, got {list(evaluators)}")
    chosen = [r for r in records if optimizer is None or r.optimizer == optimizer]
    usable = [r for r in chosen if r.value(metric) is not None]
    n_excluded = sum(r.status in TRIAL_FINISHED for r in chosen) - len(usable)
    if len(usable) < 2:
        raise ValueError(
            f"importance needs at least 2 trials with a finite {metric!r}, found {len(usable)}"
        )
    axes = ["eta", *axis_names(usable)]
    if optimizer is None:
        axes.append("optimizer")
    columns: dict[str, list[Any]] = {}
    distributions: dict[str, BaseDistribution] = {}
    for axis in axes:
        raw = [r.optimizer if axis == "optimizer" else _raw(r, axis) for r in usable]
        encoded = _encode_axis(axis, raw)
        if encoded is not None:
            columns[axis], distributions[axis] = encoded
    if not distributions:
        raise ValueError(
            f"importance needs an axis that takes at least 2 values; {axes} are all constant"
        )
    study = optuna.create_study(direction=direction)
    study.add_trials(
        optuna.trial.create_trial(
            params={axis: columns[axis][i] for axis in distributions},
            distributions=distributions,
            value=record.value(metric),
        )
        for i, record in enumerate(usable)
    )
    from optuna.importance import get_param_importances

    result = {
        name: {
            param: float(value)
            for param, value in get_param_importances(
                study, evaluator=EVALUATORS[name](seed), params=list(distributions)
            ).items()
        }
        for name in evaluators
    }
    return Importance(
        importances=result,
        params=list(distributions),
        metric=metric,
        direction=direction,
        optimizer=optimizer,
        n_trials=len(usable),
        n_excluded=n_excluded,
    )


def _raw(record: TrialRecord, axis: str) -> Any:
    return record.eta if axis == "eta" else axis_value(record, axis)
