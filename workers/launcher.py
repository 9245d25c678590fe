"""Launching a study: one Ray Job per study, through the Ray Jobs API.

``RayJobLauncher`` submits ``python -m workers.run <study-id>`` to a cluster's Jobs API (the
dashboard address) with ``submission_id = <name>-<study-id>`` (``…-r<n>`` for the n-th resume),
so the Ray dashboard's job list shows each study by name, and a repeated submit of the same
launch is harmless: the existing job is returned. The job's metadata carries name and id too.

``LocalRayHead`` is the embedded default: it reuses a Ray head whose dashboard answers on
127.0.0.1:<port>, or starts one (``ray start --head --block`` in its own process group, on the
loopback interface) and stops exactly that one on :meth:`LocalRayHead.stop` — never ``ray stop``,
which would kill every Ray process on the machine.
"""

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from studies.exceptions import ClusterUnavailable
from studies.lifecycle import TERMINAL_JOB_STATES
from studies.settings import Settings, has_password, redacted_url
from studies.store import StudyInfo
from workers.exceptions import LaunchError
from workers.ray_env import ray_environment

log = logging.getLogger("workers.launcher")


def submission_id(study_id: str, name: str = "study", attempt: int = 0) -> str:
    """The Ray Job submission id of a study's ``attempt``-th launch (0 = the first):
    a slug of its name, its id, and the attempt."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "study"
    base = f"{slug}-{study_id}"
    return base if attempt == 0 else f"{base}-r{attempt}"


def driver_environment(settings: Settings, attempt: int | None = None) -> dict[str, str]:
    """Environment of a study driver — what the job's ``runtime_env`` carries, which the Ray
    dashboard shows to anyone who can read it: so no secret.

    It names the store (the database URL only when it has no password; otherwise the driver
    reads ``SENSITIVITY_DATABASE_URL`` from its own environment and ``expected_database``, the
    URL without its password, makes a driver pointed at another database refuse to start),
    Tune's storage, Ray's non-secret settings and the launch number. The Ray token and the API
    token never appear here: the Ray head and workers have them in their own environment (the
    embedded head is started with them, :meth:`LocalRayHead.ensure`; compose sets them in the
    containers).
    """
    database = settings.resolved_database_url
    env = {
        **ray_environment(settings, secrets=False),
        "SENSITIVITY_STORAGE_PATH": str(settings.resolved_storage_path),
        "PYTHONUNBUFFERED": "1",
    }
    if has_password(database):
        env["SENSITIVITY_EXPECTED_DATABASE"] = redacted_url(database)
    else:
        env["SENSITIVITY_DATABASE_URL"] = database
    if settings.ray_cluster_address:
        env["SENSITIVITY_RAY_CLUSTER_ADDRESS"] = settings.ray_cluster_address
    if attempt is not None:
        env["SENSITIVITY_LAUNCH_ATTEMPT"] = str(attempt)
    return env


def secret_environment(settings: Settings) -> dict[str, str]:
    """The secrets a Ray process of this service needs in its own environment (never in a job's
    runtime_env): the database URL and the Ray token. Set on the local head it starts."""
    env = {"SENSITIVITY_DATABASE_URL": settings.resolved_database_url}
    if settings.ray_auth_token:
        env["SENSITIVITY_RAY_AUTH_TOKEN"] = settings.ray_auth_token
        env["RAY_AUTH_TOKEN"] = settings.ray_auth_token
    return env


class RayUnavailable(LaunchError, ClusterUnavailable):
    """Ray's Jobs API did not answer (unreachable, an error status, a timeout): a 503 with
    Retry-After, the study unchanged."""


class RayJobLauncher:
    """Submit study drivers as Ray Jobs to the cluster whose dashboard is at ``address``.

    Every request has a timeout (``settings.ray_timeout_seconds``); an error or timeout raises
    :class:`RayUnavailable`, never a guessed answer (an unanswered status is not "ended").
    """

    def __init__(self, address: str, settings: Settings | None = None) -> None:
        self.address = address.rstrip("/")
        self.settings = settings or Settings()
        self.dashboard_url = self.settings.ray_dashboard_url or self.address
        self.agent_wait = 60.0  # seconds to wait for a fresh head's job agent
        self.timeout = self.settings.ray_timeout_seconds
        self.capacity_ttl = 60.0  # seconds a node capacity answer is reused
        self._capacity: tuple[float, dict[str, float] | None] | None = None
        self._http = requests.Session()
        if self.settings.ray_auth_token:
            self._http.headers["Authorization"] = f"Bearer {self.settings.ray_auth_token}"

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request to the Jobs API with the timeout; RayUnavailable when it gets none."""
        try:
            return self._http.request(
                method, f"{self.address}{path}", timeout=self.timeout, **kwargs
            )
        except requests.RequestException as error:
            raise RayUnavailable(
                f"Ray Jobs API at {self.address} is unreachable: {error}"
            ) from error

    def _fail(self, what: str, response: requests.Response) -> RayUnavailable:
        text = response.text.strip().splitlines()
        return RayUnavailable(
            f"Ray Jobs API at {self.address}: {what} answered {response.status_code}: "
            f"{(text[-1] if text else '')[:500]}"
        )

    def metadata(self, study_id: str, name: str) -> dict[str, str]:
        """What the study's Ray job carries for the dashboard's Jobs tab: the study's id and
        name, and its page when the service knows its public address."""
        metadata = {"study_id": study_id, "study_name": name, "job_name": name}
        if self.settings.public_url:
            metadata["page_url"] = f"{self.settings.public_url.rstrip('/')}/ui/studies/{study_id}"
        return metadata

    def submit(self, study_id: str, name: str, attempt: int = 0) -> str:
        job_id = submission_id(study_id, name, attempt)
        deadline = time.monotonic() + self.agent_wait
        job = {
            "entrypoint": f"{sys.executable} -m workers.run {study_id}",
            "submission_id": job_id,
            "runtime_env": {"env_vars": driver_environment(self.settings, attempt)},
            "metadata": self.metadata(study_id, name),
            "entrypoint_num_cpus": 0,  # the driver only coordinates; trials reserve CPUs
        }
        while True:
            if self.status(job_id) is not None:
                return job_id  # already submitted: a repeated submit is harmless
            response = self._request("POST", "/api/jobs/", json=job)
            if response.ok or "already exists" in response.text:
                return job_id
            # a head that has just started may not have its job agent yet: wait for it
            if "No available agent" not in response.text or time.monotonic() > deadline:
                raise self._fail(f"submitting study {study_id}", response)
            time.sleep(1.0)

    def stop(self, job_id: str) -> bool:
        response = self._request("POST", f"/api/jobs/{job_id}/stop")
        if response.status_code == 404:
            return False
        if not response.ok:
            raise self._fail(f"stopping job {job_id}", response)
        return bool(response.json().get("stopped"))

    def status(self, job_id: str) -> str | None:
        response = self._request("GET", f"/api/jobs/{job_id}")
        if response.status_code == 404:
            return None
        if not response.ok:
            raise self._fail(f"the status of job {job_id}", response)
        return str(response.json()["status"])

    def logs(self, job_id: str) -> str:
        response = self._request("GET", f"/api/jobs/{job_id}/logs")
        if response.status_code == 404:
            return ""
        if not response.ok:
            raise self._fail(f"the logs of job {job_id}", response)
        return str(response.json().get("logs", ""))

    def node_capacity(self) -> dict[str, float] | None:
        """The largest alive node's total resources (its CPU count first, then GPUs), from the
        dashboard's state API; None when it does not answer or knows no node yet. Reused for
        ``capacity_ttl`` seconds."""
        now = time.monotonic()
        if self._capacity is not None and now - self._capacity[0] < self.capacity_ttl:
            return self._capacity[1]
        try:
            response = self._request("GET", "/api/v0/nodes", params={"detail": "true"})
            nodes = response.json()["data"]["result"]["result"] if response.ok else []
        except (RayUnavailable, ValueError, KeyError, TypeError):
            nodes = []
        totals = [
            {k: float(v) for k, v in (node.get("resources_total") or {}).items()}
            for node in nodes
            if node.get("state") == "ALIVE"
        ]
        capacity = (
            max(totals, key=lambda r: (r.get("CPU", 0.0), r.get("GPU", 0.0))) if totals else None
        )
        if capacity is not None:  # an unknown answer is asked again next time
            self._capacity = (now, capacity)
        return capacity

    def forget(self, study: StudyInfo) -> None:
        """Delete Tune's directories of the study (``<storage>/study-<id>`` and, for a search,
        ``study-<id>-<entry>``) and a search's Optuna studies (``<id>-<entry>``, in the service's
        database). The directories are removed from this process's view of the storage path:
        with a shared volume the API must mount it at the same path as the workers, or they
        stay (docs/architecture.md, "Deleting a study")."""
        storage = self.settings.resolved_storage_path
        for directory in [storage / f"study-{study.id}", *storage.glob(f"study-{study.id}-*")]:
            if directory.is_dir():
                shutil.rmtree(directory, ignore_errors=True)
        if study.spec.get("search") is None:
            return
        try:
            import optuna

            storage_url = self.settings.resolved_database_url
            for index in range(len(study.spec.get("optimizers") or [])):
                with contextlib.suppress(KeyError):  # never created: nothing to delete
                    optuna.delete_study(study_name=f"{study.id}-{index}", storage=storage_url)
        except Exception:  # best effort: the study's own rows are gone already
            log.exception("could not delete the Optuna studies of study %s", study.id)

    def wait(self, job_id: str, timeout: float = 600.0) -> str | None:
        """Block until the job reaches a terminal state (or ``timeout``); return the state."""
        deadline = time.monotonic() + timeout
        state = self.status(job_id)
        while state not in TERMINAL_JOB_STATES and time.monotonic() < deadline:
            time.sleep(0.5)
            state = self.status(job_id)
        return state


def dashboard_answers(url: str, timeout: float = 2.0) -> bool:
    """Whether a Ray dashboard answers at ``url`` (its GCS health check is public even when Ray's
    token authentication is on; ``/api/version`` would answer 401 there)."""
    try:
        return requests.get(f"{url}/api/gcs_healthz", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class LocalRayHead:
    """A Ray head on the loopback interface, started here unless one already answers.

    A head started here gets a private Ray temp directory (``temp_dir``, default: a new one
    under the system's temp directory, removed when the head stops). Ray's Jobs API gives each
    job's driver ``RAY_ADDRESS`` from ``<temp dir>/ray_current_cluster``, which names the
    cluster of the *last* ``ray start`` that used that directory: with the shared default
    (``/tmp/ray``), a head started later on the same machine (a test run, a second service)
    would hand this head's drivers the other cluster's address.
    """

    dashboard_port: int = 8265
    gcs_port: int = 6379
    num_cpus: int | None = None
    # None: Ray's default (52365). Two heads on one machine (tests, a developer's second
    # service) need distinct agent ports, or the second head's Jobs API has no agent.
    agent_port: int | None = None
    log_path: Path | None = None
    # Ray's session directory: its unix sockets' paths (about 60 characters below it) must fit
    # in 107, so a short path (the default under /tmp is)
    temp_dir: Path | None = None
    startup_timeout: float = 90.0
    _process: subprocess.Popen | None = None
    _own_temp_dir: Path | None = None

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def started_here(self) -> bool:
        return self._process is not None

    def ensure(self, settings: Settings | None = None) -> str:
        """Reuse or start the head; return its dashboard URL."""
        if dashboard_answers(self.dashboard_url):
            return self.dashboard_url
        ray = shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"
        command = [
            ray, "start", "--head", "--block",
            f"--port={self.gcs_port}",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            "--include-dashboard=true",
        ]  # fmt: skip
        if self.num_cpus is not None:
            command.append(f"--num-cpus={self.num_cpus}")
        if self.agent_port is not None:
            command.append(f"--dashboard-agent-listen-port={self.agent_port}")
        if self.temp_dir is None:
            self._own_temp_dir = Path(tempfile.mkdtemp(prefix="ray-"))
        command.append(f"--temp-dir={self.temp_dir or self._own_temp_dir}")
        # the secrets go into the head's own environment, which its workers and every job's
        # driver inherit: so a job's runtime_env (shown by the dashboard) needs none of them
        secrets = secret_environment(settings) if settings is not None else {}
        env = {**os.environ, **ray_environment(settings), **secrets}
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self.startup_timeout
        while not dashboard_answers(self.dashboard_url):
            if self._process.poll() is not None:
                raise LaunchError(f"the local Ray head exited with code {self._process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise LaunchError(f"the local Ray head did not answer on {self.dashboard_url}")
            time.sleep(0.5)
        return self.dashboard_url

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the head started here (``ray start --block`` stops its processes on SIGTERM)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._process = None
        if self._own_temp_dir is not None:
            shutil.rmtree(self._own_temp_dir, ignore_errors=True)
            self._own_temp_dir = None
