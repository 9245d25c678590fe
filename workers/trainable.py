"""The Ray Tune trainable: one Tune trial = one trial (``run_trial``) or one pack of trials
(:mod:`workers.packed_trainer`) inside a Tune actor.

Tune passes ``{"trial": Trial.to_json()}`` or, for a pack, ``{"trial": [Trial.to_json(), …]}``
(grid studies), or the sampled values (search studies, whose ``SampledTrials`` makes the trial).
Progress reports carry the trainer's metrics; the last report (``"kind": "final"``) carries the
outcome. A pack sends one ``"kind": "pack"`` report per reporting point whose ``members`` field
(a JSON string, so Tune's loggers keep one column) maps each member's key to its progress
metrics and, for members that ended there, its outcome. A configuration that cannot run (a
missing data set, a bad option) is reported as a ``failed`` outcome instead of raising, so Tune
does not retry what can never succeed; a crash of the process is retried by Tune
(``FailureConfig``).
"""

import json
import math
from collections.abc import Callable
from typing import Any

from ray import tune

from optim.exceptions import OptimError
from studies.trial import Trial
from workers.exceptions import TaskConfigError
from workers.packed_trainer import run_pack
from workers.trainer import TrialResult, run_trial

TrialSource = Callable[[dict[str, Any]], Trial]  # Tune config -> the trial it runs
FINAL = "final"
PROGRESS = "progress"
PACK = "pack"


def grid_trial(config: dict[str, Any]) -> Trial:
    """The trial of a grid study's Tune config (``{"trial": Trial.to_json()}``)."""
    return Trial.from_json(config["trial"])


def grid_trials(config: dict[str, Any]) -> list[Trial]:
    """The trials of a grid study's Tune config: one, or the members of a pack."""
    value = config["trial"]
    if isinstance(value, list):
        return [Trial.from_json(item) for item in value]
    return [Trial.from_json(value)]


def final_fields(result: TrialResult) -> dict[str, Any]:
    """A trial's outcome as the fields of its final report."""
    final = result.to_dict()
    return {
        **{k: v for k, v in final["metrics"].items() if v is not None},
        "outcome": result.status,
        "final_objective": final["final_objective"],
        "reason": result.reason,
    }


def train_pack(trials: list[Trial]) -> None:
    """Train a pack and send its reports (see the module docstring)."""

    def report(progress: dict[str, dict[str, float]], finals: dict[str, TrialResult]) -> None:
        members = {
            key: {
                "progress": metrics,
                **({"final": final_fields(finals[key])} if key in finals else {}),
            }
            for key, metrics in progress.items()
        }
        for key in finals.keys() - progress.keys():
            members[key] = {"final": final_fields(finals[key])}
        running = [m["train_loss"] for m in progress.values() if "train_loss" in m]
        tune.report(
            {
                "kind": PACK,
                "members": json.dumps(members, allow_nan=True),
                "objective": min(running) if running else math.inf,
            }
        )

    try:
        run_pack(trials, report)
    except (TaskConfigError, OptimError, FileNotFoundError) as error:
        failed = {"outcome": "failed", "reason": str(error)}
        tune.report(
            {
                "kind": PACK,
                "members": json.dumps({t.key: {"final": failed} for t in trials}),
                "objective": math.inf,
            }
        )


def objective_for_search(status: str, value: float | None) -> float:
    """What the Optuna searcher minimises: the objective, or +inf for a run without one."""
    return (
        value if status == "completed" and value is not None and math.isfinite(value) else math.inf
    )


def train(config: dict[str, Any], trial_of: TrialSource = grid_trial) -> None:
    """Run the trial of Tune's ``config`` and report to Tune (a search passes its
    :class:`~workers.search.SampledTrials` as ``trial_of`` via ``tune.with_parameters``)."""
    if isinstance(config.get("trial"), list):
        train_pack(grid_trials(config))
        return
    trial = trial_of(config)
    key = trial.key

    def report(metrics: dict[str, float]) -> None:
        # Tune insists that every result carries the searcher's metric: the running loss here
        running = metrics.get("train_loss", math.inf)
        tune.report({**metrics, "kind": PROGRESS, "key": key, "objective": running})

    try:
        result = run_trial(trial.config, report)
    except (TaskConfigError, OptimError, FileNotFoundError) as error:
        tune.report({"kind": FINAL, "key": key, "outcome": "failed", "reason": str(error),
                     "objective": math.inf})  # fmt: skip
        return
    tune.report(
        {
            **final_fields(result),
            "kind": FINAL,
            "key": key,
            "objective": objective_for_search(result.status, result.final_objective),
        }
    )
