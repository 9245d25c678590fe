"""The error table: every bad request gets its exact status and a message that names the field
or resource, and no input ever produces a 500 — on SQLite and on PostgreSQL.

The app is the real one (``create_app``) with the real :class:`RayJobLauncher`, pointed at an
address where nothing listens: invalid requests never reach the launcher, and a valid study is
stored, fails to launch (503, the study ``failed`` with the reason) and is then a study to query.
Served in-process by FastAPI's TestClient; the HTTP path through uvicorn is in test_api.py.
"""

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from studies.settings import Settings
from tests.postgres import create_database, free_port
from tests.service.conftest import AUTH, TOKEN, no_server_errors

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NEEDS_TOKEN = "authorization: this request needs 'Authorization: Bearer <token>'"
BAD_TOKEN = "authorization: the bearer token is not valid"
PARSE_ERROR = "There was an error parsing the body"  # FastAPI's, for bodies json cannot read
NOT_AN_OBJECT = 'body: must be a JSON object (a study spec or {"preset": ...})'
MULTI_BATCH_TAG = "multi-batch"
# valid, small: 2 optimizers × 2 η × 2 batch sizes; it fails to launch (no Ray there)
MULTI_BATCH: dict[str, Any] = {
    "name": "multi batch",
    "tags": [MULTI_BATCH_TAG],
    "task": "matrix-factorisation",
    "optimizers": ["alig", "sgd"],
    "grid": {"eta": [0.01, 0.1], "batch_size": [16, 32]},
    "budget": {"epochs": 1},
}


def spec(**changes: Any) -> dict[str, Any]:
    """The minimal spec of the README with ``changes`` (a value of ``None`` removes the key)."""
    base: dict[str, Any] = {
        "task": "matrix-factorisation",
        "optimizers": ["alig", "sgd"],
        "grid": {"eta": [0.01, 0.1, 1], "batch_size": [32], "radius": [None], "seed": [0]},
        "budget": {"epochs": 5},
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def assert_error(response: Any, status: int, message: str, *, prefix: bool = False) -> None:
    """The exact status and ``{"detail": message}`` (or a detail starting with ``message``)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail"}, body
    if prefix:
        assert body["detail"].startswith(message), body["detail"]
    else:
        assert body["detail"] == message


def _client(settings: Settings) -> TestClient:
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    client.event_hooks = {"request": [], "response": [no_server_errors]}
    return client


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """The app with a token, on SQLite and on PostgreSQL, whose Ray is unreachable."""
    database_url = None
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_url")
        database_url = create_database(server, f"service_errors_{uuid.uuid4().hex[:8]}")
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("errors"),
        database_url=database_url,
        ray_address=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        api_token=TOKEN,
        max_trials=200,
    )
    with _client(settings) as instance:
        yield instance


@pytest.fixture(scope="module")
def open_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app without a token (the embedded default): mutating requests need none."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("open"),
        database_url=None,
        ray_address=f"http://127.0.0.1:{free_port()}",
        api_token=None,
    )
    with _client(settings) as instance:
        yield instance


def submit_unlaunched(client: TestClient, body: dict[str, Any]) -> str:
    """Submit a valid spec carrying a unique tag; it is stored but cannot launch (503). Its id."""
    tag = f"t-{uuid.uuid4().hex}"
    response = client.post(
        "/studies", json={**body, "tags": [*body.get("tags", []), tag]}, headers=AUTH
    )
    assert response.status_code == 503, response.text
    items = client.get("/studies", params={"tag": tag}).json()["items"]
    assert len(items) == 1, items
    return items[0]["id"]


@pytest.fixture(scope="module")
def study_id(client: TestClient) -> str:
    """A stored study over two batch sizes whose launch failed."""
    return submit_unlaunched(client, MULTI_BATCH)


# --- invalid specs: 422 naming the field --------------------------------------------------------

INVALID_SPECS = [
    ("empty-eta", spec(grid={"eta": []}), "grid.eta: must not be empty", False),
    (
        "eta-zero",
        spec(grid={"eta": [0.1, 0]}),
        "grid.eta[1]: must be finite and > 0, got 0.0",
        False,
    ),
    (
        "eta-negative",
        spec(grid={"eta": [-1]}),
        "grid.eta[0]: must be finite and > 0, got -1.0",
        False,
    ),
    (
        "eta-decades-reversed",
        spec(grid={"eta": {"from": 3, "to": 1}}),
        "grid.eta: 'to' must be >= 'from'",
        False,
    ),
    (
        "optimizer-eta-negative",
        spec(optimizers=[{"name": "sgd", "eta": [-1]}]),
        "optimizers[0].eta[0]: must be finite and > 0, got -1.0",
        False,
    ),
    (
        "unknown-optimizer",
        spec(optimizers=["alig", "nope"]),
        "optimizers[1]: unknown optimizer 'nope'; valid names: alig, aalig, sgd,",
        True,
    ),
    ("no-optimizer", spec(optimizers=[]), "optimizers: must not be empty", False),
    (
        "duplicate-optimizer",
        spec(optimizers=["sgd", "sgd"]),
        "optimizers[1]: duplicate row 'sgd'; give entries distinct labels",
        False,
    ),
    (
        "optimizer-option",
        spec(optimizers=[{"name": "sgd", "options": {"bogus": 1}}]),
        "optimizers[0].options: sgd does not accept option(s) bogus; accepted: momentum, weight_decay",
        False,
    ),
    (
        "infinity-for-sgd",
        spec(optimizers=[{"name": "sgd", "eta": [None]}]),
        "optimizers[0].eta: null (ALI-G∞) is only valid for alig",
        False,
    ),
    ("unknown-task", spec(task="nope"), "task: unknown task 'nope'; valid tasks: ", True),
    (
        "task-option",
        spec(task_options={"bogus": 1}),
        "task_options.bogus: Extra inputs are not permitted",
        False,
    ),
    (
        "task-option-value",
        spec(task_options={"rank": 3}),
        "task_options.rank: Input should be 1, 4, 10 or 'true-model'",
        False,
    ),
    (
        "task-options-two-errors",
        spec(task_options={"rank": 3, "bogus": 1}),
        "task_options.rank: Input should be 1, 4, 10 or 'true-model'; "
        "task_options.bogus: Extra inputs are not permitted",
        False,
    ),
    (
        "swept-task-option-value",
        spec(grid={"eta": [0.1], "task_options": {"rank": [1, 3]}}),
        "grid.task_options.rank[1]: Input should be 1, 4, 10 or 'true-model'",
        False,
    ),
    (
        "search-no-batch-size",
        spec(grid=None, search={"n_trials": 2, "eta": {"low": 0.01, "high": 1}, "batch_size": []}),
        "search.batch_size: must not be empty",
        False,
    ),
    (
        "only-alig-infinity-for-sgd",
        spec(grid={"eta": [None]}),
        "optimizers[1]: sgd has no η in grid.eta (null, ALI-G∞, is only valid for alig); "
        "give it numbers there or its own optimizers[1].eta",
        False,
    ),
    (
        "budget-zero",
        spec(budget={"epochs": 0}),
        "budget.epochs: Input should be greater than or equal to 1",
        False,
    ),
    (
        "budget-negative",
        spec(budget={"epochs": -5}),
        "budget.epochs: Input should be greater than or equal to 1",
        False,
    ),
    (
        "budget-unit",
        spec(budget={"steps": 5}),
        "budget.steps: task matrix-factorisation is budgeted in epochs",
        False,
    ),
    ("budget-missing", spec(budget=None), "budget: Field required", False),
    (
        "too-many-trials",
        spec(grid={"eta": {"from": -12, "to": 12, "per_decade": 20}}),
        "grid: the study has 962 trials, more than the limit of 200 (SENSITIVITY_MAX_TRIALS)",
        False,
    ),
    (
        "grid-and-search",
        spec(search={"n_trials": 2, "eta": {"low": 0.1, "high": 1}}),
        "grid: give exactly one of 'grid' or 'search'",
        False,
    ),
    ("unknown-field", spec(bogus=1), "bogus: Extra inputs are not permitted", False),
    ("body-list", [spec()], NOT_AN_OBJECT, False),
    ("body-string", "smoke", NOT_AN_OBJECT, False),
    ("body-number", 42, NOT_AN_OBJECT, False),
    ("unknown-preset", {"preset": "nope"}, "preset: unknown preset 'nope'; valid presets: ", True),
    ("preset-not-a-name", {"preset": 3}, "preset: must be a preset name", False),
    (
        "preset-with-spec-fields",
        {"preset": "smoke", "task": "digits"},
        "task: not allowed next to 'preset' (use 'overrides')",
        False,
    ),
    (
        "preset-overrides-list",
        {"preset": "smoke", "overrides": []},
        "overrides: must be a JSON object",
        False,
    ),
    (
        "preset-bad-override",
        {"preset": "smoke", "overrides": {"budget": {"epochs": 0}}},
        "budget.epochs: Input should be greater than or equal to 1",
        False,
    ),
]


@pytest.mark.parametrize(
    ("body", "message", "prefix"),
    [case[1:] for case in INVALID_SPECS],
    ids=[case[0] for case in INVALID_SPECS],
)
def test_invalid_spec_is_422_naming_the_field(
    client: TestClient, body: Any, message: str, prefix: bool
):
    before = client.get("/studies", params={"limit": 500}).json()["items"]
    response = client.post("/studies", json=body, headers=AUTH)
    assert_error(response, 422, message, prefix=prefix)
    assert client.get("/studies", params={"limit": 500}).json()["items"] == before  # nothing stored


# --- garbage: never a 500 -----------------------------------------------------------------------

JSON = {**AUTH, "content-type": "application/json"}
VALID_HEAD = '{"task": "matrix-factorisation", "optimizers": ["sgd"], "budget": {"epochs": 1}, '

GARBAGE = [
    (
        "not-json",
        b"{not json",
        JSON,
        422,
        "body: invalid JSON at character 1: Expecting property name enclosed in double quotes",
    ),
    ("binary", b"\xff\xfe\x00", JSON, 400, PARSE_ERROR),  # not even text
    ("huge-digits", b"[" + b"1" * 5000 + b"]", JSON, 400, PARSE_ERROR),  # Python's int limit
    ("truncated", b'{"task": ', JSON, 422, "body: invalid JSON at character 9: Expecting value"),
    ("empty", b"", JSON, 422, "body: Field required"),
    ("null", b"null", JSON, 422, NOT_AN_OBJECT),
    ("text-plain", b"task=digits", {**AUTH, "content-type": "text/plain"}, 422, NOT_AN_OBJECT),
    (
        "nan-eta",
        (VALID_HEAD + '"grid": {"eta": [NaN]}}').encode(),
        JSON,
        422,
        "grid.eta[0]: must be a finite number, got nan",
    ),
    (
        "infinite-eta",
        (VALID_HEAD + '"grid": {"eta": [1e999]}}').encode(),
        JSON,
        422,
        "grid.eta[0]: must be a finite number, got inf",
    ),
    (
        "infinite-radius",
        (VALID_HEAD + '"grid": {"eta": [0.1], "radius": [Infinity]}}').encode(),
        JSON,
        422,
        "grid.radius[0]: must be a finite number, got inf",
    ),
    (
        "infinite-decay",
        (VALID_HEAD + '"grid": {"eta": [0.1], "weight_decay": [1e400]}}').encode(),
        JSON,
        422,
        "grid.weight_decay[0]: must be a finite number, got inf",
    ),
    (
        "infinite-decades",
        (VALID_HEAD + '"grid": {"eta": {"from": -1e999, "to": 1}}}').encode(),
        JSON,
        422,
        "grid.eta.from: must be a finite number, got -inf",
    ),
    (
        "huge-batch-size",
        (VALID_HEAD + '"grid": {"eta": [0.1], "batch_size": [1' + "0" * 30 + "]}}").encode(),
        JSON,
        422,
        "grid.batch_size[0]: must be between -2147483648 and 2147483647",
    ),
    (
        "huge-seed",
        (VALID_HEAD + '"grid": {"eta": [0.1], "seed": [-1' + "0" * 25 + "]}}").encode(),
        JSON,
        422,
        "grid.seed[0]: must be between -2147483648 and 2147483647",
    ),
    (  # numbers given as strings: the schema converts them, the store still cannot hold them
        "string-infinite-radius",
        (VALID_HEAD + '"grid": {"eta": [0.1], "radius": ["inf"]}}').encode(),
        JSON,
        422,
        "grid.radius[0]: must be a finite number, got inf",
    ),
    (
        "string-infinite-divergence-factor",
        (VALID_HEAD + '"grid": {"eta": [0.1]}, "divergence_factor": "1e400"}').encode(),
        JSON,
        422,
        "divergence_factor: must be a finite number, got inf",
    ),
    (
        "string-huge-batch-size",
        (VALID_HEAD + '"grid": {"eta": [0.1], "batch_size": ["1' + "0" * 20 + '"]}}').encode(),
        JSON,
        422,
        "grid.batch_size[0]: must be between -2147483648 and 2147483647",
    ),
    (
        "huge-budget",
        b'{"preset": "smoke", "overrides": {"budget": {"epochs": 99999999999999999999}}}',
        JSON,
        422,
        "budget.epochs: must be between -2147483648 and 2147483647",
    ),
    (
        "nul-in-name",
        (VALID_HEAD + '"grid": {"eta": [0.1]}, "name": "a\\u0000b"}').encode(),
        JSON,
        422,
        "name: must not contain NUL characters",
    ),
    (
        "nul-in-tag",
        (VALID_HEAD + '"grid": {"eta": [0.1]}, "tags": ["\\u0000"]}').encode(),
        JSON,
        422,
        "tags[0]: must not contain NUL characters",
    ),
    (
        "nul-in-label",
        (
            VALID_HEAD.replace('["sgd"]', '[{"name": "sgd", "label": "s\\u0000"}]')
            + '"grid": {"eta": [0.1]}}'
        ).encode(),
        JSON,
        422,
        "optimizers[0].label: must not contain NUL characters",
    ),
]


@pytest.mark.parametrize(
    ("content", "headers", "status", "message"),
    [case[1:] for case in GARBAGE],
    ids=[case[0] for case in GARBAGE],
)
def test_garbage_bodies_are_4xx_never_500(
    client: TestClient, content: bytes, headers: dict, status: int, message: str
):
    response = client.post("/studies", content=content, headers=headers)
    assert_error(response, status, message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"task": {"x": [[{}]]}, "optimizers": {"a": 1}},
            "task: Input should be a valid string; optimizers: Input should be a valid list; budget: Field required",
        ),
        (spec(optimizers=[{"name": {"a": [1, {"b": 2}]}}]), "optimizers[0]"),
        (
            spec(optimizers=[{"name": "sgd", "options": {"momentum": [[[[1]]]]}}]),
            "optimizers[0].options.momentum: Input should be a valid number",
        ),
        (spec(grid={"eta": {"from": "a", "to": [1]}}), "grid.eta: "),
        (spec(tags=[{"a": 1}]), "tags[0]: Input should be a valid string"),
        (spec(name="x" * 10_000), "name: String should have at most 200 characters"),
        (spec(resources={"cpu": 1e300}), "resources.cpu: Input should be less than or equal to 64"),
    ],
    ids=[
        "wrong-types",
        "nested-name",
        "nested-option",
        "decades-types",
        "tag-object",
        "long-name",
        "huge-cpu",
    ],
)
def test_nested_junk_is_422_naming_the_field(client: TestClient, body: dict, message: str):
    response = client.post("/studies", json=body, headers=AUTH)
    assert_error(response, 422, message, prefix=True)


def test_deep_nesting_is_a_client_error(client: TestClient):
    response = client.post("/studies", content=b"[" * 100_000 + b"]" * 100_000, headers=JSON)
    assert_error(response, 400, PARSE_ERROR)  # json gives up (RecursionError)
    response = client.post("/studies", content=b"[" * 900 + b"]" * 900, headers=JSON)
    assert_error(response, 422, NOT_AN_OBJECT)


def test_a_too_long_idempotency_key_is_422(client: TestClient):
    response = client.post("/studies", json=spec(), headers={**AUTH, "Idempotency-Key": "k" * 201})
    assert_error(response, 422, "idempotency-key: String should have at most 200 characters")


# --- unknown resources: 404 ---------------------------------------------------------------------

STUDY_ROUTES = [
    ("GET", "/studies/{id}"),
    ("GET", "/studies/{id}/trials"),
    ("GET", "/studies/{id}/trials/0123456789abcdef"),
    ("GET", "/studies/{id}/trials/0123456789abcdef/metrics"),
    ("GET", "/studies/{id}/heatmap"),
    ("GET", "/studies/{id}/heatmap?format=png"),
    ("GET", "/studies/{id}/robustness"),
    ("GET", "/studies/{id}/tunability"),
    ("GET", "/studies/{id}/importance"),
    ("GET", "/studies/{id}/sensitivity"),
    ("GET", "/studies/{id}/export"),
    ("GET", "/ui/studies/{id}"),
    ("POST", "/studies/{id}/cancel"),
    ("POST", "/studies/{id}/resume"),
    ("DELETE", "/studies/{id}"),
]


@pytest.mark.parametrize(
    ("method", "path"), STUDY_ROUTES, ids=[f"{m} {p}" for m, p in STUDY_ROUTES]
)
def test_unknown_study_is_404(client: TestClient, method: str, path: str):
    response = client.request(method, path.format(id="nope"), headers=AUTH)
    assert_error(response, 404, "study 'nope' not found")


@pytest.mark.parametrize("suffix", ["", "/metrics", "/metrics?format=png"])
def test_unknown_trial_is_404(client: TestClient, study_id: str, suffix: str):
    response = client.get(f"/studies/{study_id}/trials/nope{suffix}")
    assert_error(response, 404, f"trial 'nope' not found in study '{study_id}'")


def test_unknown_route_is_404(client: TestClient):
    assert client.get("/no-such-route").status_code == 404


# --- bad query parameters: 422 naming the parameter ---------------------------------------------

BAD_QUERIES = [
    ("/studies?limit=0", "limit: Input should be greater than or equal to 1", False),
    ("/studies?limit=501", "limit: Input should be less than or equal to 500", False),
    (
        "/studies?limit=abc",
        "limit: Input should be a valid integer, unable to parse string as an integer",
        False,
    ),
    (
        "/studies?limit=99999999999999999999999",
        "limit: Input should be less than or equal to 500",
        False,
    ),
    ("/studies?cursor=garbage", "cursor: malformed", False),
    ("/studies?status=bogus", "status: unknown status 'bogus'; valid: ", True),
    ("/studies?task=a%00b", "task: must not contain NUL characters", False),
    ("/studies/{id}/trials?limit=0", "limit: Input should be greater than or equal to 1", False),
    ("/studies/{id}/trials?cursor=garbage", "cursor: malformed", False),
    ("/studies/{id}/trials?eta_min=0", "eta_min: Input should be greater than 0", False),
    (
        "/studies/{id}/trials?eta_max=abc",
        "eta_max: Input should be a valid number, unable to parse string as a number",
        False,
    ),
    ("/studies/{id}/trials?status=bogus", "status: unknown status 'bogus'; valid: ", True),
    ("/studies/{id}/trials?optimizer=a%00", "optimizer: must not contain NUL characters", False),
    ("/studies/{id}/trials/a%00b", "key: must not contain NUL characters", False),
    (
        "/studies/{id}/trials/x/metrics?format=gif",
        "format: String should match pattern '^(json|png|svg|pdf)$'",
        False,
    ),
    ("/studies/{id}/heatmap?radius=abc", "radius: must be a number or 'none', got 'abc'", False),
    (
        "/studies/{id}/heatmap?weight_decay=abc",
        "weight_decay: must be a number or 'none', got 'abc'",
        False,
    ),
    (
        "/studies/{id}/heatmap?batch_size=0",
        "batch_size: Input should be greater than or equal to 1",
        False,
    ),
    (
        "/studies/{id}/heatmap?batch_size=64",
        "no trial has batch_size=64; batch_size takes [16, 32]",
        False,
    ),
    (
        "/studies/{id}/heatmap?format=gif",
        "format: Input should be 'json', 'png', 'svg' or 'pdf'",
        False,
    ),
    ("/studies/{id}/heatmap?axis=bad", "axis: expected name:value, got 'bad'", False),
    (
        "/studies/{id}/heatmap?batch_size=16&axis=seed:5",
        "unknown slice axes ['seed']; the axes are ",
        True,
    ),
    (
        "/studies/{id}/heatmap?metric=nope",
        "metric: matrix-factorisation has no metric 'nope'; known: final_objective, train_loss, val_loss",
        False,
    ),
    (
        "/studies/{id}/heatmap?direction=up",
        "direction: Input should be 'minimize' or 'maximize'",
        False,
    ),
    (
        "/studies/{id}/robustness?batch_size=16&tolerance=-1",
        "tolerance: Input should be greater than 0",
        False,
    ),
    (
        "/studies/{id}/robustness?batch_size=16&tolerance=abc",
        "tolerance: Input should be a valid number, unable to parse string as a number",
        False,
    ),
    (
        "/studies/{id}/tunability?batch_size=16&k_max=0",
        "k_max: Input should be greater than or equal to 1",
        False,
    ),
    (
        "/studies/{id}/tunability?batch_size=16&diverged=maybe",
        "diverged: Input should be 'worst' or 'inf'",
        False,
    ),
    ("/studies/{id}/export?format=xml", "format: Input should be 'csv' or 'json'", False),
]


@pytest.mark.parametrize(
    ("path", "message", "prefix"), BAD_QUERIES, ids=[case[0] for case in BAD_QUERIES]
)
def test_bad_query_parameters_are_422(
    client: TestClient, study_id: str, path: str, message: str, prefix: bool
):
    response = client.get(path.format(id=study_id))
    assert_error(response, 422, message, prefix=prefix)


def _cursor(data: Any) -> str:
    """A cursor as the store writes one (urlsafe base64 of JSON), holding ``data``."""
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_forged_cursors_are_422(client: TestClient, study_id: str):
    """Well-formed cursors holding what no listing wrote: an id beyond the store's integers,
    a cursor longer than any real one (5000 '[': deep enough to exhaust the JSON decoder,
    were it decoded), a study id with a NUL (which PostgreSQL cannot compare) or of other
    characters than a study id's hex digits."""
    forged = {
        f"/studies/{study_id}/trials": [
            _cursor([f"trials:{study_id}", 10**30]),
            base64.urlsafe_b64encode(b"[" * 5000).decode(),
        ],
        "/studies": [
            _cursor(["studies", "2026-01-01T00:00:00+00:00", "x" * 600]),
            _cursor(["studies", "2026-01-01T00:00:00+00:00", "ab\u0000cd"]),
            _cursor(["studies", "2026-01-01T00:00:00+00:00", "\ud800"]),
        ],
    }
    for path, cursors in forged.items():
        for cursor in cursors:
            response = client.get(path, params={"cursor": cursor})
            assert response.status_code == 422, (path, cursor[:40], response.text)
            assert response.json()["detail"].startswith("cursor: "), response.text


# --- several slices: the heatmap needs a choice -------------------------------------------------


@pytest.mark.parametrize(
    "analysis", ["heatmap", "heatmap?format=png", "robustness", "tunability", "sensitivity"]
)
def test_a_study_over_several_batch_sizes_needs_one_chosen(
    client: TestClient, study_id: str, analysis: str
):
    response = client.get(f"/studies/{study_id}/{analysis}")
    assert_error(
        response,
        422,
        "the records span several slices; choose a value for each of these axes: batch_size in [16, 32]",
    )


def test_choosing_the_batch_size_answers_even_without_results(client: TestClient, study_id: str):
    response = client.get(f"/studies/{study_id}/heatmap", params={"batch_size": 16})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rows"] == ["alig", "sgd"]
    assert body["columns"] == [0.01, 0.1]
    assert body["values"] == [[None, None], [None, None]]
    assert body["slice"]["batch_size"] == 16
    image = client.get(f"/studies/{study_id}/heatmap", params={"batch_size": 16, "format": "png"})
    assert image.status_code == 200
    assert image.content.startswith(PNG_SIGNATURE)
    response = client.get(f"/studies/{study_id}/importance")
    assert_error(
        response, 422, "importance needs at least 2 trials with a finite 'final_objective', found 0"
    )


# --- authorization ------------------------------------------------------------------------------

MUTATING = [
    ("POST", "/studies"),
    ("POST", "/studies/{id}/cancel"),
    ("POST", "/studies/{id}/resume"),
    ("DELETE", "/studies/{id}"),
]
BAD_AUTH = [
    ({}, NEEDS_TOKEN),
    ({"Authorization": f"Bearer {TOKEN}-wrong"}, BAD_TOKEN),
    ({"Authorization": "Bearer x"}, BAD_TOKEN),
    ({"Authorization": f"Basic {TOKEN}"}, NEEDS_TOKEN),
    ({"Authorization": "Bearer "}, NEEDS_TOKEN),
    ({"Authorization": TOKEN}, NEEDS_TOKEN),
]


@pytest.mark.parametrize(("method", "path"), MUTATING, ids=[f"{m} {p}" for m, p in MUTATING])
@pytest.mark.parametrize(
    ("headers", "message"),
    BAD_AUTH,
    ids=["missing", "wrong", "short", "basic", "empty", "no-scheme"],
)
def test_mutating_without_the_token_is_401(
    client: TestClient, study_id: str, method: str, path: str, headers: dict, message: str
):
    before = client.get(f"/studies/{study_id}").json()
    response = client.request(method, path.format(id=study_id), json=MULTI_BATCH, headers=headers)
    assert_error(response, 401, message)
    assert response.headers["www-authenticate"] == "Bearer"
    assert client.get(f"/studies/{study_id}").json() == before  # nothing changed


def test_the_token_is_checked_before_the_study_exists(client: TestClient):
    assert_error(client.post("/studies/nope/cancel"), 401, NEEDS_TOKEN)
    assert_error(
        client.delete("/studies/nope", headers={"Authorization": "Bearer no"}), 401, BAD_TOKEN
    )


READS = [
    "/studies",
    "/studies/{id}",
    "/studies/{id}/trials",
    "/studies/{id}/heatmap?batch_size=32",
    "/studies/{id}/robustness?batch_size=32",
    "/studies/{id}/export?format=csv",
    "/studies/{id}/export?format=json",
    "/presets",
    "/tasks",
    "/optimizers",
    "/",
    "/ui/studies/{id}",
    "/openapi.json",
]


@pytest.mark.parametrize("path", READS)
def test_reads_need_no_token(client: TestClient, study_id: str, path: str):
    response = client.get(path.format(id=study_id))
    assert response.status_code == 200, response.text


def test_without_a_configured_token_mutations_are_open(open_client: TestClient):
    assert_error(
        open_client.post("/studies", json=spec(task="nope")),
        422,
        "task: unknown task 'nope'; valid tasks: ",
        prefix=True,
    )
    assert_error(open_client.post("/studies/nope/cancel"), 404, "study 'nope' not found")
    assert_error(
        open_client.delete("/studies/nope", headers={"Authorization": "Bearer x"}),
        404,
        "study 'nope' not found",
    )


# --- Ray unreachable: 503, and the study says why -----------------------------------------------


def test_an_unreachable_ray_is_503_and_the_study_stays_pending(client: TestClient, study_id: str):
    ray = client.app.state.settings.ray_address
    response = client.post("/studies", json=MULTI_BATCH, headers=AUTH)
    assert_error(response, 503, f"Ray Jobs API at {ray} is unreachable: ", prefix=True)
    assert response.headers["retry-after"] == "30"
    study = client.get(f"/studies/{study_id}").json()
    # never failed as if the science had: the reconciler launches it once Ray answers
    assert (study["status"], study["error"], study["ray_job_id"]) == ("pending", None, None)
    assert study["progress"] == {**study["progress"], "total": 8, "done": 0, "running": 0}


def test_state_conflicts_of_a_pending_study_without_ray(client: TestClient, study_id: str):
    ray = client.app.state.settings.ray_address
    response = client.post(f"/studies/{study_id}/resume", headers=AUTH)  # relaunch: still no Ray
    assert_error(response, 503, f"Ray Jobs API at {ray} is unreachable: ", prefix=True)
    assert client.get(f"/studies/{study_id}").json()["status"] == "pending"
    response = client.delete(f"/studies/{study_id}", headers=AUTH)
    assert_error(response, 409, f"study {study_id} is pending: cancel it before deleting it")


def test_health_reports_ray_down_as_503(client: TestClient):
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["database"]["ok"] is True
    assert body["ray"]["ok"] is False


def test_a_finished_study_is_deleted_with_its_rows(client: TestClient):
    doomed = submit_unlaunched(client, {**MULTI_BATCH, "tags": ["doomed"]})
    assert client.post(f"/studies/{doomed}/cancel", headers=AUTH).status_code == 200
    response = client.delete(f"/studies/{doomed}", headers=AUTH)
    assert response.status_code == 204
    assert_error(client.get(f"/studies/{doomed}"), 404, f"study {doomed!r} not found")
    assert_error(client.get(f"/studies/{doomed}/trials"), 404, f"study {doomed!r} not found")
    assert_error(
        client.delete(f"/studies/{doomed}", headers=AUTH), 404, f"study {doomed!r} not found"
    )


def test_paging_through_studies(client: TestClient, study_id: str):
    submit_unlaunched(client, MULTI_BATCH)
    first = client.get("/studies", params={"limit": 1}).json()
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = client.get("/studies", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert len(second["items"]) == 1
    assert second["items"][0]["id"] != first["items"][0]["id"]
