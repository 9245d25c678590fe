"""workers.search without Ray running: the points a resume re-runs and stale Optuna trials."""

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from studies.spec import parse_spec, search_trial
from studies.store import Store, repository
from workers.search import (
    label_optuna_study,
    make_sampler,
    retire_stale_trials,
    sampled_point,
    sampler_seed,
    search_space,
)

SPEC = {
    "task": "matrix-factorisation",
    "optimizers": ["sgd"],
    "search": {
        "sampler": "random",
        "n_trials": 3,
        "eta": {"low": 1e-3, "high": 1.0},
        "batch_size": [16, 32],
        "radius": {"low": 1.0, "high": 100.0},
    },
    "budget": {"epochs": 1},
    "device": "cpu",
}


def test_sampled_point_gives_back_what_the_sampler_drew(tmp_path):
    spec = parse_spec(SPEC)
    drawn = {"eta": 0.0123, "batch_size": 32, "radius": 7.5}
    planned = search_trial(spec, 0, drawn)
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.upgrade()
    with store.session() as session:
        study, _ = repository.create_study(
            session, name="s", task=spec.task, spec=spec.model_dump(mode="json", by_alias=True),
            trials=[planned],
        )  # fmt: skip
        (stored,) = repository.unfinished_trials(session, study.id)
    point = sampled_point(spec.search, stored)
    assert point == drawn and set(point) == set(search_space(spec.search))
    # the same point gives the same trial: a re-run lands on the interrupted row
    assert search_trial(spec, 0, point).key == planned.key
    store.dispose()


def test_retire_stale_trials_fails_running_and_waiting_only(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.sqlite'}")
    assert retire_stale_trials(storage, "never-started") == 0
    study = optuna.create_study(study_name="s-0", storage=storage)
    distribution = {"eta": FloatDistribution(1e-3, 1.0, log=True)}
    finished = study.ask(distribution)
    study.tell(finished, 1.0)
    study.ask(distribution)  # left RUNNING by a dead driver
    study.enqueue_trial({"eta": 0.1})  # enqueued, never started
    assert retire_stale_trials(storage, "s-0") == 2
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]
    assert retire_stale_trials(storage, "s-0") == 0


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_continued_search_draws_new_samples(tmp_path, sampler):
    """A driver that continues a search (resumed, or extended to more samples) must not draw
    the samples it already ran again: their trials are stored under the same keys."""
    spec = parse_spec({**SPEC, "search": {**SPEC["search"], "sampler": sampler, "seed": 0}})
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.sqlite'}")
    name = "study-0"
    distributions = {"eta": FloatDistribution(1e-3, 1.0, log=True)}

    def draw(n: int) -> list[float]:
        history = label_optuna_study(storage, name, spec, "study", 0)
        study = optuna.load_study(
            study_name=name, storage=storage, sampler=make_sampler(spec.search, history)
        )
        etas = []
        for _ in range(n):
            trial = study.ask(distributions)
            study.tell(trial, trial.params["eta"])
            etas.append(trial.params["eta"])
        return etas

    first = draw(4)
    assert sampler_seed(spec.search, 0) == 0  # a fresh search: the spec's seed as it is
    more = draw(2)  # the next driver run
    assert len(set(first + more)) == 6
    # the seed depends on the history only: the same history draws the same samples
    assert sampler_seed(spec.search, 4) == sampler_seed(spec.search, 4) != 0
    # what the bug was: the spec's seed as it is draws the first samples again
    again = optuna.create_study(sampler=make_sampler(spec.search, 0))
    assert [again.ask(distributions).params["eta"] for _ in range(2)] == first[:2]
