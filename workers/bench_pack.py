"""Packed vs unpacked trials through the real entrypoint, in one run.

Usage: ``python -m workers.bench_pack [--steps 100] [--cpus 2] [--seeds N] [--mf-epochs 2]``.

The ``dnc-heatmap`` preset's grid (all of its optimizers and η values; its seeds, or the first
``--seeds``) runs at ``--steps`` DNC steps per trial three times, each time as a study stored in
a temporary SQLite file and run by ``python -m workers.run <study-id>`` on a fresh local Ray
with ``--cpus`` CPUs (start-up included): with ``execution.packing: off`` (one model per trial),
with ``auto`` (packs trained as one vectorised model each), and with ``auto`` and
``execution.compile`` (each time step of a pack one compiled function:
:mod:`workers.compiled_unroll`; its compilation is part of the wall time). The
``matrix-factorisation-aalig`` preset (whose AALIG rows have no packed form and run unpacked in
both) follows at ``--mf-epochs`` epochs, unpacked and packed. It prints wall times,
trial-steps per second and the ratios against the unpacked run (target on 2 cores: >= 5× on the
DNC grid), and each run's progress counts (every trial of it should have ended)."""

import argparse
import tempfile
from pathlib import Path
from typing import Any

from studies.presets import load_preset
from studies.spec import expand_grid, parse_spec
from workers.bench_entrypoint import run_study

#: the runs compared, by name: their spec's ``execution``
UNPACKED = {"packing": "off"}
PACKED = {"packing": "auto", "compile": False}
COMPILED = {"packing": "auto", "compile": True}


def compare(
    name: str, spec_json: dict[str, Any], unit_steps: int, cpus: int, tmp: Path,
    runs: dict[str, dict[str, Any]],
) -> None:  # fmt: skip
    """Run ``spec_json`` once per entry of ``runs`` and print the figures, each run's
    trial-steps/s against the first run's (the unpacked baseline)."""
    n = len(expand_grid(parse_spec(spec_json, max_trials=100_000)))
    figures = {}
    for label, execution in runs.items():
        spec = {**spec_json, "execution": execution}
        seconds, progress = run_study(spec, cpus, tmp / f"{name}-{label}")
        figures[label] = seconds
        print(
            f"{name} {label:15s}: {n} trials × {unit_steps} steps in {seconds:7.1f} s "
            f"= {n * unit_steps / seconds:8.1f} trial-steps/s   {progress}",
            flush=True,
        )
    baseline, *others = runs
    for label in others:
        print(f"{name}: {label} / {baseline} trial-steps/s = "
              f"{figures[baseline] / figures[label]:.2f}×")  # fmt: skip
    if {"packed", "packed+compiled"} <= figures.keys():
        print(f"{name}: packed+compiled / packed trial-steps/s = "
              f"{figures['packed'] / figures['packed+compiled']:.2f}×")  # fmt: skip


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
        compare(
            "dnc-heatmap", dnc, args.steps, args.cpus, Path(tmp),
            {"unpacked": UNPACKED, "packed": PACKED, "packed+compiled": COMPILED},
        )  # fmt: skip
        if args.mf_epochs:
            mf = load_preset("matrix-factorisation-aalig")
            mf = {**mf, "budget": {"epochs": args.mf_epochs}, "device": "cpu"}
            mf.pop("claims", None)
            batches = 8  # 800 training samples / batch 100 per epoch
            compare(  # no recurrent model: compiling changes nothing there
                "matrix-factorisation-aalig", mf, args.mf_epochs * batches, args.cpus, Path(tmp),
                {"unpacked": UNPACKED, "packed": PACKED},
            )  # fmt: skip


if __name__ == "__main__":
    main()
