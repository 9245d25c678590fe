"""The live study page against the served app: a real headless chromium (driven over the
DevTools protocol) watches the page of a running study change by itself and clicks through to
one heatmap cell's curves; and, over plain HTTP, the curves endpoint (every format, the stored
points, 404/422) and the events endpoint (a version event, then the end of the stream). These
are slow (a real Ray head); the browser test fails (never skips) without chromium, like
tests/service/test_browser.py.

Fast (the real app in process with FastAPI's TestClient and a launcher that runs nothing, the
trials' progress written through the repository): new curve points of a running trial, which
leave the study's version as it is, change the event token, the ``/curves`` answer and the
page's curve names; the plots' JSON says which value it used.
"""

import json
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from websockets.sync.client import connect

from service.app import create_app
from service.cache import study_version
from service.routers import live
from studies.settings import Settings
from studies.store import repository as repo
from tests.service.conftest import AUTH, FINISHED, TOKEN, wait_for
from tests.service.test_browser import FLAGS, PNG_SIGNATURE, chromium_binary
from tests.studies.test_lifecycle import RecordingLauncher

MAGIC = {"png": PNG_SIGNATURE, "pdf": b"%PDF-"}
MEDIA = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
# the smoke preset run trial by trial for 3 epochs: long enough to watch (15 trials on the
# test head's 2 CPUs), short enough for the suite
RUNNING_BODY: dict[str, Any] = {
    "preset": "smoke",
    "overrides": {
        "name": "live page <i>&</i>",  # markup in a name is text on the page
        "budget": {"epochs": 3},
        "execution": {"packing": "off"},
    },
}
WATCH_TIMEOUT_S = 240.0


# --- a browser driven over the DevTools protocol ----------------------------------------------


class Browser:
    """Headless chromium with one page, driven over its DevTools websocket."""

    def __init__(self, profile: Path) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        self.opened = ExitStack()  # the websocket, closed by close()
        self.process = subprocess.Popen(
            [chromium_binary(), *FLAGS, f"--user-data-dir={profile}",
             "--remote-debugging-port=0", "--remote-allow-origins=*", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        port_file = profile / "DevToolsActivePort"  # chromium writes its port there
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                pytest.fail("chromium did not open its DevTools port", pytrace=False)
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t["type"] == "page")
        self.socket = self.opened.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        )
        self.next_id = 0

    def command(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command; its result (events meanwhile are skipped)."""
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.command(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_until(self, expression: str, timeout: float, what: str) -> Any:
        """Evaluate ``expression`` until it is truthy; that value (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                pytest.fail(f"the page never showed {what} in {timeout:g} s", pytrace=False)
            time.sleep(0.5)
        return value

    def close(self) -> None:
        self.opened.close()
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    opened = Browser(tmp_path / "chromium-profile")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def running_study(api: httpx.Client) -> Iterator[str]:
    """A study that runs for a while, once it is running; cancelled afterwards if unfinished."""
    response = api.post("/studies", json=RUNNING_BODY, headers=AUTH)
    assert response.status_code == 202, response.text
    study_id = response.json()["id"]
    try:
        wait_for(api, study_id, lambda b: b["status"] != "pending", WATCH_TIMEOUT_S)
        yield study_id
    finally:
        if api.get(f"/studies/{study_id}").json()["status"] not in FINISHED:
            api.post(f"/studies/{study_id}/cancel", headers=AUTH)


PROGRESS = "document.querySelector('#progress-text').textContent.replace(/\\s+/g, ' ').trim()"


@pytest.mark.slow
def test_the_page_of_a_running_study_updates_itself_and_opens_a_cell(
    service_url: str, api: httpx.Client, running_study: str, browser: Browser
):
    browser.command("Page.navigate", url=f"{service_url}/ui/studies/{running_study}")
    browser.wait_until("document.readyState === 'complete'", 60, "the loaded page")
    # markup in the study's name is shown as text, not parsed
    assert browser.evaluate("document.querySelector('h1').textContent") == "live page <i>&</i>"
    assert browser.evaluate("document.querySelector('h1 i')") is None
    browser.evaluate("window.sameDocument = true")  # gone if the page were reloaded
    first = browser.evaluate(PROGRESS)
    first_status = browser.evaluate("document.querySelector('#status').textContent")
    assert first_status == "running", (first_status, first)

    # the page changes by itself while the study runs (server-sent events, no reload)
    changed = browser.wait_until(
        f"({PROGRESS}) !== {json.dumps(first)} && {PROGRESS}", WATCH_TIMEOUT_S,
        "new progress",
    )  # fmt: skip
    assert browser.evaluate("window.sameDocument") is True
    assert int(browser.evaluate("document.body.dataset.updates")) >= 1
    done = [int(text.split("/")[0]) for text in (first, changed)]
    assert done[1] >= done[0], (first, changed)

    # a finished cell appears in the clickable heatmap as results arrive; click it
    finished_cell = "document.querySelector('#cells button.cell[data-status=ok]')"
    cell = browser.wait_until(
        f"{finished_cell} && [{finished_cell}.dataset.optimizer, {finished_cell}.dataset.eta]",
        WATCH_TIMEOUT_S, "a finished heatmap cell",
    )  # fmt: skip
    optimizer, eta = cell
    browser.evaluate(f"{finished_cell}.click()")
    browser.wait_until("!document.querySelector('#cell-view').hidden", 30, "the cell view")
    title = browser.evaluate("document.querySelector('#cell-title').textContent")
    assert title == f"{optimizer} at η = {eta}"

    # the cell's curve image: drawn by the browser, for that optimizer and η
    browser.wait_until(
        "(() => { const i = document.querySelector('#cell-curves');"
        " return i.complete && i.naturalWidth > 0 && !i.hidden; })()",
        60, "the cell's curves drawn",
    )  # fmt: skip
    source = browser.evaluate("document.querySelector('#cell-curves').getAttribute('src')")
    query = parse_qs(urlsplit(source).query)
    assert urlsplit(source).path == f"/studies/{running_study}/curves"
    assert query["optimizer"] == [optimizer] and query["eta"] == [eta]
    assert query["format"] == ["png"]
    served = api.get(source)
    assert served.status_code == 200 and served.content.startswith(PNG_SIGNATURE)

    # its seeds with their final values, and downloads in every format
    rows = browser.wait_until(
        "(() => { const r = [...document.querySelectorAll('#cell-trials tr')].slice(1);"
        " return r.length && r.map(row => [...row.cells].map(c => c.textContent)); })()",
        30, "the cell's trials",
    )  # fmt: skip
    assert [row[0] for row in rows] == ["0"]  # the smoke preset: one seed
    assert rows[0][1] == "completed"
    stored = api.get(f"/studies/{running_study}/trials", params={"optimizer": optimizer}).json()
    trial = next(t for t in stored["items"] if str(t["eta"]) == eta or f"{t['eta']:g}" == eta)
    assert float(rows[0][2]) == pytest.approx(trial["final_objective"], rel=5e-3)
    formats = browser.evaluate(
        "[...document.querySelectorAll('figure[data-plot=cell] .downloads a')]"
        ".map(a => a.dataset.format)"
    )
    assert formats == ["png", "svg", "pdf", "json"]


# --- the curves endpoint ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_curves_are_drawn_in_every_format(api: httpx.Client, smoke_study: dict, fmt: str):
    response = api.get(f"/studies/{smoke_study['id']}/curves", params={"format": fmt})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(MEDIA[fmt])
    if fmt == "svg":
        assert ET.fromstring(response.content).tag.endswith("svg")
    else:
        assert response.content.startswith(MAGIC[fmt])


@pytest.mark.slow
def test_curves_json_holds_the_stored_points(api: httpx.Client, smoke_study: dict):
    study_id = smoke_study["id"]
    body = api.get(f"/studies/{study_id}/curves").json()
    assert body["metric"] == "train_loss" and "train_loss" in body["metrics"]
    assert list(body["panels"]) == ["alig", "sgd", "adam"]
    trials = [t for panel in body["panels"].values() for t in panel]
    assert len(trials) == smoke_study["progress"]["total"] == 15
    for trial in trials:
        stored = api.get(
            f"/studies/{study_id}/trials/{trial['key']}/metrics", params={"name": "train_loss"}
        ).json()["points"]
        assert trial["points"] == [[p["step"], p["value"]] for p in stored]
        assert trial["points"], f"trial {trial['key']} has no train_loss point"
        record = api.get(f"/studies/{study_id}/trials/{trial['key']}").json()
        assert (trial["status"], trial["final_objective"]) == (
            record["status"], record["final_objective"],
        )  # fmt: skip


@pytest.mark.slow
def test_curves_of_one_cell_are_its_seeds(api: httpx.Client, smoke_study: dict):
    study_id = smoke_study["id"]
    body = api.get(f"/studies/{study_id}/curves", params={"optimizer": "sgd", "eta": "0.01"})
    assert body.status_code == 200, body.text
    cell = body.json()
    assert cell["cell"] is True and cell["optimizer"] == "sgd" and cell["eta"] == 0.01
    assert list(cell["panels"]) == ["sgd"]
    assert [(t["optimizer"], t["eta"], t["seed"]) for t in cell["panels"]["sgd"]] == [
        ("sgd", 0.01, 0)
    ]


@pytest.mark.slow
def test_curves_refuse_what_the_study_does_not_have(api: httpx.Client, smoke_study: dict):
    study_id = smoke_study["id"]
    missing = api.get("/studies/no-such-study/curves")
    assert missing.status_code == 404 and "no-such-study" in missing.json()["detail"]
    unknown = api.get(f"/studies/{study_id}/curves", params={"optimizer": "lion"})
    assert unknown.status_code == 422
    detail = unknown.json()["detail"]
    assert detail.startswith("optimizer:") and "'lion'" in detail and "'alig'" in detail
    no_eta = api.get(f"/studies/{study_id}/curves", params={"optimizer": "sgd", "eta": "0.5"})
    assert no_eta.status_code == 422 and no_eta.json()["detail"].startswith("eta:")
    metric = api.get(f"/studies/{study_id}/curves", params={"metric": "no_such_curve"})
    assert metric.status_code == 422 and "'no_such_curve'" in metric.json()["detail"]
    bad_format = api.get(f"/studies/{study_id}/curves", params={"format": "gif"})
    assert bad_format.status_code == 422 and bad_format.json()["detail"].startswith("format:")


@pytest.mark.slow
@pytest.mark.parametrize("plot", ["tunability", "importance"])
def test_the_analysis_plots_are_served_as_pdf_and_png(
    api: httpx.Client, smoke_study: dict, plot: str
):
    for fmt in ("png", "pdf"):
        response = api.get(f"/studies/{smoke_study['id']}/plots/{plot}", params={"format": fmt})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith(MEDIA[fmt])
        assert response.content.startswith(MAGIC[fmt])


# --- the events endpoint ----------------------------------------------------------------------


def read_events(response: httpx.Response) -> list[tuple[str, Any]]:
    """The (event, data) pairs of a text/event-stream response until the server ends it."""
    events, name, data = [], None, []
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data.append(line.removeprefix("data: "))
        elif line == "" and name is not None:
            events.append((name, json.loads("\n".join(data))))
            name, data = None, []
    return events


@pytest.mark.slow
def test_the_events_of_a_finished_study_are_its_version_then_the_end(
    service_url: str, api: httpx.Client, smoke_study: dict
):
    study_id = smoke_study["id"]
    started = time.monotonic()
    with httpx.stream("GET", f"{service_url}/studies/{study_id}/events", timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_events(response)  # returns only once the server closed the stream
    assert time.monotonic() - started < 30
    assert [name for name, _ in events] == ["version", "end"]
    version = events[0][1]
    assert version["status"] == "succeeded"
    assert version["progress"] == api.get(f"/studies/{study_id}").json()["progress"]
    assert len(version["version"]) == 16 and events[1][1] == version


@pytest.mark.slow
def test_the_events_of_an_unknown_study_are_a_404(api: httpx.Client):
    response = api.get("/studies/no-such-study/events")
    assert response.status_code == 404 and "no-such-study" in response.json()["detail"]


# --- in process: a study whose trials report, written through the repository ------------------

GRID_SPEC: dict[str, Any] = {
    "name": "reporting",
    "task": "matrix-factorisation",
    "optimizers": ["sgd"],
    "grid": {"eta": [0.01, 0.1, 1.0], "seed": [0, 1]},
    "budget": {"epochs": 3},
}


def in_process_app(tmp_path: Path) -> TestClient:
    """The real app on a fresh SQLite file, with a launcher that runs nothing."""
    settings = Settings(data_dir=tmp_path, api_token=TOKEN, reconcile_interval_seconds=0)
    return TestClient(create_app(settings, RecordingLauncher()))


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[TestClient]:
    with in_process_app(tmp_path) as client:
        yield client


def submit(client: TestClient, spec: dict[str, Any] = GRID_SPEC) -> tuple[str, dict[Any, str]]:
    """A submitted study (its driver never runs): its id and its trial keys by (η, seed)."""
    response = client.post("/studies", json=spec, headers=AUTH)
    assert response.status_code == 202, response.text
    study_id = response.json()["id"]
    items = client.get(f"/studies/{study_id}/trials").json()["items"]
    return study_id, {(t["eta"], t["seed"]): t["key"] for t in items}


def report(client: TestClient, study_id: str, key: str, *points: tuple[int, str, float]) -> None:
    """What the driver's callback writes on a report: the trial's curve points, nothing else."""
    with client.app.state.store.session() as session:
        repo.record_metric_points(session, study_id, key, list(points))


def page_data(client: TestClient, study_id: str) -> dict[str, Any]:
    """The JSON the study page hands its script (``#page-data``)."""
    page = client.get(f"/ui/studies/{study_id}")
    assert page.status_code == 200, page.text
    text = page.text.split('<script id="page-data" type="application/json">', 1)[1]
    return json.loads(text.split("</script>", 1)[0])


def test_new_points_of_a_running_trial_change_the_token_and_the_curves(app_client: TestClient):
    study_id, keys = submit(app_client)
    key = keys[(0.1, 0)]
    store = app_client.app.state.store
    with store.session() as session:
        assert repo.mark_trial_running(session, study_id, key)
    report(app_client, study_id, key, (1, "train_loss", 0.5))

    def observed() -> tuple[Any, str, str, list[Any]]:
        with store.session() as session:
            version = study_version(session, study_id)
        token = live.study_state(store, study_id)["version"]
        curves = app_client.get(f"/studies/{study_id}/curves", params={"optimizer": "sgd"})
        assert curves.status_code == 200, curves.text
        trial = next(t for t in curves.json()["panels"]["sgd"] if t["key"] == key)
        return version, token, page_data(app_client, study_id)["state"]["version"], trial["points"]

    version, token, page_token, points = observed()
    assert points == [[1, 0.5]] and page_token == token
    assert observed() == (version, token, page_token, points)  # nothing new: the same answer
    report(app_client, study_id, key, (2, "train_loss", 0.25))
    new_version, new_token, new_page_token, new_points = observed()
    assert new_version == version  # the points touch no trial row: the study's version stays
    assert new_token != token and new_page_token == new_token
    assert new_points == [[1, 0.5], [2, 0.25]]
    image = app_client.get(f"/studies/{study_id}/curves", params={"format": "svg"})
    assert image.status_code == 200 and ET.fromstring(image.content).tag.endswith("svg")


def test_the_page_offers_the_curves_recorded_so_far_and_caches_them(app_client: TestClient):
    study_id, keys = submit(app_client)
    assert page_data(app_client, study_id)["curves"] == [live.DEFAULT_CURVE]  # nothing yet
    key = keys[(0.01, 1)]
    report(app_client, study_id, key, (1, "train_loss", 0.9), (1, "val_loss", 1.1))
    assert page_data(app_client, study_id)["curves"] == ["train_loss", "val_loss"]
    cache = app_client.app.state.answer_cache
    hits = cache.hits
    assert page_data(app_client, study_id)["curves"] == ["train_loss", "val_loss"]
    assert cache.hits == hits + 1  # the same version and steps: read from the cache
    report(app_client, study_id, key, (2, "train_loss", 0.8), (2, "step_size", 0.01))
    assert page_data(app_client, study_id)["curves"] == ["step_size", "train_loss", "val_loss"]


@pytest.mark.parametrize("plot", ["tunability", "importance"])
def test_the_plots_json_says_which_value_it_used(app_client: TestClient, plot: str):
    study_id, keys = submit(app_client)
    store = app_client.app.state.store
    for (eta, seed), key in keys.items():
        final = 1.0 + eta + seed / 10
        report(
            app_client, study_id, key, (1, "train_loss", 2 * final), (2, "train_loss", final / 2)
        )
        with store.session() as session:
            repo.record_trial_result(
                session, study_id, key, status="completed", final_objective=final
            )
    for value in ("final", "best"):
        response = app_client.get(
            f"/studies/{study_id}/plots/{plot}", params={"format": "json", "value": value}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["value"] == value
        # the same answer as the analysis' own JSON route with the same value
        assert body == app_client.get(f"/studies/{study_id}/{plot}", params={"value": value}).json()
