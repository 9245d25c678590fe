"""A small server-rendered HTML page: the studies with progress, and per study its heatmap,
good-η table and links (no build step, no JavaScript)."""

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from service.dependencies import SessionDep, SettingsDep
from service.models import Reproduction, StudyOut, StudySummary
from studies import analysis
from studies.reproduction import study_reproduction
from studies.statuses import TRIAL_FINISHED
from studies.store import repository

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))


def _number(value: Any) -> str:
    return "—" if value is None else f"{value:.3g}"


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
) -> HTMLResponse:
    study = repository.get_study(session, study_id)
    progress = repository.study_progress(session, study_id)
    body = StudyOut.of(study, progress, settings.ray_dashboard_url).model_dump(mode="json")
    records = repository.trial_records(session, study_id)
    context: dict[str, Any] = {"study": body, "dashboard": settings.ray_dashboard_url, "ranges": []}
    report = study_reproduction(study.tags, study.task, study.spec, records)
    context["reproduction"] = Reproduction.of(report).model_dump(mode="json")
    finished = [r for r in records if r.status in TRIAL_FINISHED]
    if not finished:
        context["heatmap_note"] = "No finished trial yet: the heatmap appears as results arrive."
        return templates.TemplateResponse(request, "study.html", context)
    first = analysis.slices(records)[0]  # the page shows the first slice; the API takes any
    query = {k: ("none" if v is None else v) for k, v in first.items() if k in
             ("batch_size", "radius", "weight_decay")}  # fmt: skip
    extra = [f"{k}:{'none' if v is None else v}" for k, v in first.items() if k not in query]
    params = urlencode([*query.items(), *[("axis", a) for a in extra], ("format", "svg")])
    context["heatmap_url"] = f"/studies/{study_id}/heatmap?{params}"
    context["slice_label"] = ", ".join(f"{k} = {v}" for k, v in first.items())
    ranges = analysis.robustness(records, slice=first).to_dict()["ranges"]
    context["ranges"] = [
        {
            "optimizer": name,
            "eta_low": eta_label_or_dash(r["eta_low"]),
            "eta_high": "∞" if r.get("includes_infinity") else eta_label_or_dash(r["eta_high"]),
            "decades": _number(r["decades"]),
            "best_eta": eta_label_or_dash(r["best_eta"]),
            "best_value": _number(r["best_value"]),
            "seeds": r["seeds"],
            "diverged_seeds": r["diverged_seeds"],
        }
        for name, r in ranges.items()
    ]
    return templates.TemplateResponse(request, "study.html", context)


def eta_label_or_dash(eta: float | None) -> str:
    """η as text for the table (plain numbers; mathtext labels are for the plots)."""
    return "—" if eta is None else f"{eta:g}"
