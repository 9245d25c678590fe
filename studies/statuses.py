"""The statuses of studies and trials, and which study transitions are allowed.

The store enforces :data:`STUDY_TRANSITIONS` in SQL (a compare-and-set on the current status);
:mod:`studies.lifecycle` decides which transition each action (submit, cancel, resume, delete,
a driver's start and end) asks for. See docs/architecture.md, section "The study lifecycle".

==============================  ======================================================
from                            to
==============================  ======================================================
pending                         running, failed, cancelled
running                         succeeded, failed, cancelled, pending (requeue after a crash)
succeeded, failed, cancelled    pending, running — only as a resume
==============================  ======================================================
"""

from typing import Literal, get_args

StudyStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]
STUDY_STATUSES: tuple[StudyStatus, ...] = get_args(StudyStatus)
STUDY_FINISHED: tuple[StudyStatus, ...] = ("succeeded", "failed", "cancelled")

STUDY_TRANSITIONS: dict[StudyStatus, frozenset[StudyStatus]] = {
    "pending": frozenset({"running", "failed", "cancelled"}),
    "running": frozenset({"succeeded", "failed", "cancelled", "pending"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}
RESUME_TARGETS: frozenset[StudyStatus] = frozenset({"pending", "running"})  # from a finished one
# a study that has work left: what the reconciler looks after and the concurrency limit counts
STUDY_UNFINISHED: tuple[StudyStatus, ...] = ("pending", "running")
# what a resume (a new launch) may start from: a finished study, or one whose driver is gone
# (its job has ended while it was pending or running; the lifecycle checks the job first)
RESUME_SOURCES: tuple[StudyStatus, ...] = (*STUDY_FINISHED, "pending", "running")
# what a driver may claim: only a pending study (a launched driver, for its own launch); a driver
# started by hand, which knows no launch, may also take over a running or finished one — never
# a cancelled one (a cancel is final until a resume)
DRIVER_CLAIM_SOURCES: tuple[StudyStatus, ...] = ("pending",)
MANUAL_CLAIM_SOURCES: tuple[StudyStatus, ...] = ("pending", "running", "succeeded", "failed")

TrialStatus = Literal["pending", "running", "completed", "diverged", "failed", "cancelled"]
TRIAL_STATUSES: tuple[TrialStatus, ...] = get_args(TrialStatus)
# a result that a re-run never undoes (a cancelled trial may run again)
TRIAL_FINISHED: tuple[TrialStatus, ...] = ("completed", "diverged", "failed")
