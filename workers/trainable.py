"""The Ray Tune trainable: one Tune trial = one trial (``run_trial``) or one pack of trials
(:mod:`workers.packed_trainer`) inside a Tune actor.

Tune passes ``{"trial": Trial.to_json()}`` or, for a pack, ``{"trial": [Trial.to_json(), …]}``
(grid studies), or the sampled values (search studies, whose ``SampledTrials`` makes the trial).
Progress reports carry the trainer's metrics; the last report (``"kind": "final"``) carries the
outcome. A pack sends one ``"kind": "pack"`` report per reporting point whose ``members`` field
(a JSON string, so Tune's loggers keep one column) maps each member's key to its progress
metrics and, for members that ended there, its outcome. A configuration that cannot run (a
missing data set, a bad option) is reported as a ``failed`` outcome instead of raising, so Tune
does not retry what can never succeed; a crash of the process is retried by Tune
(``FailureConfig``).

**Checkpoints** (docs/architecture.md, "Checkpoints"). A single trial checkpoints its training
state every ``checkpoint_every`` reports (:mod:`workers.checkpoints`): the report is sent with
``tune.report(metrics, checkpoint=Checkpoint.from_directory(...))``. On start it continues from
``tune.get_checkpoint()`` — Tune's retry of a trial whose worker or node died — or else from
``resume_from[key]``, the latest checkpoint a dead driver's run left of this trial (the driver
finds them). Continued after a driver's death, it first sends the checkpoint's reports again:
the dead driver may not have stored the last ones, and storing a point again is harmless (the
store keeps one value per trial, step and metric). An unreadable checkpoint is logged and the
trial starts from the beginning. A continued run's progress reports carry ``resumed_from_epoch``
and ``resumed_from_step`` (in Tune's results only; the store keeps the curves).

A **pack** checkpoints the same way, one state per member still training in one Tune checkpoint
(:func:`workers.checkpoints.write_pack_checkpoint`). Tune's retry continues the members of that
checkpoint (the ones that had ended before it are not trained again); a pack that a new driver
planned continues from ``resume_from`` when every member has a pack-member checkpoint there
(:func:`workers.packing.plan_packs` groups them by the point their checkpoints were taken at),
and otherwise, or when the states do not fit together, trains from the start.
"""

import json
import logging
import math
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from ray import tune

from optim.exceptions import OptimError
from studies.trial import Trial
from workers.checkpoints import (
    PACK_MEMBER,
    member_directory,
    read_checkpoint,
    write_checkpoint,
    write_pack_checkpoint,
)
from workers.exceptions import CheckpointError, TaskConfigError
from workers.packed_trainer import PackedRun
from workers.trainer import Checkpointing, TrialResult, run_trial

TrialSource = Callable[[dict[str, Any]], Trial]  # Tune config -> the trial it runs
log = logging.getLogger("workers.trainable")
FINAL = "final"
PROGRESS = "progress"
PACK = "pack"


def grid_trial(config: dict[str, Any]) -> Trial:
    """The trial of a grid study's Tune config (``{"trial": Trial.to_json()}``)."""
    return Trial.from_json(config["trial"])


def grid_trials(config: dict[str, Any]) -> list[Trial]:
    """The trials of a grid study's Tune config: one, or the members of a pack."""
    value = config["trial"]
    if isinstance(value, list):
        return [Trial.from_json(item) for item in value]
    return [Trial.from_json(value)]


def final_fields(result: TrialResult) -> dict[str, Any]:
    """A trial's outcome as the fields of its final report."""
    final = result.to_dict()
    return {
        **{k: v for k, v in final["metrics"].items() if v is not None},
        "outcome": result.status,
        "final_objective": final["final_objective"],
        "reason": result.reason,
    }


def train_pack(
    trials: list[Trial],
    checkpoint_every: int = 0,
    resume_from: Mapping[str, str] | None = None,
    compile: bool = False,
) -> None:
    """Train a pack and send its reports, checkpointing and continuing as the module docstring
    says (``compile``: :mod:`workers.compiled_unroll`)."""
    states, earlier_run = restored_pack_states(trials, resume_from or {})
    resumed: dict[str, Any] = {}

    def send(
        progress: dict[str, dict[str, float]],
        finals: dict[str, TrialResult],
        checkpoint: tune.Checkpoint | None = None,
    ) -> None:
        members = {
            key: {
                "progress": metrics,
                **({"final": final_fields(finals[key])} if key in finals else {}),
            }
            for key, metrics in progress.items()
        }
        for key in finals.keys() - progress.keys():
            members[key] = {"final": final_fields(finals[key])}
        running = [m["train_loss"] for m in progress.values() if "train_loss" in m]
        metrics = {
            "kind": PACK,
            "members": json.dumps(members, allow_nan=True),
            "objective": min(running) if running else math.inf,
            **resumed,
        }
        tune.report(metrics, checkpoint=checkpoint)

    def report(progress: dict[str, dict[str, float]], finals: dict[str, TrialResult]) -> None:
        send(progress, finals)

    def save(progress: dict[str, dict[str, float]], member_states: dict[str, Any]) -> None:
        # Tune copies the directory into the trial's storage before report returns
        with tempfile.TemporaryDirectory(prefix="sensitivity-checkpoint-") as directory:
            write_pack_checkpoint(directory, member_states)
            send(progress, {}, tune.Checkpoint.from_directory(directory))

    checkpointing = Checkpointing(checkpoint_every, save) if checkpoint_every > 0 else None
    try:
        if states is not None:  # Tune's retry: the members that ended before it are done
            trials = [t for t in trials if t.key in states]
        run = PackedRun(trials, report, checkpointing, compile)
        if states is not None:
            try:
                run.load_member_states(states)
            except CheckpointError as error:
                log.warning("pack of %d: %s; training from the start", len(trials), error)
                states, run = None, PackedRun(trials, report, checkpointing, compile)
        if states is not None:
            first = next(iter(states.values()))
            resumed.update(resumed_from_epoch=first["epochs"], resumed_from_step=first["steps"])
            log.info("pack of %d: continuing from the checkpoint at step %d (epoch %d)",
                     len(trials), first["steps"], first["epochs"])  # fmt: skip
            if earlier_run:  # the dead driver may not have stored the last reports
                for point in range(len(first["curve"])):
                    report({key: state["curve"][point] for key, state in states.items()}, {})
        run.run()
    except (TaskConfigError, OptimError, FileNotFoundError) as error:
        failed = {"outcome": "failed", "reason": str(error)}
        tune.report(
            {
                "kind": PACK,
                "members": json.dumps({t.key: {"final": failed} for t in trials}),
                "objective": math.inf,
            }
        )


def restored_pack_states(
    trials: list[Trial], resume_from: Mapping[str, str]
) -> tuple[dict[str, dict[str, Any]] | None, bool]:
    """The member states a pack continues from (trial key → state), and whether they come from
    a dead driver's run (``resume_from``: every member must have one) rather than from Tune's
    retry of this pack (``tune.get_checkpoint()``: the members still training at it)."""
    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                states = {
                    t.key: read_checkpoint(member_directory(directory, t.key), t.key, PACK_MEMBER)
                    for t in trials
                    if member_directory(directory, t.key).is_dir()
                }
            return states or None, False
        found = [t.key for t in trials if t.key in resume_from]
        if not found:
            return None, False
        if len(found) < len(trials):
            log.warning("pack of %d: only %d members have a checkpoint; training from the start",
                        len(trials), len(found))  # fmt: skip
            return None, False
        states = {key: read_checkpoint(resume_from[key], key, PACK_MEMBER) for key in found}
    except CheckpointError as error:
        log.warning("pack of %d: %s; training from the start", len(trials), error)
        return None, False
    return states, True


def objective_for_search(status: str, value: float | None) -> float:
    """What the Optuna searcher minimises: the objective, or +inf for a run without one."""
    return (
        value if status == "completed" and value is not None and math.isfinite(value) else math.inf
    )


def restored_state(key: str, resume_from: Mapping[str, str]) -> tuple[dict[str, Any] | None, bool]:
    """The training state trial ``key`` continues from, and whether it comes from a dead
    driver's run (``resume_from``) rather than from Tune's retry (``tune.get_checkpoint()``)."""
    checkpoint = tune.get_checkpoint()
    earlier_run = checkpoint is None and key in resume_from
    if earlier_run:
        checkpoint = tune.Checkpoint(resume_from[key])
    if checkpoint is None:
        return None, False
    try:
        with checkpoint.as_directory() as directory:
            state = read_checkpoint(directory, key)
    except CheckpointError as error:
        log.warning("trial %s: %s; training from the start", key, error)
        return None, False
    log.info("trial %s: continuing from the checkpoint at step %d (epoch %d)", key,
             state["steps"], state["epochs"])  # fmt: skip
    return state, earlier_run


def train(
    config: dict[str, Any],
    trial_of: TrialSource = grid_trial,
    checkpoint_every: int = 0,
    resume_from: Mapping[str, str] | None = None,
    compile: bool = False,
) -> None:
    """Run the trial of Tune's ``config`` and report to Tune (a search passes its
    :class:`~workers.search.SampledTrials` as ``trial_of`` via ``tune.with_parameters``; the
    driver passes the checkpoint cadence, the checkpoints of its trials and whether packs
    compile the same way)."""
    if isinstance(config.get("trial"), list):
        train_pack(grid_trials(config), checkpoint_every, resume_from, compile)
        return
    trial = trial_of(config)
    key = trial.key

    state, earlier_run = restored_state(key, resume_from or {})
    # Tune's results (not the store) of a continued run say where it continued from
    resumed = (
        {} if state is None
        else {"resumed_from_epoch": state["epochs"], "resumed_from_step": state["steps"]}
    )  # fmt: skip

    def progress(metrics: dict[str, float]) -> dict[str, Any]:
        # Tune insists that every result carries the searcher's metric: the running loss here
        running = metrics.get("train_loss", math.inf)
        return {**metrics, **resumed, "kind": PROGRESS, "key": key, "objective": running}

    def report(metrics: dict[str, float]) -> None:
        tune.report(progress(metrics))

    def save(metrics: dict[str, float], current: dict[str, Any]) -> None:
        # Tune copies the directory into the trial's storage before report returns
        with tempfile.TemporaryDirectory(prefix="sensitivity-checkpoint-") as directory:
            write_checkpoint(directory, key, current)
            tune.report(progress(metrics), checkpoint=tune.Checkpoint.from_directory(directory))

    if state is not None and earlier_run:
        for metrics in state["curve"]:
            report(metrics)
    checkpointing = Checkpointing(checkpoint_every, save) if checkpoint_every > 0 else None
    try:
        result = run_trial(trial.config, report, checkpointing=checkpointing, resume=state)
    except (TaskConfigError, OptimError, FileNotFoundError) as error:
        tune.report({"kind": FINAL, "key": key, "outcome": "failed", "reason": str(error),
                     "objective": math.inf})  # fmt: skip
        return
    tune.report(
        {
            **final_fields(result),
            "kind": FINAL,
            "key": key,
            "objective": objective_for_search(result.status, result.final_objective),
        }
    )
