"""workers.search without Ray running: the points a resume re-runs and stale Optuna trials."""

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from studies.spec import parse_spec, search_trial
from studies.store import Store, repository
from workers.search import retire_stale_trials, sampled_point, search_space

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
