"""Search studies: an Optuna sampler proposes η (and batch size, radius, weight decay) per trial.

One Tune run per optimizer entry, each with Ray's ``OptunaSearch`` over the spec's ranges and an
Optuna study stored in the service's own database (``optuna.storages.RDBStorage``), named
``<study-id>-<entry>``, so a resumed search continues the sampler's history instead of starting
over. The sampled values and the study spec give the trial's config and key
(:func:`studies.spec.search_trial`), in the driver and in the trainable alike.
"""

import math
from typing import Any

import numpy as np
import optuna
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from studies.spec import PlannedTrial, Search, StudySpec, parse_spec, search_trial

OPTIMIZED_METRIC = "objective"  # reported by the trainable: the final objective, +inf if none


def search_space(search: Search) -> dict[str, Any]:
    """Tune's domains for the sampled axes."""

    def domain(low: float, high: float, log: bool) -> Any:
        return tune.loguniform(low, high) if log else tune.uniform(low, high)

    space: dict[str, Any] = {"eta": domain(search.eta.low, search.eta.high, search.eta.log)}
    if search.batch_size and len(search.batch_size) > 1:
        space["batch_size"] = tune.choice(list(search.batch_size))
    for name in ("radius", "weight_decay"):
        bounds = getattr(search, name)
        if bounds is not None:
            space[name] = domain(bounds.low, bounds.high, bounds.log)
    return space


def _grid_values(low: float, high: float, log: bool, points: int) -> list[float]:
    values = np.geomspace(low, high, points) if log else np.linspace(low, high, points)
    return [float(f"{v:.12g}") for v in values]


def make_sampler(search: Search) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded; ``grid`` covers each range with ``grid_points`` values."""
    if search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=search.seed)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    grid: dict[str, list[Any]] = {
        "eta": _grid_values(search.eta.low, search.eta.high, search.eta.log, search.grid_points)
    }
    if search.batch_size and len(search.batch_size) > 1:
        grid["batch_size"] = list(search.batch_size)
    for name in ("radius", "weight_decay"):
        bounds = getattr(search, name)
        if bounds is not None:
            grid[name] = _grid_values(bounds.low, bounds.high, bounds.log, search.grid_points)
    return optuna.samplers.GridSampler(grid, seed=search.seed)


def make_searcher(spec: StudySpec, study_id: str, entry: int, database_url: str) -> OptunaSearch:
    """Ray's Optuna searcher for one optimizer entry, persisted in the service's database."""
    assert spec.search is not None
    storage = optuna.storages.RDBStorage(database_url)
    return OptunaSearch(
        metric=OPTIMIZED_METRIC,
        mode="min",
        sampler=make_sampler(spec.search),
        study_name=f"{study_id}-{entry}",
        storage=storage,
    )


def sampled_trial(config: dict[str, Any], base: dict[str, Any]) -> PlannedTrial:
    """The trial for Tune's sampled ``config`` given ``base = {"spec": ..., "entry": i}``."""
    spec = parse_spec(base["spec"], max_trials=math.inf)  # type: ignore[arg-type]
    return search_trial(spec, base["entry"], config)
