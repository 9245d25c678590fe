"""Latency of the analysis routes on a large study: ``python -m service.bench_api``.

Builds a synthetic study (by default 10 optimizers × 50 η × 10 seeds = 5,000 finished trials)
in a SQLite file of a temporary directory, writing its rows through the store's repository as a
driver would, serves the real app with uvicorn in a thread of this process, and times each
endpoint over HTTP:

- **cold**: the answer is not cached (the app's answer cache is emptied before each call), so
  the call reads every trial and analyses, or draws, them;
- **warm**: the same request again, served from the cache;
- **busy**: while cold heatmap images are drawn by several concurrent requests, how long a
  cheap request (``GET /studies/{id}``) takes: the event loop must not stall.

It prints the median and the 95th percentile per endpoint against the targets (every JSON
analysis warm p95 < 100 ms, importance < 1 s once computed, a cached PNG < 100 ms). It measures
and prints; it is not a test (``tests/service/test_bench_api.py`` runs it on a tiny study).
Figures depend on the machine and on what else runs on it.
"""

import argparse
import concurrent.futures
import math
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from studies.settings import Settings
from studies.spec import expand_grid, parse_spec
from studies.store import Store, repository

WARM_TARGET_S = 0.100  # every warm JSON analysis and a cached image
IMPORTANCE_TARGET_S = 1.0  # importance once computed


@dataclass(frozen=True)
class Endpoint:
    """One request of the benchmark and the warm p95 it should stay under."""

    name: str
    path: str  # relative to /studies/{id}
    params: dict[str, str]
    target_s: float


ENDPOINTS = (
    Endpoint("heatmap JSON", "heatmap", {}, WARM_TARGET_S),
    Endpoint("robustness", "robustness", {}, WARM_TARGET_S),
    Endpoint("tunability", "tunability", {}, WARM_TARGET_S),
    Endpoint("importance", "importance", {}, IMPORTANCE_TARGET_S),
    Endpoint("heatmap PNG", "heatmap", {"format": "png"}, WARM_TARGET_S),
)


# --- the synthetic study ----------------------------------------------------------------------


def synthetic_spec(
    n_optimizers: int, n_etas: int, n_seeds: int, *, name: str = "bench", labels: Sequence[str] = ()
) -> dict[str, Any]:
    """A valid grid spec: ``n_optimizers`` SGD rows (momentum 0, 0.05, …; ``labels`` name the
    first rows, the others are ``sgd-m<momentum>``) × ``n_etas`` η from 1e-5 to 1e5 (log
    spaced) × ``n_seeds`` seeds, one batch size."""
    etas = [float(f"{10 ** (-5 + 10 * i / max(n_etas - 1, 1)):.12g}") for i in range(n_etas)]
    optimizers = []
    for i in range(n_optimizers):
        momentum = round(0.9 * i / max(n_optimizers - 1, 1), 4)
        label = labels[i] if i < len(labels) else f"sgd-m{momentum:g}"
        optimizers.append({"name": "sgd", "label": label, "options": {"momentum": momentum}})
    return {
        "name": name,
        "task": "matrix-factorisation",
        "optimizers": optimizers,
        "grid": {"eta": etas, "batch_size": [32], "seed": list(range(n_seeds))},
        "budget": {"epochs": 1},
    }


def synthetic_outcome(row: int, eta: float, rng: random.Random) -> tuple[str, float | None]:
    """A plausible result: a U-shaped loss in log η around a per-row optimum, divergence above
    a per-row η, a failure now and then."""
    x = math.log10(eta)
    if rng.random() < 0.01:
        return "failed", None
    if x > 2 + (row % 4):
        return "diverged", math.inf
    best = -2 + (row % 5) * 0.5
    return "completed", 10 ** ((x - best) ** 2 / 8 - 2) * (1 + 0.1 * rng.random())


def create_synthetic_study(
    store: Store,
    n_optimizers: int = 10,
    n_etas: int = 50,
    n_seeds: int = 10,
    *,
    name: str = "bench",
    labels: Sequence[str] = (),
    leave_pending: int = 0,
    seed: int = 0,
) -> str:
    """Store the study of :func:`synthetic_spec` with every trial finished but the last
    ``leave_pending`` (results written through the repository, as a driver does); its id.

    The study is ``succeeded`` when every trial finished and ``running`` otherwise, so the
    service never tries to launch it."""
    spec = parse_spec(
        synthetic_spec(n_optimizers, n_etas, n_seeds, name=name, labels=labels),
        max_trials=n_optimizers * n_etas * n_seeds,
    )
    trials = expand_grid(spec)
    rows = {entry.row: i for i, entry in enumerate(spec.entries)}
    rng = random.Random(seed)
    with store.session() as session:
        study, _ = repository.create_study(
            session, name=spec.name, task=spec.task, tags=spec.tags, trials=trials,
            spec=spec.model_dump(mode="json", by_alias=True),
        )  # fmt: skip
        for trial in trials[: len(trials) - leave_pending]:
            status, value = synthetic_outcome(rows[trial.optimizer], trial.eta or 1.0, rng)
            repository.record_trial_result(
                session, study.id, trial.key, status=status, final_objective=value,  # type: ignore[arg-type]
                reason=None if status == "completed" else f"synthetic {status}",
            )  # fmt: skip
        repository.set_study_status(session, study.id, "running")
        if not leave_pending:
            repository.set_study_status(session, study.id, "succeeded")
    return study.id


# --- serving and timing -----------------------------------------------------------------------


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a daemon thread on a free port of 127.0.0.1; its URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bench-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _clear_answers(app: FastAPI) -> None:
    """Empty the app's answer cache (made on the first analysis request)."""
    cache = getattr(app.state, "answer_cache", None)
    if cache is not None:
        cache.clear()


def timed(call: Callable[[], httpx.Response]) -> tuple[float, int]:
    """Seconds one call took and its status."""
    start = time.perf_counter()
    response = call()
    return time.perf_counter() - start, response.status_code


def p95(samples: Sequence[float]) -> float:
    """The 95th percentile (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:9.1f}"


def run(n_optimizers: int, n_etas: int, n_seeds: int, cold_repeats: int, warm_repeats: int) -> bool:
    """Build the study, serve the app, time the endpoints and print the table; whether every
    warm p95 met its target."""
    from service.app import create_app  # the app pulls in Ray's client: only when run

    n_trials = n_optimizers * n_etas * n_seeds
    with tempfile.TemporaryDirectory(prefix="bench-api-") as directory:
        settings = Settings(
            data_dir=Path(directory),
            database_url=None,
            # nothing listens there: the benchmark launches nothing
            ray_address=f"http://127.0.0.1:{_free_port()}",
            ray_dashboard_url="http://127.0.0.1:9",
            api_token=None,
        )
        store = Store(settings.resolved_database_url)
        store.upgrade()
        start = time.perf_counter()
        study_id = create_synthetic_study(store, n_optimizers, n_etas, n_seeds)
        store.dispose()
        print(
            f"study: {n_optimizers} optimizers × {n_etas} η × {n_seeds} seeds = {n_trials} "
            f"finished trials, written in {time.perf_counter() - start:.1f} s (SQLite)"
        )
        app = create_app(settings)
        with serve(app) as url, httpx.Client(base_url=url, timeout=600) as client:
            base = f"/studies/{study_id}"
            print(f"{'endpoint':<14} {'status':>6} {'cold med':>9} {'cold p95':>9} "
                  f"{'warm med':>9} {'warm p95':>9}  (ms)  target (warm p95)")  # fmt: skip
            ok = True
            for endpoint in ENDPOINTS:

                def call(e: Endpoint = endpoint) -> httpx.Response:
                    return client.get(f"{base}/{e.path}", params=e.params)

                cold = []
                for _ in range(cold_repeats):
                    _clear_answers(app)
                    cold.append(timed(call))
                warm = [timed(call) for _ in range(warm_repeats)]
                statuses = {status for _, status in cold + warm}
                cold_s, warm_s = [t for t, _ in cold], [t for t, _ in warm]
                met = p95(warm_s) < endpoint.target_s
                ok = ok and met
                print(
                    f"{endpoint.name:<14} {'/'.join(map(str, sorted(statuses))):>6} "
                    f"{_ms(statistics.median(cold_s))} {_ms(p95(cold_s))} "
                    f"{_ms(statistics.median(warm_s))} {_ms(p95(warm_s))}        "
                    f"< {endpoint.target_s * 1000:.0f} ms: {'met' if met else 'MISSED'}"
                )
            busy(app, client, base)
    return ok


def busy(app: FastAPI, client: httpx.Client, base: str, parallel: int = 4) -> None:
    """Print how long ``GET /studies/{id}`` takes while ``parallel`` requests draw heatmap
    images that are not cached (each a different format or slice key, so none waits for
    another's answer)."""
    _clear_answers(app)
    variants = [{"format": "png"}, {"format": "svg"}, {"format": "png", "metric": "final_objective",
                "direction": "maximize"}, {"format": "svg", "direction": "maximize"}]  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        start = time.perf_counter()
        drawing = [
            pool.submit(timed, lambda v=v: client.get(f"{base}/heatmap", params=v))
            for v in variants[:parallel]
        ]
        latencies = []
        while not all(f.done() for f in drawing):
            latencies.append(timed(lambda: client.get(base))[0])
        images = [f.result()[0] for f in drawing]
        total = time.perf_counter() - start
    print(
        f"busy: {len(images)} cold heatmap images in parallel took {total * 1000:.0f} ms; "
        f"meanwhile GET /studies/{{id}} ×{len(latencies)}: median "
        f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.bench_api", description=__doc__)
    parser.add_argument("--optimizers", type=int, default=10, help="rows (default 10)")
    parser.add_argument("--etas", type=int, default=50, help="η values (default 50)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds per cell (default 10)")
    parser.add_argument("--cold", type=int, default=3, help="cold calls per endpoint")
    parser.add_argument("--warm", type=int, default=50, help="warm calls per endpoint")
    args = parser.parse_args(argv)
    import optuna  # its INFO line per importance study would interleave with the table

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    met = run(args.optimizers, args.etas, args.seeds, args.cold, args.warm)
    print("targets: all met" if met else "targets: some MISSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
