"""A study's lifecycle: submit, cancel, resume, delete, and a driver's start and end.

Every action on a study goes through :class:`StudyLifecycle`, used by the API's routers, the CLI
and the study driver alike; the routers only translate HTTP. The allowed status transitions are
:data:`studies.statuses.STUDY_TRANSITIONS`, enforced by the store in SQL.

What runs a study's driver is a :class:`Launcher` (``workers.launcher.RayJobLauncher`` submits it
as a Ray Job). Launch *n* of a study (0 = the first, then one per resume) is submitted under the
job id ``launcher.submit(study_id, name, n)`` returns; the launch counter is stored in the
study's row (``launch_attempt``), so the n-th resume gets a fresh job id and a repeated submit
of the same launch is harmless. See docs/architecture.md, section "The study lifecycle".
"""

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from studies.exceptions import InvalidTransition, StudyNotFound
from studies.spec import StudySpec, expand_grid, planned_trial_count
from studies.statuses import STUDY_FINISHED, StudyStatus
from studies.store import Progress, Store, StudyInfo, repository
from studies.submission import parse_submission

log = logging.getLogger("studies.lifecycle")
TERMINAL_JOB_STATES = ("STOPPED", "SUCCEEDED", "FAILED")  # Ray's job states that do not change
STOP_GRACE_SECONDS = 20.0  # a cancelled driver stops itself; its job is stopped after this


class Launcher(Protocol):
    """What the lifecycle needs from whatever runs study drivers."""

    dashboard_url: str

    def submit(self, study_id: str, name: str, attempt: int = 0) -> str:
        """Start the study's driver for launch ``attempt``; its job id (idempotent per attempt)."""
        ...

    def stop(self, job_id: str) -> bool:
        """Ask the job to stop; ``False`` if it was not running."""
        ...

    def status(self, job_id: str) -> str | None:
        """The job's state (PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED) or None if unknown."""
        ...

    def logs(self, job_id: str) -> str:
        """The driver's output so far."""
        ...


@dataclass(frozen=True)
class Submission:
    """The outcome of a submit: the study, whether it was created now (not an idempotent
    retry), and how many trials it plans (a search creates its rows as it samples)."""

    study: StudyInfo
    created: bool
    n_trials: int


@dataclass(frozen=True)
class DriverRun:
    """What a driver's start hands it: the study and its spec, parsed once for the run."""

    study: StudyInfo
    spec: StudySpec
    reset_trials: int  # trials an earlier driver left running, back to pending


class StudyLifecycle:
    """The actions on a store's studies; ``launcher`` may be None for a driver (it launches
    nothing)."""

    def __init__(self, store: Store, launcher: Launcher | None = None) -> None:
        self.store = store
        self.launcher = launcher

    # ------------------------------------------------------------------------------- reading

    def get(self, study_id: str) -> tuple[StudyInfo, Progress]:
        """The study and its progress."""
        with self.store.session() as session:
            return (
                repository.get_study(session, study_id),
                repository.study_progress(session, study_id),
            )

    # ------------------------------------------------------------------------------- actions

    def submit(
        self, body: Any, *, max_trials: int, idempotency_key: str | None = None
    ) -> Submission:
        """Validate the body fully, store the study with all its trials, launch it.

        A retry with the same ``idempotency_key`` and body returns the stored study and
        launches nothing; the same key with another body is an IdempotencyConflict.
        """
        spec = parse_submission(body, max_trials=max_trials)
        trials = expand_grid(spec) if spec.grid is not None else []
        with self.store.session() as session:
            study, created = repository.create_study(
                session,
                name=spec.name,
                task=spec.task,
                spec=spec.model_dump(mode="json", by_alias=True),
                tags=spec.tags,
                trials=trials,
                idempotency_key=idempotency_key,
            )
        if created:
            study = self._launch(study)
        return Submission(study, created, planned_trial_count(spec))

    def cancel(self, study_id: str) -> StudyInfo:
        """Cancel a pending or running study (idempotent); finished trials keep their results.

        The driver notices within a second and stops; a background thread stops its job if it
        has not ended after :data:`STOP_GRACE_SECONDS` (:meth:`stop_cancelled_job`).
        """
        with self.store.session() as session:
            study = repository.get_study(session, study_id)
            if study.status in ("succeeded", "failed"):
                raise InvalidTransition(
                    f"study {study_id} is already {study.status}: nothing to cancel"
                )
            if study.status != "cancelled":
                study = repository.set_study_status(session, study_id, "cancelled")
                repository.cancel_pending_trials(session, study_id)
        if study.ray_job_id and self.launcher is not None:
            threading.Thread(
                target=self._stop_in_background, args=(study_id, study.ray_job_id), daemon=True
            ).start()
        return study

    def stop_cancelled_job(self, study_id: str, job_id: str, grace: float | None = None) -> None:
        """Wait up to ``grace`` seconds (default :data:`STOP_GRACE_SECONDS`) for a cancelled
        study's job to end, stop it otherwise, then mark the trials it left running
        ``cancelled``."""
        launcher = self._require_launcher()
        deadline = time.monotonic() + (STOP_GRACE_SECONDS if grace is None else grace)
        while time.monotonic() < deadline:
            if launcher.status(job_id) in (*TERMINAL_JOB_STATES, None):
                break
            time.sleep(1.0)
        else:
            launcher.stop(job_id)
        with contextlib.suppress(StudyNotFound), self.store.session() as session:  # deleted
            repository.cancel_pending_trials(session, study_id, include_running=True)

    def _stop_in_background(self, study_id: str, job_id: str) -> None:
        try:
            self.stop_cancelled_job(study_id, job_id)
        except Exception:  # nobody waits for this thread: say what went wrong
            log.exception("could not stop the job %s of cancelled study %s", job_id, study_id)

    def resume(self, study_id: str) -> StudyInfo:
        """Re-launch an interrupted study: only its unfinished trials run."""
        with self.store.session() as session:
            study = repository.get_study(session, study_id)
            self._require_job_ended(study, "resuming")
            progress = repository.study_progress(session, study_id)
            if study.status == "succeeded" and progress.done == progress.total:
                raise InvalidTransition(f"study {study_id} is succeeded: every trial is finished")
            study = repository.set_study_status(session, study_id, "pending", resume=True)
        return self._launch(study)

    def delete(self, study_id: str) -> None:
        """Delete a finished study (whose job has ended) and all its rows."""
        with self.store.session() as session:
            study = repository.get_study(session, study_id)
            if study.status not in STUDY_FINISHED:
                raise InvalidTransition(
                    f"study {study_id} is {study.status}: cancel it before deleting it"
                )
            self._require_job_ended(study, "deleting")
            repository.delete_study(session, study_id)

    # ------------------------------------------------------------------------------- driver

    def begin_run(self, study_id: str) -> DriverRun | None:
        """A driver starts: trials a dead driver left ``running`` go back to ``pending`` and
        the study becomes ``running``; None when the study was cancelled meanwhile."""
        with self.store.session() as session:
            study = repository.get_study(session, study_id)
            if study.status == "cancelled":
                return None
            reset = repository.reset_running_trials(session, study_id)
            study = repository.set_study_status(session, study_id, "running", resume=True)
        # stored specs were validated at submit; the trial limit was checked then
        spec = StudySpec.model_validate(study.spec)
        return DriverRun(study, spec, reset)

    def is_cancelled(self, study_id: str) -> bool:
        """Whether the study was cancelled (the driver stops what it runs)."""
        with self.store.session() as session:
            return repository.get_study(session, study_id).status == "cancelled"

    def finish_run(self, study_id: str) -> tuple[StudyStatus, Progress]:
        """A driver ends normally: ``succeeded`` when every trial finished (diverged and failed
        trials are results) unless all failed, ``failed`` with the reason otherwise; a study
        cancelled meanwhile stays ``cancelled`` and its running trials become ``cancelled``."""
        with self.store.session() as session:
            study = repository.get_study(session, study_id)
            progress = repository.study_progress(session, study_id)
            if study.status == "cancelled":
                repository.cancel_pending_trials(session, study_id, include_running=True)
                return "cancelled", progress
            unfinished = progress.total - progress.done
            if unfinished:
                error = f"{unfinished} of {progress.total} trials did not finish"
            elif progress.total and progress.failed == progress.total:
                error = "every trial failed (see the trials' reasons)"
            else:
                error = None
            status: StudyStatus = "failed" if error else "succeeded"
            repository.set_study_status(session, study_id, status, error=error)
        return status, progress

    def fail_run(self, study_id: str, error: str) -> None:
        """A driver itself failed: the study is ``failed`` with ``error`` (unless cancelled)."""
        try:
            with self.store.session() as session:
                if repository.get_study(session, study_id).status != "cancelled":
                    repository.set_study_status(session, study_id, "failed", error=error)
        except Exception:  # the database itself may be what failed
            log.exception("could not record the failure of study %s", study_id)

    # ------------------------------------------------------------------------------- helpers

    def _require_launcher(self) -> Launcher:
        if self.launcher is None:
            raise RuntimeError("this lifecycle has no launcher (a driver launches nothing)")
        return self.launcher

    def _launch(self, study: StudyInfo) -> StudyInfo:
        """Submit launch ``study.launch_attempt`` of the study's driver and count it; on
        failure the study is ``failed`` with the reason and the error is raised."""
        launcher = self._require_launcher()
        attempt = study.launch_attempt
        try:
            job_id = launcher.submit(study.id, study.name, attempt)
        except Exception as error:
            with self.store.session() as session:
                repository.set_study_status(
                    session, study.id, "failed", error=f"launch failed: {error}"
                )
            raise
        with self.store.session() as session:
            return repository.record_launch(session, study.id, job_id, attempt + 1)

    def _require_job_ended(self, study: StudyInfo, action: str) -> None:
        """A driver may still be stopping after a cancel: never run two drivers, and never
        delete rows a driver is still writing."""
        if not study.ray_job_id:
            return
        state = self._require_launcher().status(study.ray_job_id)
        if state not in (*TERMINAL_JOB_STATES, None):
            raise InvalidTransition(
                f"study {study.id} is {study.status} but its Ray job is {state}: "
                f"wait for it to end before {action}"
            )
