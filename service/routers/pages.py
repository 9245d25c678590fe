"""The HTML pages: the studies with progress (``/``), and per study a live page
(``/ui/studies/{id}``).

The study page is rendered on the server with what is known at the time (progress, the
heatmap of the first slice, the good-η table, the reproduction report, links), so it reads
without JavaScript; ``/ui/static/study.js`` (plain JavaScript, no build step) then keeps it
up to date from the study's server-sent events and the JSON and image routes, and adds the
selectors, the clickable heatmap cells, the loss curves, the other plots, the failure table
and the downloads (see docs/study-page.md). What the script needs is one JSON document in the
page (``#page-data``, written by Jinja2's ``tojson``, which escapes ``<``, ``>`` and ``&``).
The curve names it offers are a DISTINCT over every stored point of the study, so they are
read once per study version and curve progress (:func:`recorded_curves`), not on every load.
"""

import json
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from service.cache import Answer, AnswerCache, study_version
from service.dependencies import SessionDep, SettingsDep
from service.models import Reproduction, StudyOut, StudySummary
from service.routers import analysis as analysis_routes
from service.routers import live
from studies import analysis, rendering
from studies.catalog.tasks import TASKS
from studies.rendering.labels import slice_label
from studies.reproduction import study_reproduction
from studies.statuses import STUDY_FINISHED, TRIAL_FINISHED
from studies.store import StudyInfo, repository

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))


# the analysis routes' image formats (their ``format`` parameter's values but JSON): the page
# offers a download in each, and more as soon as that parameter accepts more
ANALYSIS_FORMATS = [f for f in get_args(analysis_routes.ImageFormat) if f != "json"]
SLICE_PARAMETERS = ("batch_size", "radius", "weight_decay")  # the others go as axis=name:value


def short_number(value: float | None) -> str:
    """A number for a table: three significant digits, ``—`` for none (the pages' tables)."""
    return "—" if value is None else f"{value:.3g}"


def slice_query(chosen: dict[str, Any]) -> list[tuple[str, str]]:
    """The query parameters that name a slice on the analysis routes: batch size, radius and
    weight decay by name (``none`` for None), every other axis as ``axis=name:value``."""
    pairs = [(k, "none" if v is None else str(v)) for k, v in chosen.items() if k in
             SLICE_PARAMETERS]  # fmt: skip
    pairs += [("axis", f"{k}:{'none' if v is None else v}") for k, v in chosen.items()
              if k not in SLICE_PARAMETERS]  # fmt: skip
    return pairs


def recorded_curves(session: Session, cache: AnswerCache, study: StudyInfo) -> list[str]:
    """The curve names the study's trials recorded (:func:`repository.curve_names`, which reads
    every point), kept in the app's answer cache per study version and
    :func:`repository.latest_steps`: a new name comes with a report, which moves the steps, or
    with a result, which moves the version, so a running study's page stays right while a
    repeated load costs two small queries."""
    version = study_version(session, study.id)
    key = ("curve-names", study.id, version, repository.latest_steps(session, study.id))

    def read() -> Answer:
        return Answer(json.dumps(repository.curve_names(session, study.id)).encode())

    names: list[str] = json.loads(cache.get(key, read).body)
    return names


@router.get("/", response_class=HTMLResponse)
def index(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> HTMLResponse:
    page = repository.list_studies(session, limit=100)
    counts = repository.studies_progress(session, [s.id for s in page.items])
    studies = []
    for study in page.items:
        summary = StudySummary.of(study, counts[study.id], settings.ray_dashboard_url)
        item = summary.model_dump(mode="json")
        total = item["progress"]["total"] or 1
        item["percent"] = round(100 * item["progress"]["done"] / total)
        studies.append(item)
    return templates.TemplateResponse(
        request, "index.html", {"studies": studies, "dashboard": settings.ray_dashboard_url}
    )


@router.get("/ui/studies/{study_id}", response_class=HTMLResponse)
def study_page(
    study_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    cache: analysis_routes.CacheDep,
) -> HTMLResponse:
    study = repository.get_study(session, study_id)
    progress = repository.study_progress(session, study_id)
    body = StudyOut.of(study, progress, settings.ray_dashboard_url).model_dump(mode="json")
    records = repository.trial_records(session, study_id)
    context: dict[str, Any] = {"study": body, "dashboard": settings.ray_dashboard_url, "ranges": []}
    report = study_reproduction(study.tags, study.task, study.spec, records)
    context["reproduction"] = Reproduction.of(report).model_dump(mode="json")
    total = body["progress"]["total"] or 1
    context["percent"] = round(100 * body["progress"]["done"] / total)
    found = analysis.slices(records)
    metrics = list(TASKS[study.task].metrics) if study.task in TASKS else []
    context["page_data"] = {
        "study_id": study_id,
        "state": live.state_of(session, study_id),
        "finished_statuses": list(STUDY_FINISHED),
        "slices": [{"label": slice_label(s), "query": slice_query(s)} for s in found],
        "metrics": metrics if "final_objective" in metrics else ["final_objective", *metrics],
        "values": list(analysis.VALUE_MODES),
        "curves": recorded_curves(session, cache, study) or [live.DEFAULT_CURVE],
        "default_curve": live.DEFAULT_CURVE,
        "figure_formats": list(rendering.FORMATS),
        "analysis_formats": ANALYSIS_FORMATS,
    }
    context["figure_formats"] = list(rendering.FORMATS)
    context["analysis_formats"] = ANALYSIS_FORMATS
    finished = [r for r in records if r.status in TRIAL_FINISHED]
    if not finished:
        context["heatmap_note"] = "No finished trial yet: the heatmap appears as results arrive."
        return templates.TemplateResponse(request, "study.html", context)
    first = found[0]  # the first slice until the page's selector chooses another
    params = urlencode([*slice_query(first), ("format", "svg")])
    context["heatmap_url"] = f"/studies/{study_id}/heatmap?{params}"
    context["slice_label"] = ", ".join(f"{k} = {v}" for k, v in first.items())
    ranges = analysis.robustness(records, slice=first).to_dict()["ranges"]
    context["ranges"] = [
        {
            "optimizer": name,
            "eta_low": eta_label_or_dash(r["eta_low"]),
            "eta_high": "∞" if r.get("includes_infinity") else eta_label_or_dash(r["eta_high"]),
            "decades": short_number(r["decades"]),
            "best_eta": eta_label_or_dash(r["best_eta"]),
            "best_value": short_number(r["best_value"]),
            "seeds": r["seeds"],
            "diverged_seeds": r["diverged_seeds"],
        }
        for name, r in ranges.items()
    ]
    return templates.TemplateResponse(request, "study.html", context)


def eta_label_or_dash(eta: float | None) -> str:
    """η as text for the table (plain numbers; mathtext labels are for the plots)."""
    return "—" if eta is None else f"{eta:g}"
