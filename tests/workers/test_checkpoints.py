"""Checkpoints of long trials: a run stopped after k epochs and continued from its checkpoint in
a fresh state ends bit for bit where the uninterrupted run ends (parameters, optimizer state,
objective, curve); and, end to end on a real Ray head, a trial whose worker is killed after a
checkpoint resumes from it instead of from epoch 1."""

import math
import multiprocessing
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from studies.trial import TrialConfig
from workers.checkpoints import (
    latest_checkpoints,
    read_checkpoint,
    remove_checkpoints,
    write_checkpoint,
)
from workers.exceptions import CheckpointError
from workers.trainer import Checkpointing, TrainingRun, TrialResult

KEY = "0123456789abcdef"
MF = {"task": "matrix-factorisation", "task_options": {"rank": 4, "n_samples": 200},
      "batch_size": 16, "budget": 6, "device": "cpu"}  # fmt: skip
RBF = {"task": "rbf-classification", "batch_size": 20, "budget": 5, "device": "cpu"}
DIGITS_CNN = {"task": "digits", "task_options": {"model": "cnn"}, "batch_size": 128,
              "budget": 3, "device": "cpu"}  # fmt: skip
DNC = {"task": "dnc-copy", "batch_size": 4, "budget": 24, "report_every": 4, "device": "cpu"}
MULTISTEP = {"kind": "multistep", "milestones": [2, 4], "factor": 0.5}
WARMUP_COSINE = {"kind": "warmup", "length": 2, "then": {"kind": "cosine"}}


# ------------------------------------------------------------------------------------ helpers


def without_wall_time(reports: list[dict[str, float]]) -> list[dict[str, float]]:
    """The reports as a resumed run must repeat them exactly (only the clock differs)."""
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in reports]


def run_saving(config: dict, every: int, directory: Path) -> tuple[TrainingRun, TrialResult, list]:
    """Train ``config`` to the end, writing a checkpoint every ``every`` reports into
    ``directory/ckpt-<n>``; returns the run, its result and every report in order."""
    reports: list[dict[str, float]] = []

    def save(metrics: dict[str, float], state: dict[str, Any]) -> None:
        reports.append(metrics)
        target = directory / f"ckpt-{len(reports)}"
        target.mkdir(parents=True)
        write_checkpoint(target, KEY, state)

    run = TrainingRun(
        TrialConfig.model_validate(config), reports.append, Checkpointing(every, save)
    )
    return run, run.run(), reports


def scramble_process_state() -> None:
    """What a fresh worker process has instead of the dead one's random states."""
    random.seed(987654)
    np.random.seed(987654)
    torch.manual_seed(987654)
    torch.rand(17)


def resume(config: dict, checkpoint: Path) -> tuple[TrainingRun, TrialResult, list]:
    """A new run of ``config`` continued from ``checkpoint`` to its end."""
    scramble_process_state()
    reports: list[dict[str, float]] = []
    run = TrainingRun(TrialConfig.model_validate(config), reports.append)
    run.load_state_dict(read_checkpoint(checkpoint, KEY))
    return run, run.run(), reports


def assert_same_tensors(a: Any, b: Any, where: str = "") -> None:
    """Nested state dicts equal exactly (tensors bit for bit, numbers and lists equal)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        # bit for bit, NaN where NaN (AALIG's epoch buffers are NaN for unseen samples)
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=where)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_resumed_run_is_exact(config: dict, every: int, at: int, tmp_path: Path) -> None:
    """Uninterrupted vs resumed after the ``at``-th report (a checkpoint): the same end."""
    full_run, full, full_reports = run_saving(config, every, tmp_path)
    assert full.status == "completed" and full.final_objective is not None
    run, result, reports = resume(config, tmp_path / f"ckpt-{at}")
    assert result.final_objective == full.final_objective  # exactly, not approximately
    assert (result.steps, result.epochs, result.status) == (full.steps, full.epochs, full.status)
    assert without_wall_time(reports) == without_wall_time(full_reports[at:])
    assert without_wall_time(run.curve) == without_wall_time(full_run.curve)
    assert_same_tensors(run.model.state_dict(), full_run.model.state_dict(), "model")
    assert_same_tensors(run.optimizer.state_dict(), full_run.optimizer.state_dict(), "optimizer")
    if full_run.scheduler is not None:
        assert run.scheduler.state_dict() == full_run.scheduler.state_dict()
    # the clock continues from the checkpoint's: the resumed curve's time never goes back
    assert reports[0]["wall_time"] >= full_reports[at - 1]["wall_time"]


# ------------------------------------------------------------- (a) exact resume, no Ray at all


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("sgd-multistep", {**MF, "optimizer": "sgd", "eta": 0.02, "schedule": MULTISTEP,
                           "optimizer_options": {"momentum": 0.9}}),
        ("adam", {**MF, "optimizer": "adam", "eta": 0.01}),
        ("adam-warmup-cosine", {**MF, "optimizer": "adam", "eta": 0.01,
                                "schedule": WARMUP_COSINE}),
        ("alig", {**MF, "optimizer": "alig", "eta": 0.5, "optimizer_options": {"momentum": 0.9}}),
        ("alig-radius", {**RBF, "optimizer": "alig", "eta": 1.0, "radius": 5.0}),
        ("aalig", {**MF, "optimizer": "aalig", "eta": 0.5,
                   "optimizer_options": {"sections": 3}}),
        ("l4adam", {**MF, "optimizer": "l4adam", "eta": 0.15}),
        ("sps", {**RBF, "optimizer": "sps", "eta": 0.5}),
        ("sgd-weight-decay-cnn", {**DIGITS_CNN, "optimizer": "sgd", "eta": 0.05,
                                  "weight_decay": 1e-3}),
    ],
)  # fmt: skip
def test_epoch_trial_resumed_from_a_checkpoint_ends_bit_for_bit_like_the_whole_run(
    tmp_path: Path, name: str, config: dict
) -> None:
    at = 2 if config["budget"] > 3 else 1
    assert_resumed_run_is_exact(config, every=1, at=at, tmp_path=tmp_path)


def test_aalig_resumes_across_a_section_end_with_its_aovs(tmp_path: Path) -> None:
    """AALIG's AOVs move at the section ends (epochs 2, 4, 6 of 6 with 3 sections): a
    checkpoint after epoch 3 holds AOVs already raised once and continues them exactly."""
    config = {**MF, "optimizer": "aalig", "eta": 0.5, "optimizer_options": {"sections": 3}}
    full_run, _, _ = run_saving(config, 3, tmp_path)
    state = read_checkpoint(tmp_path / "ckpt-3", KEY)
    aov = state["optimizer"]["aalig"]["aov"]
    assert state["epochs"] == 3 and not torch.all(aov == 0.0)  # raised at the end of epoch 2
    run, _, _ = resume(config, tmp_path / "ckpt-3")
    assert torch.equal(run.optimizer.aov, full_run.optimizer.aov)
    assert run.optimizer.epoch == full_run.optimizer.epoch == 6


def test_checkpoints_come_every_n_epochs_and_a_late_one_resumes_to_the_same_end(
    tmp_path: Path,
) -> None:
    config = {**MF, "optimizer": "sgd", "eta": 0.02, "schedule": MULTISTEP}
    _, full, reports = run_saving(config, 2, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-2", "ckpt-4", "ckpt-6"]
    assert [r["epoch"] for r in reports] == [1, 2, 3, 4, 5, 6]
    assert read_checkpoint(tmp_path / "ckpt-4", KEY)["epochs"] == 4
    # a checkpoint at the very end (epoch 6 of 6: the worker died before its final report)
    _, result, after = resume(config, tmp_path / "ckpt-6")
    assert after == [] and result.final_objective == full.final_objective
    assert result.metrics == full.metrics == reports[-1]


def test_step_budget_dnc_resumes_its_stream_exactly(tmp_path: Path) -> None:
    """Step budgets checkpoint every N reports; the DNC's sequences come from the generator
    batch by batch, so a resumed stream is the uninterrupted one's continuation."""
    config = {**DNC, "optimizer": "rmsprop-tf", "eta": 1e-3}
    full_run, full, full_reports = run_saving(config, 2, tmp_path)
    assert [r["step"] for r in full_reports] == [4, 8, 12, 16, 20, 24]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-2", "ckpt-4", "ckpt-6"]
    run, result, reports = resume(config, tmp_path / "ckpt-2")
    assert result.final_objective == full.final_objective
    assert result.metrics["objective_median"] == full.metrics["objective_median"]
    assert without_wall_time(reports) == without_wall_time(full_reports[2:])
    assert_same_tensors(run.model.state_dict(), full_run.model.state_dict(), "model")


def test_a_diverging_report_carries_no_checkpoint(tmp_path: Path) -> None:
    config = {**MF, "optimizer": "sgd", "eta": 1e4}
    _, result, reports = run_saving(config, 1, tmp_path)
    assert result.status == "diverged" and len(reports) == 1
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def _resume_in_a_new_process(config: dict, checkpoint: str) -> dict[str, Any]:
    """Run in a spawned interpreter: nothing of the parent's state but the files."""
    run, result, _ = resume(config, Path(checkpoint))
    return {
        "objective": result.final_objective,
        "params": [p.detach().clone() for p in run.model.parameters()],
        "aov": run.optimizer.aov,
    }


def test_aalig_resumed_in_a_new_process_ends_like_the_whole_run(tmp_path: Path) -> None:
    config = {**MF, "optimizer": "aalig", "eta": 0.5, "optimizer_options": {"sections": 3}}
    full_run, full, _ = run_saving(config, 1, tmp_path)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        resumed = pool.apply(_resume_in_a_new_process, (config, str(tmp_path / "ckpt-2")))
    assert resumed["objective"] == full.final_objective
    for mine, theirs in zip(full_run.model.parameters(), resumed["params"], strict=True):
        assert torch.equal(mine.detach(), theirs)
    assert torch.equal(resumed["aov"], full_run.optimizer.aov)


def test_image_task_with_dropout_augmentation_and_batch_norm_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropout draws from torch's global generator, the crops and flips from the trial's,
    batch norm keeps running statistics in buffers: all of them are in the checkpoint."""
    from tests.workers.fake_datasets import use_datasets_dir, write_dataset

    datasets = use_datasets_dir(monkeypatch, tmp_path / "datasets")
    write_dataset(monkeypatch, datasets, "cifar10", 24, 8, trusted=True)
    config = {"task": "cifar10", "task_options": {"model": "wrn-16-4", "dropout": 0.3},
              "batch_size": 8, "budget": 3, "device": "cpu", "optimizer": "sgd", "eta": 0.05,
              "optimizer_options": {"momentum": 0.9},
              "schedule": {"kind": "multistep", "milestones": [2]}}  # fmt: skip
    assert_resumed_run_is_exact(config, every=1, at=1, tmp_path=tmp_path / "ckpt")


# --------------------------------------------------------------------- files and their lookup


def test_a_checkpoint_of_another_trial_or_format_is_refused(tmp_path: Path) -> None:
    config = {**MF, "optimizer": "sgd", "eta": 0.02, "budget": 1}
    run_saving(config, 1, tmp_path)
    with pytest.raises(CheckpointError, match="belongs to trial"):
        read_checkpoint(tmp_path / "ckpt-1", "another-key")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(tmp_path / "nowhere", KEY)
    torch.save({"version": 99, "key": KEY, "state": {}}, tmp_path / "ckpt-1" / "state.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        read_checkpoint(tmp_path / "ckpt-1", KEY)


def test_latest_checkpoint_per_trial_and_removal(tmp_path: Path) -> None:
    """The layout Tune makes: <experiment>/<trial dir>/checkpoint_<n>; two Tune trials of one
    key (a run and its re-run after a driver died), and another key."""
    state = {"epochs": 0, "steps": 0, "curve": []}

    def put(trial_dir: str, n: int, key: str, epochs: int) -> Path:
        directory = tmp_path / "study-1" / trial_dir / f"checkpoint_{n:06d}"
        directory.mkdir(parents=True)
        write_checkpoint(directory, key, {**state, "epochs": epochs, "steps": 10 * epochs,
                                          "curve": [{}] * epochs})  # fmt: skip
        return directory

    put("train_a", 0, "k1", 1)
    put("train_a", 1, "k1", 2)
    later = put("train_b", 0, "k1", 4)  # the re-run got further
    other = put("train_c", 0, "k2", 3)
    (tmp_path / "study-1" / "train_d" / "checkpoint_000000").mkdir(parents=True)  # no files yet
    # the worker died with its driver while Tune copied this one: its state.pt is short
    cut = put("train_c", 1, "k2", 5) / "state.pt"
    cut.write_bytes(cut.read_bytes()[:-10])
    found = latest_checkpoints([tmp_path / "study-1", tmp_path / "study-1-0"])
    assert found == {"k1": str(later), "k2": str(other)}
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(cut.parent, "k2")
    assert remove_checkpoints([tmp_path / "study-1"], {"k1"}) == 3
    assert latest_checkpoints([tmp_path / "study-1"]) == {"k2": str(other)}
    assert remove_checkpoints([tmp_path / "study-1"], {"k2"}) == 2  # the short copy too
    assert not cut.parent.exists() and latest_checkpoints([tmp_path / "study-1"]) == {}


# ------------------------------------- (b) end to end: a trial killed after a checkpoint resumes

# one epoch-budget trial of about a second per epoch on a loaded 2-core machine: 8 epochs,
# 1,000 steps each (8,000 training samples, batch 8), with a multistep schedule to carry over
E2E = {
    "task": "matrix-factorisation",
    "task_options": {"rank": 4, "n_samples": 10_000},
    "optimizers": [{"name": "sgd", "options": {"momentum": 0.9}}],
    "grid": {"eta": [0.005], "batch_size": [8], "seed": [0]},
    "budget": {"epochs": 8},
    "schedule": {"kind": "multistep", "milestones": [3, 6], "factor": 0.5},
    "device": "cpu",
    "max_failures": 2,
    "execution": {"packing": "off", "checkpoint_every": 1},
}
# the same as one pack of three members (two optimizers, two seeds; every CPU of the test
# head per Tune trial, so the driver plans a single pack)
E2E_PACKED = {
    **E2E,
    "optimizers": [{"name": "sgd", "options": {"momentum": 0.9}}, "alig"],
    "grid": {"eta": [0.005], "batch_size": [8], "seed": [0, 1]},
    "resources": {"cpu": 2},
    "execution": {"packing": "auto", "checkpoint_every": 1},
}
STEPS_PER_EPOCH = 1000


def tune_results(experiment: Path) -> dict[str, list[dict[str, Any]]]:
    """Each trial's progress reports as Tune recorded them (every Tune trial directory of the
    experiment, in order), a pack's split by member; Tune adds the reporting worker's ``pid``,
    and a continued run's reports carry ``resumed_from_epoch`` / ``resumed_from_step``."""
    import json

    rows: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(experiment.glob("*/result.json"), key=lambda p: p.stat().st_mtime):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("kind") == "progress":
                rows.setdefault(row["key"], []).append(row)
            elif row.get("kind") == "pack":
                extra = {k: row[k] for k in ("pid", "resumed_from_epoch", "resumed_from_step")
                         if k in row}  # fmt: skip
                for key, member in json.loads(row["members"]).items():
                    if "progress" in member:
                        rows.setdefault(key, []).append({**member["progress"], **extra})
    return rows


def uninterrupted(records) -> dict[str, tuple[float | None, list[dict[str, float]]]]:
    """The trials run here without interruption, as the driver ran them (alone, or as one
    pack): each key's final objective and reports."""
    from workers.packed_trainer import PackedRun
    from workers.trainer import run_trial

    if len(records) == 1:
        reports: list[dict[str, float]] = []
        alone = run_trial(records[0].config, reports.append)
        return {records[0].key: (alone.final_objective, reports)}
    curves: dict[str, list[dict[str, float]]] = {r.key: [] for r in records}
    finals: dict[str, Any] = {}

    def report(progress, ended) -> None:
        for key, metrics in progress.items():
            curves[key].append(metrics)
        finals.update(ended)

    PackedRun([r.trial for r in records], report).run()
    return {key: (finals[key].final_objective, curves[key]) for key in curves}


@pytest.mark.slow
@pytest.mark.parametrize("packing", ["off", "auto"])
@pytest.mark.parametrize("kill", ["trial worker", "driver"])
def test_trial_killed_after_a_checkpoint_resumes_from_it_and_ends_like_an_uninterrupted_run(
    tmp_path: Path, ray_head, kill: str, packing: str
) -> None:
    from studies.settings import Settings
    from studies.store import Store, repository
    from tests.ray_cluster import driver_env, start_driver
    from tests.workers.test_execution import _descends_from, create, run_to_end, wait_until
    from workers.launcher import RayJobLauncher

    url = f"sqlite:///{tmp_path / 'studies.sqlite'}"
    store = Store(url)
    store.upgrade()
    storage = tmp_path / "ray_results"
    env_vars = driver_env(url, storage, ray_head)
    study_id = create(store, E2E if packing == "off" else E2E_PACKED, name="checkpointed")
    with store.session() as session:
        records = repository.trial_records(session, study_id)
    assert len(records) == (1 if packing == "off" else 4)

    def epochs_stored() -> int:
        with store.session() as session:
            return min(
                len(repository.metric_curve(session, study_id, r.key, "train_loss"))
                for r in records
            )

    started = time.monotonic()
    driver = start_driver(study_id, env_vars, tmp_path / "driver1.log")
    try:
        assert wait_until(lambda: epochs_stored() >= 2, timeout=240, every=0.1), (
            tmp_path / "driver1.log"
        ).read_text()
        if kill == "driver":
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        else:
            found = subprocess.run(["pgrep", "-f", "ray::ImplicitFunc|ray::train"],
                                   capture_output=True, text=True).stdout.split()  # fmt: skip
            victims = [pid for pid in found if _descends_from(int(pid), ray_head._process.pid)]
            assert victims, "no trial worker process of this study found"
            os.kill(int(victims[0]), signal.SIGKILL)
        stored_at_kill = epochs_stored()
        if kill == "driver":
            code = run_to_end(study_id, env_vars, tmp_path / "driver2.log", timeout=360)
        else:
            code = driver.wait(360)
        assert code == 0, (tmp_path / "driver1.log").read_text()
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    study_wall = time.monotonic() - started

    logs = "\n".join(p.read_text()[-4000:] for p in sorted(tmp_path.glob("driver*.log")))
    if packing == "auto":
        assert "1 packs of [4] members" in (tmp_path / "driver1.log").read_text(), logs
    # where the second run started: Tune's results of the continued run say so
    results = tune_results(storage / f"study-{study_id}")
    t0 = time.perf_counter()
    expected = uninterrupted(records)
    alone_wall = time.perf_counter() - t0
    with store.session() as session:
        rows = {r.key: r for r in repository.trial_records(session, study_id)}
        curves = {
            key: repository.metric_curve(session, study_id, key, "train_loss") for key in rows
        }
        study = repository.get_study(session, study_id)
    resumed_epochs = set()
    for record in records:
        key = record.key
        before = [r for r in results.get(key, []) if "resumed_from_epoch" not in r]
        after = [r for r in results.get(key, []) if "resumed_from_epoch" in r]
        # Tune's JSON logger runs in the driver and buffers: a SIGKILLed driver may not have
        # written its results, so the store (which got them through the callback) says what
        # the first run did; a driver that survives (the worker-kill case) has them all
        assert after, f"{results}\n{sorted(storage.rglob('checkpoint_*'))}\n{logs}"
        assert before or kill == "driver", f"{results}\n{logs}"
        resumed_from = after[0]["resumed_from_epoch"]
        assert resumed_from >= 2
        assert after[0]["resumed_from_step"] == resumed_from * STEPS_PER_EPOCH
        replayed = [r for r in after if r["epoch"] <= resumed_from]
        trained = [r for r in after if r["epoch"] > resumed_from]
        # Tune's retry reports from the checkpoint on; a new driver first sends the
        # checkpoint's reports again (the dead one may not have stored the last), then trains
        assert [r["epoch"] for r in replayed] == (list(range(1, resumed_from + 1))
                                                  if kill == "driver" else [])  # fmt: skip
        assert [r["epoch"] for r in trained] == list(range(resumed_from + 1, 9))
        assert {r["pid"] for r in after}.isdisjoint({r["pid"] for r in before})
        epochs_before_kill = max([stored_at_kill, *(r["epoch"] for r in before)])
        assert 0 <= epochs_before_kill - resumed_from <= 2
        resumed_epochs.add(resumed_from)

        # the same trial uninterrupted, in this process: the same end, exactly
        objective, reports = expected[key]
        row = rows[key]
        assert row.status == "completed" and row.attempts == 2
        assert row.final_objective == objective
        # the stored curve: one point per epoch, none lost before the checkpoint, none twice
        assert [p.step for p in curves[key]] == [STEPS_PER_EPOCH * e for e in range(1, 9)]
        assert [p.value for p in curves[key]] == [r["train_loss"] for r in reports]
        if "lr" in reports[0]:
            assert [r["lr"] for r in trained] == [r["lr"] for r in reports[resumed_from:]]
    assert len(resumed_epochs) == 1  # a pack's members continued together
    print(f"\n{packing} / {kill}: resumed from epoch {resumed_epochs.pop()}, study wall "
          f"{study_wall:.1f} s, uninterrupted here {alone_wall:.1f} s")  # fmt: skip

    # the finished trials' checkpoints are gone; deleting the study removes Tune's directory
    assert latest_checkpoints([storage / f"study-{study_id}"]) == {}
    assert not list((storage / f"study-{study_id}").glob("*/checkpoint_*"))
    assert (storage / f"study-{study_id}").is_dir()
    RayJobLauncher(ray_head.dashboard_url, Settings(database_url=url, storage_path=storage)).forget(
        study
    )
    assert not (storage / f"study-{study_id}").exists()
    store.dispose()
