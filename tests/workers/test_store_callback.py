"""workers.store_callback without Ray running: what a trial Tune gave up on becomes in SQL."""

from types import SimpleNamespace

import pytest

from studies.spec import expand_grid, parse_spec
from studies.store import Store, repository
from studies.trial import Trial
from workers.store_callback import StoreCallback
from workers.trainable import grid_trial

SPEC = {
    "task": "matrix-factorisation",
    "optimizers": ["sgd"],
    "grid": {"eta": [0.1, 1.0, 10.0], "batch_size": [32]},
    "budget": {"epochs": 1},
    "device": "cpu",
    "max_failures": 2,
}


@pytest.fixture
def study(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.upgrade()
    spec = parse_spec(SPEC)
    trials = expand_grid(spec)
    with store.session() as session:
        created, _ = repository.create_study(
            session, name="s", task=spec.task, spec=spec.model_dump(mode="json", by_alias=True),
            trials=trials,
        )  # fmt: skip
    callback = StoreCallback(store, created.id, trial_of=grid_trial, max_failures=2)
    yield store, created.id, trials, callback
    store.dispose()


def tune_trial(trial: Trial, error: str) -> SimpleNamespace:
    """The parts of a Tune trial the callback reads (a grid study's Tune config)."""
    return SimpleNamespace(
        trial_id=f"tune-{trial.key}",
        config={"trial": trial.to_json()},
        error_msg=f"Traceback ...\n{error}",
        error_file=None,
    )


def stored(store: Store, study_id: str, key: str):
    with store.session() as session:
        return repository.get_trial(session, study_id, key)


def test_a_trial_that_crashed_through_its_retries_is_failed(study):
    store, study_id, trials, callback = study
    keys = [t.key for t in trials]
    with store.session() as session:
        for _ in range(3):  # the first run and max_failures = 2 retries
            repository.mark_trial_running(session, study_id, keys[0])
    callback.on_trial_error(0, [], tune_trial(trials[0], "SIGSEGV in the worker"))
    row = stored(store, study_id, keys[0])
    assert (row.status, row.attempts, row.reason) == ("failed", 3, "SIGSEGV in the worker")
    assert callback.outcomes[keys[0]] == "failed"


@pytest.mark.parametrize("starts", [0, 1, 2])
def test_a_trial_lost_to_the_cluster_goes_back_to_pending(study, starts):
    store, study_id, trials, callback = study
    keys = [t.key for t in trials]
    with store.session() as session:
        for _ in range(starts):
            repository.mark_trial_running(session, study_id, keys[1])
    callback.on_trial_error(0, [], tune_trial(trials[1], "the actor's node was terminated"))
    row = stored(store, study_id, keys[1])
    assert (row.status, row.attempts) == ("pending", starts)
    assert row.reason == "lost to the cluster: the actor's node was terminated"
    assert callback.outcomes[keys[1]] == "pending"
    with store.session() as session:  # the driver's next round runs it
        assert keys[1] in {t.key for t in repository.unfinished_trials(session, study_id)}


def test_a_search_sample_lost_before_it_started_leaves_no_row(study):
    store, study_id, trials, callback = study
    unsampled = Trial.of("sgd", trials[0].config, {}, key="0123456789abcdef")
    callback.on_trial_error(0, [], tune_trial(unsampled, "node died"))
    with store.session() as session:
        assert len(repository.list_trials(session, study_id, limit=10).items) == len(trials)
    assert callback.outcomes == {}


def test_requeue_never_undoes_a_result(study):
    store, study_id, trials, _ = study
    keys = [t.key for t in trials]
    with store.session() as session:
        repository.record_trial_result(session, study_id, keys[2], status="completed",
                                       final_objective=1.5)  # fmt: skip
        assert repository.requeue_trial(session, study_id, keys[2], reason="lost") is False
    row = stored(store, study_id, keys[2])
    assert (row.status, row.final_objective, row.reason) == ("completed", 1.5, None)


def test_every_stored_outcome_writes_a_progress_line(study, caplog):
    store, study_id, trials, callback = study
    keys = [t.key for t in trials]
    caplog.set_level("INFO", logger="workers.progress")
    with store.session() as session:
        repository.mark_trial_running(session, study_id, keys[0])
    callback.on_trial_result(0, [], tune_trial(trials[0], ""), {
        "kind": "final", "step": 30, "outcome": "completed", "final_objective": 0.012345678,
        "train_loss": 0.0123,
    })  # fmt: skip
    callback.on_trial_error(0, [], tune_trial(trials[1], "SIGSEGV in the worker"))  # 0 starts
    with store.session() as session:
        for _ in range(3):
            repository.mark_trial_running(session, study_id, keys[2])
    callback.on_trial_error(0, [], tune_trial(trials[2], "SIGSEGV in the worker"))
    lines = [r.getMessage() for r in caplog.records if r.name == "workers.progress"]
    assert lines == [
        f"trial {keys[0]} sgd η=0.1 seed=0: completed, objective 0.01235 "
        "[1/3 finished: 1 completed, 0 diverged, 0 failed]",
        # the trial lost to the cluster went back to pending: no outcome, no line
        f"trial {keys[2]} sgd η=10 seed=0: failed, SIGSEGV in the worker "
        "[2/3 finished: 1 completed, 0 diverged, 1 failed]",
    ]
