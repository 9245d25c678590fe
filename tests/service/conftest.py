"""Fixtures of the service tests: the real app served by uvicorn over real HTTP, and one smoke
study shared by the API and browser tests.

- ``service_url``: ``create_app`` with the real :class:`RayJobLauncher` pointed at the shared
  test Ray head (``ray_head``), a SQLite file in a temporary data directory and an API token,
  served by ``uvicorn.Server`` in a background thread of this process on a free port; the
  fixture returns once ``/health`` answers. Studies submitted to it run as real Ray Jobs.
- ``api``: an ``httpx.Client`` on it that fails the test on any 5xx other than a 503.
- ``smoke_submission`` / ``smoke_study``: the ``smoke`` preset (3 optimizers × 5 η, 1 epoch)
  submitted once per session (the POST's response), and the study once it has finished.
"""

import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from service.app import create_app
from studies.settings import Settings
from tests.postgres import free_port

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SMOKE_BODY: dict[str, Any] = {"preset": "smoke", "overrides": {"budget": {"epochs": 1}}}
SMOKE_IDEMPOTENCY_KEY = f"smoke-{uuid.uuid4().hex}"  # replayed by the idempotency tests
FINISHED = ("succeeded", "failed", "cancelled")
JOB_TERMINAL = ("STOPPED", "SUCCEEDED", "FAILED")
SMOKE_TIMEOUT_S = 180.0


def no_server_errors(response: httpx.Response) -> None:
    """An httpx response hook: no input may produce a 500 (503 = Ray unreachable is allowed)."""
    if response.status_code >= 500 and response.status_code != 503:
        response.read()
        raise AssertionError(
            f"{response.request.method} {response.request.url} answered "
            f"{response.status_code}: {response.text[:2000]}"
        )


@contextmanager
def serve(app: FastAPI, timeout: float = 60.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a daemon thread on a free port of 127.0.0.1; yield its URL
    once ``/health`` answers; shut down through the lifespan on exit."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on",
        timeout_graceful_shutdown=5,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if not thread.is_alive():
                raise RuntimeError("the service did not start (see the captured log)")
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not answer on {url}/health in {timeout} s")
            time.sleep(0.1)
        yield url
    finally:
        server.should_exit = True  # never force_exit: the lifespan closes the store
        thread.join(30)


@pytest.fixture(scope="session")
def ray_jobs_ready(ray_head: Any) -> str:
    """The shared head's Jobs API once it accepts jobs; its URL.

    The dashboard answers before the head's dashboard agent has registered, and until then a
    submit fails with "No available agent to submit job" (Ray waits only 10 s for it; a loaded
    2-core machine can take longer). A no-op job, retried, waits for the agent.
    """
    url = ray_head.dashboard_url
    job = {
        "entrypoint": f"{sys.executable} -c pass",
        "submission_id": f"service-tests-ready-{uuid.uuid4().hex}",
    }
    deadline = time.monotonic() + 120
    while True:
        response = httpx.post(f"{url}/api/jobs/", json=job, timeout=30)
        if response.status_code == 200:
            return url
        if time.monotonic() > deadline:
            pytest.fail(f"the Ray Jobs API at {url} accepts no job: {response.text}")
        time.sleep(1.0)


@pytest.fixture(scope="session")
def service_settings(tmp_path_factory: pytest.TempPathFactory, ray_jobs_ready: str) -> Settings:
    """The served app's settings: SQLite in a temporary data directory, the shared Ray head."""
    return Settings(
        data_dir=tmp_path_factory.mktemp("service"),
        database_url=None,
        storage_path=None,
        ray_address=ray_jobs_ready,
        ray_dashboard_url=None,
        api_token=TOKEN,
        max_trials=200,
    )


@pytest.fixture(scope="session")
def service_url(service_settings: Settings) -> Iterator[str]:
    """The base URL of the real app served by uvicorn (studies run as Ray Jobs)."""
    with serve(create_app(service_settings)) as url:
        # the port is only known now: the launcher reads the page links from these settings
        service_settings.public_url = url
        yield url


@pytest.fixture(scope="session")
def api(service_url: str) -> Iterator[httpx.Client]:
    """An HTTP client of the served app (no token: tests pass ``headers=AUTH`` to mutate)."""
    with httpx.Client(
        base_url=service_url, timeout=60, event_hooks={"response": [no_server_errors]}
    ) as client:
        yield client


@pytest.fixture(scope="session")
def smoke_submission(api: httpx.Client) -> httpx.Response:
    """The response to submitting the smoke preset (1 epoch) with an idempotency key."""
    headers = {**AUTH, "Idempotency-Key": SMOKE_IDEMPOTENCY_KEY}
    return api.post("/studies", json=SMOKE_BODY, headers=headers)


def wait_for(
    api: httpx.Client, study_id: str, done: Any, timeout: float, interval: float = 0.5
) -> dict[str, Any]:
    """Poll ``GET /studies/{id}`` until ``done(body)``; the last body (fails on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/studies/{study_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        if done(body):
            return body
        if time.monotonic() > deadline:
            pytest.fail(f"study {study_id} not done after {timeout:g} s: {body}", pytrace=False)
        time.sleep(interval)


def ray_job(ray_head: Any, job_id: str) -> dict[str, Any]:
    """The Ray Jobs API's record of a job (status, message, …)."""
    response = httpx.get(f"{ray_head.dashboard_url}/api/jobs/{job_id}", timeout=10)
    response.raise_for_status()
    return response.json()


def wait_for_job(ray_head: Any, job_id: str, timeout: float = 30.0) -> str:
    """Poll the Ray Jobs API until the job is STOPPED, SUCCEEDED or FAILED; that state."""
    deadline = time.monotonic() + timeout
    while (state := ray_job(ray_head, job_id)["status"]) not in JOB_TERMINAL:
        if time.monotonic() > deadline:
            pytest.fail(f"Ray job {job_id} still {state} after {timeout:g} s", pytrace=False)
        time.sleep(0.5)
    return state


@pytest.fixture(scope="session")
def smoke_study(
    api: httpx.Client, smoke_submission: httpx.Response, ray_head: Any
) -> dict[str, Any]:
    """The smoke study once finished (``GET /studies/{id}``); fails unless it succeeded."""
    assert smoke_submission.status_code == 202, smoke_submission.text
    study_id = smoke_submission.json()["id"]
    body = wait_for(api, study_id, lambda b: b["status"] in FINISHED, SMOKE_TIMEOUT_S)
    if body["status"] != "succeeded":
        logs = httpx.get(
            f"{ray_head.dashboard_url}/api/jobs/{body['ray_job_id']}/logs", timeout=10
        ).text
        pytest.fail(f"the smoke study ended {body['status']}: {body}\n{logs[-4000:]}")
    return body
