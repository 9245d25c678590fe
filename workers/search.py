"""Search studies: an Optuna sampler proposes η (and batch size, radius, weight decay) per trial.

One Tune run per optimizer entry, each with Ray's ``OptunaSearch`` over the spec's ranges and an
Optuna study stored in the service's own database (``optuna.storages.RDBStorage``), named
``<study-id>-<entry>``, so a resumed search continues the sampler's history instead of starting
over. The sampled values and the study spec give the trial's config and key
(:class:`SampledTrials`, i.e. :func:`studies.spec.search_trial`), in the driver and in the
trainable alike.

Resuming an interrupted search re-runs the samples that were running (same values, same key,
so the same row): the dead driver's Optuna trials still ``RUNNING`` or ``WAITING`` are retired
as ``FAIL`` and the interrupted points are enqueued ahead of new samples
(``points_to_evaluate``), so every sample the budget counts has a result.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from studies.spec import Search, StudySpec, search_trial
from studies.trial import Trial, TrialRecord

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


def sampler_seed(search: Search, history: int) -> int | None:
    """The seed of a driver's sampler when the Optuna study already holds ``history`` trials.

    A fresh search (``history`` 0) uses the spec's seed as it is. A search that continues
    (resumed after a driver died, or extended to more samples) must not: a random sampler, and
    TPE during its random start-up trials, seeded as before would propose the first samples
    again, whose trials are already stored under the same keys. The seed is then drawn from
    ``(seed, history)``, still reproducible for the same history."""
    if search.seed is None or history == 0:
        return search.seed
    return int(np.random.SeedSequence([search.seed, history]).generate_state(1)[0])


def make_sampler(search: Search, history: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded (:func:`sampler_seed`); ``grid`` covers each range with
    ``grid_points`` values (the grid sampler skips the points its study has run)."""
    seed = sampler_seed(search, history)
    if search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    grid: dict[str, list[Any]] = {
        "eta": _grid_values(search.eta.low, search.eta.high, search.eta.log, search.grid_points)
    }
    if search.batch_size and len(search.batch_size) > 1:
        grid["batch_size"] = list(search.batch_size)
    for name in ("radius", "weight_decay"):
        bounds = getattr(search, name)
        if bounds is not None:
            grid[name] = _grid_values(bounds.low, bounds.high, bounds.log, search.grid_points)
    return optuna.samplers.GridSampler(grid, seed=seed)


def optuna_study_name(study_id: str, entry: int) -> str:
    """The Optuna study of one optimizer entry of a search study."""
    return f"{study_id}-{entry}"


def sampled_point(search: Search, trial: TrialRecord) -> dict[str, Any]:
    """The values the sampler drew for a stored trial, keyed as :func:`search_space` names them."""
    point: dict[str, Any] = {"eta": trial.eta}
    for name in search_space(search):
        if name != "eta":
            point[name] = getattr(trial, name)
    return point


def retire_stale_trials(storage: optuna.storages.BaseStorage, study_name: str) -> int:
    """Mark the Optuna trials a dead driver left ``RUNNING`` or ``WAITING`` as ``FAIL``; how many.

    Only one driver runs a study at a time, so at its start nothing can still be running. A
    retired trial keeps its grid cell visited (``GridSampler``); its point is re-run by being
    enqueued again, not by reviving it.
    """
    try:
        optuna_id = storage.get_study_id_from_name(study_name)
    except KeyError:  # never started: nothing to retire
        return 0
    stale = storage.get_all_trials(
        optuna_id, deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)
    )
    for trial in stale:
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return len(stale)


def label_optuna_study(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    spec: StudySpec,
    study_id: str,
    entry: int,
) -> int:
    """Create the entry's Optuna study (if new) with what it belongs to as user attributes
    (the service's study id, the optimizer's row label, the task), so that optuna-dashboard
    pointed at the service's database says which study and row each Optuna study is.
    ``OptunaSearch`` then loads it (it creates its study with ``load_if_exists``). Returns how
    many trials the study already holds (the sampler's history)."""
    study = optuna.create_study(
        storage=storage, study_name=study_name, direction="minimize", load_if_exists=True
    )
    labels = {
        "sensitivity_study_id": study_id,
        "optimizer": spec.entries[entry].row,
        "task": spec.task,
        "objective": OPTIMIZED_METRIC,
    }
    for name, value in labels.items():
        if study.user_attrs.get(name) != value:
            study.set_user_attr(name, value)
    return len(study.get_trials(deepcopy=False))


def make_searcher(
    spec: StudySpec,
    study_id: str,
    entry: int,
    database_url: str,
    points_to_evaluate: list[dict[str, Any]] | None = None,
) -> OptunaSearch:
    """Ray's Optuna searcher for one optimizer entry, persisted in the service's database.

    ``points_to_evaluate`` (interrupted samples of an earlier run) are proposed first.
    """
    assert spec.search is not None
    storage = optuna.storages.RDBStorage(database_url)
    study_name = optuna_study_name(study_id, entry)
    retire_stale_trials(storage, study_name)
    history = label_optuna_study(storage, study_name, spec, study_id, entry)
    return OptunaSearch(
        metric=OPTIMIZED_METRIC,
        mode="min",
        sampler=make_sampler(spec.search, history),
        study_name=study_name,
        storage=storage,
        points_to_evaluate=points_to_evaluate or None,
    )


@dataclass(frozen=True)
class SampledTrials:
    """The trials of one optimizer entry of a search study: Tune's sampled config → its
    :class:`~studies.trial.Trial` (the spec parsed once per driver run, shipped to the workers
    with ``tune.with_parameters``)."""

    spec: StudySpec
    entry: int

    def __call__(self, config: dict[str, Any]) -> Trial:
        return search_trial(self.spec, self.entry, config)
