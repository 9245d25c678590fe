"""Faults nobody repairs by hand: the reconciler of the served app does (issue: hardening).

Against the real app (uvicorn, real HTTP) with the real launcher on the shared Ray head and a
reconciler passing every second:

- a study's driver killed with SIGKILL, and **no** resume by hand: the reconciler sees the dead
  job, launches the study again, and it completes with every trial exactly once (those finished
  before the kill are not run again);
- a study stored by an API that died before submitting its job (``pending``, no job): the
  reconciler launches it and it completes;
- the Jobs API unreachable (a proxy in front of it stopped): a submit is a 503 that stores the
  study ``pending`` (not ``failed``); once the proxy is back, the reconciler launches it.
"""

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.app import create_app
from studies.settings import Settings
from studies.spec import expand_grid, parse_spec
from studies.store import Store, repository
from tests.postgres import free_port
from tests.service.conftest import AUTH, TOKEN, serve, wait_for

pytestmark = pytest.mark.slow

SPEC = {
    "name": "faults",
    "task": "dnc-copy",
    "optimizers": ["alig", "sgd"],
    "grid": {"eta": [0.1, 1.0], "batch_size": [4], "seed": [0, 1]},
    "budget": {"steps": 80},
    "device": "cpu",
    "execution": {"packing": "off"},  # trials finish one by one: some before the kill
}


class Proxy:
    """A TCP proxy to ``target`` (host, port) on a free local port, which can be stopped and
    started again on the same port: the Jobs API "going away" and coming back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: socket.socket | None = None
        self._open: set[socket.socket] = set()  # connections through it, cut on stop

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(32)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def stop(self) -> None:
        """Stop listening and cut every connection (a kept-alive one must not reach Ray)."""
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept
            self._server.close()
            self._server = None
        for connection in list(self._open):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        self._open.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


@pytest.fixture(scope="module")
def proxy(ray_jobs_ready: str) -> Iterator[Proxy]:
    host_port = ray_jobs_ready.removeprefix("http://").split(":")
    proxy = Proxy((host_port[0], int(host_port[1])))
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, proxy: Proxy) -> Iterator[tuple]:
    """The app with a reconciler passing every second, reaching Ray through ``proxy``."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("faults"),
        ray_address=proxy.url,
        api_token=TOKEN,
        max_trials=200,
        reconcile_interval_seconds=1.0,
        reconcile_grace_seconds=1.0,
        ray_timeout_seconds=3.0,
    )
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client, settings


def _store(settings: Settings) -> Store:
    return Store(settings.resolved_database_url)


def _trials(settings: Settings, study_id: str) -> dict[str, Any]:
    store = _store(settings)
    try:
        with store.session() as session:
            return {t.key: t for t in repository.list_trials(session, study_id, limit=500).items}
    finally:
        store.dispose()


def _finished(body: dict[str, Any]) -> bool:
    return body["status"] in ("succeeded", "failed", "cancelled")


def test_a_killed_driver_is_relaunched_by_the_reconciler_and_runs_each_trial_once(served):
    client, settings = served
    submitted = client.post("/studies", json=SPEC, headers=AUTH)
    assert submitted.status_code == 202, submitted.text
    study_id = submitted.json()["id"]
    wait_for(client, study_id, lambda b: b["progress"]["done"] >= 2, timeout=240)
    found = subprocess.run(
        ["pgrep", "-f", f"workers.run {study_id}"], capture_output=True, text=True
    ).stdout.split()
    assert found, "the study's driver process was not found"
    for pid in found:
        os.kill(int(pid), signal.SIGKILL)
    before = {k: t for k, t in _trials(settings, study_id).items() if t.status != "running"}
    before = {k: t for k, t in before.items() if t.status in ("completed", "diverged")}
    assert before

    body = wait_for(client, study_id, _finished, timeout=420)  # nobody resumes by hand
    assert body["status"] == "succeeded", body
    after = _trials(settings, study_id)
    assert len(after) == 8 and all(t.status in ("completed", "diverged") for t in after.values())
    for key, old in before.items():  # finished before the kill: not run again
        assert after[key].attempts == 1
        assert after[key].finished_at == old.finished_at
    store = _store(settings)
    with store.session() as session:
        assert repository.get_study(session, study_id).launch_attempt >= 2  # launched again
    store.dispose()


def test_a_study_stored_but_never_submitted_is_launched_by_the_reconciler(served):
    client, settings = served
    spec = parse_spec({**SPEC, "name": "stranded", "grid": {**SPEC["grid"], "seed": [0]}})
    store = _store(settings)
    with store.session() as session:  # what an API that died right after storing leaves
        study, _ = repository.create_study(
            session, name="stranded", task=spec.task,
            spec=spec.model_dump(mode="json", by_alias=True), trials=expand_grid(spec),
        )  # fmt: skip
    store.dispose()
    body = wait_for(client, study.id, _finished, timeout=300)
    assert body["status"] == "succeeded", body
    assert body["progress"]["done"] == 4


def test_an_unreachable_cluster_is_a_503_then_the_study_runs_once_it_is_back(served, proxy):
    client, _ = served
    proxy.stop()
    try:
        body = {**SPEC, "name": "while-away", "grid": {**SPEC["grid"], "seed": [0]}}
        started = time.monotonic()
        response = client.post("/studies", json=body, headers=AUTH)
        assert response.status_code == 503, response.text
        assert "Retry-After" in response.headers
        assert time.monotonic() - started < 30  # a timeout, not a hang
        listed = client.get("/studies", headers=AUTH).json()["items"]
        study = next(s for s in listed if s["name"] == "while-away")
        assert study["status"] == "pending"  # kept for later, not a science failure
        time.sleep(3)
        assert client.get(f"/studies/{study['id']}").json()["status"] == "pending"
    finally:
        proxy.start()
    done = wait_for(client, study["id"], _finished, timeout=300)
    assert done["status"] == "succeeded", done
