"""Studies run on a real local Ray (head + dashboard + Jobs API): results land in SQL exactly once,
crashes and cancels lose nothing."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from studies.settings import Settings
from studies.spec import expand_grid, parse_spec
from studies.store import Store, repository
from tests.postgres import free_port
from tests.ray_cluster import driver_env, start_driver
from workers.launcher import RayJobLauncher, driver_environment

pytestmark = pytest.mark.slow

GRID = {
    "task": "matrix-factorisation",
    "task_options": {"rank": "true-model", "n_samples": 160, "val_fraction": 0.2},
    "optimizers": ["alig", "sgd"],
    "grid": {"eta": [0.1, 1.0, 1e4], "batch_size": [32], "seed": [0, 1]},
    "budget": {"epochs": 2},
    "device": "cpu",
    "max_failures": 2,
}
# ~60 ms per step: a few seconds per trial, time to kill or cancel in the middle
SLOW = {
    "task": "dnc-copy",
    "optimizers": ["alig", "sgd"],
    "grid": {"eta": [0.1, 1.0], "batch_size": [4], "seed": [0, 1, 2]},
    "budget": {"steps": 60},
    "device": "cpu",
    "max_failures": 3,
}
SEARCH = {
    "task": "matrix-factorisation",
    "task_options": {"rank": "true-model", "n_samples": 160, "val_fraction": 0.2},
    "optimizers": ["sgd"],
    "search": {"sampler": "tpe", "n_trials": 5, "eta": {"low": 1e-3, "high": 1.0}, "seed": 1},
    "budget": {"epochs": 1},
    "device": "cpu",
}


@pytest.fixture
def env(tmp_path: Path, ray_head):
    url = f"sqlite:///{tmp_path / 'studies.sqlite'}"
    store = Store(url)
    store.upgrade()
    yield store, driver_env(url, tmp_path / "ray_results", ray_head), tmp_path
    store.dispose()


def create(store: Store, spec_json: dict, name: str = "study") -> str:
    """Store the study; a grid study with its trials, a search study with none yet."""
    spec = parse_spec(spec_json)
    with store.session() as session:
        study, _ = repository.create_study(
            session, name=name, task=spec.task, spec=spec.model_dump(mode="json", by_alias=True),
            trials=expand_grid(spec) if spec.grid is not None else [],
        )  # fmt: skip
    return study.id


def wait_until(predicate, timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def progress(store: Store, study_id: str):
    with store.session() as session:
        return repository.study_progress(session, study_id)


def trials(store: Store, study_id: str):
    with store.session() as session:
        return {t.key: t for t in repository.list_trials(session, study_id, limit=500).items}


def run_to_end(study_id: str, env_vars: dict, log: Path, timeout: float = 240) -> int:
    process = start_driver(study_id, env_vars, log)
    try:
        return process.wait(timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def test_grid_study_runs_end_to_end_through_the_entrypoint(env):
    store, env_vars, tmp = env
    study_id = create(store, GRID)
    assert run_to_end(study_id, env_vars, tmp / "driver.log") == 0, (tmp / "driver.log").read_text()
    with store.session() as session:
        study = repository.get_study(session, study_id)
        rows = repository.list_trials(session, study_id, limit=500).items
        curve = repository.metric_curve(session, study_id, rows[0].key, "train_loss")
    assert study.status == "succeeded" and study.started_at and study.finished_at
    assert len(rows) == 12
    assert all(r.attempts == 1 for r in rows)
    diverged = {(r.optimizer, r.eta) for r in rows if r.status == "diverged"}
    assert ("sgd", 1e4) in diverged and ("alig", 1e4) not in diverged
    completed = [r for r in rows if r.status == "completed"]
    assert all(r.final_objective is not None for r in completed)
    assert [p.step for p in curve] == [4, 8]  # one point per epoch (128 samples / 32)
    assert "packs of" in (tmp / "driver.log").read_text()  # the grid ran packed (2 slots)

    # the same grid with packing off: the same science, trial by trial
    unpacked = create(store, {**GRID, "execution": {"packing": "off"}}, name="unpacked")
    assert run_to_end(unpacked, env_vars, tmp / "driver-off.log") == 0
    alone = trials(store, unpacked)
    for row in rows:
        other = alone[row.key]
        assert other.status == row.status
        if row.final_objective is not None:
            assert other.final_objective == pytest.approx(row.final_objective, rel=1e-4)


def test_study_through_the_jobs_api_shows_in_the_dashboard(env, ray_head):
    store, env_vars, _ = env
    study_id = create(store, {**GRID, "grid": {**GRID["grid"], "seed": [0]}}, name="jobs-api")
    settings = Settings(
        database_url=env_vars["SENSITIVITY_DATABASE_URL"],
        storage_path=Path(env_vars["SENSITIVITY_STORAGE_PATH"]),
    )
    launcher = RayJobLauncher(ray_head.dashboard_url, settings)
    job_id = launcher.submit(study_id, "jobs-api")
    assert launcher.submit(study_id, "jobs-api") == job_id  # a repeated submit is harmless
    assert launcher.wait(job_id, timeout=240) == "SUCCEEDED", launcher.logs(job_id)
    assert progress(store, study_id).done == 6
    jobs = requests.get(f"{ray_head.dashboard_url}/api/jobs/", timeout=10).json()
    ours = [j for j in jobs if j.get("submission_id") == job_id]
    assert ours and ours[0]["metadata"]["study_name"] == "jobs-api"
    assert "study" in launcher.logs(job_id)
    assert (
        driver_environment(settings)["SENSITIVITY_DATABASE_URL"]
        == env_vars["SENSITIVITY_DATABASE_URL"]
    )


@pytest.mark.parametrize("packing", ["off", "auto"])
def test_killed_driver_resumes_without_rerunning_finished_trials(env, packing):
    """Unpacked, trials finish one by one; packed, the members that diverge at once finish
    first (SGD at η = 1e4) and the rest of their packs is re-packed on resume."""
    store, env_vars, tmp = env
    grid = {**SLOW["grid"], "eta": [0.1, 1e4] if packing == "auto" else [0.1, 1.0]}
    # packed, the members that do not diverge train together and fast: 10× the steps keeps
    # them running well after the diverged ones are stored, so the kill lands in the middle
    budget = {"steps": 600} if packing == "auto" else SLOW["budget"]
    spec = {**SLOW, "grid": grid, "budget": budget, "execution": {"packing": packing}}
    if packing == "auto":
        # the DNC's loss is bounded (logits clipped at ±20): SGD at η = 1e4 sits at ≈ 120
        # against ≈ 10 at the start and never reaches the default 1000 × (1 + L0); 4 × (1 + L0)
        # stops it at once, and no other member (≤ 16) comes near it
        spec["divergence_factor"] = 4.0
    study_id = create(store, spec)
    process = start_driver(study_id, env_vars, tmp / "driver1.log")
    try:
        assert wait_until(lambda: progress(store, study_id).done >= 3, timeout=180)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the driver and anything in its group
        process.wait()
    before = {
        k: t for k, t in trials(store, study_id).items() if t.status in ("completed", "diverged")
    }
    assert 3 <= len(before) < 12
    assert run_to_end(study_id, env_vars, tmp / "driver2.log") == 0, (
        tmp / "driver2.log"
    ).read_text()
    after = trials(store, study_id)
    assert len(after) == 12
    assert all(t.status in ("completed", "diverged") for t in after.values())
    for key, old in before.items():  # finished trials were not run again
        assert after[key].attempts == 1
        assert after[key].finished_at == old.finished_at
    with store.session() as session:
        assert repository.get_study(session, study_id).status == "succeeded"


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether process ``pid`` is a descendant of ``ancestor`` (False once the chain ends)."""
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])  # the parent's pid
        except (OSError, ValueError, IndexError):
            return False
        if pid == ancestor:
            return True
    return False


@pytest.mark.parametrize("packing", ["off", "auto"])
def test_killed_trial_worker_is_retried_and_the_study_completes(env, ray_head, packing):
    store, env_vars, tmp = env
    study_id = create(
        store,
        {**SLOW, "grid": {**SLOW["grid"], "seed": [0]}, "budget": {"steps": 150},
         "execution": {"packing": packing}},
    )  # fmt: skip
    process = start_driver(study_id, env_vars, tmp / "driver.log")
    try:
        assert wait_until(lambda: progress(store, study_id).running >= 1, timeout=120)
        time.sleep(2)
        found = subprocess.run(["pgrep", "-f", "ray::ImplicitFunc|ray::train"],
                               capture_output=True, text=True).stdout.split()  # fmt: skip
        # only workers of this session's Ray head: another Ray on the machine is not ours
        victims = [pid for pid in found if _descends_from(int(pid), ray_head._process.pid)]
        assert victims, "no trial worker process of this study found"
        os.kill(int(victims[0]), signal.SIGKILL)
        assert process.wait(240) == 0, (tmp / "driver.log").read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    rows = trials(store, study_id).values()
    assert len(rows) == 4 and all(t.status in ("completed", "diverged") for t in rows)
    assert max(t.attempts for t in rows) >= 2  # the killed trial ran again


def test_cancel_mid_study_ends_within_seconds_and_keeps_results(env):
    store, env_vars, tmp = env
    study_id = create(store, {**SLOW, "execution": {"packing": "off"}})
    process = start_driver(study_id, env_vars, tmp / "driver.log")
    try:
        assert wait_until(lambda: progress(store, study_id).done >= 2, timeout=180)
        with store.session() as session:
            repository.set_study_status(session, study_id, "cancelled")
        cancelled_at = time.monotonic()
        assert process.wait(60) == 0, (tmp / "driver.log").read_text()
        assert time.monotonic() - cancelled_at < 20
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    counts = progress(store, study_id)
    assert counts.done >= 2 and counts.running == 0
    assert counts.cancelled >= 1
    with store.session() as session:
        assert repository.get_study(session, study_id).status == "cancelled"


def test_tpe_search_over_eta_finishes_its_budget(env):
    store, env_vars, tmp = env
    study_id = create(store, SEARCH, name="search")
    assert run_to_end(study_id, env_vars, tmp / "driver.log") == 0, (tmp / "driver.log").read_text()
    rows = list(trials(store, study_id).values())
    assert len(rows) == 5
    assert all(t.status in ("completed", "diverged") for t in rows)
    etas = [t.eta for t in rows]
    assert all(1e-3 <= eta <= 1.0 for eta in etas) and len(set(etas)) == 5
    # what optuna-dashboard shows against the service's database: the study, labelled, with
    # the five samples and the objectives the store holds
    import optuna

    storage = env_vars["SENSITIVITY_DATABASE_URL"]
    (summary,) = [
        s for s in optuna.get_all_study_summaries(storage) if s.study_name == f"{study_id}-0"
    ]
    assert summary.user_attrs == {
        "sensitivity_study_id": study_id, "optimizer": "sgd", "task": SEARCH["task"],
        "objective": "objective",
    }  # fmt: skip
    assert summary.n_trials == 5
    optuna_trials = optuna.load_study(study_name=f"{study_id}-0", storage=storage).trials
    assert sorted(t.params["eta"] for t in optuna_trials) == sorted(etas)
    stored = {t.eta: t.final_objective for t in rows if t.status == "completed"}
    assert stored and all(
        t.value == pytest.approx(stored[t.params["eta"]], rel=1e-12)
        for t in optuna_trials if t.params["eta"] in stored
    )  # fmt: skip
    # and optuna-dashboard itself, served against that database, lists it with its samples
    port = free_port()
    dashboard = subprocess.Popen(
        [str(Path(sys.executable).with_name("optuna-dashboard")), storage, "--port", str(port),
         "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        listed = _dashboard_json(f"http://127.0.0.1:{port}/api/studies", dashboard)
        (ours,) = [s for s in listed["study_summaries"] if s["study_name"] == f"{study_id}-0"]
        attrs = {item["key"]: item["value"] for item in ours["user_attrs"]}
        assert attrs["sensitivity_study_id"] == study_id and attrs["optimizer"] == "sgd"
        detail = _dashboard_json(
            f"http://127.0.0.1:{port}/api/studies/{ours['study_id']}", dashboard
        )
        assert len(detail["trials"]) == 5
    finally:
        dashboard.kill()
        dashboard.wait(10)


def _dashboard_json(url: str, dashboard: subprocess.Popen, timeout: float = 60.0) -> dict:
    """GET ``url`` of the optuna-dashboard process as JSON, waiting for it to listen."""
    deadline = time.monotonic() + timeout
    while True:
        if dashboard.poll() is not None:
            pytest.fail(f"optuna-dashboard exited: {dashboard.stderr.read().decode()[-2000:]}")
        try:
            response = requests.get(url, timeout=10)
            if response.status_code == 200:
                return response.json()
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"optuna-dashboard did not answer {url} in {timeout:g} s")
        time.sleep(0.5)


def test_resumed_search_runs_its_interrupted_samples_again(env):
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    from studies.spec import search_trial
    from workers.search import optuna_study_name

    store, env_vars, tmp = env
    spec_json = {**SEARCH, "search": {**SEARCH["search"], "n_trials": 4, "seed": 3}}
    spec = parse_spec(spec_json)
    study_id = create(store, spec_json, name="search")
    # what a driver killed mid-search leaves: in Optuna's storage a trial RUNNING (and one
    # enqueued, WAITING), in SQL one finished sample and the interrupted one `running`
    optuna_study = optuna.create_study(
        study_name=optuna_study_name(study_id, 0),
        storage=env_vars["SENSITIVITY_DATABASE_URL"],
        direction="minimize",
    )
    asked = optuna_study.ask({"eta": FloatDistribution(1e-3, 1.0, log=True)})
    optuna_study.enqueue_trial({"eta": 0.5})
    interrupted = search_trial(spec, 0, {"eta": asked.params["eta"]})
    done = search_trial(spec, 0, {"eta": 0.01})
    with store.session() as session:
        repository.add_trials(session, study_id, [done, interrupted])
        repository.mark_trial_running(session, study_id, done.key)
        repository.record_trial_result(session, study_id, done.key, status="completed",
                                       final_objective=0.25)  # fmt: skip
        repository.mark_trial_running(session, study_id, interrupted.key)

    assert run_to_end(study_id, env_vars, tmp / "driver.log") == 0, (tmp / "driver.log").read_text()
    rows = trials(store, study_id)
    assert len(rows) == 4  # the budget: one finished before, the interrupted one, two new
    assert all(t.status in ("completed", "diverged") for t in rows.values()), rows
    # the interrupted sample ran again under its own key (same η, same row); the finished one not
    assert rows[interrupted.key].attempts == 2 and rows[interrupted.key].eta == asked.params["eta"]
    assert rows[done.key].attempts == 1 and rows[done.key].final_objective == 0.25
    states = [t.state for t in optuna_study.get_trials(deepcopy=False)]
    # the dead driver's RUNNING and WAITING trials retired; the 3 samples of this run complete
    assert states.count(TrialState.FAIL) == 2
    assert states.count(TrialState.COMPLETE) == 3 and len(states) == 5
