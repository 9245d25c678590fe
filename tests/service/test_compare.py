"""Final/best values and the comparison of studies, against a real store and over real HTTP.

(The one query behind ``value=best``, ``repository.curve_extremes``, is tested in
tests/studies/test_store.py on SQLite and PostgreSQL.)

- In process (the real app with FastAPI's TestClient, trials written through the repository):
  ``export?value=best`` gives a best objective to completed trials only, never to a running
  trial's partial curve nor to a diverged one.
- End to end (slow): the session's smoke study (3 optimizers × 5 η, 1 epoch) and a second tiny
  study (alig and sgd only, 3 η, 4 epochs), compared through ``GET /compare``: every value is
  the per-study robustness/tunability answer, the profile is the ratios' formula, ``value=best``
  is the stored curves' minimum and never above ``value=final``; PNG/SVG, the page, the
  client, 404 and 422.
"""

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service.client import ApiClient
from studies.store import repository as repo
from tests.service.conftest import AUTH, FINISHED, TOKEN, wait_for
from tests.service.test_live_page import in_process_app, report, submit

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECOND_BODY: dict[str, Any] = {
    "preset": "smoke",
    "overrides": {
        "name": "compare-second",
        "tags": ["compare"],
        "optimizers": ["alig", "sgd"],
        # sgd at η = 9 oscillates: its last epoch's loss (1.6) is above the third's (0.46)
        "grid": {"eta": [0.1, 1.0, 9.0]},
        "budget": {"epochs": 4},
    },
}
ROBUSTNESS_FIELDS = (
    "eta_low", "eta_high", "decades", "includes_infinity", "n_good", "seeds", "diverged_seeds",
)  # fmt: skip


# --------------------------------------------------------------------------- in process


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[TestClient]:
    with in_process_app(tmp_path) as client:
        yield client


def test_export_gives_a_best_objective_to_completed_trials_only(app_client: TestClient):
    study_id, keys = submit(app_client)
    store = app_client.app.state.store
    done, running, diverged = keys[(0.01, 0)], keys[(0.1, 0)], keys[(1.0, 0)]
    report(app_client, study_id, done, (1, "train_loss", 2.0), (2, "train_loss", 0.5))
    report(app_client, study_id, running, (1, "train_loss", 0.3))  # a partial curve
    report(app_client, study_id, diverged, (1, "train_loss", 0.7), (2, "train_loss", math.nan))
    with store.session() as session:
        repo.record_trial_result(session, study_id, done, status="completed", final_objective=0.8)
        assert repo.mark_trial_running(session, study_id, running)
        repo.record_trial_result(
            session, study_id, diverged, status="diverged", final_objective=math.nan,
            reason="loss is nan",
        )  # fmt: skip
    response = app_client.get(
        f"/studies/{study_id}/export", params={"format": "json", "value": "best"}
    )
    assert response.status_code == 200, response.text
    rows = {row["key"]: row for row in response.json()}
    assert rows[done]["best_objective"] == 0.5  # min(curve 2.0, 0.5; final 0.8)
    assert rows[running]["status"] == "running" and rows[running]["best_objective"] is None
    assert rows[diverged]["status"] == "diverged" and rows[diverged]["best_objective"] is None
    others = [row for key, row in rows.items() if key not in (done, running, diverged)]
    assert len(others) == 3 and all(row["best_objective"] is None for row in others)
    text = app_client.get(f"/studies/{study_id}/export", params={"value": "best"}).text
    header, *lines = text.splitlines()
    column = header.split(",").index("best_objective")
    cells = {line.split(",")[0]: line.split(",")[column] for line in lines}
    assert cells[done] == "0.5" and cells[running] == "" and cells[diverged] == ""


# --------------------------------------------------------------------------- over HTTP


@pytest.fixture(scope="module")
def second_study(api: httpx.Client) -> dict[str, Any]:
    """A second tiny study (alig and sgd, 3 η, 4 epochs), once finished."""
    submitted = api.post("/studies", json=SECOND_BODY, headers=AUTH)
    assert submitted.status_code == 202, submitted.text
    body = wait_for(api, submitted.json()["id"], lambda b: b["status"] in FINISHED, 240)
    assert body["status"] == "succeeded", body
    return body


@pytest.fixture(scope="module")
def ids(smoke_study: dict[str, Any], second_study: dict[str, Any]) -> list[str]:
    return [smoke_study["id"], second_study["id"]]


def get_json(api: httpx.Client, path: str, **params: Any) -> Any:
    response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.slow
@pytest.mark.parametrize("value", ["final", "best"])
def test_compare_matches_the_per_study_answers(api: httpx.Client, ids: list[str], value: str):
    body = get_json(api, "/compare", studies=",".join(ids), value=value)
    assert body["value"] == value and body["metric"] == "final_objective"
    assert [s["id"] for s in body["studies"]] == ids
    assert [s["name"] for s in body["studies"]] == ["smoke", "compare-second"]
    assert {s["task"] for s in body["studies"]} == {"matrix-factorisation"}
    assert list(body["optimizers"]) == ["alig", "sgd", "adam"]
    assert body["optimizers"]["adam"][ids[1]] is None  # the second study did not run adam
    for study_id in ids:
        ranges = get_json(api, f"/studies/{study_id}/robustness", value=value)
        tuned = get_json(api, f"/studies/{study_id}/tunability", value=value)
        assert ranges["value"] == value and tuned["value"] == value
        header = next(s for s in body["studies"] if s["id"] == study_id)
        assert header["cutoff"] == ranges["cutoff"]
        assert header["reference_value"] == ranges["reference_value"]
        for name, expected in ranges["ranges"].items():
            entry = body["optimizers"][name][study_id]
            assert {f: entry[f] for f in ROBUSTNESS_FIELDS} == {
                f: expected[f] for f in ROBUSTNESS_FIELDS
            }, (study_id, name)
            if expected["best_value"] is not None:
                assert (entry["best_value"], entry["best_eta"]) == (
                    expected["best_value"], expected["best_eta"],
                )  # fmt: skip
            assert entry["cpe"] == tuned["optimizers"][name]["cpe"]
            assert entry["p_k"] == tuned["optimizers"][name]["p_k"]


@pytest.mark.slow
def test_the_profile_is_the_ratio_formula(api: httpx.Client, ids: list[str]):
    body = get_json(api, "/compare", studies=",".join(ids), tau_max=100)
    profile = body["profile"]
    assert profile["problems"] == ids and profile["tau_max"] == 100.0
    assert profile["tau"][0] == 1.0 and profile["tau"][-1] == 100.0 and len(profile["tau"]) == 41
    for i, study_id in enumerate(ids):
        costs = {
            name: entries[study_id]["best_value"] if entries[study_id] else None
            for name, entries in body["optimizers"].items()
        }
        finite = [c for c in costs.values() if c is not None]
        assert finite, "each study has an optimizer with a finite best value"
        for name, cost in costs.items():
            assert profile["costs"][name][i] == cost
            ratio = profile["ratios"][name][i]
            if cost is None:
                assert ratio is None  # r = ∞: diverged everywhere, or not run
            else:
                assert ratio == pytest.approx(cost / min(finite), rel=1e-12)
    assert profile["ratios"]["adam"][1] is None
    for name, rho in profile["rho"].items():
        ratios = [math.inf if r is None else r for r in profile["ratios"][name]]
        expected = [sum(r <= tau * (1 + 1e-12) for r in ratios) / 2 for tau in profile["tau"]]
        assert rho == pytest.approx(expected), name
    assert max(rho[0] for rho in profile["rho"].values()) > 0  # someone wins each study


@pytest.mark.slow
def test_best_is_at_most_final_in_every_cell(api: httpx.Client, ids: list[str]):
    lower = {}
    for study_id in ids:
        final = get_json(api, f"/studies/{study_id}/heatmap")
        best = get_json(api, f"/studies/{study_id}/heatmap", value="best")
        assert (final["value"], best["value"]) == ("final", "best")
        assert best["status"] == final["status"]  # a diverged cell stays diverged
        assert best["rows"] == final["rows"] and best["columns"] == final["columns"]
        for f_row, b_row in zip(final["values"], best["values"], strict=True):
            for f, b in zip(f_row, b_row, strict=True):
                assert (f is None) == (b is None)
                if f is not None:
                    assert b <= f
        lower[study_id] = [
            (row, eta)
            for row, f_row, b_row in zip(
                final["rows"], final["values"], best["values"], strict=True
            )
            for eta, f, b in zip(final["columns"], f_row, b_row, strict=True)
            if f is not None and b < f
        ]
    assert lower[ids[0]] == []  # one epoch: the only point of each curve is the final value
    assert ("sgd", 9.0) in lower[ids[1]]  # the oscillating one


@pytest.mark.slow
def test_best_objective_is_the_stored_curves_minimum(api: httpx.Client, ids: list[str]):
    study_id = ids[1]
    rows = get_json(api, f"/studies/{study_id}/export", format="json", value="best")
    assert rows and all("best_objective" in row for row in rows)
    assert "best_objective" not in get_json(api, f"/studies/{study_id}/export", format="json")[0]
    for row in rows:
        curve = get_json(api, f"/studies/{study_id}/trials/{row['key']}/metrics")
        points = [p["value"] for p in curve["points"] if p["name"] == "train_loss"]
        if row["status"] == "completed" and row["final_objective"] is not None:
            candidates = [v for v in points if v is not None] + [row["final_objective"]]
            assert row["best_objective"] == min(candidates) <= row["final_objective"], row
        else:  # only a completed trial has a best value
            assert row["best_objective"] is None, row
    text = api.get(f"/studies/{study_id}/export", params={"value": "best"}).text
    assert "best_objective" in text.splitlines()[0]


@pytest.mark.slow
def test_the_profile_plot(api: httpx.Client, ids: list[str]):
    studies = ",".join(ids)
    png = api.get("/compare", params={"studies": studies, "format": "png"})
    assert png.status_code == 200, png.text
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(PNG_SIGNATURE)
    svg = api.get("/compare", params={"studies": studies, "format": "svg", "value": "best"})
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert ET.fromstring(svg.content).tag.endswith("svg")


@pytest.mark.slow
def test_one_study_compares_with_itself(api: httpx.Client, ids: list[str]):
    body = get_json(api, "/compare", studies=ids[0])
    profile = body["profile"]
    best = min(c for c in (costs[0] for costs in profile["costs"].values()) if c is not None)
    winners = [name for name, costs in profile["costs"].items() if costs[0] == best]
    assert all(profile["ratios"][name] == [1.0] for name in winners)
    assert all(profile["rho"][name][0] == 1.0 for name in winners)


@pytest.mark.slow
def test_compare_errors(api: httpx.Client, ids: list[str]):
    response = api.get("/compare", params={"studies": f"{ids[0]},nope"})
    assert response.status_code == 404
    assert response.json() == {"detail": "study 'nope' not found"}
    for bad in ("", ",", f"{ids[0]},,{ids[1]}", " "):
        response = api.get("/compare", params={"studies": bad})
        assert response.status_code == 422, bad
        assert response.json()["detail"].startswith("studies: expected a comma-separated")
    response = api.get("/compare", params={"studies": f"{ids[0]},{ids[0]}"})
    assert response.status_code == 422
    assert response.json() == {"detail": f"studies: {ids[0]} is named more than once"}
    response = api.get("/compare")
    assert response.status_code == 422 and response.json()["detail"].startswith("studies:")
    for params, field in (
        ({"tau_max": 1}, "tau_max"),
        ({"value": "peak"}, "value"),
        ({"format": "bmp"}, "format"),
        ({"min_finite_fraction": 0}, "min_finite_fraction"),
        ({"metric": "val_accuracy"}, "metric"),
    ):
        response = api.get("/compare", params={"studies": ids[0], **params})
        assert response.status_code == 422, params
        assert response.json()["detail"].startswith(f"{field}:"), response.json()
    response = api.get("/compare", params={"studies": ids[0], "radius": 3.0})
    assert response.status_code == 422
    assert response.json()["detail"].startswith(f"study {ids[0]}: no trial has radius=3.0")


@pytest.mark.slow
def test_the_compare_page(api: httpx.Client, ids: list[str]):
    response = api.get("/ui/compare", params={"studies": ",".join(ids), "value": "best"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert 'id="comparison"' in page and 'id="ratios"' in page
    assert f'href="/ui/studies/{ids[1]}"' in page
    assert "not run" in page  # adam in the second study
    assert '<strong id="value">best</strong>' in page
    src = page.split('id="profile" src="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    image = api.get(src)
    assert image.status_code == 200 and image.headers["content-type"] == "image/svg+xml"
    assert api.get("/ui/compare", params={"studies": "nope"}).status_code == 404


@pytest.mark.slow
def test_the_client_compares(service_url: str, api: httpx.Client, ids: list[str]):
    with ApiClient(service_url, token=TOKEN) as client:
        result = client.compare(ids, value="best", tau_max=10)
        assert result.value == "best"
        assert result.profile.problems == ids and result.profile.tau_max == 10.0
        assert result.model_dump(mode="json") == get_json(
            api, "/compare", studies=",".join(ids), value="best", tau_max=10
        )
        image = client.compare(ids, format="png")
        assert isinstance(image, bytes) and image.startswith(PNG_SIGNATURE)
