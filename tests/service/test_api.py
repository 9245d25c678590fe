"""The REST API end to end, over real HTTP against uvicorn, with studies running as real Ray
Jobs on the shared test Ray head: submit the smoke preset, poll it to ``succeeded``, and read
every answer (heatmap JSON/PNG/SVG, robustness, tunability, importance, trials, curves, CSV);
idempotent submits; state conflicts (cancel a finished study, delete a running one); the
catalog and health endpoints.
"""

import csv
import io
import json
import math
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest

from tests.service.conftest import (
    AUTH,
    FINISHED,
    JOB_TERMINAL,
    SMOKE_BODY,
    SMOKE_IDEMPOTENCY_KEY,
    TOKEN,
    wait_for,
    wait_for_job,
)

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OPTIMIZERS = ["alig", "sgd", "adam"]  # the smoke preset's, in its order
ETAS = [0.001, 0.01, 0.1, 1.0, 10.0]  # 10^-3 … 10^1, one per decade
N_TRIALS = len(OPTIMIZERS) * len(ETAS)
TRIAL_DONE = ("completed", "diverged", "failed")


def finite_or_null(value: Any) -> bool:
    """A JSON number that is finite, or null."""
    return value is None or (isinstance(value, int | float) and math.isfinite(value))


def assert_no_nan_text(text: str) -> None:
    """Strict JSON: no NaN/Infinity literals anywhere."""
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))


# --- submit and follow -------------------------------------------------------------------------


def test_submit_answers_202_with_id_status_and_location(smoke_submission: httpx.Response):
    assert smoke_submission.status_code == 202, smoke_submission.text
    body = smoke_submission.json()
    assert len(body["id"]) == 32
    assert body["status"] in ("pending", "running")
    assert body["n_trials"] == N_TRIALS
    assert body["progress"]["total"] == N_TRIALS
    assert smoke_submission.headers["location"] == f"/studies/{body['id']}"
    assert body["spec"]["budget"]["epochs"] == 1  # the override merged into the preset


def test_the_smoke_study_succeeds_with_every_trial_done(smoke_study: dict, ray_head: Any):
    assert smoke_study["status"] == "succeeded"
    progress = smoke_study["progress"]
    assert progress["total"] == N_TRIALS
    assert progress["done"] == N_TRIALS
    assert progress["running"] == 0
    assert progress["failed"] == 0
    assert progress["done"] >= progress["diverged"]
    assert smoke_study["started_at"] and smoke_study["finished_at"]
    job_id = smoke_study["ray_job_id"]
    assert job_id.startswith("smoke-") and smoke_study["id"] in job_id
    assert smoke_study["dashboard_url"] == f"{ray_head.dashboard_url}/#/jobs/{job_id}"
    assert wait_for_job(ray_head, job_id) == "SUCCEEDED"  # the driver exits after the study


def test_the_ray_job_tells_the_story(
    api: httpx.Client, smoke_study: dict, ray_head: Any, service_url: str
):
    """The Jobs tab reads on its own: the job names the study and links its page, and its log
    has one progress line per finished trial (key, row, η, status, objective, counts)."""
    job = httpx.get(f"{ray_head.dashboard_url}/api/jobs/{smoke_study['ray_job_id']}", timeout=10)
    metadata = job.json()["metadata"]
    assert metadata["study_id"] == smoke_study["id"]
    assert metadata["study_name"] == smoke_study["name"] == "smoke"
    assert metadata["page_url"] == f"{service_url}/ui/studies/{smoke_study['id']}"
    logs = httpx.get(
        f"{ray_head.dashboard_url}/api/jobs/{smoke_study['ray_job_id']}/logs", timeout=10
    ).json()["logs"]
    lines = [line for line in logs.splitlines() if "workers.progress trial " in line]
    trials = api.get(f"/studies/{smoke_study['id']}/trials", params={"limit": 100}).json()["items"]
    assert len(lines) == len(trials) == N_TRIALS
    for trial in trials:
        (line,) = [line for line in lines if f"trial {trial['key']} " in line]
        assert f" {trial['optimizer']} η={trial['eta']:g} seed={trial['seed']}: " in line
        assert f": {trial['status']}, " in line
        if trial["status"] == "completed":
            assert f"objective {trial['final_objective']:.4g} [" in line
    assert f"[{N_TRIALS}/{N_TRIALS} finished" in lines[-1]


def test_location_answers_the_same_study(api: httpx.Client, smoke_submission, smoke_study):
    response = api.get(smoke_submission.headers["location"])
    assert response.status_code == 200
    assert response.json()["id"] == smoke_study["id"]


# --- the answers -------------------------------------------------------------------------------


def test_heatmap_json(api: httpx.Client, smoke_study: dict):
    response = api.get(f"/studies/{smoke_study['id']}/heatmap")
    assert response.status_code == 200, response.text
    assert_no_nan_text(response.text)
    body = response.json()
    assert body["rows"] == OPTIMIZERS
    assert body["columns"] == pytest.approx(ETAS)
    assert len(body["values"]) == len(OPTIMIZERS)
    assert all(len(row) == len(ETAS) for row in body["values"])
    assert all(finite_or_null(v) for row in body["values"] for v in row)
    assert sum(v is not None for row in body["values"] for v in row) >= len(OPTIMIZERS)
    statuses = {s for row in body["status"] for s in row}
    assert statuses <= {"ok", "partial", "diverged", "failed", "missing"}
    assert "missing" not in statuses  # every cell ran
    assert body["slice"]["batch_size"] == 32


def test_heatmap_png(api: httpx.Client, smoke_study: dict):
    response = api.get(f"/studies/{smoke_study['id']}/heatmap", params={"format": "png"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(PNG_SIGNATURE)
    assert len(response.content) > 1000


def test_heatmap_svg(api: httpx.Client, smoke_study: dict):
    response = api.get(f"/studies/{smoke_study['id']}/heatmap", params={"format": "svg"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(response.content)
    assert root.tag.endswith("svg")


def test_robustness(api: httpx.Client, smoke_study: dict):
    response = api.get(f"/studies/{smoke_study['id']}/robustness")
    assert response.status_code == 200, response.text
    assert_no_nan_text(response.text)
    ranges = response.json()["ranges"]
    assert set(ranges) == set(OPTIMIZERS)
    for name, info in ranges.items():
        for field in ("eta_low", "eta_high", "decades", "best_eta", "best_value"):
            assert field in info, (name, field)
            assert finite_or_null(info[field]), (name, field, info[field])
        if info["eta_low"] is not None:
            assert info["eta_low"] <= info["best_eta"] <= info["eta_high"]
            assert info["decades"] >= 0
    assert any(info["best_value"] is not None for info in ranges.values())


def test_robustness_with_a_tolerance(api: httpx.Client, smoke_study: dict):
    response = api.get(f"/studies/{smoke_study['id']}/robustness", params={"tolerance": 100})
    assert response.status_code == 200, response.text
    assert set(response.json()["ranges"]) == set(OPTIMIZERS)


@pytest.mark.parametrize("analysis", ["tunability", "importance", "sensitivity"])
def test_other_analyses_answer(api: httpx.Client, smoke_study: dict, analysis: str):
    response = api.get(f"/studies/{smoke_study['id']}/{analysis}")
    assert response.status_code == 200, response.text
    assert_no_nan_text(response.text)
    assert isinstance(response.json(), dict)


def test_trials_and_a_metrics_curve(api: httpx.Client, smoke_study: dict):
    base = f"/studies/{smoke_study['id']}/trials"
    response = api.get(base, params={"limit": 500})
    assert response.status_code == 200, response.text
    assert_no_nan_text(response.text)
    trials = response.json()["items"]
    assert len(trials) == N_TRIALS
    assert {t["status"] for t in trials} <= set(TRIAL_DONE)
    cells = {(t["optimizer"], round(math.log10(t["eta"]))) for t in trials}
    assert cells == {(o, p) for o in OPTIMIZERS for p in range(-3, 2)}

    sgd = api.get(base, params={"optimizer": "sgd", "eta_min": 0.005, "eta_max": 0.5}).json()
    assert sorted(t["eta"] for t in sgd["items"]) == pytest.approx([0.01, 0.1])

    completed = [t for t in trials if t["status"] == "completed"]
    assert completed, trials
    trial = completed[0]
    one = api.get(f"{base}/{trial['key']}")
    assert one.status_code == 200
    assert one.json()["key"] == trial["key"]
    curve = api.get(f"{base}/{trial['key']}/metrics")
    assert curve.status_code == 200, curve.text
    points = curve.json()["points"]
    assert points, "a completed trial has a curve"
    assert {"step", "name", "value"} <= set(points[0])
    assert all(finite_or_null(p["value"]) for p in points)
    steps = [p["step"] for p in points]
    assert steps == sorted(steps)


def test_export_csv(api: httpx.Client, smoke_study: dict):
    response = api.get(f"/studies/{smoke_study['id']}/export", params={"format": "csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == N_TRIALS
    header = response.text.splitlines()[0].split(",")
    assert {"key", "optimizer", "eta", "status", "final_objective"} <= set(header)
    assert {row["optimizer"] for row in rows} == set(OPTIMIZERS)
    assert {row["status"] for row in rows} <= set(TRIAL_DONE)
    for row in rows:
        assert row["final_objective"] == "" or math.isfinite(float(row["final_objective"]))


# --- listing ----------------------------------------------------------------------------------


def _listed(api: httpx.Client, **params: Any) -> list[str]:
    response = api.get("/studies", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_list_and_filter_studies(api: httpx.Client, smoke_study: dict):
    study_id = smoke_study["id"]
    assert study_id in _listed(api)
    assert study_id in _listed(api, status="succeeded")
    assert study_id not in _listed(api, status="running")
    assert study_id in _listed(api, task="matrix-factorisation")
    assert study_id not in _listed(api, task="digits")
    assert study_id in _listed(api, tag="smoke")
    assert study_id not in _listed(api, tag="no-such-tag")
    item = next(i for i in api.get("/studies").json()["items"] if i["id"] == study_id)
    assert item["progress"]["done"] == N_TRIALS
    assert "spec" not in item  # the listing is the short form


# --- idempotency ------------------------------------------------------------------------------


def test_same_idempotency_key_and_body_returns_the_same_study(api: httpx.Client, smoke_study: dict):
    before = _listed(api)
    headers = {**AUTH, "Idempotency-Key": SMOKE_IDEMPOTENCY_KEY}
    response = api.post("/studies", json=SMOKE_BODY, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["id"] == smoke_study["id"]
    assert response.json()["status"] == "succeeded"  # not relaunched
    assert response.headers["location"] == f"/studies/{smoke_study['id']}"
    assert _listed(api) == before


def test_same_idempotency_key_with_another_body_is_422(api: httpx.Client, smoke_study: dict):
    before = _listed(api)
    headers = {**AUTH, "Idempotency-Key": SMOKE_IDEMPOTENCY_KEY}
    other = {"preset": "smoke", "overrides": {"budget": {"epochs": 2}}}
    response = api.post("/studies", json=other, headers=headers)
    assert response.status_code == 422
    assert response.json() == {
        "detail": f"idempotency key {SMOKE_IDEMPOTENCY_KEY!r} was already used for study "
        f"{smoke_study['id']} with another request"
    }
    assert _listed(api) == before


# --- state conflicts --------------------------------------------------------------------------


def test_cancel_or_resume_of_a_succeeded_study_is_409(api: httpx.Client, smoke_study: dict):
    study_id = smoke_study["id"]
    response = api.post(f"/studies/{study_id}/cancel", headers=AUTH)
    assert response.status_code == 409
    assert response.json() == {
        "detail": f"study {study_id} is already succeeded: nothing to cancel"
    }
    response = api.post(f"/studies/{study_id}/resume", headers=AUTH)
    assert response.status_code == 409
    assert response.json() == {"detail": f"study {study_id} is succeeded: every trial is finished"}
    assert api.get(f"/studies/{study_id}").json()["status"] == "succeeded"


def test_a_running_study_is_deleted_only_after_cancelling(
    api: httpx.Client, smoke_study: dict, ray_head: Any
):
    """A long study: DELETE while it runs is 409; cancel stops its Ray job; then DELETE 204."""
    body = {
        "preset": "smoke",
        "overrides": {"name": "long", "tags": ["long"], "budget": {"epochs": 10000}},
    }
    submitted = api.post("/studies", json=body, headers=AUTH)
    assert submitted.status_code == 202, submitted.text
    study_id = submitted.json()["id"]
    running = wait_for(api, study_id, lambda b: b["progress"]["running"] > 0, timeout=60)
    assert running["status"] == "running"

    response = api.delete(f"/studies/{study_id}", headers=AUTH)
    assert response.status_code == 409
    assert response.json() == {
        "detail": f"study {study_id} is running: cancel it before deleting it"
    }

    response = api.post(f"/studies/{study_id}/cancel", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    again = api.post(f"/studies/{study_id}/cancel", headers=AUTH)  # idempotent
    assert again.status_code == 200
    assert again.json()["status"] == "cancelled"

    assert wait_for_job(ray_head, running["ray_job_id"], timeout=30) in JOB_TERMINAL
    stopped = wait_for(api, study_id, lambda b: b["progress"]["running"] == 0, timeout=10)
    assert stopped["status"] == "cancelled"
    assert stopped["status"] in FINISHED
    assert stopped["progress"]["done"] < stopped["progress"]["total"]

    response = api.delete(f"/studies/{study_id}", headers=AUTH)
    assert response.status_code == 204
    assert response.content == b""
    response = api.get(f"/studies/{study_id}")
    assert response.status_code == 404
    assert response.json() == {"detail": f"study {study_id!r} not found"}
    assert api.get(f"/studies/{study_id}/trials").status_code == 404
    assert study_id not in _listed(api)


# --- catalog and health -----------------------------------------------------------------------


def test_presets(api: httpx.Client):
    response = api.get("/presets")
    assert response.status_code == 200
    names = {item["name"] for item in response.json()["items"]}
    assert {"smoke", "dnc-heatmap", "matrix-factorisation-aalig", "cifar10-wrn"} <= names
    smoke = next(i for i in response.json()["items"] if i["name"] == "smoke")
    assert smoke["spec"]["optimizers"] == OPTIMIZERS


def test_tasks(api: httpx.Client):
    response = api.get("/tasks")
    assert response.status_code == 200
    assert_no_nan_text(response.text)
    tasks = {item["name"]: item for item in response.json()["items"]}
    assert {"matrix-factorisation", "dnc-copy", "digits"} <= set(tasks)
    task = tasks["matrix-factorisation"]
    assert task["budget_unit"] == "epochs"
    assert task["metrics"]["final_objective"] == "minimize"
    assert "properties" in task["options"]
    # which tasks pack, and whose packs compile their time steps (execution.compile)
    assert (task["packs"], task["compiles"]) == (True, False)
    assert (tasks["dnc-copy"]["packs"], tasks["dnc-copy"]["compiles"]) == (True, True)


def test_optimizers(api: httpx.Client):
    response = api.get("/optimizers")
    assert response.status_code == 200
    assert_no_nan_text(response.text)
    names = [item["name"] for item in response.json()["items"]]
    expected = [
        "alig", "aalig", "sgd", "sgd-nesterov", "adam", "adamw", "amsgrad", "adagrad",
        "rmsprop", "sps", "l4mom", "l4adam",
    ]  # fmt: skip
    assert set(expected) <= set(names)
    alig = next(i for i in response.json()["items"] if i["name"] == "alig")
    assert alig["eta_may_be_null"] is True


def test_health(api: httpx.Client, ray_head: Any):
    response = api.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True, "dialect": "sqlite"}
    assert body["ray"] == {"ok": True, "dashboard": ray_head.dashboard_url}


def test_openapi_docs(api: httpx.Client):
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/studies", "/studies/{study_id}", "/studies/{study_id}/heatmap"} <= set(paths)


def test_the_token_is_checked_over_http(api: httpx.Client, smoke_study: dict):
    """The served app's token check (the full table is in test_errors.py)."""
    study_id = smoke_study["id"]
    assert api.post(f"/studies/{study_id}/cancel").status_code == 401
    wrong = {"Authorization": f"Bearer {TOKEN}x"}
    response = api.delete(f"/studies/{study_id}", headers=wrong)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert api.get(f"/studies/{study_id}").status_code == 200


def test_reproduction_of_a_preset_without_claims_is_empty_and_names_the_preset(
    api: httpx.Client, smoke_study: dict
):
    response = api.get(f"/studies/{smoke_study['id']}/reproduction")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["preset"] == "smoke" and body["claims"] == []
    assert body["budget"] == {"study": 1, "paper": 2}  # the tests run the smoke preset at 1 epoch
    assert api.get("/studies/0123/reproduction").status_code == 404
