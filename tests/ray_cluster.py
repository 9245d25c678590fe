"""A private Ray head for the tests (started and stopped by its own process id, never ``ray
stop``), and a way to run study drivers as real subprocesses against it."""

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.postgres import free_port
from workers.launcher import LocalRayHead


@contextmanager
def ray_head(log_dir: Path, num_cpus: int = 2) -> Iterator[LocalRayHead]:
    """A Ray head with its dashboard and Jobs API on free loopback ports."""
    head = LocalRayHead(
        dashboard_port=free_port(), gcs_port=free_port(), num_cpus=num_cpus, agent_port=free_port(),
        log_path=log_dir / "ray-head.log",
    )  # fmt: skip
    head.ensure()
    try:
        yield head
    finally:
        head.stop()


def driver_env(database_url: str, storage: Path, head: LocalRayHead) -> dict[str, str]:
    """The environment of a study driver that joins ``head``."""
    return {
        **os.environ,
        "SENSITIVITY_DATABASE_URL": database_url,
        "SENSITIVITY_STORAGE_PATH": str(storage),
        "SENSITIVITY_RAY_CLUSTER_ADDRESS": head.gcs_address,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }


def start_driver(study_id: str, env: Mapping[str, str], log: Path) -> subprocess.Popen:
    """``python -m workers.run <study-id>`` in its own process group, output to ``log``."""
    handle = open(log, "ab")  # noqa: SIM115 - closed when the process is reaped by the caller
    return subprocess.Popen(
        [sys.executable, "-m", "workers.run", study_id],
        env=dict(env), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
