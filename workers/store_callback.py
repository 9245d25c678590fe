"""Driver-side Tune callback and stopper that keep SQL the source of truth.

- ``on_trial_start``: the trial row goes ``running`` with ``attempts += 1`` (created first in a
  search study, whose trials are only known once sampled); for a pack, every member's row;
- ``on_trial_result``: every metric of a report becomes a metric point at the report's step;
  the final report stores the outcome (``completed``/``diverged``/``failed``) idempotently. A
  pack's report is split by member: each member's points and outcome land under its own key,
  and an outcome stored once by this driver is never written again (a pack that Tune restarts
  after a crash trains its finished members again: their repeated reports are dropped);
- ``on_trial_error``: Tune gave up on a trial. One that started more than ``max_failures``
  times crashed through its retries and is stored ``failed`` with the error; one that did not
  was lost to the cluster (its node went away while it was being placed or restarted, a path on
  which Tune does not retry) and goes back to ``pending`` for the driver's next round.

Every outcome stored also writes one progress line to the driver's log (the Ray job's log,
which the dashboard's Jobs tab shows): the trial's key, row, η and seed, its status, its final
objective (or reason) and the study's counts, so the job log reads on its own
(:func:`progress_line`).

``CancelStopper`` asks Tune to stop everything once the study is marked ``cancelled`` in SQL
(checked at most once a second): finished results stay, running trials stop promptly.
"""

import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from ray import tune
from ray.tune.experiment import Trial as TuneTrial

from studies.settings import Settings
from studies.store import Store, repository
from studies.store.read_models import Progress
from studies.trial import Trial, TrialRecord
from workers.trainable import FINAL, PACK

# Tune adds bookkeeping to every result; only these are the trainer's curves.
CURVE_METRICS = (
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_bit_errors",
    "heldout_loss",
    "heldout_bit_errors",
    "lr",
    "step_size_mean",
    "step_capped_fraction",
    "wall_time",
    "epoch",
)

# reported with the final result only (a statistic of the whole run)
FINAL_ONLY_METRICS = ("objective_median", "schedule_ignored")

log = logging.getLogger("workers.progress")


def progress_line(record: TrialRecord, progress: Progress) -> str:
    """One finished trial as a line of the job log, e.g. ``trial 3e75d678f35d9a50 sgd
    η=0.0001 seed=0: completed, objective 1.234e-02 [12/315 finished: 11 completed,
    1 diverged, 0 failed]``."""
    eta = "auto" if record.eta is None else f"{record.eta:g}"
    if record.status == "completed" and record.final_objective is not None:
        outcome = f"objective {record.final_objective:.4g}"
    else:
        outcome = (record.reason or "no reason given").splitlines()[0][:200]
    return (
        f"trial {record.key} {record.optimizer} η={eta} seed={record.seed}: {record.status}, "
        f"{outcome} [{progress.done}/{progress.total} finished: {progress.completed} completed, "
        f"{progress.diverged} diverged, {progress.failed} failed]"
    )


def _log_progress(session: Any, study_id: str, key: str) -> None:
    """Write the progress line of trial ``key``, whose outcome was just stored."""
    record = repository.get_trial(session, study_id, key)
    log.info(progress_line(record, repository.study_progress(session, study_id)))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class _StoreUser:
    """Holds a store: Tune pickles its callbacks and stoppers with the experiment state (in
    its experiment directory, readable wherever Tune's storage is), so neither the engine nor
    the database URL (it may carry a password) is pickled; an unpickled copy reopens the store
    from the driver's own environment (``SENSITIVITY_DATABASE_URL``)."""

    def __init__(self, store: Store) -> None:
        self._store: Store | None = store

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(Settings().resolved_database_url)
        return self._store

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_store": None}


class StoreCallback(_StoreUser, tune.Callback):
    """Writes trial starts, curves and outcomes of one study into the store."""

    def __init__(
        self,
        store: Store,
        study_id: str,
        trial_of: Callable[[dict[str, Any]], Trial | list[Trial]],
        creates_rows: bool = False,
        max_failures: int = 0,
    ) -> None:
        super().__init__(store)
        self.study_id = study_id
        self.trial_of = trial_of  # Tune config -> the trial it runs, or a pack's members
        self.creates_rows = creates_rows  # search studies: rows are made as trials are sampled
        self._trials: dict[str, list[Trial]] = {}  # Tune's trial id -> our trials, made once
        self.max_failures = max_failures  # Tune's retries of a crashed trial
        self.outcomes: dict[str, str] = {}  # key -> status stored by this run ("pending": lost)

    def on_trial_start(self, iteration: int, trials: list, trial: TuneTrial, **info: Any) -> None:
        with self.store.session() as session:
            for ours in self._members(trial):
                if self.outcomes.get(ours.key, "pending") != "pending":
                    continue  # a restarted pack: this member's result is stored already
                if self.creates_rows and not self._exists(session, ours.key):
                    repository.add_trials(session, self.study_id, [ours])
                repository.mark_trial_running(session, self.study_id, ours.key)

    def _members(self, trial: TuneTrial) -> list[Trial]:
        """Our trials of Tune's ``trial`` (built from its config once per Tune trial)."""
        ours = self._trials.get(trial.trial_id)
        if ours is None:
            made = self.trial_of(trial.config)
            ours = self._trials[trial.trial_id] = made if isinstance(made, list) else [made]
        return ours

    def _trial(self, trial: TuneTrial) -> Trial:
        """Our trial of Tune's single-trial ``trial``."""
        return self._members(trial)[0]

    def _exists(self, session: Any, key: str) -> bool:
        try:
            repository.get_trial(session, self.study_id, key)
        except LookupError:
            return False
        return True

    def on_trial_result(
        self, iteration: int, trials: list, trial: TuneTrial, result: dict, **info: Any
    ) -> None:
        if result.get("kind") == PACK:
            members = json.loads(result["members"])
            for key, report in members.items():
                if self.outcomes.get(key, "pending") != "pending":
                    continue  # stored once already (a pack restarted after a crash)
                merged = dict(report.get("progress", {}))
                if "final" in report:
                    merged.update(report["final"], kind=FINAL)
                self._record(key, merged)
            return
        self._record(self._trial(trial).key, result)

    def _record(self, key: str, result: dict) -> None:
        """Store one trial's report: its curve points and, for a final report, its outcome."""
        step = result.get("step")
        points = []
        if isinstance(step, int | float) and not isinstance(step, bool):
            for name in CURVE_METRICS:
                value = _number(result.get(name))
                if value is not None:
                    points.append((int(step), name, value))
        with self.store.session() as session:
            if points:
                repository.record_metric_points(session, self.study_id, key, points)
            if result.get("kind") == FINAL:
                metrics = {
                    name: value
                    for name in (*CURVE_METRICS, *FINAL_ONLY_METRICS, "step")
                    if (value := _number(result.get(name))) is not None
                }
                objective = _number(result.get("final_objective"))
                repository.record_trial_result(
                    session,
                    self.study_id,
                    key,
                    status=result["outcome"],
                    final_objective=objective,
                    metrics=metrics,
                    reason=result.get("reason"),
                )
                self.outcomes[key] = result["outcome"]
                session.flush()
                _log_progress(session, self.study_id, key)

    def on_trial_error(self, iteration: int, trials: list, trial: TuneTrial, **info: Any) -> None:
        reason = _error_text(trial)
        for ours in self._members(trial):
            if self.outcomes.get(ours.key, "pending") == "pending":
                self._give_up(ours.key, reason)

    def _give_up(self, key: str, reason: str) -> None:
        """Tune ended the trial ``key`` without its outcome: failed after its retries, or back
        to pending when the cluster lost it."""
        with self.store.session() as session:
            try:
                stored = repository.get_trial(session, self.study_id, key)
            except LookupError:  # a search sample lost before it started: no row, draw anew
                return
            if stored.attempts > self.max_failures:
                repository.record_trial_result(
                    session, self.study_id, key, status="failed", reason=reason
                )
                self.outcomes[key] = "failed"
                session.flush()
                _log_progress(session, self.study_id, key)
            else:
                repository.requeue_trial(
                    session, self.study_id, key, reason=f"lost to the cluster: {reason}"
                )
                self.outcomes[key] = "pending"


def _error_text(trial: TuneTrial) -> str:
    """The last line of the trial's error (its exception), bounded in length."""
    message = getattr(trial, "error_msg", None)
    if not message and getattr(trial, "error_file", None):
        try:
            with open(trial.error_file, encoding="utf-8", errors="replace") as handle:
                message = handle.read()
        except OSError:
            message = None
    lines = [line for line in (message or "the trial's process failed").splitlines() if line]
    return lines[-1][:2000] if lines else "the trial's process failed"


class CancelStopper(_StoreUser, tune.Stopper):
    """Stops the whole Tune run once the study is ``cancelled`` in SQL."""

    def __init__(self, store: Store, study_id: str, every: float = 1.0) -> None:
        super().__init__(store)
        self.study_id = study_id
        self.every = every
        self._checked = -math.inf
        self._cancelled = False

    def __call__(self, trial_id: str, result: dict) -> bool:
        return self.stop_all()

    def stop_all(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._checked >= self.every:
            self._checked = now
            with self.store.session() as session:
                self._cancelled = repository.get_study(session, self.study_id).status == "cancelled"
        return self._cancelled
