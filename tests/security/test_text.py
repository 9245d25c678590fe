"""User text over HTTP: what a name, a label, a tag or a query string can do to the service.

Each finding is reproduced against the real app (``create_app``, Ray unreachable, served
in-process) on SQLite and on PostgreSQL, and the safe behaviour asserted:

- a ``$`` in a study name, an optimizer label or a metric name is drawn as text: every image
  route answers 200 (matplotlib's math-text parser used to fail the request);
- a label longer than its column, or a lone surrogate / control character in a name, label or
  tag, is a 422 naming the field, and nothing is stored (a 500 on insert before);
- undecodable query strings and paths are never a 500;
- the CSV export neutralises cells a spreadsheet would run as formulas, numbers stay numbers;
- analyses are computed once per study version (the cache) and a new result invalidates them.

Studies with results are written straight through the store's repository (as a driver would):
there is no Ray here to run them.
"""

import csv
import io
import json
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

import studies.analysis
from service.app import create_app
from service.bench_api import create_synthetic_study
from service.cache import Answer, AnswerCache
from service.exceptions import AnalysisUnavailable
from service.routers.analysis import spreadsheet_safe
from studies.catalog.optimizers import OPTIMIZERS
from studies.catalog.tasks import TASKS
from studies.settings import Settings
from studies.store import repository
from studies.store.models import MetricPointRow, StudyRow, TrialRow
from studies.text import (
    IDEMPOTENCY_KEY_MAX,
    LABEL_MAX,
    METRIC_NAME_MAX,
    NAME_MAX,
    TAG_MAX,
    TASK_MAX,
    text_problem,
)
from tests.postgres import create_database, free_port
from tests.service.conftest import AUTH, TOKEN, no_server_errors

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MATH = r"$\foo$"  # not valid math text: matplotlib's parser raises on it
SURROGATE = "\ud800"
BASE: dict[str, Any] = {
    "task": "matrix-factorisation",
    "optimizers": ["sgd"],
    "grid": {"eta": [0.1]},
    "budget": {"epochs": 1},
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """The app with a token, on SQLite and on PostgreSQL, whose Ray is unreachable; any 5xx
    fails the test (``no_server_errors``)."""
    database_url = None
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_url")
        database_url = create_database(server, f"security_text_{uuid.uuid4().hex[:8]}")
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("text"),
        database_url=database_url,
        ray_address=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        api_token=TOKEN,
    )
    instance = TestClient(create_app(settings), raise_server_exceptions=False)
    instance.event_hooks = {"request": [], "response": [no_server_errors]}
    instance.headers.update(AUTH)  # whatever a route needs: these tests are about the text
    with instance:
        yield instance


def study(client: TestClient, **options: Any) -> str:
    """A stored study of 2 optimizers × 3 η × 2 seeds with its results (see
    :func:`service.bench_api.create_synthetic_study`); its id."""
    return create_synthetic_study(client.app.state.store, 2, 3, 2, **options)


def post_raw(client: TestClient, body: dict[str, Any]) -> Any:
    """POST /studies with ``body`` as JSON text: ``\\ud800`` escapes, which json.loads (and so
    FastAPI) turns into lone surrogates, as any client may send them."""
    return client.post(
        "/studies",
        content=json.dumps(body),  # ensure_ascii: the surrogate travels as an escape
        headers={**AUTH, "content-type": "application/json"},
    )


def stored_ids(client: TestClient) -> set[str]:
    response = client.get("/studies", params={"limit": 500})
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["items"]}


def assert_422(response: Any, *fragments: str) -> str:
    """A 422 whose ``detail`` holds every fragment (the field, the reason); the detail."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    for fragment in fragments:
        assert fragment in detail, detail
    return detail


# --- math text: every image route draws user text as text --------------------------------------


def test_dollar_signs_in_names_labels_and_metrics_draw_as_text(client: TestClient):
    study_id = study(client, name=MATH, labels=[MATH, "a$b$c"])
    for route in ("heatmap", "sensitivity"):
        png = client.get(f"/studies/{study_id}/{route}", params={"format": "png"})
        assert png.status_code == 200, png.text
        assert png.content.startswith(PNG_SIGNATURE)
        svg = client.get(f"/studies/{study_id}/{route}", params={"format": "svg"})
        assert svg.status_code == 200, svg.text
        assert ET.fromstring(svg.content).tag.endswith("svg")
    key = client.get(f"/studies/{study_id}/trials").json()["items"][0]["key"]
    # a metric name given in the query is the plot's title and y label
    curve = client.get(
        f"/studies/{study_id}/trials/{key}/metrics", params={"name": MATH, "format": "png"}
    )
    assert curve.status_code == 200, curve.text
    assert curve.content.startswith(PNG_SIGNATURE)


# --- lengths: one limit per kind of text, in the spec and the schema ---------------------------


def test_a_label_longer_than_its_column_is_a_422_naming_the_field(client: TestClient):
    before = stored_ids(client)
    body = {**BASE, "optimizers": [{"name": "sgd", "label": "x" * (LABEL_MAX + 1)}]}
    assert_422(post_raw(client, body), "optimizers[0]", "label", f"at most {LABEL_MAX}")
    assert stored_ids(client) == before


def test_a_label_of_the_column_length_is_stored(client: TestClient):
    label = "é" * LABEL_MAX  # characters, not bytes: PostgreSQL's varchar counts the same way
    tag = f"t-{uuid.uuid4().hex}"
    body = {**BASE, "tags": [tag], "optimizers": [{"name": "sgd", "label": label}]}
    response = post_raw(client, body)
    assert response.status_code in (202, 503), response.text  # stored; Ray is unreachable
    (item,) = client.get("/studies", params={"tag": tag}).json()["items"]
    trials = client.get(f"/studies/{item['id']}/trials").json()["items"]
    assert [t["optimizer"] for t in trials] == [label]


def test_the_spec_limits_are_the_column_lengths():
    columns = {
        NAME_MAX: StudyRow.__table__.c.name,
        TASK_MAX: StudyRow.__table__.c.task,
        IDEMPOTENCY_KEY_MAX: StudyRow.__table__.c.idempotency_key,
        LABEL_MAX: TrialRow.__table__.c.optimizer,
        METRIC_NAME_MAX: MetricPointRow.__table__.c.name,
    }
    for limit, column in columns.items():
        assert column.type.length == limit, column
    # what the catalog itself writes fits too
    assert max(len(name) for name in TASKS) <= TASK_MAX
    assert max(len(name) for name in OPTIMIZERS) <= LABEL_MAX  # a row without a label
    metrics = [name for task in TASKS.values() for name in task.metrics]
    assert max(len(name) for name in metrics) <= METRIC_NAME_MAX


def test_a_tag_and_a_name_over_their_limits_are_422s(client: TestClient):
    assert_422(post_raw(client, {**BASE, "tags": ["x" * (TAG_MAX + 1)]}), "tags[0]")
    assert_422(post_raw(client, {**BASE, "name": "x" * (NAME_MAX + 1)}), "name")


# --- lone surrogates and control characters: a 422 naming the field, nothing stored ----------

BAD_TEXT = [
    ("name", {"name": SURROGATE}, ("name:", "lone surrogate", "U+D800")),
    ("tag", {"tags": ["ok", "a" + SURROGATE]}, ("tags[1]:", "lone surrogate")),
    (
        "label",
        {"optimizers": ["alig", {"name": "sgd", "label": SURROGATE}]},
        ("optimizers[1]", "label", "lone surrogate"),
    ),
    ("name-newline", {"name": "two\nlines"}, ("name:", "control characters", "U+000A")),
    ("tag-escape", {"tags": ["\x1b[31mred"]}, ("tags[0]:", "control characters")),
    # NUL is refused for the whole body before the spec is read (studies.submission)
    ("label-nul", {"optimizers": [{"name": "sgd", "label": "a\x00"}]}, ("optimizers[0]", "label")),
]


@pytest.mark.parametrize(
    ("body", "fragments"), [c[1:] for c in BAD_TEXT], ids=[c[0] for c in BAD_TEXT]
)
def test_bad_text_is_a_422_naming_the_field_and_nothing_is_stored(
    client: TestClient, body: dict[str, Any], fragments: tuple[str, ...]
):
    before = stored_ids(client)
    response = post_raw(client, {**BASE, **body})
    detail = assert_422(response, *fragments)
    assert text_problem(detail) is None  # the message itself is printable, encodable text
    assert stored_ids(client) == before


@pytest.mark.parametrize(
    "body",
    [
        {"task": SURROGATE},
        {"optimizers": [SURROGATE]},
        {"task_options": {SURROGATE: 1}},
        {"optimizers": [{"name": "sgd", "options": {"momentum": SURROGATE}}]},
    ],
    ids=["task", "optimizer-name", "task-option-key", "option-value"],
)
def test_surrogates_elsewhere_in_the_body_are_422s(client: TestClient, body: dict[str, Any]):
    before = stored_ids(client)
    assert_422(post_raw(client, {**BASE, **body}))
    assert stored_ids(client) == before


def test_a_surrogate_in_an_option_name_is_a_422(client: TestClient):
    body = {**BASE, "optimizers": [{"name": "sgd", "options": {SURROGATE: 1}}]}
    assert_422(post_raw(client, body))


def test_undecodable_query_strings_and_paths_are_never_500s(client: TestClient):
    study_id = study(client)
    surrogate_utf8 = "%ED%A0%80"  # what UTF-8 would be for U+D800: invalid, decoded as U+FFFD
    assert client.get(f"/studies?tag={surrogate_utf8}").status_code == 200
    assert client.get(f"/studies/{surrogate_utf8}").status_code == 404
    response = client.get(f"/studies/{study_id}/heatmap?metric={surrogate_utf8}")
    assert_422(response, "metric:")
    response = client.get(f"/studies/{study_id}/heatmap?axis=x:{surrogate_utf8}&format=png")
    assert response.status_code == 422, response.text
    listing = client.get(f"/studies/{study_id}/trials?optimizer={surrogate_utf8}")
    assert listing.status_code == 200 and listing.json()["items"] == []


def test_the_text_check():
    assert text_problem("η sweep ∞ — 😀 $x$ =1") is None
    assert text_problem("a\ud800") == "must not contain a lone surrogate (U+D800 at character 1)"
    assert text_problem("\udfff") is not None
    for control in ("\x00", "\t", "\n", "\r", "\x1b", "\x7f", "\x85"):
        assert "control characters" in text_problem(f"x{control}"), repr(control)


# --- the CSV export ----------------------------------------------------------------------------

FORMULAS = ['=HYPERLINK("x")', "@SUM(A1:A2)", "+cmd", "-2+3", "\tx", "\rx"]


def test_the_csv_export_neutralises_formulas(client: TestClient):
    labels = ['=HYPERLINK("x")', "@SUM(A1:A2)"]
    study_id = study(client, labels=labels)
    response = client.get(f"/studies/{study_id}/export")
    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {row["optimizer"] for row in rows} == {"'" + label for label in labels}
    for row in rows:
        float(row["eta"])  # numbers stay numbers
        if row["status"] == "completed":
            assert float(row["final_objective"]) > 0
    # the JSON rows are the stored values, unchanged
    as_json = client.get(f"/studies/{study_id}/export", params={"format": "json"}).json()
    assert {row["optimizer"] for row in as_json} == set(labels)


def test_spreadsheet_safe_cells():
    for text in FORMULAS:
        assert spreadsheet_safe(text) == "'" + text
    for value in (-1.5, -3, 0.1, 1e-05, "-1.5", "+2", "-1e-3", "sgd", "a=b", "", None):
        assert spreadsheet_safe(value) == value


# --- the answer cache: computed once per study version ----------------------------------------


def counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Count the calls of ``studies.analysis.<name>`` (as the routes call it)."""
    calls: list[int] = []
    original = getattr(studies.analysis, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(studies.analysis, name, wrapper)
    return calls


def finish_last_trial(client: TestClient, study_id: str) -> None:
    """A driver reports the study's one pending trial."""
    with client.app.state.store.session() as session:
        (pending,) = [r for r in repository.trial_records(session, study_id) if not r.finished]
        repository.record_trial_result(
            session, study_id, pending.key, status="completed", final_objective=0.25
        )


def test_a_repeated_heatmap_is_not_recomputed_and_a_new_result_invalidates_it(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
):
    calls = counting(monkeypatch, "heatmap")
    study_id = study(client, leave_pending=1)
    url = f"/studies/{study_id}/heatmap"
    first = client.get(url)
    assert first.status_code == 200, first.text
    assert client.get(url).content == first.content
    assert len(calls) == 1
    assert client.get(url, params={"format": "png"}).status_code == 200  # another answer
    assert client.get(url, params={"format": "png"}).status_code == 200
    assert len(calls) == 2
    finish_last_trial(client, study_id)
    after = client.get(url)
    assert len(calls) == 3
    ok_before = sum(map(sum, first.json()["n_ok"]))
    assert sum(map(sum, after.json()["n_ok"])) == ok_before + 1
    other = study(client)  # another study's answers are its own
    client.get(f"/studies/{other}/heatmap")
    assert len(calls) == 4


def test_importance_is_served_from_the_cache_once_computed(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
):
    calls = counting(monkeypatch, "importance_by_optimizer")
    study_id = study(client)
    first = client.get(f"/studies/{study_id}/importance")
    assert first.status_code == 200, first.text
    start = time.perf_counter()
    again = client.get(f"/studies/{study_id}/importance")
    assert time.perf_counter() - start < 1.0
    assert again.content == first.content and len(calls) == 1


def test_a_refusal_is_cached_and_stays_a_422(client: TestClient, monkeypatch: pytest.MonkeyPatch):
    calls = counting(monkeypatch, "heatmap")
    study_id = study(client)
    for _ in range(2):
        assert_422(client.get(f"/studies/{study_id}/heatmap", params={"batch_size": 7}))
    assert len(calls) == 1
    assert client.get("/studies/nope/heatmap").status_code == 404  # never cached: no study


def test_the_cache_computes_a_key_once_for_concurrent_callers():
    cache = AnswerCache()
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow() -> Answer:
        calls.append(1)
        started.set()
        release.wait(10)
        return Answer(b"done")

    results: list[Answer] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("k", slow)))]
    threads[0].start()
    assert started.wait(10)
    threads += [threading.Thread(target=lambda: results.append(cache.get("k", slow)))]
    threads[1].start()
    deadline = time.monotonic() + 10
    while cache.waits == 0 and time.monotonic() < deadline:  # the second caller waits
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(10)
    assert [r.body for r in results] == [b"done", b"done"] and len(calls) == 1
    assert (cache.misses, cache.waits, cache.hits) == (1, 1, 0)


def test_the_cache_is_bounded_and_keeps_refusals_not_errors():
    cache = AnswerCache(max_entries=2, max_bytes=10, max_entry_bytes=6)
    for key in ("a", "b", "c"):
        cache.get(key, lambda: Answer(b"1234"))
    assert len(cache) == 2 and cache.bytes == 8  # "a" evicted: entries bound, then bytes
    cache.get("big", lambda: Answer(b"1234567"))  # served, not kept
    assert len(cache) == 2
    refused = cache.get("r", lambda: (_ for _ in ()).throw(AnalysisUnavailable("nothing yet")))
    assert refused.refusal == "nothing yet"
    with pytest.raises(ZeroDivisionError):
        cache.get("e", lambda: Answer(bytes(1 // 0)))
    assert cache.get("e", lambda: Answer(b"ok")).body == b"ok"  # the error was not kept
