"""``python -m service.bench_api`` runs end to end on a tiny study and prints every endpoint
(the figures themselves are for people: nothing here times anything)."""

import subprocess
import sys
from pathlib import Path

from service.bench_api import ENDPOINTS, p95, synthetic_spec
from studies.spec import expand_grid, parse_spec

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_prints_every_endpoint_on_a_tiny_study():
    result = subprocess.run(
        [sys.executable, "-m", "service.bench_api", "--optimizers", "2", "--etas", "3",
         "--seeds", "2", "--cold", "1", "--warm", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("study: 2 optimizers × 3 η × 2 seeds = 12 finished trials")
    for endpoint in ENDPOINTS:
        (line,) = [line for line in lines if line.startswith(endpoint.name)]
        assert " 200 " in line, line  # every answer of the tiny study is a 200
    assert any(line.startswith("busy: ") for line in lines)
    assert lines[-1].startswith("targets: ")


def test_the_synthetic_spec_is_the_size_asked_for():
    spec = parse_spec(synthetic_spec(10, 50, 10), max_trials=5_000)
    assert len(expand_grid(spec)) == 5_000
    assert len({entry.row for entry in spec.entries}) == 10


def test_p95_is_the_nearest_rank():
    assert p95([1.0]) == 1.0
    assert p95([float(i) for i in range(1, 101)]) == 95.0
    assert p95([float(i) for i in range(1, 21)]) == 19.0
