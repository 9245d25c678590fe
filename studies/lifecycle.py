"""A study's lifecycle: submit, cancel, resume, extend, delete, and a driver's start and end.

Every action on a study goes through :class:`StudyLifecycle`, used by the API's routers, the CLI
and the study driver alike; the routers only translate HTTP. The allowed status transitions are
:data:`studies.statuses.STUDY_TRANSITIONS`, enforced by the store in SQL.

What runs a study's driver is a :class:`Launcher` (``workers.launcher.RayJobLauncher`` submits it
as a Ray Job). Launch *n* of a study (0 = the first, then one per resume) is submitted under the
job id ``launcher.submit(study_id, name, n)`` returns; the launch counter is stored in the
study's row (``launch_attempt``), so the n-th resume gets a fresh job id and a repeated submit
of the same launch is harmless. See docs/architecture.md, section "The study lifecycle".

Every write is a guarded statement of the store, so racing actors cannot undo each other:

- a launch number is *reserved* before its driver is submitted (``reserve_launch``: one winner
  per number, so two racing resumes start one driver), and its job is recorded only while it is
  the current launch;
- a driver *claims* its study for its own launch (``claim_run``: only ``pending``, only the
  current launch; the launcher tells the driver its number in ``SENSITIVITY_LAUNCH_ATTEMPT``);
  a cancel is final — no driver claims a cancelled study, and its end or failure is recorded only
  from ``running`` (resp. unfinished) and only for the launch it claimed;
- when the cluster does not answer (``ClusterUnavailable``), nothing is marked failed: a study
  stays ``pending`` with its launch reserved, and :mod:`studies.reconciler` submits it later.
"""

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from studies.exceptions import InvalidTransition, LimitExceeded, StudyNotFound, TooManyStudies
from studies.extension import history_entry, plan_extension
from studies.settings import Settings
from studies.spec import StudySpec, expand_grid, planned_trial_count
from studies.statuses import RESUME_SOURCES, STUDY_FINISHED, STUDY_UNFINISHED, StudyStatus
from studies.store import Progress, Store, StudyInfo, repository
from studies.submission import Limits, parse_submission

log = logging.getLogger("studies.lifecycle")
TERMINAL_JOB_STATES = ("STOPPED", "SUCCEEDED", "FAILED")  # Ray's job states that do not change
STOP_GRACE_SECONDS = 20.0  # a cancelled driver stops itself; its job is stopped after this


class Launcher(Protocol):
    """What the lifecycle needs from whatever runs study drivers.

    Every method that asks the cluster raises :class:`~studies.exceptions.ClusterUnavailable`
    when it does not answer in time (unreachable, an error, a timeout) — never a wrong answer:
    an unanswered status is not "ended", and the caller leaves the study as it was.
    """

    dashboard_url: str

    def submit(self, study_id: str, name: str, attempt: int = 0) -> str:
        """Start the study's driver for launch ``attempt``; its job id (idempotent per attempt)."""
        ...

    def stop(self, job_id: str) -> bool:
        """Ask the job to stop; ``False`` if it was not running."""
        ...

    def status(self, job_id: str) -> str | None:
        """The job's state (PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED) or None if the cluster
        does not know the job."""
        ...

    def logs(self, job_id: str) -> str:
        """The driver's output so far."""
        ...

    def node_capacity(self) -> dict[str, float] | None:
        """The total resources (``CPU``, ``GPU``, …) of the cluster's largest node — one trial
        must fit on one node — or None when unknown (no answer, no node yet). Never raises."""
        ...

    def forget(self, study: StudyInfo) -> None:
        """Remove what the study's runs left outside its rows (Tune's directories, a search's
        Optuna studies); called after the study is deleted. Best effort, never raises."""
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


@dataclass(frozen=True)
class Extended:
    """The outcome of an extension: the study (``pending``, launched again), how many trials it
    added (a search: samples it plans) and how many stored trials it kept as they are."""

    study: StudyInfo
    added: int
    reused: int


class StudyLifecycle:
    """The actions on a store's studies; ``launcher`` may be None for a driver (it launches
    nothing)."""

    def __init__(self, store: Store, launcher: Launcher | None = None) -> None:
        self.store = store
        self.launcher = launcher
        # study id -> the launch counter this process's driver claimed (its end is guarded by it)
        self._claimed: dict[str, int] = {}

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
        self,
        body: Any,
        *,
        max_trials: int | None = None,
        idempotency_key: str | None = None,
        limits: Limits | None = None,
    ) -> Submission:
        """Validate the body fully, store the study with all its trials, launch it.

        ``limits`` are the service's (``Limits.of(settings)``); without them only the trial
        limit (``max_trials``) applies. A retry with the same ``idempotency_key`` and body
        returns the stored study and launches nothing; the same key with another body is an
        IdempotencyConflict. Over ``limits.max_unfinished_studies`` studies pending or running:
        TooManyStudies. A trial larger than the cluster's largest node: LimitExceeded (unknown
        when the cluster does not answer: then accepted). When the cluster does not take the
        driver, ClusterUnavailable is raised and the study stays ``pending``: the reconciler
        submits it later.
        """
        spec = parse_submission(body, max_trials=max_trials, limits=limits)
        self._check_capacity(spec)
        trials = expand_grid(spec) if spec.grid is not None else []
        with self.store.session() as session:
            if limits is not None and not (
                idempotency_key and repository.idempotency_key_used(session, idempotency_key)
            ):
                self._check_unfinished(session, limits.max_unfinished_studies)
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
            # None: a reconciler pass took this launch first; it submits the driver
            study = self._launch(study, sources=("pending",)) or self.get(study.id)[0]
        return Submission(study, created, planned_trial_count(spec))

    def cancel(self, study_id: str) -> StudyInfo:
        """Cancel a pending or running study (idempotent); finished trials keep their results.

        A cancel is final: no driver claims a cancelled study, only an explicit resume moves it
        on. The driver notices within a second and stops; a background thread stops its job if
        it has not ended after :data:`STOP_GRACE_SECONDS` (:meth:`stop_cancelled_job`).
        """
        with self.store.session() as session:
            study = repository.transition(session, study_id, "cancelled", sources=STUDY_UNFINISHED)
            if study is None:
                study = repository.get_study(session, study_id)
                if study.status != "cancelled":
                    raise InvalidTransition(
                        f"study {study_id} is already {study.status}: nothing to cancel"
                    )
            else:
                repository.cancel_pending_trials(session, study_id)
        if study.ray_job_id and self.launcher is not None:
            threading.Thread(
                target=self._stop_in_background,
                args=(study_id, study.ray_job_id, study.launch_attempt),
                daemon=True,
            ).start()
        return study

    def stop_cancelled_job(
        self,
        study_id: str,
        job_id: str,
        grace: float | None = None,
        launch_attempt: int | None = None,
    ) -> None:
        """Wait up to ``grace`` seconds (default :data:`STOP_GRACE_SECONDS`) for a cancelled
        study's job to end, stop it otherwise, then mark the trials it left running
        ``cancelled`` — unless the study was relaunched meanwhile (resumed or extended: it is
        no longer the cancelled study of ``launch_attempt``), whose trials are the new run's."""
        launcher = self._require_launcher()
        deadline = time.monotonic() + (STOP_GRACE_SECONDS if grace is None else grace)
        while time.monotonic() < deadline:
            if launcher.status(job_id) in (*TERMINAL_JOB_STATES, None):
                break
            time.sleep(1.0)
        else:
            launcher.stop(job_id)
        with contextlib.suppress(StudyNotFound), self.store.session() as session:  # deleted
            repository.cancel_pending_trials(
                session, study_id, include_running=True, cancelled_at_launch=launch_attempt
            )

    def _stop_in_background(self, study_id: str, job_id: str, launch_attempt: int) -> None:
        try:
            self.stop_cancelled_job(study_id, job_id, launch_attempt=launch_attempt)
        except Exception:  # nobody waits for this thread: say what went wrong
            log.exception("could not stop the job %s of cancelled study %s", job_id, study_id)

    def resume(self, study_id: str) -> StudyInfo:
        """Re-launch an interrupted study: only its unfinished trials run.

        Refused (InvalidTransition) while its job still runs, when every trial is finished, and
        when another resume or launch of the same study won the race. ClusterUnavailable when
        the cluster does not say whether the job ended: then nothing changed.
        """
        study, progress = self.get(study_id)
        self._require_job_ended(study, "resuming")
        if study.status == "succeeded" and progress.done == progress.total:
            raise InvalidTransition(f"study {study_id} is succeeded: every trial is finished")
        launched = self._launch(study, sources=RESUME_SOURCES)
        if launched is None:
            raise InvalidTransition(
                f"study {study_id} changed while resuming (another resume or launch won): "
                "look at it again"
            )
        return launched

    def extend(self, study_id: str, body: Any, *, limits: Limits | None = None) -> Extended:
        """Add trials to a finished study (``succeeded``, ``failed`` or ``cancelled``) and run
        them: the stored spec becomes the merged one (:func:`studies.extension.plan_extension`),
        the new trials are inserted, the study's history gets an entry, and the next launch runs
        every unfinished trial — the new ones, and what a failed or cancelled study left
        unfinished; finished trials are never run again nor changed.

        Refused (InvalidTransition) while the study is pending or running ("cancel it or wait"),
        while its job still runs, and when it changed meanwhile (another resume or extension
        won). ExtensionConflict / SpecError from the plan; TooManyStudies over
        ``limits.max_unfinished_studies``; ClusterUnavailable as for a resume (the study stays
        ``pending`` with its launch reserved and the extension stored).
        """
        self._require_launcher()
        with self.store.session() as session:
            study = repository.get_study(session, study_id)
        if study.status in STUDY_UNFINISHED:
            raise InvalidTransition(
                f"study {study_id} is {study.status}: cancel it or wait for it to finish "
                "before extending it"
            )
        with self.store.session() as session:
            keys = [record.key for record in repository.trial_records(session, study_id)]
        plan = plan_extension(study.spec, keys, body, limits=limits)
        # after the plan: a body that is not an extension is refused whatever the job does
        self._require_job_ended(study, "extending")
        entry = history_entry(plan, datetime.now(UTC), study.status)
        attempt = study.launch_attempt
        with self.store.session() as session:
            if limits is not None:
                self._check_unfinished(session, limits.max_unfinished_studies)
            # one transaction: the extension is stored exactly when its launch is reserved
            extended = repository.extend_study(
                session, study_id, spec=plan.document(), extension=entry,
                trials=plan.new_trials, status=study.status, launch_attempt=attempt,
            )  # fmt: skip
            reserved = extended and repository.reserve_launch(
                session, study_id, launch_attempt=attempt, sources=(study.status,)
            )
            if not reserved:
                raise InvalidTransition(
                    f"study {study_id} changed while extending (another resume or extension "
                    "won): look at it again"
                )
        return Extended(self._submit_launch(reserved, attempt), plan.n_added, plan.n_reused)

    def delete(self, study_id: str) -> None:
        """Delete a finished study (whose job has ended), all its rows and what its runs left
        behind (Tune's directories, a search's Optuna studies: ``launcher.forget``)."""
        with self.store.session() as session:
            study = repository.get_study(session, study_id)
        if study.status not in STUDY_FINISHED:
            raise InvalidTransition(
                f"study {study_id} is {study.status}: cancel it before deleting it"
            )
        self._require_job_ended(study, "deleting")
        with self.store.session() as session:
            if not repository.delete_study(session, study_id, statuses=STUDY_FINISHED):
                raise InvalidTransition(f"study {study_id} changed while deleting: look again")
        if self.launcher is not None:
            self.launcher.forget(study)

    # ------------------------------------------------------------------------------- launches

    def launch_pending(self, study: StudyInfo) -> StudyInfo:
        """Submit the current launch of a ``pending`` study again (its driver was never
        submitted, or the cluster forgot it): the same launch number, so harmless if the job
        exists. ClusterUnavailable when the cluster does not take it."""
        if study.launch_attempt == 0:  # never reserved: a crash right after the store
            return self._launch(study, sources=("pending",)) or self.get(study.id)[0]
        return self._submit_launch(study, study.launch_attempt - 1)

    def relaunch(self, study: StudyInfo, sources: tuple[StudyStatus, ...]) -> StudyInfo | None:
        """A new launch of a study whose driver is gone (the reconciler's resume): None when
        the study moved on meanwhile."""
        return self._launch(study, sources=sources)

    # ------------------------------------------------------------------------------- driver

    def begin_run(self, study_id: str, launch: int | None = None) -> DriverRun | None:
        """A driver starts: it claims the study (``running``), then trials a dead driver left
        ``running`` go back to ``pending``; None when it may not run it — cancelled, finished
        or claimed meanwhile, or another launch is current.

        ``launch`` is this driver's launch number (default: ``SENSITIVITY_LAUNCH_ATTEMPT``, set
        by the launcher in the job's environment); a driver started by hand has none and may take
        over any study that is not cancelled (:func:`repository.claim_run`).
        """
        if launch is None:
            launch = Settings().launch_attempt
        with self.store.session() as session:
            study = repository.claim_run(session, study_id, launch=launch)
            if study is None:
                current = repository.get_study(session, study_id)
                log.info(
                    "study %s is %s with %d launches: launch %s does not run it",
                    study_id, current.status, current.launch_attempt, launch,
                )  # fmt: skip
                return None
            reset = repository.reset_running_trials(session, study_id)
        self._claimed[study_id] = study.launch_attempt
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
        cancelled meanwhile stays ``cancelled`` and its running trials become ``cancelled``.
        Only from ``running`` and, for a driver that claimed a launch, only while that launch is
        current."""
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
            done = repository.transition(
                session, study_id, status, sources=("running",), error=error,
                launch_attempt=self._claimed.get(study_id),
            )  # fmt: skip
            if done is None:  # cancelled meanwhile, or another launch took over
                current = repository.get_study(session, study_id)
                if current.status == "cancelled":
                    repository.cancel_pending_trials(session, study_id, include_running=True)
                log.warning("study %s is %s: this driver's end is not recorded",
                            study_id, current.status)  # fmt: skip
                return current.status, progress
        return status, progress

    def fail_run(self, study_id: str, error: str) -> None:
        """A driver itself failed: the study is ``failed`` with ``error`` — unless it was
        cancelled, finished, or another launch took over."""
        try:
            with self.store.session() as session:
                repository.transition(
                    session, study_id, "failed", sources=STUDY_UNFINISHED, error=error,
                    launch_attempt=self._claimed.get(study_id),
                )  # fmt: skip
        except Exception:  # the database itself may be what failed
            log.exception("could not record the failure of study %s", study_id)

    # ------------------------------------------------------------------------------- helpers

    def _require_launcher(self) -> Launcher:
        if self.launcher is None:
            raise RuntimeError("this lifecycle has no launcher (a driver launches nothing)")
        return self.launcher

    def _launch(self, study: StudyInfo, sources: tuple[StudyStatus, ...]) -> StudyInfo | None:
        """Take the next launch of the study (it becomes ``pending``) and submit its driver;
        None when another caller took that launch first or the study left ``sources``."""
        self._require_launcher()
        attempt = study.launch_attempt
        with self.store.session() as session:
            reserved = repository.reserve_launch(
                session, study.id, launch_attempt=attempt, sources=sources
            )
        if reserved is None:
            return None
        return self._submit_launch(reserved, attempt)

    def _submit_launch(self, study: StudyInfo, attempt: int) -> StudyInfo:
        """Submit launch ``attempt`` (already reserved) and remember its job. Whatever the
        launcher raises — ClusterUnavailable above all — leaves the study ``pending`` with the
        launch reserved: the reconciler submits the same launch again, and the error is raised
        (never a reason to fail the study)."""
        job_id = self._require_launcher().submit(study.id, study.name, attempt)
        with self.store.session() as session:
            recorded = repository.record_job(session, study.id, job_id, launch_attempt=attempt + 1)
            return recorded or repository.get_study(session, study.id)

    def _require_job_ended(self, study: StudyInfo, action: str) -> None:
        """A driver may still be stopping after a cancel: never run two drivers, and never
        delete rows a driver is still writing. A cluster that does not answer is not an ended
        job: ClusterUnavailable propagates."""
        if not study.ray_job_id:
            return
        state = self._require_launcher().status(study.ray_job_id)
        if state not in (*TERMINAL_JOB_STATES, None):
            raise InvalidTransition(
                f"study {study.id} is {study.status} but its Ray job is {state}: "
                f"wait for it to end before {action}"
            )

    def _check_capacity(self, spec: StudySpec) -> None:
        """Refuse a trial that no node of the cluster could ever hold (unknown: accepted)."""
        capacity = self.launcher.node_capacity() if self.launcher is not None else None
        if not capacity:
            return
        for field, resource in (("cpu", "CPU"), ("gpu", "GPU")):
            wanted = getattr(spec.resources, field)
            offered = capacity.get(resource, 0.0)
            if wanted > offered:
                raise LimitExceeded(
                    f"resources.{field}: a trial reserves {wanted:g} {resource}, but the "
                    f"cluster's largest node has {offered:g}: Tune could never place it"
                )

    @staticmethod
    def _check_unfinished(session: Any, limit: int | None) -> None:
        if limit is None:
            return
        count = repository.count_studies(session, status=STUDY_UNFINISHED)
        if count >= limit:
            raise TooManyStudies(
                f"{count} studies are pending or running, the limit is {limit} "
                "(SENSITIVITY_MAX_UNFINISHED_STUDIES): submit again once some have finished"
            )
