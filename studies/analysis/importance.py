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

One optimizer at a time: η means a learning rate for one optimizer, a cap for another and a
fraction for L4, so pooling optimizers on one η axis would compare different things.
:func:`importance_by_optimizer` runs one analysis per optimizer.

The objective is analysed on ``log10`` (``scale="log10"``, the default when minimising a metric
whose values are all > 0): losses span decades, and on the raw scale the few worst trials would
make up all of fANOVA's variance. Diverged trials are kept, with a penalty worse than the
worst finite value: on ``log10`` by one unit (a decade above the worst loss), on the raw scale
by the spread of the finite values (max − min; 1 when they are all equal), so an η that
diverges counts as the worst outcome rather than vanishing from the analysis. Failed
trials (errors, not properties of the optimizer) and unfinished ones are left out; their number
is ``n_excluded``. fANOVA runs with a fixed seed so that answers are reproducible.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
)

from studies.analysis._common import Direction, check_direction, json_safe, sign
from studies.analysis.cells import outcome
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


Scale = Literal["log10", "raw"]


@dataclass(frozen=True)
class Importance:
    """Normalised importances of the varying hyperparameters, per evaluator."""

    importances: dict[str, dict[str, float]]  # evaluator -> parameter -> importance (sum 1)
    params: list[str]  # the parameters analysed (axes with at least 2 values)
    metric: str
    direction: Direction
    optimizer: str | None  # the optimizer analysed (None: the records hold only one)
    n_trials: int  # trials used: finite values and diverged ones (as the penalty)
    n_excluded: int  # finished trials left out: failed, or completed without the metric
    n_diverged: int = 0  # diverged trials, entered with the penalty
    scale: Scale = "raw"  # the objective's scale: log10 or raw
    diverged_penalty: float | None = None  # the value a diverged trial entered with

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


@dataclass(frozen=True)
class ImportanceByOptimizer:
    """One importance analysis per optimizer, and why an optimizer has none."""

    optimizers: dict[str, Importance]
    skipped: dict[str, str]  # optimizer -> why it could not be analysed
    metric: str
    direction: Direction

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data (non-finite floats become ``None``)."""
        return json_safe(asdict(self))


def _objective(
    records: Sequence[TrialRecord], metric: str, direction: Direction, scale: Scale | None
) -> tuple[list[float], Scale, float | None]:
    """The finite values on the analysed scale, the scale used and the penalty of a diverged
    trial (None when none diverged; see the module docstring)."""
    finite = [v for r in records if (v := r.value(metric)) is not None]
    diverged = sum(outcome(r, metric) == "diverged" for r in records)
    if scale is None:
        scale = "log10" if direction == "minimize" and all(v > 0 for v in finite) else "raw"
    if scale == "log10" and not all(v > 0 for v in finite):
        raise ValueError(f"scale: log10 needs {metric!r} > 0 in every trial")
    values = [math.log10(v) for v in finite] if scale == "log10" else list(finite)
    penalty = None
    if diverged and values:
        worst = max(values) if direction == "minimize" else min(values)
        spread = (max(values) - min(values)) if scale == "raw" else 1.0
        penalty = worst + sign(direction) * (spread or 1.0)
    return values, scale, penalty


def importance(
    records: Sequence[TrialRecord],
    metric: str = "final_objective",
    direction: Direction = "minimize",
    optimizer: str | None = None,
    evaluators: Sequence[str] = ("fanova", "ped_anova"),
    seed: int = 0,
    scale: Scale | None = None,
) -> Importance:
    """Importances of the hyperparameters of one optimizer for ``metric`` (module docstring).

    ``optimizer`` picks the optimizer; ``None`` is allowed only when the records hold one.
    ``scale`` is ``log10`` or ``raw`` (default: log10 when minimising positive values). Raises
    ``ValueError`` for several optimizers without ``optimizer``, an unknown evaluator, fewer
    than 2 usable trials, or no axis that takes at least 2 values.
    """
    check_direction(direction)
    unknown = [name for name in evaluators if name not in EVALUATORS]
    if unknown or not evaluators:
        raise ValueError(f"evaluators must be among {sorted(EVALUATORS)}, got {list(evaluators)}")
    if optimizer is None and len({r.optimizer for r in records}) > 1:
        raise ValueError(
            "optimizer: importance analyses one optimizer at a time (η means something else "
            "for each); name one, or use importance_by_optimizer"
        )
    chosen = [r for r in records if optimizer is None or r.optimizer == optimizer]
    finite_records = [r for r in chosen if r.value(metric) is not None]
    diverged_records = [r for r in chosen if outcome(r, metric) == "diverged"]
    values, used_scale, penalty = _objective(chosen, metric, direction, scale)
    usable = [*finite_records, *(diverged_records if penalty is not None else [])]
    objective = [*values, *([penalty] * len(diverged_records) if penalty is not None else [])]
    n_excluded = sum(r.status in TRIAL_FINISHED for r in chosen) - len(usable)
    if len(finite_records) < 2:
        raise ValueError(
            f"importance needs at least 2 trials with a finite {metric!r}, "
            f"found {len(finite_records)}"
        )
    axes = ["eta", *axis_names(usable)]
    columns: dict[str, list[Any]] = {}
    distributions: dict[str, BaseDistribution] = {}
    for axis in axes:
        raw = [_raw(r, axis) for r in usable]
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
            value=objective[i],
        )
        for i in range(len(usable))
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
        n_diverged=len(diverged_records) if penalty is not None else 0,
        scale=used_scale,
        diverged_penalty=penalty,
    )


def importance_by_optimizer(
    records: Sequence[TrialRecord],
    metric: str = "final_objective",
    direction: Direction = "minimize",
    optimizers: Sequence[str] | None = None,
    evaluators: Sequence[str] = ("fanova", "ped_anova"),
    seed: int = 0,
    scale: Scale | None = None,
) -> ImportanceByOptimizer:
    """:func:`importance` for each optimizer (all of the records', or ``optimizers``); an
    optimizer that cannot be analysed is listed in ``skipped`` with the reason. Raises the first
    reason as ``ValueError`` when no optimizer can be analysed."""
    check_direction(direction)
    names = list(optimizers) if optimizers else list(dict.fromkeys(r.optimizer for r in records))
    results: dict[str, Importance] = {}
    skipped: dict[str, str] = {}
    for name in names:
        own = [r for r in records if r.optimizer == name]
        try:
            results[name] = importance(own, metric, direction, name, evaluators, seed, scale)
        except ValueError as error:
            if "evaluators must be" in str(error) or str(error).startswith("scale"):
                raise
            skipped[name] = str(error)
    if not results:
        raise ValueError(next(iter(skipped.values()), "importance: the study has no trial"))
    return ImportanceByOptimizer(results, skipped, metric, direction)


def _raw(record: TrialRecord, axis: str) -> Any:
    return record.eta if axis == "eta" else axis_value(record, axis)
