"""Overhead of running a study on Ray Tune vs a plain loop, on the same cores.

Usage: ``python -m workers.bench_study [--steps 60] [--cpus 2]``.

A 16-trial grid (DNC repeat-copy, ALI-G and SGD × 4 η × 2 seeds, ``--steps`` steps each: a few
seconds per trial) runs twice:

1. through the real entrypoint, ``python -m workers.run <study-id>`` in a subprocess that starts
   its own local Ray with ``--cpus`` CPUs (Ray start-up included), writing every result to a
   temporary SQLite store;
2. as the same 16 ``run_trial`` calls in a plain loop in this process (one thread each, as a
   trial gets).

It prints both wall times and their ratio (target: entrypoint / loop <= 1.3 on 2 cores).
"""

import argparse
import tempfile
import time
from pathlib import Path

from studies.spec import expand_grid, parse_spec
from workers.bench_entrypoint import run_study
from workers.trainer import run_trial


def study_spec(steps: int) -> dict:
    return {
        "name": "bench-study",
        "task": "dnc-copy",
        "optimizers": ["alig", "sgd"],
        "grid": {"eta": [0.01, 0.1, 1.0, 10.0], "batch_size": [16], "seed": [0, 1]},
        "budget": {"steps": steps},
        "device": "cpu",
    }


def plain_loop(steps: int) -> float:
    trials = expand_grid(parse_spec(study_spec(steps)))
    start = time.perf_counter()
    for trial in trials:
        run_trial(trial.config)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="DNC steps per trial")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tune_time, progress = run_study(study_spec(args.steps), args.cpus, Path(tmp))
    loop_time = plain_loop(args.steps)
    print(f"16 trials × {args.steps} DNC steps on {args.cpus} CPUs")
    print(f"entrypoint (Ray Tune, SQL, Ray start-up included): {tune_time:.1f} s  {progress}")
    print(f"plain loop in one process:                          {loop_time:.1f} s "
          f"({loop_time / 16:.1f} s per trial)")  # fmt: skip
    print(f"ratio entrypoint / loop: {tune_time / loop_time:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
