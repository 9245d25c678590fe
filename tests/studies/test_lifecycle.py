"""The study lifecycle: submit, cancel, resume, delete and a driver's start and end, on a real
store (SQLite and PostgreSQL) with a launcher that records what it was asked to do."""

import time

import pytest

from studies.exceptions import (
    ClusterUnavailable,
    IdempotencyConflict,
    InvalidTransition,
    SpecError,
    TooManyStudies,
)
from studies.lifecycle import StudyLifecycle
from studies.store import repository
from studies.submission import Limits

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
        self.capacity: dict[str, float] | None = None
        self.forgotten: list[str] = []

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

    def node_capacity(self) -> dict[str, float] | None:
        return self.capacity

    def forget(self, study) -> None:
        self.forgotten.append(study.id)


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


def test_an_unreachable_cluster_leaves_the_study_pending_with_its_launch_reserved(
    lifecycle, launcher, store
):
    launcher.fail_with = ClusterUnavailable("no Ray here")
    with pytest.raises(ClusterUnavailable, match="no Ray here"):
        lifecycle.submit(SPEC, max_trials=100)
    with store.session() as session:
        (study,) = repository.list_studies(session).items
    # never failed as if the science had: the reconciler submits launch 0 later
    assert (study.status, study.error, study.launch_attempt) == ("pending", None, 1)
    launcher.fail_with = None
    launched = lifecycle.launch_pending(study)
    assert launcher.submitted == [(study.id, "MF η sweep", 0)]
    assert (launched.ray_job_id, launched.launch_attempt) == (f"job-{study.id}-0", 1)


def test_a_trial_larger_than_any_node_is_refused_and_unknown_capacity_is_accepted(
    lifecycle, launcher
):
    launcher.capacity = {"CPU": 2.0}
    with pytest.raises(
        SpecError, match=r"resources\.cpu: a trial reserves 4 CPU, but the cluster's"
    ):
        lifecycle.submit({**SPEC, "resources": {"cpu": 4}}, max_trials=100)
    with pytest.raises(SpecError, match=r"resources\.gpu: a trial reserves 1 GPU"):
        lifecycle.submit({**SPEC, "resources": {"gpu": 1}}, max_trials=100)
    launcher.capacity = None  # the cluster did not answer: accepted, placed later or noted
    assert lifecycle.submit({**SPEC, "resources": {"cpu": 4}}, max_trials=100).created


def test_too_many_unfinished_studies_but_a_retry_of_a_known_key_is_answered(lifecycle):
    limits = Limits(max_trials=100, max_unfinished_studies=2)
    lifecycle.submit(SPEC, limits=limits, idempotency_key="a")
    lifecycle.submit({**SPEC, "name": "b"}, limits=limits)
    with pytest.raises(
        TooManyStudies,
        match=r"2 studies are pending or running, the limit is 2 \(SENSITIVITY_MAX_UNFINISHED_STUDIES\)",
    ):
        lifecycle.submit({**SPEC, "name": "c"}, limits=limits)
    assert not lifecycle.submit(SPEC, limits=limits, idempotency_key="a").created


def test_delete_forgets_what_the_runs_left(lifecycle, launcher):
    study = lifecycle.submit(SPEC, max_trials=100).study
    lifecycle.cancel(study.id)
    launcher.states[study.ray_job_id] = "STOPPED"
    lifecycle.delete(study.id)
    assert launcher.forgotten == [study.id]


def test_a_status_the_cluster_does_not_answer_is_not_an_ended_job(lifecycle, launcher):
    study = lifecycle.submit(SPEC, max_trials=100).study
    lifecycle.cancel(study.id)

    def unanswered(job_id):
        raise ClusterUnavailable("timed out")

    launcher.status = unanswered
    with pytest.raises(ClusterUnavailable):
        lifecycle.delete(study.id)
    with pytest.raises(ClusterUnavailable):
        lifecycle.resume(study.id)
    assert lifecycle.get(study.id)[0].status == "cancelled"  # nothing changed


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


def test_a_stopper_that_wakes_after_a_relaunch_leaves_the_new_run_alone(lifecycle, launcher, store):
    """The cancel's stopper marks what the cancelled run left running; if the study was resumed
    (or extended) before it woke, those trials are the new run's and stay as they are."""
    study = lifecycle.submit(SPEC, max_trials=100).study
    cancelled = lifecycle.cancel(study.id)
    launcher.states[study.ray_job_id] = "STOPPED"
    resumed = lifecycle.resume(study.id)
    assert resumed.launch_attempt == cancelled.launch_attempt + 1
    assert lifecycle.begin_run(study.id) is not None  # the new driver starts a trial
    with store.session() as session:
        repository.mark_trial_running(session, study.id, _first_key(session, study.id))
    # the stopper of the first cancel wakes now
    lifecycle.stop_cancelled_job(
        study.id, study.ray_job_id, grace=0.0, launch_attempt=cancelled.launch_attempt
    )
    with store.session() as session:
        assert repository.study_progress(session, study.id).running == 1
    # a stopper of the current cancelled launch still marks what its run left running
    current = lifecycle.cancel(study.id)
    lifecycle.stop_cancelled_job(
        study.id, resumed.ray_job_id, grace=0.0, launch_attempt=current.launch_attempt
    )
    with store.session() as session:
        progress = repository.study_progress(session, study.id)
    assert (progress.running, progress.cancelled) == (0, 6)


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


# --- races: a cancel is final, one driver per study ----------------------------------------


def test_a_cancel_before_the_driver_starts_is_not_undone(lifecycle, store):
    study = lifecycle.submit(SPEC, max_trials=100).study
    lifecycle.cancel(study.id)  # the API cancels while the driver of launch 0 starts
    assert lifecycle.begin_run(study.id, launch=0) is None
    assert lifecycle.begin_run(study.id) is None  # nor by a driver started by hand
    assert lifecycle.get(study.id)[0].status == "cancelled"


def test_two_drivers_of_the_same_launch_one_wins(lifecycle, store):
    study = lifecycle.submit(SPEC, max_trials=100).study
    first = StudyLifecycle(store).begin_run(study.id, launch=0)
    second = StudyLifecycle(store).begin_run(study.id, launch=0)
    assert first is not None and second is None


def test_a_stale_driver_cannot_end_a_newer_launch(lifecycle, launcher, store):
    study = lifecycle.submit(SPEC, max_trials=100).study
    old = StudyLifecycle(store)
    assert old.begin_run(study.id, launch=0) is not None
    launcher.states[study.ray_job_id] = "FAILED"  # its job died (the driver is a zombie)
    resumed = lifecycle.resume(study.id)
    assert resumed.launch_attempt == 2
    old.fail_run(study.id, "zombie")  # guarded by the launch it claimed
    finished = old.finish_run(study.id)
    assert lifecycle.get(study.id)[0].status == "pending" and finished[0] == "pending"
    assert StudyLifecycle(store).begin_run(study.id, launch=1) is not None


def test_two_racing_resumes_start_one_driver(lifecycle, launcher, store):
    study = lifecycle.submit(SPEC, max_trials=100).study
    launcher.states[study.ray_job_id] = "FAILED"
    lifecycle.fail_run(study.id, "driver died")
    stale, _ = lifecycle.get(study.id)
    lifecycle.resume(study.id)
    # the second resume read the study before the first one's launch: its reservation loses
    assert lifecycle.relaunch(stale, sources=("failed",)) is None
    assert lifecycle._launch(stale, sources=("failed", "pending")) is None
    assert [attempt for _, _, attempt in launcher.submitted] == [0, 1]
