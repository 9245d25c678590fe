"""One study through the real entrypoint, timed: the common part of the benchmarks.

:func:`run_study` stores a study spec in a fresh SQLite file under ``workdir`` and runs
``python -m workers.run <study-id>`` in a subprocess that starts its own local Ray with ``cpus``
CPUs, so the wall time it returns includes Ray's start-up, Tune's bookkeeping and every SQL
write, as a study submitted to the service would pay them. The driver's output goes to
``workdir/driver.log``.
"""

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from studies.spec import expand_grid, parse_spec
from studies.store import Store, repository


def run_study(spec_json: dict[str, Any], cpus: int, workdir: Path) -> tuple[float, dict]:
    """Store ``spec_json`` as a study and run it through the entrypoint; (seconds, progress)."""
    workdir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{workdir / 'studies.sqlite'}"
    store = Store(url)
    store.upgrade()
    spec = parse_spec(spec_json, max_trials=100_000)
    with store.session() as session:
        study, _ = repository.create_study(
            session, name=spec.name, task=spec.task,
            spec=spec.model_dump(mode="json", by_alias=True), trials=expand_grid(spec),
        )  # fmt: skip
    env = {
        **os.environ,
        "SENSITIVITY_DATABASE_URL": url,
        "SENSITIVITY_STORAGE_PATH": str(workdir / "ray_results"),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
        "SENSITIVITY_LOCAL_RAY_NUM_CPUS": str(cpus),
    }
    # a fresh local Ray, not a cluster the caller's shell points at
    env.pop("RAY_ADDRESS", None)
    start = time.perf_counter()
    with open(workdir / "driver.log", "wb") as log:
        subprocess.run(
            [sys.executable, "-m", "workers.run", study.id],
            env=env, check=False, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    elapsed = time.perf_counter() - start
    with store.session() as session:
        progress = repository.study_progress(session, study.id).as_dict()
    store.dispose()
    return elapsed, progress
