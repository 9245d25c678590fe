"""``POST /studies/{id}/extend`` over real HTTP: a tiny study of its own (the smoke study is
shared, so it is not extended) runs on the shared Ray head, is extended by one η value and one
seed through the Python client, and runs again — only its new trials; the refusals are
checked on the same study."""

import json
from datetime import datetime
from typing import Any

import httpx
import pytest

from service.client import ApiClient
from tests.service.conftest import (
    AUTH,
    FINISHED,
    SMOKE_TIMEOUT_S,
    TOKEN,
    wait_for,
    wait_for_job,
)
from tests.service.test_cli import run_cli

# the smoke preset's task, one optimizer × 2 η × 1 seed, one epoch
SPEC: dict[str, Any] = {
    "name": "extend-e2e",
    "task": "matrix-factorisation",
    "task_options": {"rank": "true-model", "n_samples": 320, "val_fraction": 0.2},
    "optimizers": ["sgd"],
    "grid": {"eta": [0.01, 0.1], "batch_size": [32], "seed": [0]},
    "budget": {"epochs": 1},
    "resources": {"cpu": 1},
    "device": "cpu",
}
EXTENSION = {"grid": {"eta": [0.03], "seed": [1]}}


def trials(api: httpx.Client, study_id: str) -> dict[str, dict[str, Any]]:
    response = api.get(f"/studies/{study_id}/trials", params={"limit": 500})
    assert response.status_code == 200, response.text
    return {trial["key"]: trial for trial in response.json()["items"]}


def finished(api: httpx.Client, study_id: str) -> dict[str, Any]:
    body = wait_for(api, study_id, lambda b: b["status"] in FINISHED, SMOKE_TIMEOUT_S)
    assert body["status"] == "succeeded", body
    return body


@pytest.mark.slow
def test_extending_a_finished_study_runs_only_its_new_trials(
    api: httpx.Client, service_url: str, ray_head: Any
):
    submitted = api.post("/studies", json=SPEC, headers=AUTH)
    assert submitted.status_code == 202, submitted.text
    study_id = submitted.json()["id"]
    study = finished(api, study_id)
    before = trials(api, study_id)
    assert len(before) == 2 and {t["status"] for t in before.values()} == {"completed"}
    heatmap = api.get(f"/studies/{study_id}/heatmap").json()  # cached until the trials change
    assert (heatmap["columns"], heatmap["n_total"]) == ([0.01, 0.1], [[1, 1]])

    # refusals: nothing of them is stored
    path = f"/studies/{study_id}/extend"
    assert api.post(path, json=EXTENSION).status_code == 401
    missing = api.post("/studies/0123456789abcdef/extend", json=EXTENSION, headers=AUTH)
    assert missing.status_code == 404, missing.text
    conflicts = [({"task": "rbf-classification"}, "task"), ({"budget": {"epochs": 2}}, "budget")]
    for body, field in conflicts:
        conflict = api.post(path, json={**EXTENSION, **body}, headers=AUTH)
        assert conflict.status_code == 409, conflict.text
        assert conflict.json()["detail"].startswith(f"{field}: the study has ")
    nothing_new = api.post(path, json={"grid": {"eta": [0.1], "seed": [0]}}, headers=AUTH)
    assert nothing_new.status_code == 422, nothing_new.text
    assert "adds no new trial" in nothing_new.json()["detail"]
    assert api.get(f"/studies/{study_id}").json()["spec"]["grid"]["eta"] == [0.01, 0.1]

    # a driver that recorded the study's end may still be exiting: extending waits for its job
    wait_for_job(ray_head, study["ray_job_id"])
    with ApiClient(service_url, token=TOKEN) as client:
        extended = client.extend(study_id, EXTENSION)
    assert (extended.added, extended.reused) == (4, 2)  # 3 η × 2 seeds, 2 stored
    assert extended.study.status == "pending" and extended.study.n_trials == 6
    assert extended.study.spec["grid"]["eta"] == [0.01, 0.1, 0.03]
    assert extended.study.spec["grid"]["seed"] == [0, 1]
    [entry] = extended.extensions
    assert entry.added == {"grid.eta": [0.03], "grid.seed": [1]}
    assert (entry.from_status, entry.trials_added, entry.trials_reused) == ("succeeded", 4, 2)
    running = api.post(path, json={"grid": {"seed": [2]}}, headers=AUTH)
    assert running.status_code == 409 and "cancel it or wait" in running.json()["detail"]

    finished(api, study_id)
    after = trials(api, study_id)
    assert len(after) == 6
    for key, trial in before.items():  # the stored trials: untouched, never run again
        assert after[key] == trial
    extended_at = datetime.fromisoformat(entry.at)
    new = [trial for key, trial in after.items() if key not in before]
    assert sorted((t["eta"], t["seed"]) for t in new) == [(0.01, 1), (0.03, 0), (0.03, 1), (0.1, 1)]
    for trial in new:  # each ran once, after the extension
        assert trial["status"] in ("completed", "diverged") and trial["attempts"] == 1
        assert datetime.fromisoformat(trial["started_at"]) > extended_at

    heatmap = api.get(f"/studies/{study_id}/heatmap").json()
    assert heatmap["rows"] == ["sgd"] and heatmap["columns"] == [0.01, 0.03, 0.1]
    assert heatmap["n_total"] == [[2, 2, 2]]
    assert heatmap["n_ok"][0][0] == 2  # an η the study ran before, now with 2 seeds
    robustness = api.get(f"/studies/{study_id}/robustness")
    assert robustness.status_code == 200 and set(robustness.json()["ranges"]) == {"sgd"}

    # the CLI, as a subprocess, extends it once more: a new optimizer over the whole grid
    wait_for_job(ray_head, api.get(f"/studies/{study_id}").json()["ray_job_id"])
    result = run_cli(
        "--url", service_url, "--token", TOKEN, "extend", study_id,
        "-O", 'optimizers=[{"name": "adam"}]', "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert (answer["added"], answer["reused"]) == (6, 6)
    assert len(answer["extensions"]) == 2 and "optimizers" in answer["extensions"][-1]["added"]
    finished(api, study_id)
    final = trials(api, study_id)
    assert len(final) == 12 and all(final[key] == trial for key, trial in after.items())
    assert sorted(t["optimizer"] for t in final.values()).count("adam") == 6
