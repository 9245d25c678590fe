"""The typed API: every route declares its response schema and its error bodies in
``/openapi.json``, and what each JSON route actually answers is its declared model, field for
field (nothing dropped, renamed or added on the way).

The document is walked on ``create_app``'s app (no lifespan needed). The answers are read from
the app of test_errors.py's kind (a real store, Ray unreachable: a valid study is stored and
fails to launch) served in-process, and — the analyses of real results — from the smoke study
of the shared Ray head (tests/service/conftest.py), as test_api.py reads it.
"""

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from service.app import create_app
from service.models import ErrorOut
from studies.settings import Settings
from tests.postgres import free_port
from tests.service.conftest import AUTH, TOKEN, no_server_errors

SUCCESS = ("200", "201", "202")
ERROR_REF = "#/components/schemas/ErrorOut"
HEALTH_REF = "#/components/schemas/Health"
# a valid study over one batch size: 2 optimizers × 2 η; it fails to launch (no Ray there)
SPEC: dict[str, Any] = {
    "name": "typed",
    "task": "matrix-factorisation",
    "optimizers": ["alig", "sgd"],
    "grid": {"eta": [0.01, 0.1], "batch_size": [16]},
    "budget": {"epochs": 1},
}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """The app whose routes and OpenAPI document are checked (not started)."""
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("openapi"), api_token=TOKEN))


@pytest.fixture(scope="module")
def schema(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def api_routes(app: FastAPI) -> list[tuple[str, APIRoute]]:
    """``(full path, route)`` of every API route, those of included routers too (FastAPI
    ≥ 0.16x keeps included routers nested in ``app.routes``)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # an older FastAPI: app.routes is flat
        return [(r.path, r) for r in app.routes if isinstance(r, APIRoute)]
    return [
        (context.path, context.original_route)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
    ]


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``("GET /path", operation)`` for every operation of the document."""
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


# --- the document ------------------------------------------------------------------------------


def test_every_operation_declares_its_success_schema(schema: dict[str, Any]):
    missing = []
    for name, operation in operations(schema):
        success = {code: r for code, r in operation["responses"].items() if code in SUCCESS}
        if not success and "204" in operation["responses"]:
            continue  # no content by definition
        assert success, f"{name}: no 2xx response declared"
        for code, response in success.items():
            content = response.get("content") or {}
            typed = [t for t, media in content.items() if "schema" in media or t == "text/html"]
            if not typed:
                missing.append(f"{name} {code}")
    assert not missing, f"responses without a content schema: {missing}"


def test_every_route_has_a_response_model_or_is_html(app: FastAPI):
    """The routes as FastAPI sees them, those left out of the document (the pages) included."""
    routes = api_routes(app)
    assert len(routes) >= 20, [path for path, _ in routes]
    untyped = []
    for path, route in routes:
        if route.status_code == 204:
            continue
        html = isinstance(route.response_class, type) and issubclass(
            route.response_class, HTMLResponse
        )
        if route.response_model is None and not html:
            untyped.append(f"{sorted(route.methods)} {path}")
        if not route.include_in_schema:
            assert html, f"{path}: only the HTML pages are left out of the document"
    assert not untyped, f"routes without a response model: {untyped}"


def test_error_responses_are_declared_as_error_out(schema: dict[str, Any]):
    for name, operation in operations(schema):
        responses = operation["responses"]
        assert "422" in responses, f"{name}: no 422 declared"
        for code, response in responses.items():
            if int(code) < 400:
                continue
            ref = response["content"]["application/json"]["schema"]["$ref"]
            expected = HEALTH_REF if (name, code) == ("GET /health", "503") else ERROR_REF
            assert ref == expected, (name, code, ref)
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_the_mutations_declare_401(schema: dict[str, Any]):
    for path, method in [
        ("/studies", "post"),
        ("/studies/{study_id}/cancel", "post"),
        ("/studies/{study_id}/resume", "post"),
        ("/studies/{study_id}", "delete"),
    ]:
        assert "401" in schema["paths"][path][method]["responses"], (method, path)
    assert "401" not in schema["paths"]["/studies/{study_id}"]["get"]["responses"]


def test_the_models_are_named_components(schema: dict[str, Any]):
    components = schema["components"]["schemas"]
    names = {
        "ErrorOut", "Progress", "StudyLinks", "StudySummary", "StudyOut", "StudyPage",
        "TrialOut", "TrialPage", "TrialCurve", "MetricPoint", "Heatmap", "Robustness",
        "EtaRange", "Tunability", "Importance", "Sensitivity", "PresetOut", "TaskOut",
        "OptimizerOut", "Health", "ExportRow",
    }  # fmt: skip
    assert names <= set(components), names - set(components)
    assert "spec" in components["StudyOut"]["properties"]
    assert "spec" not in components["StudySummary"]["properties"]  # the listing's short form
    assert "options_schema" in components["OptimizerOut"]["properties"]
    study = schema["paths"]["/studies/{study_id}"]["get"]["responses"]["200"]
    assert study["content"]["application/json"]["schema"]["$ref"].endswith("/StudyOut")
    heatmap = schema["paths"]["/studies/{study_id}/heatmap"]["get"]["responses"]["200"]
    assert {"application/json", "image/png", "image/svg+xml"} <= set(heatmap["content"])


# --- the answers are their models ---------------------------------------------------------------


def declared(app: FastAPI, method: str, path: str) -> Any:
    """The response model the route of ``method path`` declares."""
    for full_path, route in api_routes(app):
        if full_path == path and method in route.methods:
            return route.response_model
    raise LookupError(f"{method} {path}")


def assert_is_model(model: Any, response: httpx.Response) -> Any:
    """The body validates against ``model`` and is exactly its JSON form; the parsed value."""
    body = json.loads(response.text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    adapter = TypeAdapter(model)
    value = adapter.validate_python(body)
    assert adapter.dump_python(value, mode="json", by_alias=True) == body
    return value


def check(
    app: FastAPI,
    client: Any,
    template: str,
    status: int = 200,
    values: dict[str, str] | None = None,
    **params: Any,
) -> Any:
    """GET the route ``template`` filled with ``values``; check its answer is ``status`` and
    the declared model (ErrorOut for an error); the parsed answer."""
    response = client.get(template.format(**(values or {})), params=params)
    assert response.status_code == status, response.text
    model = declared(app, "GET", template) if status < 400 else ErrorOut
    return assert_is_model(model, response)


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app with a token on SQLite whose Ray is unreachable, served in-process."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("typed"),
        database_url=None,
        ray_address=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        api_token=TOKEN,
    )
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    client.event_hooks = {"request": [], "response": [no_server_errors]}
    with client:
        yield client


def test_the_answers_of_a_stored_study_are_their_models(offline: TestClient):
    app = offline.app
    response = offline.post("/studies", json=SPEC, headers=AUTH)
    assert response.status_code == 503, response.text  # stored, not launched
    assert_is_model(ErrorOut, response)
    page = check(app, offline, "/studies")
    study_id = next(item.id for item in page.items if item.name == "typed")
    ids = {"study_id": study_id}
    study = check(app, offline, "/studies/{study_id}", values=ids)
    assert study.status == "pending" and study.n_trials == 4
    trials = check(app, offline, "/studies/{study_id}/trials", values=ids)
    assert len(trials.items) == 4
    key = trials.items[0].key
    trial = check(app, offline, "/studies/{study_id}/trials/{key}", values={**ids, "key": key})
    assert trial.config is not None and trial.config.batch_size == 16
    curve = check(
        app, offline, "/studies/{study_id}/trials/{key}/metrics", values={**ids, "key": key}
    )
    assert curve.key == key
    for analysis in ("heatmap", "robustness", "tunability", "sensitivity"):
        check(app, offline, f"/studies/{{study_id}}/{analysis}", values=ids)
    check(app, offline, "/studies/{study_id}/importance", 422, values=ids)  # no results yet
    check(app, offline, "/studies/{study_id}", 404, values={"study_id": "nope"})
    check(app, offline, "/studies/{study_id}/heatmap", 422, values=ids, radius="x")

    rows = check(app, offline, "/studies/{study_id}/export", values=ids, format="json")
    assert sorted(row.key for row in rows) == sorted(t.key for t in trials.items)
    text = offline.get(f"/studies/{study_id}/export").text
    assert [row["key"] for row in csv.DictReader(io.StringIO(text))] == [r.key for r in rows]

    cancel = offline.post(f"/studies/{study_id}/cancel", headers=AUTH)
    assert cancel.status_code == 200, cancel.text  # a study Ray never took can be cancelled
    assert cancel.json()["status"] == "cancelled"
    again = offline.post(f"/studies/{study_id}/cancel", headers=AUTH)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"  # idempotent


def test_the_catalog_and_health_are_their_models(offline: TestClient):
    app = offline.app
    assert check(app, offline, "/presets").items
    tasks = check(app, offline, "/tasks")
    assert "properties" in tasks.items[0].options
    optimizers = {o.name: o for o in check(app, offline, "/optimizers").items}
    alig = optimizers["alig"]
    assert alig.eta_may_be_null is True
    assert set(alig.options) == set(alig.options_schema["properties"])
    assert {"n_samples", "epochs"}.isdisjoint(optimizers["aalig"].options)  # set by the trial
    health = offline.get("/health")
    assert health.status_code == 503  # Ray is unreachable: the same body, degraded
    assert assert_is_model(declared(app, "GET", "/health"), health).status == "degraded"


@pytest.mark.slow
def test_the_analyses_of_the_smoke_study_are_their_models(
    app: FastAPI, api: httpx.Client, smoke_study: dict[str, Any]
):
    ids = {"study_id": smoke_study["id"]}
    assert_is_model(
        declared(app, "GET", "/studies/{study_id}"), api.get(smoke_study["links"]["self"])
    )
    for analysis in ("heatmap", "robustness", "tunability", "importance", "sensitivity"):
        check(app, api, f"/studies/{{study_id}}/{analysis}", values=ids)
    trials = check(app, api, "/studies/{study_id}/trials", values=ids, limit=500)
    done = next(t for t in trials.items if t.status == "completed")
    assert done.final_objective is not None and done.finished_at is not None
    keys = {**ids, "key": done.key}
    assert check(app, api, "/studies/{study_id}/trials/{key}", values=keys) == done
    assert check(app, api, "/studies/{study_id}/trials/{key}/metrics", values=keys).points
    rows = check(app, api, "/studies/{study_id}/export", values=ids, format="json")
    assert len(rows) == len(trials.items)
