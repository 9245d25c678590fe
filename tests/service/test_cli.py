"""The ``sensitivity`` CLI over real HTTP against the API served by uvicorn, and ``make run``'s
demo (``python -m service.demo --exit-when-done``).

- ``offline_url``: the API with a token and no reachable Ray (the launcher only connects when a
  study is launched), in a background thread of this process: the error paths and the
  lifecycle writes, with the CLI in-process (typer's runner) — fast;
- the session's served app (``service_url``, ``smoke_study`` of tests/service/conftest.py: the
  smoke preset, finished): every read's ``--json`` against the API's own JSON, the exit codes
  and completion with the CLI as a real subprocess (``python -m service.cli``), and the
  tables, images and CSV in-process.
"""

import asyncio
import csv
import inspect
import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import get_args

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from service.app import create_app
from service.cli import ExitCode, app, parse_overrides
from service.cli.overrides import read_spec
from service.client import ApiClient, ApiError, ImageFormat
from service.demo import ServiceThread
from studies import rendering
from studies.settings import Settings
from studies.store import Store, repository
from studies.trial import Trial, TrialConfig
from tests.postgres import free_port
from tests.service.conftest import SMOKE_BODY, SMOKE_IDEMPOTENCY_KEY, TOKEN

OFFLINE_TOKEN = "cli-test-token"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# data that rich would read as markup: "[/x]" closes no tag (MarkupError), "[bold]…" restyles
MARKUP = "[/x] [bold]x[/bold]"
OPTIMIZERS = ("alig", "sgd", "adam")  # the smoke preset's
ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def cli(url: str, *args: str, token: str | None = None):
    """Run ``sensitivity --url URL [--token T] ARGS`` in-process; the click Result."""
    options = ["--url", url] + (["--token", token] if token else [])
    env = {"SENSITIVITY_URL": None, "SENSITIVITY_API_TOKEN": None, "COLUMNS": "200"}
    return runner.invoke(app, [*options, *args], env=env)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run ``python -m service.cli ARGS`` as a subprocess (no SENSITIVITY_* of this process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSITIVITY_")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def assert_error(result, code: ExitCode, message: str, progress: bool = False) -> None:
    """The exit code, the message as the one line of stderr (after the last state of the
    progress bar with ``progress``), nothing on stdout, and no traceback."""
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == (2 if progress else 1), result.stderr
    assert lines[-1].startswith("Error: ") and message in lines[-1], result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def assert_api_error(result, message: str) -> None:
    assert_error(result, ExitCode.API_ERROR, message)


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
        api_token=OFFLINE_TOKEN,
    )


@pytest.fixture(scope="module")
def offline_url(offline_settings: Settings) -> Iterator[str]:
    with served(offline_settings) as url:
        yield url


def store_study(settings: Settings, name: str) -> str:
    """A study stored directly, ``pending`` and never launched (there is no Ray here)."""
    store = Store(settings.resolved_database_url)
    try:
        with store.session() as session:
            study, _ = repository.create_study(
                session, name=name, task="matrix-factorisation", spec={}, trials=[]
            )
    finally:
        store.dispose()
    return study.id


def store_failed_study(settings: Settings, text: str) -> tuple[str, str]:
    """A study stored directly whose name, tag, error, one trial's optimizer label and that
    trial's reason are all ``text``: failed, with that trial failed; (study id, trial key)."""
    config = TrialConfig(
        task="matrix-factorisation", optimizer="sgd", eta=0.1, batch_size=8, budget=1
    )
    trial = Trial.of(text, config, {})
    store = Store(settings.resolved_database_url)
    try:
        with store.session() as session:
            study, _ = repository.create_study(
                session, name=text, task="matrix-factorisation", spec={}, trials=[trial],
                tags=[text],
            )  # fmt: skip
            repository.record_trial_result(
                session, study.id, trial.key, status="failed", reason=text
            )
            repository.set_study_status(session, study.id, "failed", error=text)
    finally:
        store.dispose()
    return study.id, trial.key


# --- without Ray: the error paths and the lifecycle writes --------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["show", "no-such-study"],
        ["status", "no-such-study"],
        ["status", "no-such-study", "--no-watch", "--json"],
        ["trials", "no-such-study"],
        ["heatmap", "no-such-study", "-o", "{tmp}/h.png"],
        ["heatmap", "no-such-study", "--json"],
        ["robustness", "no-such-study"],
        ["tunability", "no-such-study"],
        ["importance", "no-such-study", "--json"],
        ["sensitivity", "no-such-study", "-o", "{tmp}/s.svg"],
        ["reproduction", "no-such-study"],
        ["export", "no-such-study", "-o", "{tmp}/r.csv"],
        ["cancel", "no-such-study"],
        ["resume", "no-such-study"],
        ["delete", "no-such-study"],
        ["extend", "no-such-study", "-O", "grid.seed=[1]"],
    ],
    ids=lambda args: "-".join(a for a in args if not a.startswith("{")),
)
def test_unknown_study_exits_1_with_the_servers_message(offline_url, tmp_path, args):
    args = [a.format(tmp=tmp_path) for a in args]
    result = cli(offline_url, *args, token=OFFLINE_TOKEN)
    assert_api_error(result, "HTTP 404: study 'no-such-study' not found")
    assert not list(tmp_path.iterdir())  # nothing written


def test_status_timeout_exits_5_naming_the_state(offline_url, offline_settings):
    study_id = store_study(offline_settings, "waiting")
    result = cli(offline_url, "status", study_id, "--interval", "0.1", "--timeout", "0.3")
    message = f"study {study_id} is still pending after 0.3 s"
    assert_error(result, ExitCode.TIMEOUT, message, progress=True)
    # without --watch a pending study is not an error: its summary, exit 0
    result = cli(offline_url, "status", study_id, "--no-watch")
    assert result.exit_code == 0, result.output
    expected = f"study {study_id} (waiting) pending: 0/0 trials finished, 0 diverged, 0 failed"
    assert result.stdout.strip() == expected


def test_data_that_looks_like_markup_is_shown_as_it_is(offline_url, offline_settings):
    study_id, key = store_failed_study(offline_settings, MARKUP)
    reads = [
        (["list", "--tag", MARKUP], ExitCode.OK, 1),  # the name (the tags are not listed)
        (["show", study_id], ExitCode.OK, 3),  # the name, the tags, the error
        (["trials", study_id], ExitCode.OK, 1),  # the optimizer label
        (["trial", study_id, key], ExitCode.OK, 2),  # the optimizer label, the reason
        (["status", study_id], ExitCode.STUDY_UNSUCCESSFUL, 2),  # the summary: name, error
    ]
    for args, code, times in reads:
        result = cli(offline_url, *args)
        assert result.exit_code == code, (args, result.output)
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert result.stdout.count(MARKUP) == times, (args, result.stdout)
        assert result.stderr == ""
    # each in its own cell, next to its field's name
    shown = cli(offline_url, "trial", study_id, key).stdout
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in shown.splitlines()]
    assert ["reason", MARKUP] in rows and ["optimizer", MARKUP] in rows, shown
    assert ["status", "failed"] in rows


def test_the_progress_bar_shows_a_name_that_looks_like_markup(offline_url, offline_settings):
    study_id = store_study(offline_settings, f"{MARKUP} :thumbs_up:")
    result = cli(offline_url, "status", study_id, "--interval", "0.1", "--timeout", "0.2")
    assert result.exit_code == ExitCode.TIMEOUT, result.output
    bar = result.stderr.splitlines()[0]
    assert f"{MARKUP} :thumbs_up: pending" in bar, bar  # no markup read, no emoji code replaced


def test_cancel_status_delete_of_a_stored_study(offline_url, offline_settings):
    study_id = store_study(offline_settings, "to-delete")
    result = cli(offline_url, "cancel", study_id, "--json", token=OFFLINE_TOKEN)
    assert result.exit_code == 0, result.output
    cancelled = json.loads(result.stdout)
    assert (cancelled["id"], cancelled["status"]) == (study_id, "cancelled")
    # a cancelled study is finished without succeeding: exit 4, with its summary or its JSON
    result = cli(offline_url, "status", study_id)
    assert result.exit_code == ExitCode.STUDY_UNSUCCESSFUL, result.output
    assert result.stdout.startswith(f"study {study_id} (to-delete) cancelled: 0/0 trials")
    result = cli(offline_url, "status", study_id, "--no-watch", "--json")
    assert result.exit_code == ExitCode.STUDY_UNSUCCESSFUL, result.output
    assert json.loads(result.stdout) == httpx.get(f"{offline_url}/studies/{study_id}").json()
    assert_api_error(
        cli(offline_url, "extend", study_id, "-O", "grid.seed=[1]"),
        "HTTP 401: authorization: this request needs 'Authorization: Bearer <token>'",
    )
    result = cli(offline_url, "delete", study_id, token=OFFLINE_TOKEN)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"study {study_id} deleted\n"
    assert_api_error(cli(offline_url, "show", study_id), f"HTTP 404: study '{study_id}' not found")


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
    result = cli(offline_url, "submit", str(spec), token=OFFLINE_TOKEN)
    assert_api_error(result, "HTTP 422: optimizers[0]: unknown optimizer 'nope'")


def test_overrides_are_merged_into_a_spec_file(offline_url, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(
        '{"task": "matrix-factorisation", "optimizers": ["sgd"], "grid": {"eta": [0.1]}}'
    )
    # the override supplies the missing budget, so the server complains about the optimizer
    result = cli(
        offline_url, "submit", str(spec), "-O", "budget.epochs=1", "-O", 'optimizers=["nope"]',
        token=OFFLINE_TOKEN,
    )  # fmt: skip
    assert_api_error(result, "optimizers[0]: unknown optimizer 'nope'")


def test_unknown_preset(offline_url):
    result = cli(offline_url, "submit", "--preset", "nope", token=OFFLINE_TOKEN)
    assert_api_error(result, "HTTP 422: preset: unknown preset 'nope'; valid presets:")


def test_list_on_an_empty_service(offline_url):
    result = cli(offline_url, "list", "--tag", "no-such-tag")
    assert result.exit_code == 0, result.output
    assert "studies" in result.stdout
    result = cli(offline_url, "list", "--tag", "no-such-tag", "--json")
    assert json.loads(result.stdout) == {"items": [], "next_cursor": None}


def test_a_service_that_is_not_running_exits_3():
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["list"], ["status", "abc"], ["submit", "--preset", "smoke"], ["health"]):
        result = cli(url, *args)
        assert_error(result, ExitCode.UNREACHABLE, f"cannot reach the service at {url}: is it")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit"], "give either FILE or --preset NAME"),
        (["submit", "--preset", "smoke", "-O", "budget"], "expected KEY=JSON, got 'budget'"),
        (["submit", "--preset", "smoke", "-O", "budget={"], "--override: budget: not valid JSON"),
        (["extend", "abc"], "give what to add: a FILE and/or -O KEY=JSON"),
        (["heatmap", "abc", "-o", "out.jpg"], "use a .png, .svg or .pdf file name, got 'out.jpg'"),
        (["heatmap", "abc", "-o", "out.png", "--json"], "give one of them"),
        (["export", "abc", "-o", "out.csv", "--json"], "give one of them"),
        (["robustness", "abc", "--axis", "seed"], "--axis: expected NAME=VALUE, got 'seed'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, message):
    assert_error(cli("http://127.0.0.1:9", *args), ExitCode.USAGE, message)


@pytest.mark.parametrize("command", ["robustness", "tunability", "compare"])
def test_min_finite_fraction_must_be_in_0_1_before_anything_is_sent(command):
    # nothing listens at the URL: a value that got through would end in exit 3 (unreachable)
    url = f"http://127.0.0.1:{free_port()}"
    for bad in ("0", "-0.5", "1.5", "nan"):
        result = cli(url, command, "abc", "--min-finite-fraction", bad)
        assert result.exit_code == ExitCode.USAGE, (bad, result.output)
        assert "Invalid value for '--min-finite-fraction'" in result.stderr, result.stderr
        assert "must be a share of the seeds in (0, 1]" in result.stderr
        assert result.stdout == "" and "Traceback" not in result.output
    for good in ("1", "0.01"):  # (0, 1]: open at 0, closed at 1, as the API's gt=0, le=1
        result = cli(url, command, "abc", "--min-finite-fraction", good)
        assert result.exit_code == ExitCode.UNREACHABLE, (good, result.output)


def test_the_clients_image_formats_are_the_servers():
    assert set(get_args(ImageFormat)) == {"json", *rendering.FORMATS}
    drawn = ("curve", "heatmap", "sensitivity", "plot", "curves", "compare")
    for name in drawn:
        format_ = inspect.signature(getattr(ApiClient, name)).parameters["format"]
        assert format_.annotation == ImageFormat, name


def test_a_spec_file_that_is_not_a_mapping_exits_2(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("- a list\n- not a spec\n")
    assert_error(
        cli("http://127.0.0.1:9", "submit", str(spec)), ExitCode.USAGE, "must be a JSON/YAML"
    )
    spec.write_text("task: [unclosed\n")
    assert_error(
        cli("http://127.0.0.1:9", "submit", str(spec)), ExitCode.USAGE, "not valid JSON/YAML"
    )
    spec.write_bytes(b"name: caf\xe9\n")  # Latin-1, not UTF-8
    assert_error(cli("http://127.0.0.1:9", "submit", str(spec)), ExitCode.USAGE, "not UTF-8 text")


def test_yaml_dates_in_a_spec_file_are_sent_as_their_text(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: 2024-01-01\ntags: [2024-01-01T10:00:00]\ntask: digits\n"
        "task_options: {2024-01-02: 1}\n"
    )
    read = read_spec(spec)
    assert read == {
        "name": "2024-01-01", "tags": ["2024-01-01 10:00:00"], "task": "digits",
        "task_options": {"2024-01-02": 1},
    }  # fmt: skip
    json.dumps(read)  # what the client sends


def test_parse_overrides():
    assert parse_overrides(['budget={"epochs": 1}', "budget.steps=3", "name=my run"]) == {
        "budget": {"epochs": 1, "steps": 3},
        "name": "my run",
    }
    assert parse_overrides(["grid.seed=[0, 1]", "grid.seed=[2]"]) == {"grid": {"seed": [2]}}
    assert parse_overrides(["name=0.1x", "tags=", "note=a{b"]) == {
        "name": "0.1x", "tags": "", "note": "a{b",
    }  # fmt: skip
    with pytest.raises(ValueError, match="expected KEY=JSON"):
        parse_overrides(["=1"])
    for broken in ('budget={"epochs": 1', "grid.eta=[0.1,", 'name="unterminated'):
        with pytest.raises(ValueError, match="not valid JSON"):
            parse_overrides([broken])


def test_client_errors_carry_status_and_detail(offline_url):
    with ApiClient(offline_url) as client:
        with pytest.raises(ApiError) as caught:
            client.get_study("nope")
        assert (caught.value.status, caught.value.detail) == (404, "study 'nope' not found")
        assert client.last_response is not None and client.last_response.status_code == 404
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


# --- a real subprocess: version, completion, exit codes ----------------------------------------


def test_version_and_the_bash_completion_script():
    done = run_cli("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"sensitivity {version('eta-sensitivity')}\n"
    # --show-completion detects the shell it is run from (typer walks up the process tree), so
    # run it from bash, as a user would (a second command keeps bash from exec'ing the first)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSITIVITY_")}
    done = subprocess.run(
        ["bash", "-c", '"$0" -m service.cli --show-completion; exit $?', sys.executable],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert "_sensitivity_completion()" in done.stdout
    assert "_SENSITIVITY_COMPLETE=complete_bash" in done.stdout
    assert "complete -o default -F _sensitivity_completion sensitivity" in done.stdout


def test_completion_offers_commands_and_choices():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSITIVITY_")}
    env.update(_SENSITIVITY_COMPLETE="complete_bash", COMP_WORDS="sensitivity he", COMP_CWORD="1")
    done = subprocess.run(
        [sys.executable, "-m", "service.cli"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == ["health", "heatmap"]


def test_exit_codes_of_a_subprocess(offline_url):
    unknown = run_cli("--url", offline_url, "show", "no-such-study", "--json")
    assert unknown.returncode == ExitCode.API_ERROR == 1
    assert unknown.stderr == "Error: HTTP 404: study 'no-such-study' not found\n"
    assert unknown.stdout == ""
    url = f"http://127.0.0.1:{free_port()}"
    unreachable = run_cli("--url", url, "list", "--json")
    assert unreachable.returncode == ExitCode.UNREACHABLE == 3
    assert unreachable.stderr.startswith(f"Error: cannot reach the service at {url}: is it")
    assert len(unreachable.stderr.splitlines()) == 1 and unreachable.stdout == ""
    bad = run_cli("--url", offline_url, "submit", "--preset", "smoke", "-O", 'budget={"epochs": 1')
    assert bad.returncode == ExitCode.USAGE == 2
    assert bad.stderr.startswith("Error: --override: budget: not valid JSON: ")
    assert len(bad.stderr.splitlines()) == 1 and bad.stdout == ""


# --- the session's smoke study: every read's --json is the API's JSON ---------------------------

# (CLI arguments after the study id, the API path after /studies/{id}, its query parameters);
# {id} and {key} (the first trial's key) are filled in
STUDY_READS = [
    (["show", "{id}"], "/studies/{id}", {}),
    (["status", "{id}"], "/studies/{id}", {}),
    (["trials", "{id}", "--optimizer", "sgd", "--limit", "2"], "/studies/{id}/trials",
     {"optimizer": "sgd", "limit": 2}),
    (["trial", "{id}", "{key}"], "/studies/{id}/trials/{key}", {}),
    (["curve", "{id}", "{key}", "--name", "train_loss"], "/studies/{id}/trials/{key}/metrics",
     {"name": "train_loss"}),
    (["curves", "{id}", "--optimizer", "sgd"], "/studies/{id}/curves", {"optimizer": "sgd"}),
    (["heatmap", "{id}", "--value", "best"], "/studies/{id}/heatmap", {"value": "best"}),
    (["robustness", "{id}", "--tolerance", "100"], "/studies/{id}/robustness", {"tolerance": 100}),
    (["tunability", "{id}", "--diverged", "inf"], "/studies/{id}/tunability", {"diverged": "inf"}),
    (["importance", "{id}"], "/studies/{id}/importance", {}),
    (["sensitivity", "{id}"], "/studies/{id}/sensitivity", {}),
    (["export", "{id}"], "/studies/{id}/export", {"format": "json"}),
    (["reproduction", "{id}"], "/studies/{id}/reproduction", {}),
    (["compare", "{id}"], "/compare", {"studies": "{id}"}),
    (["list", "--tag", "smoke", "--status", "succeeded"], "/studies",
     {"tag": "smoke", "status": "succeeded"}),
    (["presets"], "/presets", {}),
    (["tasks"], "/tasks", {}),
    (["optimizers"], "/optimizers", {}),
    (["health"], "/health", {}),
]  # fmt: skip


@pytest.fixture(scope="module")
def first_key(api: httpx.Client, smoke_study: dict) -> str:
    response = api.get(f"/studies/{smoke_study['id']}/trials", params={"limit": 1})
    return response.json()["items"][0]["key"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "path", "params"), STUDY_READS, ids=[read[0][0] for read in STUDY_READS]
)
def test_json_of_every_read_is_the_apis_json(
    service_url, api, smoke_study, first_key, args, path, params
):
    def fill(text):
        return text.format(id=smoke_study["id"], key=first_key) if isinstance(text, str) else text

    done = run_cli("--url", service_url, *map(fill, args), "--json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    expected = api.get(fill(path), params={k: fill(v) for k, v in params.items()})
    assert expected.status_code == 200, expected.text
    assert json.loads(done.stdout) == expected.json()  # one document, nothing else on stdout


# --- the session's smoke study: submit, tables, images, CSV (in-process) ------------------------


@pytest.mark.slow
def test_submit_replays_the_smoke_submission_and_prints_its_id(service_url, smoke_study):
    # the same body and idempotency key as the session's submission: the same study, no new one
    overrides = json.dumps(SMOKE_BODY["overrides"]["budget"])
    result = cli(
        service_url, "submit", "--preset", SMOKE_BODY["preset"], "-O", f"budget={overrides}",
        "--idempotency-key", SMOKE_IDEMPOTENCY_KEY, token=TOKEN,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{smoke_study['id']}\n"
    assert f"follow it with: sensitivity status {smoke_study['id']}" in result.stderr


@pytest.mark.slow
def test_status_show_and_list_of_the_finished_study(service_url, smoke_study):
    study_id = smoke_study["id"]
    result = cli(service_url, "status", study_id)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"study {study_id} (smoke) succeeded: 15/15 trials finished")
    result = cli(service_url, "show", study_id)
    assert result.exit_code == 0, result.output
    assert "matrix-factorisation" in result.stdout and "spec:" in result.stdout
    assert json.loads(result.stdout.split("spec:\n", 1)[1]) == smoke_study["spec"]
    result = cli(service_url, "list", "--tag", "smoke")
    assert result.exit_code == 0, result.output
    assert study_id in result.stdout
    assert_api_error(
        cli(service_url, "cancel", study_id, token=TOKEN),
        f"HTTP 409: study {study_id} is already succeeded: nothing to cancel",
    )


@pytest.mark.slow
def test_robustness_and_heatmap_tables(service_url, smoke_study):
    result = cli(service_url, "robustness", smoke_study["id"])
    assert result.exit_code == 0, result.output
    for header in ("optimizer", "η low", "η high", "decades", "best η", "best value"):
        assert header in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.strip("│ ").startswith(OPTIMIZERS)]
    assert sorted(line.strip("│ ").split()[0] for line in rows) == sorted(OPTIMIZERS)
    result = cli(service_url, "robustness", smoke_study["id"], "--threshold", "1e9")
    assert result.exit_code == 0, result.output
    assert "threshold 1e+09" in result.stdout
    result = cli(service_url, "heatmap", smoke_study["id"])
    assert result.exit_code == 0, result.output
    for eta in ("0.001", "0.01", "0.1", "1", "10"):  # the smoke grid's columns
        assert f" {eta} " in result.stdout
    assert sum(line.strip("│ ").startswith(OPTIMIZERS) for line in result.stdout.splitlines()) == 3


@pytest.mark.slow
def test_images_are_written_and_their_path_printed(service_url, smoke_study, first_key, tmp_path):
    study_id = smoke_study["id"]
    png = tmp_path / "out" / "x.png"
    result = cli(service_url, "heatmap", study_id, "-o", str(png), "--batch-size", "32")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(png)
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    pdf = tmp_path / "x.pdf"
    result = cli(service_url, "curve", study_id, first_key, "-o", str(pdf))
    assert result.exit_code == 0, result.output
    assert pdf.read_bytes().startswith(b"%PDF-")
    for command in (["heatmap", study_id], ["sensitivity", study_id], ["tunability", study_id],
                    ["importance", study_id], ["curve", study_id, first_key],
                    ["curves", study_id], ["compare", study_id]):  # fmt: skip
        svg = tmp_path / f"{command[0]}.svg"
        result = cli(service_url, *command, "-o", str(svg))
        assert result.exit_code == 0, result.output
        assert b"<svg" in svg.read_bytes()[:1000]


@pytest.mark.slow
def test_export_csv(service_url, smoke_study, tmp_path):
    out = tmp_path / "r.csv"
    result = cli(service_url, "export", smoke_study["id"], "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"{out} (15 trials)" in result.stdout
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 15
    assert {row["optimizer"] for row in rows} == set(OPTIMIZERS)
    assert all(row["status"] in ("completed", "diverged") for row in rows)
    result = cli(service_url, "export", smoke_study["id"])  # no -o: the CSV on stdout
    assert result.stdout == out.read_text()


# a read without --json prints its table: (arguments, what the table must show)
TABLES = [
    (["tunability", "{id}"], ["tunability (final_objective, minimize)", "CPE", *OPTIMIZERS]),
    (["importance", "{id}"], ["hyperparameter importance", "fanova", "ped_anova", *OPTIMIZERS]),
    (["sensitivity", "{id}"], ["sensitivity of final_objective to η", *OPTIMIZERS]),
    (["compare", "{id}"], ["comparison of 1 studies", "final values", *OPTIMIZERS]),
    (["reproduction", "{id}"], ["reproduction of"]),
    (["trial", "{id}", "{key}"], ["{key}", "final objective", "last "]),
    (["curve", "{id}", "{key}"], ["step", "train_loss"]),
    (["presets"], ["smoke", "matrix-factorisation", "alig, sgd, adam"]),
    (["tasks"], ["matrix-factorisation", "final_objective", "compiled"]),
    (["optimizers"], ["alig", "adam", "sgd"]),
    (["health"], ["status", "ok"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "shown"), TABLES, ids=[table[0][0] for table in TABLES])
def test_every_read_prints_a_table(service_url, smoke_study, first_key, args, shown):
    def fill(text):
        return text.format(id=smoke_study["id"], key=first_key)

    result = cli(service_url, *map(fill, args))
    assert result.exit_code == 0, result.output
    for text in map(fill, shown):
        assert text in result.stdout
    assert result.stderr == ""


@pytest.mark.slow
def test_curves_table_has_a_row_per_trial(service_url, api, smoke_study):
    result = cli(service_url, "curves", smoke_study["id"], "--optimizer", "alig")
    assert result.exit_code == 0, result.output
    body = api.get(f"/studies/{smoke_study['id']}/curves", params={"optimizer": "alig"}).json()
    trials = body["panels"]["alig"]
    assert len(trials) == 5  # the smoke grid's 5 η
    for trial in trials:
        assert trial["key"] in result.stdout
    assert "curves of train_loss" in result.stdout


@pytest.mark.slow
def test_trials_table_lists_the_keys(service_url, api, smoke_study):
    result = cli(service_url, "trials", smoke_study["id"], "--optimizer", "adam")
    assert result.exit_code == 0, result.output
    page = api.get(f"/studies/{smoke_study['id']}/trials", params={"optimizer": "adam"}).json()
    assert len(page["items"]) == 5
    for trial in page["items"]:
        assert trial["key"] in result.stdout
    assert "alig" not in result.stdout


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
    # Ctrl-C as a terminal delivers it, whatever this process inherited (a shell that starts
    # a command in the background without job control makes it ignore SIGINT)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            while not service.wait(1.0):
                pass
    finally:
        signal.signal(signal.SIGINT, inherited)
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
