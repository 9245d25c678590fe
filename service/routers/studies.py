"""``/studies``: submit, list, show, cancel, resume, extend, delete, and one reconciler pass —
HTTP only; the actions are :class:`studies.lifecycle.StudyLifecycle`'s and
:class:`studies.reconciler.Reconciler`'s."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from service.dependencies import (
    LifecycleDep,
    SessionDep,
    SettingsDep,
    check_idempotency_key,
    require_token,
)
from service.exceptions import error_responses
from service.models import ExtensionOut, StudyExtension, StudyOut, StudyPage, StudySummary
from studies.settings import Settings
from studies.store import StudyInfo, repository
from studies.submission import Limits

router = APIRouter(prefix="/studies", tags=["studies"])
READ = error_responses(404, 422)
MUTATE = error_responses(401, 404, 409, 422, 503)


class ReconcileOut(BaseModel):
    """What one reconciler pass did (study ids per action); ``error`` when the cluster did not
    answer and the pass stopped."""

    checked: int
    launched: list[str]
    resumed: list[str]
    failed: list[str]
    noted: list[str]
    error: str | None


def _out(session: Session, study: StudyInfo, settings: Settings) -> StudyOut:
    progress = repository.study_progress(session, study.id)
    return StudyOut.of(study, progress, settings.ray_dashboard_url)


@router.post(
    "",
    status_code=202,
    dependencies=[Depends(require_token)],
    responses=error_responses(401, 422, 429, 503),
)
def submit_study(
    response: Response,
    body: Annotated[Any, Body(description='a study spec, or {"preset": name, "overrides": {...}}')],
    lifecycle: LifecycleDep,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> StudyOut:
    """Validate the spec fully, store the study with all its trials, launch it; 202.

    422 names the field and, for a limit, the setting; 429 when too many studies are
    unfinished; 503 (with Retry-After) when Ray did not take the driver — the study is stored
    ``pending`` then and the reconciler launches it."""
    submission = lifecycle.submit(
        body, limits=Limits.of(settings), idempotency_key=check_idempotency_key(idempotency_key)
    )
    response.headers["Location"] = f"/studies/{submission.study.id}"
    study = _out(session, submission.study, settings)
    # a search creates its rows as it samples: the planned count, not the rows so far
    return study.model_copy(update={"n_trials": submission.n_trials})


@router.get("", responses=error_responses(422))
def list_studies(
    session: SessionDep,
    settings: SettingsDep,
    status: str | None = None,
    task: str | None = None,
    tag: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> StudyPage:
    """Studies, newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    page = repository.list_studies(
        session, status=status, task=task, tag=tag, limit=limit, cursor=cursor
    )
    counts = repository.studies_progress(session, [s.id for s in page.items])
    items = [StudySummary.of(s, counts[s.id], settings.ray_dashboard_url) for s in page.items]
    return StudyPage(items=items, next_cursor=page.next_cursor)


@router.get("/{study_id}", responses=READ)
def get_study(
    study_id: str,
    session: SessionDep,
    settings: SettingsDep,
) -> StudyOut:
    """The study: spec, status, progress, timestamps, Ray job and dashboard link."""
    return _out(session, repository.get_study(session, study_id), settings)


@router.post("/{study_id}/cancel", dependencies=[Depends(require_token)], responses=MUTATE)
def cancel_study(
    study_id: str,
    lifecycle: LifecycleDep,
    session: SessionDep,
    settings: SettingsDep,
) -> StudyOut:
    """Cancel a pending or running study (idempotent); finished trials keep their results."""
    return _out(session, lifecycle.cancel(study_id), settings)


@router.post(
    "/{study_id}/resume",
    status_code=202,
    dependencies=[Depends(require_token)],
    responses=MUTATE,
)
def resume_study(
    study_id: str,
    lifecycle: LifecycleDep,
    session: SessionDep,
    settings: SettingsDep,
) -> StudyOut:
    """Re-launch an interrupted study: only its unfinished trials run."""
    return _out(session, lifecycle.resume(study_id), settings)


EXTENSION_EXAMPLE = {"grid": {"eta": [0.3], "seed": [1]}, "optimizers": [{"name": "adam"}]}


@router.post(
    "/{study_id}/extend",
    status_code=202,
    dependencies=[Depends(require_token)],
    responses=error_responses(401, 404, 409, 422, 429, 503),
)
def extend_study(
    study_id: str,
    body: Annotated[
        Any,
        Body(
            description="the values to add: grid axes (eta, batch_size, radius, weight_decay, "
            "seed, task_options), optimizers (new entries, or more eta for an existing row), "
            "search.n_trials; any other field only with its stored value",
            examples=[EXTENSION_EXAMPLE],
        ),
    ],
    lifecycle: LifecycleDep,
    session: SessionDep,
    settings: SettingsDep,
) -> StudyExtension:
    """Add trials to a finished, failed or cancelled study and launch it again; 202.

    The stored spec becomes the union (axis values appended, new optimizers appended); the
    stored trials keep their rows and results, only the new ones — and what a failed or
    cancelled study left unfinished — run. 409 names the field of anything that is not an
    addition (another task, budget, device, changed options, fewer samples) and refuses a
    pending or running study ("cancel or wait"); 422 a malformed body or one that adds no
    trial; 429 and 503 as for a submission."""
    extended = lifecycle.extend(study_id, body, limits=Limits.of(settings))
    study = extended.study
    return StudyExtension(
        study=_out(session, study, settings),
        added=extended.added,
        reused=extended.reused,
        extensions=[ExtensionOut.model_validate(entry) for entry in study.extensions],
    )


@router.delete(
    "/{study_id}",
    status_code=204,
    dependencies=[Depends(require_token)],
    responses=MUTATE,
)
def delete_study(study_id: str, lifecycle: LifecycleDep) -> Response:
    """Delete a finished study (whose Ray job has ended) and all its rows."""
    lifecycle.delete(study_id)
    return Response(status_code=204)


@router.post(
    "/reconcile", dependencies=[Depends(require_token)], responses=error_responses(401, 422)
)
def reconcile(
    request: Request,
    grace_seconds: Annotated[float | None, Query(ge=0, le=86_400)] = None,
) -> ReconcileOut:
    """Run one reconciler pass now: launch stranded pending studies, relaunch studies whose
    driver died (``grace_seconds``: skip studies changed more recently; default: the
    setting)."""
    report = request.app.state.reconciler.run_once(grace_seconds)
    return ReconcileOut(**vars(report))
