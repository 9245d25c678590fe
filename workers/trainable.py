"""The Ray Tune trainable: one trial = one ``run_trial`` call inside a Tune actor.

Tune passes ``{"trial": {"key": ..., "config": {...}}}`` (grid studies) or the sampled values
plus a ``"base"`` config (search studies). Progress reports carry the trainer's metrics; the last
report (``"kind": "final"``) carries the outcome. A configuration that cannot run (a missing data
set, a bad option) is reported as a ``failed`` outcome instead of raising, so Tune does not retry
what can never succeed; a crash of the process is retried by Tune (``FailureConfig``).
"""

import math
from typing import Any

from ray import tune

from optim.exceptions import OptimError
from workers.exceptions import TaskConfigError
from workers.trainer import run_trial

FINAL = "final"
PROGRESS = "progress"


def trial_config(
    config: dict[str, Any], search_base: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """``(key, trial config)`` of a Tune config: a grid entry, or a search sample + its base."""
    if search_base is None:
        return config["trial"]["key"], dict(config["trial"]["config"])
    from workers.search import sampled_trial  # search studies only

    planned = sampled_trial(config, search_base)
    return planned.key, planned.config.model_dump()


def objective_for_search(status: str, value: float | None) -> float:
    """What the Optuna searcher minimises: the objective, or +inf for a run without one."""
    return (
        value if status == "completed" and value is not None and math.isfinite(value) else math.inf
    )


def train(config: dict[str, Any], search_base: dict[str, Any] | None = None) -> None:
    """Run the trial and report to Tune (``search_base`` via ``tune.with_parameters``)."""
    key, trial = trial_config(config, search_base)

    def report(metrics: dict[str, float]) -> None:
        # Tune insists that every result carries the searcher's metric: the running loss here
        running = metrics.get("train_loss", math.inf)
        tune.report({**metrics, "kind": PROGRESS, "key": key, "objective": running})

    try:
        result = run_trial(trial, report)
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
