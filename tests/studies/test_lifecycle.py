"""The study lifecycle: submit, cancel, resume, delete and a driver's start and end, on a real
store (SQLite and PostgreSQL) with a launcher that records what it was asked to do."""

import time

import pytest

from studies.exceptions import IdempotencyConflict, InvalidTransition, SpecError
from studies.lifecycle import StudyLifecycle
from studies.store import repository

SPEC = {
    "name": "MF η sweep",
    "task": "matrix-factorisation",
    "optimizers": ["alig", "sgd"],
    "grid": {"eta": [0.01, 0.1, 1.0], "batch_size": [32]},
    "budget": {"epochs": 2},
}


class RecordingLauncher:
    """Submits nothing; remembers each call and answers job states it is told."""

    dashboard_url = "http://127.0.0.1:1"

    def __init__(self) -> None:
        self.submitted: list[tuple[str, str, int]] = []
        self.stopped: list[str] = []
        self.states: dict[str, str] = {}
        self.fail_with: Exception | None = None

    def submit(self, study_id: str, name: str, attempt: int = 0) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        self.submitted.append((study_id, name, attempt))
        job_id = f"job-{study_id}-{attempt}"
        self.states.setdefault(job_id, "RUNNING")
        return job_id

    def stop(self, job_id: str) -> bool:
        self.stopped.append(job_id)
        self.states[job_id] = "STOPPED"
        return True

    def status(self, job_id: str) -> str | None:
        return self.states.get(job_id)

    def logs(self, job_id: str) -> str:
        return ""


@pytest.fixture
def launcher() -> RecordingLauncher:
    return RecordingLauncher()


@pytest.fixture
def lifecycle(store, launcher, monkeypatch) -> StudyLifecycle:
    # a cancel's background stopper acts at once, so it never outlives the test's store
    monkeypatch.setattr("studies.lifecycle.STOP_GRACE_SECONDS", 0.0)
    return StudyLifecycle(store, launcher)


def finish_every_trial(store, study_id: str, status: str = "completed") -> None:
    with store.session() as session:
        for trial in repository.unfinished_trials(session, study_id):
            repository.record_trial_result(
                session, study_id, trial.key, status=status, final_objective=0.5
            )


def test_submit_stores_every_trial_and_launches_attempt_zero(lifecycle, launcher, store):
    submission = lifecycle.submit(SPEC, max_trials=100)
    study = submission.study
    assert submission.created and submission.n_trials == 6
    assert launcher.submitted == [(study.id, "MF η sweep", 0)]
    assert (study.status, study.ray_job_id, study.launch_attempt) == (
        "pending", f"job-{study.id}-0", 1,
    )  # fmt: skip
    with store.session() as session:
        assert repository.study_progress(session, study.id).total == 6
        assert repository.get_study(session, study.id) == study


def test_a_preset_body_and_its_overrides_are_resolved_once(lifecycle):
    submission = lifecycle.submit(
        {"preset": "smoke", "overrides": {"name": "mine"}}, max_trials=100
    )
    assert (
        submission.study.name == "mine" and submission.study.spec["task"] == "matrix-factorisation"
    )


def test_bad_bodies_are_spec_errors_naming_the_field_and_store_nothing(lifecycle, store):
    with pytest.raises(SpecError, match=r"grid\.eta\[0\]: must be finite and > 0"):
        lifecycle.submit({**SPEC, "grid": {"eta": [-1.0]}}, max_trials=100)
    with pytest.raises(SpecError, match="more than the limit of 5"):
        lifecycle.submit(SPEC, max_trials=5)
    with pytest.raises(SpecError, match=r"name: must not contain NUL"):
        lifecycle.submit({**SPEC, "name": "a\x00b"}, max_trials=100)
    with store.session() as session:
        assert repository.list_studies(session).items == []


def test_an_idempotent_retry_returns_the_study_and_launches_nothing(lifecycle, launcher):
    first = lifecycle.submit(SPEC, max_trials=100, idempotency_key="k1")
    again = lifecycle.submit(SPEC, max_trials=100, idempotency_key="k1")
    assert (again.study.id, again.created) == (first.study.id, False)
    assert len(launcher.submitted) == 1
    with pytest.raises(IdempotencyConflict):
        lifecycle.submit({**SPEC, "name": "other"}, max_trials=100, idempotency_key="k1")


def test_a_failed_launch_fails_the_study_with_the_reason(lifecycle, launcher, store):
    launcher.fail_with = RuntimeError("no Ray here")
    with pytest.raises(RuntimeError, match="no Ray here"):
        lifecycle.submit(SPEC, max_trials=100)
    with store.session() as session:
        (study,) = repository.list_studies(session).items
    assert (study.status, study.error) == ("failed", "launch failed: no Ray here")


def test_resume_counts_launches_in_the_database(lifecycle, launcher, store):
    study = lifecycle.submit(SPEC, max_trials=100).study
    with pytest.raises(InvalidTransition, match="its Ray job is RUNNING"):
        lifecycle.resume(study.id)  # never two drivers
    launcher.states[study.ray_job_id] = "FAILED"
    lifecycle.fail_run(study.id, "driver died")
    resumed = lifecycle.resume(study.id)
    assert (resumed.status, resumed.launch_attempt) == ("pending", 2)
    assert launcher.submitted[-1] == (study.id, "MF η sweep", 1)
    assert resumed.ray_job_id == f"job-{study.id}-1"
    assert lifecycle.begin_run(study.id) is not None
    finish_every_trial(store, study.id)
    launcher.states[resumed.ray_job_id] = "SUCCEEDED"
    assert lifecycle.finish_run(study.id)[0] == "succeeded"
    with pytest.raises(InvalidTransition, match="every trial is finished"):
        lifecycle.resume(study.id)


def test_cancel_is_idempotent_and_stops_a_job_that_does_not_end(lifecycle, launcher, store):
    study = lifecycle.submit(SPEC, max_trials=100).study
    with store.session() as session:
        repository.record_trial_result(session, study.id, _first_key(session, study.id),
                                       status="completed", final_objective=0.1)  # fmt: skip
    cancelled = lifecycle.cancel(study.id)
    assert cancelled.status == "cancelled" and lifecycle.cancel(study.id).status == "cancelled"
    lifecycle.stop_cancelled_job(study.id, study.ray_job_id, grace=0.0)
    assert set(launcher.stopped) == {study.ray_job_id}
    with store.session() as session:
        progress = repository.study_progress(session, study.id)
    assert (progress.completed, progress.cancelled) == (1, 5)  # the result is kept


def test_cancel_in_the_background_stops_the_job_after_the_grace(lifecycle, launcher):
    study = lifecycle.submit(SPEC, max_trials=100).study
    lifecycle.cancel(study.id)
    deadline = time.monotonic() + 10
    while study.ray_job_id not in launcher.stopped and time.monotonic() < deadline:
        time.sleep(0.05)
    assert launcher.stopped == [study.ray_job_id]


def test_a_finished_study_cannot_be_cancelled_and_delete_needs_a_finished_one(
    lifecycle, launcher, store
):
    study = lifecycle.submit(SPEC, max_trials=100).study
    with pytest.raises(InvalidTransition, match="cancel it before deleting it"):
        lifecycle.delete(study.id)
    assert lifecycle.begin_run(study.id) is not None
    finish_every_trial(store, study.id, status="diverged")
    assert lifecycle.finish_run(study.id)[0] == "succeeded"  # diverged trials are results
    with pytest.raises(InvalidTransition, match="already succeeded: nothing to cancel"):
        lifecycle.cancel(study.id)
    with pytest.raises(InvalidTransition, match="wait for it to end before deleting"):
        lifecycle.delete(study.id)  # its job is still RUNNING
    launcher.states[study.ray_job_id] = "SUCCEEDED"
    lifecycle.delete(study.id)
    with store.session() as session:
        assert repository.list_studies(session).items == []


def test_a_driver_start_resets_dead_runs_and_its_end_names_what_is_missing(lifecycle, store):
    study = lifecycle.submit(SPEC, max_trials=100).study
    with store.session() as session:
        repository.mark_trial_running(session, study.id, _first_key(session, study.id))
    run = lifecycle.begin_run(study.id)
    assert run is not None and run.reset_trials == 1 and run.study.status == "running"
    assert [e.row for e in run.spec.entries] == ["alig", "sgd"]  # the stored spec, parsed
    status, progress = lifecycle.finish_run(study.id)
    assert (status, progress.total) == ("failed", 6)
    assert lifecycle.get(study.id)[0].error == "6 of 6 trials did not finish"


def test_every_trial_failed_fails_the_study_and_a_cancelled_one_is_not_run(lifecycle, store):
    study = lifecycle.submit(SPEC, max_trials=100).study
    lifecycle.begin_run(study.id)
    finish_every_trial(store, study.id, status="failed")
    assert lifecycle.finish_run(study.id)[0] == "failed"
    other = lifecycle.submit({**SPEC, "name": "b"}, max_trials=100).study
    lifecycle.cancel(other.id)
    assert lifecycle.begin_run(other.id) is None
    lifecycle.fail_run(other.id, "late failure")  # a cancel is not turned into a failure
    assert lifecycle.get(other.id)[0].status == "cancelled"


def _first_key(session, study_id: str) -> str:
    return repository.list_trials(session, study_id, limit=1).items[0].key
