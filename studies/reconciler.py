"""The reconciler: every unfinished study is matched with its Ray job, and what a crash left
behind is launched again — so no study stays ``pending`` or ``running`` forever.

A study can be stranded two ways: the API stored it (or reserved a launch) and died, or the
cluster did not answer, before its driver was submitted — it stays ``pending`` with no job; or
its driver was killed (SIGKILL, OOM, a lost node) — it stays ``running`` with a dead job. One
pass (:meth:`Reconciler.run_once`) looks at every ``pending`` and ``running`` study that has
not changed for ``grace_seconds`` (whoever changed it may still be at work) and applies:

==========================================  ===================================================
study and its job                           action
==========================================  ===================================================
pending, never launched                     launch 0 (reserve, submit)
pending, its launch's job unknown to Ray    submit that same launch (same job id: harmless)
pending or running, job ended or unknown    a new launch (a resume) while fewer than
                                            ``max_launch_attempts`` launches were made; then
                                            ``failed`` with the reason
running, job PENDING/RUNNING                nothing (a reason is noted if no node can hold a
                                            trial: Tune would wait for ever)
running with no job (a driver run by hand)  nothing: it cannot be seen from here
cancelled, succeeded, failed                never touched (a cancel is final)
==========================================  ===================================================

Every change goes through :class:`~studies.lifecycle.StudyLifecycle` and the store's guarded
statements, so a pass racing with the API or a driver cannot undo them (a study cancelled
meanwhile is not relaunched). When the cluster does not answer (``ClusterUnavailable``), the
pass stops and changes nothing more: the next pass tries again. The module needs only a
:class:`~studies.lifecycle.Launcher` (no Ray): the API runs it in a background thread
(:class:`ReconcilerThread`, every ``SENSITIVITY_RECONCILE_INTERVAL_SECONDS``), and
``sensitivity reconcile`` asks the API for one pass.
"""

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from studies.exceptions import ClusterUnavailable
from studies.lifecycle import TERMINAL_JOB_STATES, Launcher, StudyLifecycle
from studies.spec import StudySpec
from studies.statuses import STUDY_UNFINISHED
from studies.store import Store, StudyInfo, repository
from studies.store.models import utcnow

log = logging.getLogger("studies.reconciler")
ALIVE_JOB_STATES = ("PENDING", "RUNNING")


@dataclass
class ReconcileReport:
    """What one pass did, by study id."""

    launched: list[str] = field(default_factory=list)  # a pending study's driver submitted
    resumed: list[str] = field(default_factory=list)  # its driver was gone: a new launch
    failed: list[str] = field(default_factory=list)  # out of launches: failed with the reason
    noted: list[str] = field(default_factory=list)  # a reason recorded (unplaceable trials)
    checked: int = 0  # unfinished studies looked at
    error: str | None = None  # the cluster did not answer: the pass stopped there


class Reconciler:
    """One store's unfinished studies against one launcher's jobs (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        launcher: Launcher,
        *,
        max_launch_attempts: int = 3,
        grace_seconds: float = 30.0,
    ) -> None:
        self.store = store
        self.launcher = launcher
        self.lifecycle = StudyLifecycle(store, launcher)
        self.max_launch_attempts = max_launch_attempts
        self.grace_seconds = grace_seconds

    def run_once(self, grace_seconds: float | None = None) -> ReconcileReport:
        """One pass over every unfinished study; what it did."""
        grace = self.grace_seconds if grace_seconds is None else grace_seconds
        cutoff = utcnow() - timedelta(seconds=grace)
        report = ReconcileReport()
        try:
            for study in self._unfinished(cutoff):
                report.checked += 1
                self._reconcile(study, report)
        except ClusterUnavailable as error:
            report.error = str(error)
            log.warning("reconciler: the cluster does not answer, trying again later: %s", error)
        return report

    def _unfinished(self, cutoff: datetime) -> list[StudyInfo]:
        """Every pending or running study unchanged since ``cutoff`` (all pages)."""
        studies: list[StudyInfo] = []
        cursor = None
        while True:
            with self.store.session() as session:
                page = repository.list_studies(
                    session, status=STUDY_UNFINISHED, limit=500, cursor=cursor
                )
            studies.extend(s for s in page.items if s.updated_at <= cutoff)
            if page.next_cursor is None:
                return studies
            cursor = page.next_cursor

    def _reconcile(self, study: StudyInfo, report: ReconcileReport) -> None:
        if study.status == "pending":
            if study.launch_attempt == 0:
                self.lifecycle.launch_pending(study)
                return self._did(report.launched, study, "launched (it never was)")
            launched = self.lifecycle.launch_pending(study)  # same launch: harmless if known
            if launched.ray_job_id != study.ray_job_id:
                return self._did(report.launched, study, "submitted its launch again")
            job_id = launched.ray_job_id
        else:
            job_id = study.ray_job_id
            if job_id is None:
                return  # a driver started by hand: nothing to match
        state = self.launcher.status(job_id) if job_id else None
        if state in ALIVE_JOB_STATES:
            return self._check_placeable(study, report)
        if state is not None and state not in TERMINAL_JOB_STATES:
            return  # a state this pass does not know: never a reason to act
        self._driver_gone(study, job_id, state, report)

    def _driver_gone(
        self, study: StudyInfo, job_id: str | None, state: str | None, report: ReconcileReport
    ) -> None:
        """Its driver ended (or Ray forgot it) and the study is unfinished: launch again, or
        give up after ``max_launch_attempts`` launches."""
        ended = f"its driver's job {job_id} {'is ' + state if state else 'is unknown to Ray'}"
        if study.launch_attempt >= self.max_launch_attempts:
            reason = (
                f"{ended} after {study.launch_attempt} launches (the limit, "
                f"SENSITIVITY_MAX_LAUNCH_ATTEMPTS={self.max_launch_attempts}); "
                "see the job's logs, then resume it"
            )
            with self.store.session() as session:
                done = repository.transition(
                    session, study.id, "failed", sources=(study.status,), error=reason,
                    launch_attempt=study.launch_attempt,
                )  # fmt: skip
            if done is not None:
                self._did(report.failed, study, reason)
            return
        if self.lifecycle.relaunch(study, sources=(study.status,)) is not None:
            self._did(report.resumed, study, f"{ended}: launched again")

    def _check_placeable(self, study: StudyInfo, report: ReconcileReport) -> None:
        """Note why a live study cannot progress when no node can hold one of its trials."""
        capacity = self.launcher.node_capacity()
        if not capacity:
            return
        resources = StudySpec.model_validate(study.spec).resources
        for name, resource in (("cpu", "CPU"), ("gpu", "GPU")):
            wanted, offered = getattr(resources, name), capacity.get(resource, 0.0)
            if wanted > offered:
                reason = (
                    f"resources.{name}: a trial reserves {wanted:g} {resource} but the "
                    f"cluster's largest node has {offered:g}: Tune cannot place its trials"
                )
                with self.store.session() as session:
                    noted = repository.note_study_error(
                        session, study.id, reason, sources=STUDY_UNFINISHED
                    )
                if noted:
                    self._did(report.noted, study, reason)
                return

    @staticmethod
    def _did(bucket: list[str], study: StudyInfo, what: str) -> None:
        bucket.append(study.id)
        log.warning("reconciler: study %s (%s): %s", study.id, study.status, what)


class ReconcilerThread:
    """Runs :meth:`Reconciler.run_once` now and then every ``interval`` seconds in a daemon
    thread until :meth:`stop`; a pass that raises is logged and the next one runs anyway."""

    def __init__(self, reconciler: Reconciler, interval: float) -> None:
        self.reconciler = reconciler
        self.interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                self.reconciler.run_once()
            except Exception:  # the thread must outlive a bad pass (a database hiccup)
                log.exception("reconciler: the pass failed")
            self._stopped.wait(self.interval)
