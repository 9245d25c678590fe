"""The ``sensitivity`` CLI over real HTTP against the API served by uvicorn, and ``make run``'s
demo (``python -m service.demo --exit-when-done``).

Two servers, each in a background thread of this process on a free port:
- ``offline_url``: the API with a token and no reachable Ray (the launcher only connects when a
  study is launched), for the error paths — fast;
- ``ray_url``: the API launching studies on the shared test Ray head (``ray_head``, once its
  Jobs API accepts jobs: ``ray_jobs_ready``), for the submit → status → heatmap → robustness →
  export path — slow.
"""

import asyncio
import csv
import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from service.app import create_app
from service.cli import app, parse_overrides
from service.client import ApiClient, ApiError
from service.demo import ServiceThread
from studies.settings import Settings
from studies.store import Store, repository
from tests.postgres import free_port

TOKEN = "cli-test-token"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OPTIMIZERS = ("alig", "sgd", "adam")  # the smoke preset's
ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def cli(url: str, *args: str, token: str | None = None):
    """Run ``sensitivity --url URL [--token T] ARGS`` in-process; the click Result."""
    options = ["--url", url] + (["--token", token] if token else [])
    env = {"SENSITIVITY_URL": None, "SENSITIVITY_API_TOKEN": None, "COLUMNS": "200"}
    return runner.invoke(app, [*options, *args], env=env)


def assert_api_error(result, message: str) -> None:
    """Exit code 1, the server's message, and no traceback."""
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


@contextmanager
def served(settings: Settings) -> Iterator[str]:
    service = ServiceThread(create_app(settings), "127.0.0.1", free_port())
    try:
        yield service.start(timeout=60)
    finally:
        service.stop()


@pytest.fixture(scope="module")
def offline_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("offline"),
        database_url=None,
        ray_address=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        api_token=TOKEN,
    )


@pytest.fixture(scope="module")
def offline_url(offline_settings: Settings) -> Iterator[str]:
    with served(offline_settings) as url:
        yield url


# --- without Ray: the error paths ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["status", "no-such-study"],
        ["status", "no-such-study", "--no-watch"],
        ["heatmap", "no-such-study", "-o", "{tmp}/h.png"],
        ["robustness", "no-such-study"],
        ["export", "no-such-study", "-o", "{tmp}/r.csv"],
        ["cancel", "no-such-study"],
    ],
    ids=lambda args: "-".join(a for a in args if not a.startswith("{")),
)
def test_unknown_study_exits_1_with_the_servers_message(offline_url, tmp_path, args):
    args = [a.format(tmp=tmp_path) for a in args]
    result = cli(offline_url, *args, token=TOKEN)
    assert_api_error(result, "HTTP 404: study 'no-such-study' not found")
    assert not list(tmp_path.iterdir())  # nothing written


def test_status_timeout_exits_1_naming_the_state(offline_url, offline_settings):
    # a study that stays pending: stored directly, never launched (there is no Ray here)
    store = Store(offline_settings.resolved_database_url)
    try:
        with store.session() as session:
            study, _ = repository.create_study(
                session, name="waiting", task="matrix-factorisation", spec={}, trials=[]
            )
    finally:
        store.dispose()
    result = cli(offline_url, "status", study.id, "--interval", "0.1", "--timeout", "0.3")
    assert_api_error(result, f"study {study.id} is still pending after 0.3 s")


def test_mutating_without_the_token_is_refused(offline_url):
    result = cli(offline_url, "cancel", "no-such-study")
    assert_api_error(
        result, "HTTP 401: authorization: this request needs 'Authorization: Bearer <token>'"
    )


def test_invalid_spec_file_prints_the_offending_field(offline_url, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "task: matrix-factorisation\noptimizers: [nope]\ngrid: {eta: [0.1]}\nbudget: {epochs: 1}\n"
    )
    result = cli(offline_url, "submit", str(spec), token=TOKEN)
    assert_api_error(result, "HTTP 422: optimizers[0]: unknown optimizer 'nope'")


def test_overrides_are_merged_into_a_spec_file(offline_url, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(
        '{"task": "matrix-factorisation", "optimizers": ["sgd"], "grid": {"eta": [0.1]}}'
    )
    # the override supplies the missing budget, so the server complains about the optimizer
    result = cli(
        offline_url, "submit", str(spec), "-O", "budget.epochs=1", "-O", 'optimizers=["nope"]',
        token=TOKEN,
    )  # fmt: skip
    assert_api_error(result, "optimizers[0]: unknown optimizer 'nope'")


def test_unknown_preset(offline_url):
    result = cli(offline_url, "submit", "--preset", "nope", token=TOKEN)
    assert_api_error(result, "HTTP 422: preset: unknown preset 'nope'; valid presets:")


def test_list_on_an_empty_service(offline_url):
    result = cli(offline_url, "list")
    assert result.exit_code == 0, result.output
    assert "studies" in result.output


def test_a_service_that_is_not_running(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["list"], ["status", "abc"], ["submit", "--preset", "smoke"]):
        result = cli(url, *args)
        assert_api_error(result, f"cannot reach the service at {url}: is it running?")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit"], "give either FILE or --preset NAME"),
        (["submit", "--preset", "smoke", "-O", "budget"], "expected KEY=JSON, got 'budget'"),
        (["heatmap", "abc", "-o", "out.jpg"], "use a .png or .svg file name"),
    ],
)
def test_usage_errors_exit_2(args, message):
    result = cli("http://127.0.0.1:9", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_parse_overrides():
    assert parse_overrides(['budget={"epochs": 1}', "budget.steps=3", "name=my run"]) == {
        "budget": {"epochs": 1, "steps": 3},
        "name": "my run",
    }
    assert parse_overrides(["grid.seed=[0, 1]", "grid.seed=[2]"]) == {"grid": {"seed": [2]}}
    with pytest.raises(ValueError, match="expected KEY=JSON"):
        parse_overrides(["=1"])


def test_client_errors_carry_status_and_detail(offline_url):
    with ApiClient(offline_url) as client:
        with pytest.raises(ApiError) as caught:
            client.get_study("nope")
        assert (caught.value.status, caught.value.detail) == (404, "study 'nope' not found")
        with pytest.raises(ApiError) as caught:
            client.heatmap("nope", format="png", radius="x")
        assert (caught.value.status, caught.value.detail) == (
            422,
            "radius: must be a number or 'none', got 'x'",
        )
    with ApiClient(f"http://127.0.0.1:{free_port()}") as client, pytest.raises(ApiError) as caught:
        client.health()
    assert caught.value.status is None
    assert "cannot reach the service" in caught.value.detail


# --- on the shared Ray head: submit → status → heatmap → robustness → export ------------------


@pytest.fixture(scope="module")
def ray_url(tmp_path_factory: pytest.TempPathFactory, ray_jobs_ready: str) -> Iterator[str]:
    """The API on the shared Ray head once its Jobs API accepts jobs (tests/service/conftest)."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("cli"), database_url=None, api_token=None,
        ray_address=ray_jobs_ready,
    )  # fmt: skip
    with served(settings) as url:
        yield url


@pytest.fixture(scope="module")
def submitted(ray_url):
    return cli(ray_url, "submit", "--preset", "smoke", "--override", 'budget={"epochs": 1}')


@pytest.fixture(scope="module")
def study_id(submitted) -> str:
    assert submitted.exit_code == 0, submitted.output
    return submitted.stdout.strip()


@pytest.fixture(scope="module")
def finished(ray_url, study_id):
    result = cli(ray_url, "status", study_id, "--interval", "0.5", "--timeout", "150")
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.slow
def test_submit_prints_the_id(ray_url, submitted, study_id):
    assert submitted.stdout.strip().splitlines() == [study_id]
    assert f"sensitivity status {study_id}" in submitted.output  # the hint, on stderr
    with ApiClient(ray_url) as client:
        study = client.get_study(study_id)
    assert study.name == "smoke"
    assert study.n_trials == 15
    assert study.spec["budget"]["epochs"] == 1


@pytest.mark.slow
def test_status_follows_until_succeeded(ray_url, finished, study_id):
    last = finished.stdout.strip().splitlines()[-1]
    assert last.startswith(f"study {study_id} (smoke) succeeded: 15/15 trials finished")
    # --no-watch on a finished study: the summary alone, exit 0
    result = cli(ray_url, "status", study_id, "--no-watch")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == last


@pytest.mark.slow
def test_heatmap_png_and_svg(ray_url, finished, study_id, tmp_path):
    png = tmp_path / "out" / "x.png"
    result = cli(ray_url, "heatmap", study_id, "-o", str(png), "--batch-size", "32")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(png)
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    svg = tmp_path / "x.svg"
    result = cli(ray_url, "heatmap", study_id, "-o", str(svg))
    assert result.exit_code == 0, result.output
    assert b"<svg" in svg.read_bytes()[:1000]


@pytest.mark.slow
def test_robustness_table(ray_url, finished, study_id):
    result = cli(ray_url, "robustness", study_id)
    assert result.exit_code == 0, result.output
    for header in ("optimizer", "η low", "η high", "decades", "best η", "best value"):
        assert header in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.strip("│ ").startswith(OPTIMIZERS)]
    assert sorted(line.strip("│ ").split()[0] for line in rows) == sorted(OPTIMIZERS)
    result = cli(ray_url, "robustness", study_id, "--threshold", "1e9")
    assert result.exit_code == 0, result.output
    assert "threshold 1e+09" in result.stdout


@pytest.mark.slow
def test_export_csv(ray_url, finished, study_id, tmp_path):
    out = tmp_path / "r.csv"
    result = cli(ray_url, "export", study_id, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"{out} (15 trials)" in result.stdout
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 15
    assert {row["optimizer"] for row in rows} == set(OPTIMIZERS)
    assert all(row["status"] in ("completed", "diverged") for row in rows)


@pytest.mark.slow
def test_list_and_state_conflicts(ray_url, finished, study_id):
    result = cli(ray_url, "list")
    assert result.exit_code == 0, result.output
    assert study_id in result.stdout
    assert_api_error(
        cli(ray_url, "cancel", study_id),
        f"HTTP 409: study {study_id} is already succeeded: nothing to cancel",
    )


# --- `make run` --------------------------------------------------------------------------------


def test_ctrl_c_while_serving_still_runs_the_lifespan_shutdown():
    """What stops the Ray head in ``make run``: Ctrl-C in the main thread, then ``stop()``."""
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        events.append("started")
        yield
        await asyncio.sleep(0.5)  # a head that takes a moment to stop
        events.append("stopped")

    service = ServiceThread(FastAPI(lifespan=lifespan), "127.0.0.1", free_port())
    service.start(timeout=30)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        while not service.wait(1.0):
            pass
    service.stop(timeout=30)
    assert events == ["started", "stopped"]
    assert not service.thread.is_alive()


@pytest.mark.slow
def test_demo_runs_the_smoke_study_and_exits_when_done(tmp_path, ray_head, ray_jobs_ready):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSITIVITY_")}
    env.update(SENSITIVITY_RAY_ADDRESS=ray_head.dashboard_url, COLUMNS="200")
    port = free_port()
    data = tmp_path / "data"
    completed = subprocess.run(
        [
            sys.executable, "-m", "service.demo", "--port", str(port), "--data-dir", str(data),
            "--override", 'budget={"epochs": 1}', "--override", "grid.eta.from=-1",
            "--override", "grid.eta.to=0", "--exit-when-done",
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "succeeded: 6/6 trials finished" in output  # 3 optimizers × 2 η
    assert "good-η ranges" in output
    for name in OPTIMIZERS:
        assert f"│ {name} " in output
    assert (data / "smoke-heatmap.png").read_bytes().startswith(PNG_SIGNATURE)
    base = f"http://127.0.0.1:{port}"
    for where in (f"{base}/docs", f"{base}/ui/studies/", ray_head.dashboard_url, "Stopped"):
        assert where in output
    assert "Traceback" not in output
