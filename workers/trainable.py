"""The Ray Tune trainable: one trial = one ``run_trial`` call inside a Tune actor.

Tune passes ``{"trial": Trial.to_json()}`` (grid studies) or the sampled values (search
studies, whose ``SampledTrials`` makes the trial). Progress reports carry the trainer's metrics;
the last report (``"kind": "final"``) carries the outcome. A configuration that cannot run (a
missing data set, a bad option) is reported as a ``failed`` outcome instead of raising, so Tune
does not retry what can never succeed; a crash of the process is retried by Tune
(``FailureConfig``).
"""

import math
from collections.abc import Callable
from typing import Any

from ray import tune

from optim.exceptions import OptimError
from studies.trial import Trial
from workers.exceptions import TaskConfigError
from workers.trainer import run_trial

TrialSource = Callable[[dict[str, Any]], Trial]  # Tune config -> the trial it runs
FINAL = "final"
PROGRESS = "progress"


def grid_trial(config: dict[str, Any]) -> Trial:
    """The trial of a grid study's Tune config (``{"trial": Trial.to_json()}``)."""
    return Trial.from_json(config["trial"])


def objective_for_search(status: str, value: float | None) -> float:
    """What the Optuna searcher minimises: the objective, or +inf for a run without one."""
    return (
        value if status == "completed" and value is not None and math.isfinite(value) else math.inf
    )


def train(config: dict[str, Any], trial_of: TrialSource = grid_trial) -> None:
    """Run the trial of Tune's ``config`` and report to Tune (a search passes its
    :class:`~workers.search.SampledTrials` as ``trial_of`` via ``tune.with_parameters``)."""
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
    final = result.to_dict()
    tune.report(
        {
            **{k: v for k, v in final["metrics"].items() if v is not None},
            "kind": FINAL,
            "key": key,
            "outcome": result.status,
            "final_objective": final["final_objective"],
            "reason": result.reason,
            "objective": objective_for_search(result.status, result.final_objective),
        }
    )
