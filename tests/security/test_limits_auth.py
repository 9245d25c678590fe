"""Limits before work, and auth: a huge sweep is refused from its axis lengths, a large body is
a 413, too many unfinished studies a 429, protected reads need the token, an empty
Idempotency-Key and negative seeds are 422, ``serve`` refuses a network interface without a
token, and no secret reaches a Ray job's environment.

The app is the real one (``create_app``) with a fake launcher (no Ray), on a temporary SQLite
file, served in-process by FastAPI's TestClient.
"""

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.app import create_app
from service.cli import app as cli
from studies.settings import Settings
from tests.service.conftest import AUTH, TOKEN
from tests.studies.test_lifecycle import RecordingLauncher
from workers.launcher import driver_environment, secret_environment

SPEC: dict[str, Any] = {
    "task": "matrix-factorisation",
    "optimizers": ["sgd"],
    "grid": {"eta": [0.1]},
    "budget": {"epochs": 1},
}


def make_client(tmp_path, **settings: Any) -> TestClient:
    values = {"data_dir": tmp_path, "api_token": TOKEN, "reconcile_interval_seconds": 0, **settings}
    return TestClient(create_app(Settings(**values), RecordingLauncher()))


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    with make_client(tmp_path, max_unfinished_studies=3) as instance:
        yield instance


def test_a_huge_task_option_sweep_is_refused_fast_naming_the_limit(client: TestClient):
    sweeps = {"n_samples": list(range(100, 110)), "condition_number": list(range(1, 11)),
              "data_seed": list(range(10)), "val_fraction": [0.1 + i / 100 for i in range(10)],
              "rank": [1, 4, 10, "true-model"]}  # fmt: skip
    body = {**SPEC, "grid": {"eta": [0.1, 1.0], "task_options": sweeps}}
    started = time.perf_counter()
    response = client.post("/studies", json=body, headers=AUTH)
    elapsed = time.perf_counter() - started
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == (
        "grid: the study has 80000 trials, more than the limit of 5000 (SENSITIVITY_MAX_TRIALS)"
    )
    assert elapsed < 0.5


def test_a_body_over_the_limit_is_413_declared_or_streamed(tmp_path):
    with make_client(tmp_path, max_body_bytes=1000) as client:
        big = {**SPEC, "name": "x" * 2000}
        response = client.post("/studies", json=big, headers=AUTH)
        assert response.status_code == 413
        assert response.json() == {
            "detail": "body: larger than the limit of 1000 bytes (SENSITIVITY_MAX_BODY_BYTES)"
        }

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            yield b'{"name": "'
            for _ in range(50):
                yield b"x" * 100
            yield b'"}'

        response = client.post(
            "/studies", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
        )
        assert response.status_code == 413, response.text
        assert "SENSITIVITY_MAX_BODY_BYTES" in response.json()["detail"]
        assert client.post("/studies", json=SPEC, headers=AUTH).status_code == 202


def test_too_many_unfinished_studies_is_429_naming_the_limit(client: TestClient):
    for i in range(3):
        assert (
            client.post("/studies", json={**SPEC, "name": f"s{i}"}, headers=AUTH).status_code == 202
        )
    response = client.post("/studies", json={**SPEC, "name": "one more"}, headers=AUTH)
    assert response.status_code == 429
    assert "SENSITIVITY_MAX_UNFINISHED_STUDIES" in response.json()["detail"]
    assert response.headers["retry-after"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"budget": {"epochs": 10**6}}, "budget.epochs: 1000000 is more than the limit of 10000 (SENSITIVITY_MAX_BUDGET_EPOCHS)"),
        ({"task_options": {"n_samples": 10**7}}, "task_options.n_samples: 10000000 is more than the limit of 1000000 (SENSITIVITY_MAX_TASK_SAMPLES)"),
        ({"grid": {"eta": [0.1], "task_options": {"n_samples": [100, 10**7]}}}, "grid.task_options.n_samples[1]: 10000000 is more than the limit of 1000000 (SENSITIVITY_MAX_TASK_SAMPLES)"),
        ({"optimizers": [{"name": "sgd", "label": f"s{i}"} for i in range(40)]}, "optimizers: 40 entries is more than the limit of 32 (SENSITIVITY_MAX_OPTIMIZERS)"),
        ({"grid": {"eta": [0.001 * (i + 1) for i in range(300)]}}, "grid.eta: 300 η values is more than the limit of 256 (SENSITIVITY_MAX_ETA_VALUES)"),
        ({"tags": [f"t{i}" for i in range(33)]}, "tags: 33 tags is more than the limit of 32 (SENSITIVITY_MAX_TAGS)"),
        ({"grid": {"eta": [0.1], "seed": [-1]}}, "grid.seed[0]: Input should be greater than or equal to 0"),
        ({"task_options": {"data_seed": -1}}, "task_options.data_seed: must be >= 0, got -1"),
        ({"task_options": {"n_samples": 1e7}}, "task_options.n_samples: 10000000.0 is more than the limit of 1000000 (SENSITIVITY_MAX_TASK_SAMPLES)"),
        ({"task_options": {"n_samples": "10000000"}}, "task_options.n_samples: must be given as 10000000, not as the str '10000000'"),
        ({"task_options": {"data_seed": -1.0}}, "task_options.data_seed: must be >= 0, got -1.0"),
        ({"task_options": {"data_seed": True}}, "task_options.data_seed: must be given as 1, not as the bool True"),
        ({"grid": {"eta": [0.1], "task_options": {"n_samples": [100, 100.0]}}}, "grid.task_options.n_samples[1]: repeats the value 100.0"),
        ({"grid": None, "search": {"n_trials": 2, "eta": {"low": 0.01, "high": 1}, "seed": -1}}, "search.seed: Input should be greater than or equal to 0"),
    ],
    ids=["budget", "task-size", "swept-task-size", "optimizers", "eta-values", "tags",
         "grid-seed", "data-seed", "task-size-float", "task-size-string", "data-seed-float", "data-seed-bool",
         "sweep-repeats-a-value", "search-seed"],
)  # fmt: skip
def test_limits_and_seeds_are_422_naming_the_field_and_setting(
    tmp_path, changes: dict, message: str
):
    body = {k: v for k, v in {**SPEC, **changes}.items() if v is not None}
    with make_client(tmp_path, max_trials=100_000) as client:
        response = client.post("/studies", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == message


def test_an_empty_idempotency_key_is_422(client: TestClient):
    for key in ("", "   "):
        response = client.post("/studies", json=SPEC, headers={**AUTH, "Idempotency-Key": key})
        assert response.status_code == 422
        assert response.json()["detail"].startswith("idempotency-key: must not be empty")


def test_protected_reads_need_the_token_but_health_does_not(tmp_path):
    with make_client(tmp_path, protect_reads=True) as client:
        study_id = client.post("/studies", json=SPEC, headers=AUTH).json()["id"]
        # cancelled, so that its event stream ends (version, then end) instead of polling on
        assert client.post(f"/studies/{study_id}/cancel", headers=AUTH).status_code == 200
        # the path, and its status with the token (importance needs finished trials: a 422)
        reads = {
            "/studies": 200, "/tasks": 200, "/presets": 200, "/": 200,
            f"/ui/studies/{study_id}": 200,
            f"/studies/{study_id}/events": 200,
            f"/studies/{study_id}/curves": 200,
            f"/studies/{study_id}/plots/tunability": 200,
            f"/studies/{study_id}/plots/importance": 422,
            f"/compare?studies={study_id}": 200,
            f"/ui/compare?studies={study_id}": 200,
        }  # fmt: skip
        for path, status in reads.items():
            response = client.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
            assert client.get(path, headers=AUTH).status_code == status, path
        assert client.get("/health").status_code in (200, 503)  # never 401
        assert client.get("/openapi.json").status_code == 200  # the docs stay open
        # the page's script is code, not data: mounted outside the routers' dependencies
        script = client.get("/ui/static/study.js")
        assert script.status_code == 200 and "EventSource" in script.text
    with make_client(tmp_path) as client:  # the default: reads are open
        assert client.get("/studies").status_code == 200


def test_serve_refuses_a_network_interface_without_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv("SENSITIVITY_API_TOKEN", raising=False)
    started: list[dict] = []
    monkeypatch.setattr("service.server.serve", lambda **kwargs: started.append(kwargs))
    runner = CliRunner()
    args = ["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2 and started == []
    assert "refusing to serve on 0.0.0.0 without an API token" in result.output
    assert runner.invoke(cli, [*args, "--insecure"]).exit_code == 0 and len(started) == 1
    monkeypatch.setenv("SENSITIVITY_API_TOKEN", "t")
    assert runner.invoke(cli, args).exit_code == 0 and len(started) == 2
    monkeypatch.delenv("SENSITIVITY_API_TOKEN")
    assert runner.invoke(cli, ["serve", "--data-dir", str(tmp_path)]).exit_code == 0  # loopback


def test_the_job_environment_carries_no_secret(tmp_path):
    password, ray_token, api_token = "db-pass-123", "ray-token-456", "api-token-789"
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"postgresql+psycopg://sens:{password}@db:5432/studies",
        ray_auth_token=ray_token,
        api_token=api_token,
    )
    env = driver_environment(settings, attempt=0)
    text = repr(env)
    for secret in (password, ray_token, api_token):
        assert secret not in text
    assert env["SENSITIVITY_EXPECTED_DATABASE"] == "postgresql+psycopg://sens@db:5432/studies"
    assert "SENSITIVITY_DATABASE_URL" not in env and env["RAY_AUTH_MODE"] == "token"
    # the secrets go to the Ray processes' own environment instead (the local head)
    assert password in secret_environment(settings)["SENSITIVITY_DATABASE_URL"]
    # a driver whose own database URL names another database refuses to start
    with pytest.raises(ValueError, match="this driver was launched for"):
        Settings(
            database_url="sqlite:///other.sqlite",
            expected_database=env["SENSITIVITY_EXPECTED_DATABASE"],
        )
