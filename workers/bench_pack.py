"""Packed vs unpacked trials through the real entrypoint, in one run.

Usage: ``python -m workers.bench_pack [--steps 100] [--cpus 2] [--seeds N] [--mf-epochs 2]``.

The ``dnc-heatmap`` preset's grid (all of its optimizers and η values; its seeds, or the first
``--seeds``) runs at
``--steps`` DNC steps per trial twice, each time as a study stored in a temporary SQLite file and
run by ``python -m workers.run <study-id>`` on a fresh local Ray with ``--cpus`` CPUs (start-up
included): once with ``execution.packing: off`` (one model per trial), once with ``auto``
(packs trained as one vectorised model each). The ``matrix-factorisation-aalig`` preset (whose
AALIG rows have no packed form and run unpacked in both) follows at ``--mf-epochs`` epochs.
It prints wall times, trial-steps per second and the ratio packed / unpacked (target on 2
cores: >= 5× on the DNC grid), and checks both runs finished every trial.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from studies.presets import load_preset
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


def compare(name: str, spec_json: dict[str, Any], unit_steps: int, cpus: int, tmp: Path) -> None:
    """Run ``spec_json`` unpacked then packed and print the figures."""
    n = len(expand_grid(parse_spec(spec_json, max_trials=100_000)))
    figures = {}
    for packing in ("off", "auto"):
        spec = {**spec_json, "execution": {"packing": packing}}
        seconds, progress = run_study(spec, cpus, tmp / f"{name}-{packing}")
        figures[packing] = seconds
        print(
            f"{name} packing={packing:4s}: {n} trials × {unit_steps} steps in {seconds:7.1f} s "
            f"= {n * unit_steps / seconds:8.1f} trial-steps/s   {progress}",
            flush=True,
        )
    print(f"{name}: packed / unpacked trial-steps/s = {figures['off'] / figures['auto']:.2f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="DNC steps per trial")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--mf-epochs", type=int, default=2, help="0 skips the MF preset")
    parser.add_argument(
        "--seeds", type=int, default=None, help="the first N of the preset's seeds (default all)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dnc = load_preset("dnc-heatmap")
        dnc = {**dnc, "budget": {"steps": args.steps}, "device": "cpu"}
        if args.seeds is not None:
            dnc["grid"] = {**dnc["grid"], "seed": dnc["grid"]["seed"][: args.seeds]}
        dnc.pop("claims", None)
        compare("dnc-heatmap", dnc, args.steps, args.cpus, Path(tmp))
        if args.mf_epochs:
            mf = load_preset("matrix-factorisation-aalig")
            mf = {**mf, "budget": {"epochs": args.mf_epochs}, "device": "cpu"}
            mf.pop("claims", None)
            batches = 8  # 800 training samples / batch 100 per epoch
            compare(
                "matrix-factorisation-aalig", mf, args.mf_epochs * batches, args.cpus, Path(tmp)
            )


if __name__ == "__main__":
    main()
