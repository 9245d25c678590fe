"""The compose topology without Docker: the same services as separate processes on 127.0.0.1.

PostgreSQL (a private cluster), a Ray head with 0 CPUs (``ray start --head``, dashboard and Jobs
API on the loopback), a second Ray node that joins it as the worker, and the API under uvicorn,
configured with the environment variables docker-compose.yml sets — Ray's token authentication
included. Studies go in over HTTP, run as Ray Jobs on that cluster, and land in PostgreSQL.

Every process here runs in a process group of its own and is stopped through that group (never
``ray stop``, which would stop every Ray cluster on the machine).
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy
from sqlalchemy import text

from tests.postgres import PostgresUnavailable, free_port, postgres_server
from tests.workers.test_checkpoints import tune_results

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
API_TOKEN = "api-token-for-the-topology-test"
RAY_TOKEN = "ray-token-for-the-topology-test-0123456789"
WORKER_CPUS = 2
# what a study may take at most here (2 shared cores; a Ray Job alone takes ~10 s to start)
STUDY_TIMEOUT = 180.0
FINISHED = ("succeeded", "failed", "cancelled")

SMOKE = {"preset": "smoke", "overrides": {"budget": {"epochs": 1}}}
# 8 DNC trials of ~60 ms per step: seconds each, long enough to lose the worker in the middle
INTERRUPTED = {
    "name": "lose-the-worker",
    "task": "dnc-copy",
    "optimizers": ["sgd", "adam"],
    "grid": {"eta": [0.01, 0.1], "batch_size": [4], "seed": [0, 1]},
    "budget": {"steps": 80},
    "device": "cpu",
    # one model per trial, so that the study has a middle in which some trials have finished
    # and others run
    "execution": {"packing": "off"},
}
# The same loss under packs (2 worker CPUs: 2 packs of 4). Packed members end together unless
# they diverge: SGD at η = 1e4 sits at a loss of ≈ 120 against ≈ 10 at the start, so a
# divergence factor of 4 stores it as diverged at once while the others train on (the DNC's
# logits are clipped, so it never reaches the default 1000 × (1 + L0)); 200 steps keep them
# training long after, and the pack checkpoints at every report (every 10 steps).
INTERRUPTED_PACKED = {
    "name": "lose-the-worker-under-packs",
    "task": "dnc-copy",
    "optimizers": ["alig", "sgd"],
    "grid": {"eta": [0.1, 1e4], "batch_size": [4], "seed": [0, 1]},
    "budget": {"steps": 200},
    "device": "cpu",
    "divergence_factor": 4.0,
    "execution": {"packing": "auto"},
}


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def stop_group(
    process: subprocess.Popen, timeout: float = 30.0, *, whole_group: bool = False
) -> None:
    """Stop a process started with ``start_new_session`` and everything in its process group.

    By default SIGTERM goes to the leader alone: ``ray start --block`` then stops its node's
    processes in order (a few seconds; a raylet that outlives its GCS waits ~20 s instead).
    ``whole_group`` signals every process at once, as when a machine or container goes away.
    Whatever is left after ``timeout`` gets SIGKILL; returns once the group is empty.
    """
    group = process.pid  # a session leader's pid is its process group id
    with contextlib.suppress(ProcessLookupError):
        if whole_group:
            os.killpg(group, signal.SIGTERM)
        elif process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout)
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)  # raises once no process of the group is left
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    process.wait()


@dataclass
class Cluster:
    """The running topology: ports, URLs and the processes to stop."""

    root: Path  # short: Ray's unix sockets live under the nodes' temp dirs (108-byte limit)
    database_url: str
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    starts: int = 0  # Ray nodes started so far: each gets a fresh temp dir
    worker_id: str = ""  # the node id of the running worker node

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def storage(self) -> Path:
        """Tune's storage path, the "shared results volume" of compose."""
        return self.root / "results"

    def base_env(self) -> dict[str, str]:
        """This machine's environment without Ray or service settings, plus compose's Ray ones."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RAY_", "SENSITIVITY_"))
        }
        env.update(
            RAY_USAGE_STATS_ENABLED="0",
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=RAY_TOKEN,
            # the default on Linux, explicit because the service sets 0 (one-node Ray) for its
            # embedded head, and a 0 inherited here would make the worker refuse to join
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1",
            PYTHONUNBUFFERED="1",
        )
        return env

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        """Start ``argv`` in a process group of its own, output appended to ``<name>.log``."""
        with open(self.root / f"{name}.log", "ab") as log:  # the child keeps its own copy
            process = subprocess.Popen(
                argv, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.processes[name] = process
        return process

    def ray_node(self, name: str, *options: str) -> subprocess.Popen:
        """``ray start --block`` with its own temp dir and dashboard-agent port, so that two
        nodes on one machine (and other clusters on it) do not collide."""
        self.starts += 1
        temp_dir = self.root / f"n{self.starts}"
        temp_dir.mkdir()
        ray = shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"
        return self.spawn(
            name,
            [
                ray, "start", "--block", "--node-ip-address=127.0.0.1", "--num-gpus=0",
                f"--temp-dir={temp_dir}", f"--dashboard-agent-listen-port={free_port()}",
                *options,
            ],
            self.base_env(),
        )  # fmt: skip

    def start_head(self) -> None:
        self.ray_node(
            "ray-head", "--head", f"--port={self.gcs_port}", "--num-cpus=0",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={free_port()}",
        )  # fmt: skip

        def ready() -> bool:
            self._check_alive("ray-head")
            # public even with token auth, and 200 only once the GCS answers
            return self._answers(f"{self.dashboard_url}/api/gcs_healthz")

        wait_until(ready, 90, "the Ray head")

    def start_worker(self) -> str:
        """Start the worker node; return its node id once the head lists it alive."""
        known = {node["node_id"] for node in self.nodes()}
        self.ray_node(
            "ray-worker", f"--address=127.0.0.1:{self.gcs_port}", f"--num-cpus={WORKER_CPUS}"
        )

        def joined() -> str | None:
            self._check_alive("ray-worker")
            for node in self.nodes():
                if node["node_id"] not in known and not node["is_head_node"]:
                    return node["node_id"]
            return None

        self.worker_id = wait_until(joined, 90, "the Ray worker node to join the head", every=1)
        return self.worker_id

    def start_api(self) -> None:
        env = {
            **self.base_env(),
            # what docker-compose.yml gives the api service (and the image's ENV)
            "SENSITIVITY_DATABASE_URL": self.database_url,
            "SENSITIVITY_RAY_ADDRESS": self.dashboard_url,
            "SENSITIVITY_RAY_AUTH_TOKEN": RAY_TOKEN,
            "SENSITIVITY_RAY_DASHBOARD_URL": self.dashboard_url,
            "SENSITIVITY_API_TOKEN": API_TOKEN,
            "SENSITIVITY_DATA_DIR": str(self.root / "api-data"),
            "SENSITIVITY_STORAGE_PATH": str(self.storage),
        }
        self.spawn(
            "api",
            [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app",
             "--host", "127.0.0.1", "--port", str(self.api_port)],
            env,
        )  # fmt: skip

        def ready() -> bool:
            self._check_alive("api")
            return self._answers(f"{self.api_url}/studies")

        wait_until(ready, 60, "the API")

    def _check_alive(self, name: str) -> None:
        code = self.processes[name].poll()
        if code is not None:
            log = (self.root / f"{name}.log").read_text(errors="replace")[-4000:]
            pytest.fail(f"{name} exited with code {code}:\n{log}")

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            return httpx.get(url, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def ray_get(self, path: str) -> Any:
        """GET on the dashboard with the Ray token (token auth is on, as in compose)."""
        response = httpx.get(
            f"{self.dashboard_url}{path}",
            headers={"Authorization": f"Bearer {RAY_TOKEN}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def nodes(self) -> list[dict[str, Any]]:
        """The cluster's alive nodes (state API)."""
        data = self.ray_get("/api/v0/nodes?limit=100")
        return [n for n in data["data"]["result"]["result"] if n["state"] == "ALIVE"]

    def stop_all(self) -> None:
        # the API first (it holds connections), the worker before the head (as compose down)
        for name in ("api", "ray-worker", "ray-head"):
            process = self.processes.pop(name, None)
            if process is not None:
                stop_group(process)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="topo-", dir="/tmp"))
    try:
        with contextlib.ExitStack() as stack:
            try:
                database_url = stack.enter_context(postgres_server("sensitivity"))
            except PostgresUnavailable as error:
                pytest.fail(str(error), pytrace=False)
            topology = Cluster(root=root, database_url=database_url)
            stack.callback(topology.stop_all)
            topology.storage.mkdir()
            topology.start_head()
            topology.start_worker()
            topology.start_api()
            yield topology
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with httpx.Client(base_url=cluster.api_url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def database(cluster: Cluster) -> Iterator[sqlalchemy.Engine]:
    engine = sqlalchemy.create_engine(cluster.database_url)
    yield engine
    engine.dispose()


def submit(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/studies", json=body)
    assert response.status_code == 202, response.text
    return response.json()


def wait_finished(api: httpx.Client, study_id: str, timeout: float = STUDY_TIMEOUT) -> dict:
    def finished() -> dict | None:
        study = api.get(f"/studies/{study_id}").json()
        return study if study["status"] in FINISHED else None

    return wait_until(finished, timeout, f"study {study_id} to finish", every=1.0)


def trial_rows(database: sqlalchemy.Engine, study_id: str) -> list[Any]:
    """The study's trial rows, straight from PostgreSQL."""
    with database.connect() as connection:
        return connection.execute(
            text(
                "SELECT key, optimizer, eta, seed, status, attempts, final_objective, reason "
                "FROM sens_trials WHERE study_id = :id ORDER BY key"
            ),
            {"id": study_id},
        ).all()


def running_reports(database: sqlalchemy.Engine, study_id: str) -> int:
    """The fewest training-loss reports stored so far of a running trial of the study."""
    with database.connect() as connection:
        counts = (
            connection.execute(
                text(
                    "SELECT count(p.step) FROM sens_trials t LEFT JOIN sens_metric_points p "
                    "ON p.trial_id = t.id AND p.name = 'train_loss' "
                    "WHERE t.study_id = :id AND t.status = 'running' GROUP BY t.id"
                ),
                {"id": study_id},
            )
            .scalars()
            .all()
        )
    return min(counts, default=0)


def assert_every_trial_has_a_result(cluster: Cluster, study: dict, rows: list[Any]) -> None:
    """Every trial completed or diverged (``failed`` here would be a trial lost to the
    infrastructure); otherwise fail with the trials' reasons and the driver's log."""
    if {row.status for row in rows} <= {"completed", "diverged"}:
        return
    outcomes = [(row.optimizer, row.eta, row.seed, row.status, row.attempts, row.reason)
                for row in rows]  # fmt: skip
    log = cluster.ray_get(f"/api/jobs/{study['ray_job_id']}/logs")["logs"]
    pytest.fail(f"trials without a result: {outcomes}\ndriver log:\n{log[-8000:]}")


def job_of(cluster: Cluster, submission_id: str) -> dict[str, Any] | None:
    """The study's job in the dashboard's job list (what the Ray dashboard shows)."""
    jobs = cluster.ray_get("/api/jobs/")
    return next((job for job in jobs if job.get("submission_id") == submission_id), None)


def test_study_runs_as_a_ray_job_on_the_worker_and_lands_in_postgres(cluster, api, database):
    nodes = {node["node_id"]: node for node in cluster.nodes()}
    head = next(node for node in nodes.values() if node["is_head_node"])
    worker = next(node for node in nodes.values() if not node["is_head_node"])
    # a 0-CPU head, as compose's default: the 1-CPU trials can only run on the worker
    assert head["resources_total"].get("CPU", 0) == 0
    assert worker["resources_total"]["CPU"] == WORKER_CPUS

    created = submit(api, SMOKE)
    assert created["n_trials"] == 15  # 3 optimizers x 5 η

    study = wait_finished(api, created["id"])
    assert study["status"] == "succeeded", study
    assert study["progress"]["done"] == study["progress"]["total"] == 15

    # the study ran as a Ray Job of this cluster, under the submission id the API recorded
    job_id = study["ray_job_id"]
    job = wait_until(
        lambda: (j := job_of(cluster, job_id)) and j["status"] == "SUCCEEDED" and j,
        30, f"job {job_id} to be listed SUCCEEDED",
    )  # fmt: skip
    assert job["metadata"]["study_id"] == created["id"]
    # its trial actors ran on the worker node, the only one with CPUs (an actor Tune asked for
    # ahead and no longer needed is killed before it is placed: it has no node)
    actors = cluster.ray_get("/api/v0/actors?detail=true&limit=10000")["data"]["result"]["result"]
    trial_nodes = {
        actor["node_id"]
        for actor in actors
        if actor["job_id"] == job["job_id"] and actor["class_name"] == "ImplicitFunc"
    }
    assert trial_nodes - {None} == {worker["node_id"]}

    # the results are rows of PostgreSQL, one per trial, every one finished
    rows = trial_rows(database, created["id"])
    assert len(rows) == 15
    assert_every_trial_has_a_result(cluster, study, rows)
    assert any(row.final_objective is not None for row in rows)

    heatmap = api.get(f"/studies/{created['id']}/heatmap")
    assert heatmap.status_code == 200, heatmap.text
    body = heatmap.json()
    assert body["rows"] == ["alig", "sgd", "adam"]
    assert len(body["columns"]) == 5
    assert [len(row) for row in body["values"]] == [5, 5, 5]


@pytest.mark.parametrize(
    ("body", "n_trials"), [(INTERRUPTED, 8), (INTERRUPTED_PACKED, 8)], ids=["trials", "packs"]
)
def test_losing_the_worker_node_mid_study_runs_every_trial_exactly_once(
    cluster, api, database, body, n_trials
):
    """Tune retries what the node took with it; under packs, a pack continues from its last
    checkpoint with the members still training at it (the diverged ones are not run again)."""
    created = submit(api, body)
    study_id = created["id"]
    assert created["n_trials"] == n_trials

    # the middle of the study: some trials finished, others running on the worker (packed:
    # past their second report, so that their packs have a checkpoint to continue from)
    reports_first = 2 if body["execution"]["packing"] == "auto" else 0

    def in_the_middle() -> list[Any] | None:
        rows = trial_rows(database, study_id)
        statuses = [row.status for row in rows]
        finished = [s for s in statuses if s in ("completed", "diverged", "failed")]
        middle = finished and "running" in statuses
        return rows if middle and running_reports(database, study_id) >= reports_first else None

    wait_until(in_the_middle, STUDY_TIMEOUT, "trials to finish and run", every=0.2)
    lost = cluster.worker_id
    stop_group(cluster.processes.pop("ray-worker"), whole_group=True)
    wait_until(
        lambda: lost not in {node["node_id"] for node in cluster.nodes()}, 60,
        "the head to see the worker node gone", every=0.5,
    )  # fmt: skip
    time.sleep(2)  # results already on their way are stored; nothing can start without the node
    # read after the loss: a trial that finished just before it is not counted as interrupted
    before = trial_rows(database, study_id)
    finished_before = {row.key for row in before if row.status in ("completed", "diverged")}
    interrupted = {row.key for row in before if row.status == "running"}
    assert finished_before and interrupted, before
    cluster.start_worker()

    # no resume from outside: the driver runs on the head, Tune retries the trials the node
    # took with it (FailureConfig) and starts the waiting ones once the node is back
    study = wait_finished(api, study_id)
    rows = trial_rows(database, study_id)
    keys = [row.key for row in rows]
    assert len(rows) == n_trials and len(set(keys)) == n_trials  # once each, no duplicate rows
    assert_every_trial_has_a_result(cluster, study, rows)
    assert study["status"] == "succeeded", study
    attempts = {row.key: row.attempts for row in rows}
    # finished trials were not run again; the interrupted ones were
    assert all(attempts[key] == 1 for key in finished_before), attempts
    assert all(attempts[key] >= 2 for key in interrupted), attempts
    with database.connect() as connection:
        duplicates = connection.execute(
            text(
                "SELECT count(*) FROM (SELECT p.trial_id, p.step, p.name "
                "FROM sens_metric_points p JOIN sens_trials t ON t.id = p.trial_id "
                "WHERE t.study_id = :id GROUP BY 1, 2, 3 HAVING count(*) > 1) d"
            ),
            {"id": study_id},
        ).scalar_one()
    assert duplicates == 0
    if body["execution"]["packing"] == "auto":
        log = cluster.ray_get(f"/api/jobs/{study['ray_job_id']}/logs")["logs"]
        assert "(2 packs of [4] members)" in log, log[-8000:]
        # the retried packs continued from their checkpoints, not from step 0
        results = tune_results(cluster.storage / f"study-{study_id}")
        for key in interrupted:
            resumed = {r["resumed_from_step"] for r in results[key] if "resumed_from_step" in r}
            assert resumed and min(resumed) >= 10, (key, resumed)
        # SGD at η = 1e4 diverged at once, was stored before the loss and never ran again
        at_once = {row.key for row in rows if (row.optimizer, row.eta) == ("sgd", 1e4)}
        assert at_once <= finished_before and all(
            row.status == "diverged" for row in rows if row.key in at_once
        )


def test_health_sees_postgres_and_ray_with_token_auth(cluster, api):
    response = api.get("/health")
    assert response.status_code == 200, response.text
    assert response.json()["ray"]["ok"] is True
