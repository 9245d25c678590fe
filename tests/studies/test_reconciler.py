"""The reconciler on a real store (SQLite and PostgreSQL) with a fake launcher (no Ray): stranded
pending studies are launched, dead drivers relaunched then given up on, cancelled studies left
alone, and a cluster that does not answer changes nothing."""

import pytest

from studies.exceptions import ClusterUnavailable
from studies.lifecycle import StudyLifecycle
from studies.reconciler import Reconciler
from studies.spec import expand_grid, parse_spec
from studies.store import repository
from tests.studies.test_lifecycle import SPEC, RecordingLauncher


@pytest.fixture
def launcher() -> RecordingLauncher:
    return RecordingLauncher()


@pytest.fixture
def reconciler(store, launcher) -> Reconciler:
    return Reconciler(store, launcher, max_launch_attempts=3, grace_seconds=0.0)


def stored_only(store) -> str:
    """A study stored by an API that crashed before it reserved or submitted anything."""
    spec = parse_spec(SPEC)
    with store.session() as session:
        study, _ = repository.create_study(
            session, name=spec.name, task=spec.task, trials=expand_grid(spec),
            spec=spec.model_dump(mode="json", by_alias=True),
        )  # fmt: skip
    return study.id


def study(store, study_id: str):
    with store.session() as session:
        return repository.get_study(session, study_id)


def test_a_pending_study_without_a_job_is_launched(store, launcher, reconciler):
    study_id = stored_only(store)
    report = reconciler.run_once()
    assert report.launched == [study_id] and launcher.submitted == [(study_id, SPEC["name"], 0)]
    assert (study(store, study_id).ray_job_id, study(store, study_id).launch_attempt) == (
        f"job-{study_id}-0", 1,
    )  # fmt: skip
    assert reconciler.run_once().launched == []  # its job runs: nothing more to do


def test_a_reserved_launch_whose_job_ray_forgot_is_submitted_again(store, launcher, reconciler):
    launcher.fail_with = ClusterUnavailable("down")
    with pytest.raises(ClusterUnavailable):
        StudyLifecycle(store, launcher).submit(SPEC, max_trials=100)
    with store.session() as session:  # a bare session would hold its transaction open
        (pending,) = repository.list_studies(session).items
    launcher.fail_with = None
    assert reconciler.run_once().launched == [pending.id]
    assert launcher.submitted == [(pending.id, SPEC["name"], 0)]  # the same launch, not a new one


def test_a_running_study_with_a_dead_job_is_resumed_then_failed_after_max_launches(
    store, launcher, reconciler
):
    lifecycle = StudyLifecycle(store, launcher)
    study_id = lifecycle.submit(SPEC, max_trials=100).study.id
    for launch in range(3):  # launches 0, 1, 2: each driver starts, then is killed
        assert StudyLifecycle(store).begin_run(study_id, launch=launch) is not None
        launcher.states[study(store, study_id).ray_job_id] = "FAILED"
        report = reconciler.run_once()
        if launch < 2:
            assert report.resumed == [study_id]
            assert study(store, study_id).status == "pending"
            assert launcher.submitted[-1] == (study_id, SPEC["name"], launch + 1)
    assert report.failed == [study_id] and len(launcher.submitted) == 3
    failed = study(store, study_id)
    assert failed.status == "failed"
    assert f"job-{study_id}-2 is FAILED after 3 launches" in failed.error
    assert "SENSITIVITY_MAX_LAUNCH_ATTEMPTS=3" in failed.error


def test_a_driver_that_died_before_claiming_is_relaunched(store, launcher, reconciler):
    study_id = StudyLifecycle(store, launcher).submit(SPEC, max_trials=100).study.id
    launcher.states[study(store, study_id).ray_job_id] = "FAILED"  # e.g. an import error
    assert reconciler.run_once().resumed == [study_id]
    assert launcher.submitted[-1][2] == 1


def test_a_job_ray_does_not_know_means_the_driver_is_gone(store, launcher, reconciler):
    study_id = StudyLifecycle(store, launcher).submit(SPEC, max_trials=100).study.id
    StudyLifecycle(store).begin_run(study_id, launch=0)
    launcher.states.clear()  # the head restarted: Ray forgot every job
    assert reconciler.run_once().resumed == [study_id]


def test_cancelled_and_live_studies_are_left_alone(store, launcher, reconciler):
    lifecycle = StudyLifecycle(store, launcher)
    cancelled = lifecycle.submit(SPEC, max_trials=100).study
    lifecycle.cancel(cancelled.id)
    launcher.states[cancelled.ray_job_id] = "STOPPED"
    live = lifecycle.submit({**SPEC, "name": "live"}, max_trials=100).study
    StudyLifecycle(store).begin_run(live.id, launch=0)
    submitted = list(launcher.submitted)
    report = reconciler.run_once()
    assert (report.checked, report.launched, report.resumed, report.failed) == (1, [], [], [])
    assert launcher.submitted == submitted
    assert study(store, cancelled.id).status == "cancelled"


def test_a_cluster_that_does_not_answer_changes_nothing(store, launcher, reconciler):
    lifecycle = StudyLifecycle(store, launcher)
    study_id = lifecycle.submit(SPEC, max_trials=100).study.id
    lifecycle.begin_run(study_id, launch=0)
    stranded = stored_only(store)

    def state(study_id: str):
        info = study(store, study_id)
        return info.status, info.error, info.ray_job_id

    before = {s: state(s) for s in (study_id, stranded)}

    def unanswered(*args, **kwargs):
        raise ClusterUnavailable("Ray Jobs API timed out")

    launcher.status = unanswered
    launcher.submit = unanswered
    report = reconciler.run_once()
    assert report.error == "Ray Jobs API timed out"
    assert (report.launched, report.resumed, report.failed) == ([], [], [])
    # nothing failed, nothing counted as ended (the stranded one keeps its reserved launch 0)
    assert {s: state(s) for s in before} == before
    assert study(store, study_id).launch_attempt == 1


def test_recent_changes_are_left_to_whoever_made_them(store, launcher):
    stranded = stored_only(store)
    assert Reconciler(store, launcher, grace_seconds=3600).run_once().launched == []
    assert study(store, stranded).launch_attempt == 0


def test_a_live_study_whose_trials_no_node_can_hold_gets_a_reason(store, launcher, reconciler):
    study_id = StudyLifecycle(store, launcher).submit(SPEC, max_trials=100).study.id
    StudyLifecycle(store).begin_run(study_id, launch=0)
    launcher.capacity = {"CPU": 0.5}  # the cluster shrank below one trial's 1 CPU
    assert reconciler.run_once().noted == [study_id]
    noted = study(store, study_id)
    assert noted.status == "running" and "Tune cannot place its trials" in noted.error
    assert reconciler.run_once().noted == []  # noted once
