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

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from studies.lifecycle import TERMINAL_JOB_STATES
from studies.settings import Settings
from workers.exceptions import LaunchError
from workers.ray_env import ray_environment

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient


def submission_id(study_id: str, name: str = "study", attempt: int = 0) -> str:
    """The Ray Job submission id of a study's ``attempt``-th launch (0 = the first):
    a slug of its name, its id, and the attempt."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "study"
    base = f"{slug}-{study_id}"
    return base if attempt == 0 else f"{base}-r{attempt}"


def driver_environment(settings: Settings) -> dict[str, str]:
    """Environment of a study driver: the store, Tune's storage and Ray's settings."""
    env = {
        **ray_environment(settings),
        "SENSITIVITY_DATABASE_URL": settings.resolved_database_url,
        "SENSITIVITY_STORAGE_PATH": str(settings.resolved_storage_path),
        "PYTHONUNBUFFERED": "1",
    }
    if settings.ray_cluster_address:
        env["SENSITIVITY_RAY_CLUSTER_ADDRESS"] = settings.ray_cluster_address
    return env


class RayJobLauncher:
    """Submit study drivers as Ray Jobs to the cluster whose dashboard is at ``address``."""

    def __init__(self, address: str, settings: Settings | None = None) -> None:
        self.address = address.rstrip("/")
        self.settings = settings or Settings()
        self.dashboard_url = self.settings.ray_dashboard_url or self.address
        self.agent_wait = 60.0  # seconds to wait for a fresh head's job agent
        self._client_instance: JobSubmissionClient | None = None

    @property
    def _client(self) -> "JobSubmissionClient":
        if self._client_instance is None:
            from ray.job_submission import JobSubmissionClient

            headers = None
            if self.settings.ray_auth_token:
                headers = {"Authorization": f"Bearer {self.settings.ray_auth_token}"}
            try:
                self._client_instance = JobSubmissionClient(self.address, headers=headers)
            except (ConnectionError, RuntimeError) as error:
                raise LaunchError(
                    f"Ray Jobs API at {self.address} is unreachable: {error}"
                ) from error
        return self._client_instance

    def submit(self, study_id: str, name: str, attempt: int = 0) -> str:
        job_id = submission_id(study_id, name, attempt)
        deadline = time.monotonic() + self.agent_wait
        while True:
            if self.status(job_id) is not None:
                return job_id  # already submitted: a repeated submit is harmless
            try:
                self._client.submit_job(
                    entrypoint=f"{sys.executable} -m workers.run {study_id}",
                    submission_id=job_id,
                    runtime_env={"env_vars": driver_environment(self.settings)},
                    metadata={"study_id": study_id, "study_name": name, "job_name": name},
                    entrypoint_num_cpus=0,  # the driver only coordinates; trials reserve CPUs
                )
                return job_id
            except RuntimeError as error:
                if "already exists" in str(error):
                    return job_id
                # a head that has just started may not have its job agent yet: wait for it
                if "No available agent" not in str(error) or time.monotonic() > deadline:
                    raise LaunchError(f"could not submit study {study_id}: {error}") from error
                time.sleep(1.0)

    def stop(self, job_id: str) -> bool:
        try:
            return bool(self._client.stop_job(job_id))
        except RuntimeError:
            return False

    def status(self, job_id: str) -> str | None:
        try:
            return str(self._client.get_job_status(job_id).value)
        except RuntimeError:
            return None

    def logs(self, job_id: str) -> str:
        try:
            return self._client.get_job_logs(job_id)
        except RuntimeError:
            return ""

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
    """A Ray head on the loopback interface, started here unless one already answers."""

    dashboard_port: int = 8265
    gcs_port: int = 6379
    num_cpus: int | None = None
    # None: Ray's default (52365). Two heads on one machine (tests, a developer's second
    # service) need distinct agent ports, or the second head's Jobs API has no agent.
    agent_port: int | None = None
    log_path: Path | None = None
    startup_timeout: float = 90.0
    _process: subprocess.Popen | None = None

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
        env = {**os.environ, **ray_environment(settings)}
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
