"""Comparing studies: ``GET /compare?studies=id1,id2,…`` and its page ``GET /ui/compare``.

Per optimizer (by its label) across the studies: each study's good-η range, best value and η,
and tunability, and the Dolan–Moré performance profiles over the studies (one study = one
problem; :mod:`studies.analysis.compare`, :mod:`studies.analysis.profiles`, docs/analysis.md).
The answer is JSON or the profile plot in any format of :data:`studies.rendering.FORMATS`.

It takes the analyses' selection (metric, direction, slice, ``value=final|best``: the slice
applies to every study) and ``min_finite_fraction``, ``tau_max``. Errors: an unknown study id is
a 404 naming it; an empty or malformed list, a repeated id, more than
:data:`MAX_COMPARED_STUDIES` studies, a study whose slice must be chosen, a maximised metric or
a best value ≤ 0 are 422s naming the field or the study. Like every analysis, the answer is
cached (:mod:`service.cache`) until a trial of one of the studies changes: its key holds every
study's version.
"""

from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from service.cache import Answer, AnswerCache, study_version
from service.dependencies import SessionDep
from service.exceptions import AnalysisUnavailable, error_responses
from service.models import Comparison
from service.routers.analysis import (
    CacheDep,
    MinFiniteFraction,
    Selection,
    image_answer,
    json_answer,
    key_parameters,
)
from service.routers.pages import eta_label_or_dash, short_number, templates
from studies import analysis, rendering
from studies.analysis.profiles import DEFAULT_TAU_MAX, MAX_TAU_MAX
from studies.rendering.profiles import render_profile
from studies.store import StudyInfo, repository

MAX_COMPARED_STUDIES = 50  # each study is read and analysed: bound the work of one request
# json, or any image format of the rendering registry (png, svg, pdf, …)
ProfileFormat = Literal[("json", *rendering.FORMATS)]  # type: ignore[valid-type]
StudyIds = Annotated[
    str, Query(description="comma-separated study ids: the studies (problems) to compare")
]
TauMax = Annotated[
    float, Query(gt=1, le=MAX_TAU_MAX, description="the largest performance ratio τ plotted")
]
IMAGES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the JSON, or the performance profile plot with format=png|svg|…",
        "content": {image.media_type: {} for image in rendering.FORMATS.values()},
    }
}

router = APIRouter(tags=["analysis"], responses=error_responses(404, 422))


def study_ids(text: str) -> list[str]:
    """The ids of ``studies=``; a 422 for an empty item, a repeated id or too many ids."""
    ids = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in ids):
        raise AnalysisUnavailable(
            f"studies: expected a comma-separated list of study ids, got {text!r}"
        )
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise AnalysisUnavailable(f"studies: {repeated[0]} is named more than once")
    if len(ids) > MAX_COMPARED_STUDIES:
        raise AnalysisUnavailable(
            f"studies: at most {MAX_COMPARED_STUDIES} studies at once, got {len(ids)}"
        )
    return ids


def comparison_answer(
    session: Session,
    cache: AnswerCache,
    ids: list[str],
    selection: Selection,
    min_finite_fraction: float,
    tau_max: float,
    format: str,
) -> Answer:
    """The comparison of the studies ``ids`` as ``format`` (json or an image), cached; a 404
    for an unknown id (before anything is read), a 422 for what cannot be compared."""
    studies = [repository.get_study(session, study_id) for study_id in ids]
    directions = {study.id: selection.direction_for(study) for study in studies}
    versions = tuple((study.id, study_version(session, study.id)) for study in studies)
    key = (
        "compare", selection.metric, selection.direction, selection.value,
        key_parameters(selection.slice), min_finite_fraction, tau_max, format, versions,
    )  # fmt: skip

    def produce() -> Answer:
        problems = [problem(session, selection, study, directions[study.id]) for study in studies]
        try:
            info = analysis.compare(
                problems, selection.metric, min_finite_fraction=min_finite_fraction,
                tau_max=tau_max,
            )  # fmt: skip
        except ValueError as error:
            raise AnalysisUnavailable(str(error)) from error
        if format == "json":
            return json_answer(Comparison.of_value(info, selection.value))
        title = f"Performance profiles: {selection.metric} ({selection.value} values)"
        return image_answer(render_profile(info.profile, format, title=title), format)

    answer = cache.get(key, produce)
    if answer.refusal is not None:
        raise AnalysisUnavailable(answer.refusal)
    return answer


def problem(
    session: Session, selection: Selection, study: StudyInfo, direction: str
) -> analysis.Problem:
    """One study as a problem: its records holding the chosen value, in the selected slice."""
    records = selection.records_for(
        session, study, repository.trial_records(session, study.id), direction
    )
    return analysis.Problem(
        id=study.id,
        name=study.name,
        task=study.task,
        records=records,
        direction=direction,  # type: ignore[arg-type]
        slice=selection.slice or None,
    )


@router.get("/compare", response_model=Comparison, responses=IMAGES)
def compare(
    session: SessionDep,
    cache: CacheDep,
    studies: StudyIds,
    selection: Annotated[Selection, Depends()],
    min_finite_fraction: MinFiniteFraction = 1.0,
    tau_max: TauMax = DEFAULT_TAU_MAX,
    format: ProfileFormat = "json",
) -> Response:
    """Per optimizer across the studies: each study's good-η range, best value and η and
    tunability; the Dolan–Moré performance profiles ρ_s(τ) over the studies (a problem per
    study, the cost its best value: an optimizer missing from a study, or whose cells all
    diverged there, has r = ∞). JSON, or the profile plot."""
    answer = comparison_answer(
        session, cache, study_ids(studies), selection, min_finite_fraction, tau_max, format
    )
    return Response(answer.body, media_type=answer.media_type)


def _range(entry: dict[str, Any]) -> str:
    """``η_low – η_high`` of a good-η range (``∞`` when it reaches ALI-G∞)."""
    if not entry["n_good"]:
        return "none"
    high = "∞" if entry["includes_infinity"] else eta_label_or_dash(entry["eta_high"])
    low = eta_label_or_dash(entry["eta_low"]) if entry["eta_low"] is not None else "∞"
    return low if low == high else f"{low} – {high}"


@router.get("/ui/compare", response_class=HTMLResponse, include_in_schema=False)
def compare_page(
    request: Request,
    session: SessionDep,
    cache: CacheDep,
    studies: StudyIds,
    selection: Annotated[Selection, Depends()],
    min_finite_fraction: MinFiniteFraction = 1.0,
    tau_max: TauMax = DEFAULT_TAU_MAX,
) -> HTMLResponse:
    """The comparison as a page: the studies side by side and the profile plot (SVG)."""
    ids = study_ids(studies)
    answer = comparison_answer(session, cache, ids, selection, min_finite_fraction, tau_max, "json")
    body = Comparison.model_validate_json(answer.body).model_dump(mode="json")
    rows = []
    for name, entries in body["optimizers"].items():
        cells = []
        for header in body["studies"]:
            entry = entries.get(header["id"])
            cells.append(
                None
                if entry is None
                else {
                    "range": _range(entry),
                    "decades": short_number(entry["decades"]),
                    "best_value": short_number(entry["best_value"]),
                    "best_eta": eta_label_or_dash(entry["best_eta"]),
                    "cpe": short_number(entry["cpe"]),
                }
            )
        ratios = [
            short_number(r) if r is not None else "∞" for r in body["profile"]["ratios"][name]
        ]
        rows.append({"optimizer": name, "cells": cells, "ratios": ratios})
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "format"]
    context = {
        "comparison": body,
        "rows": rows,
        "profile_url": f"/compare?{urlencode([*query, ('format', 'svg')])}",
        "json_url": f"/compare?{urlencode(query)}",
    }
    return templates.TemplateResponse(request, "compare.html", context)
