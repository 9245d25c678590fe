"""``/studies``: submit, list, show, cancel, resume, delete."""

import contextlib
import logging
import math
import re
import threading
import time
from collections import deque
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Response
from sqlalchemy.orm import Session

from service.dependencies import (
    LauncherDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    require_token,
)
from service.views import study_json
from studies.exceptions import InvalidTransition, SpecError, StudyNotFound
from studies.presets import load_preset
from studies.settings import Settings
from studies.spec import expand_grid, parse_spec, planned_trial_count
from studies.store import Store, StudyInfo, repository
from studies.store.models import STUDY_FINISHED
from workers.launcher import TERMINAL_JOB_STATES, Launcher

router = APIRouter(prefix="/studies", tags=["studies"])
log = logging.getLogger("service.studies")
STOP_GRACE_SECONDS = 20.0  # a cancelled driver stops itself; the Ray job is stopped after this
INT_RANGE = (-(2**31), 2**31 - 1)  # the store's integer columns (batch size, seed) are 32-bit


def _check_storable(spec: Any) -> None:
    """What the store cannot hold, refused with the field's path: non-finite numbers (JSON has
    none), integers beyond 32 bits, and NUL characters (PostgreSQL text has none)."""
    queue: deque[tuple[str, Any]] = deque([("", spec)])  # iterative: bodies may nest deeply
    while queue:
        path, value = queue.popleft()
        if isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                if "\x00" in str(key):
                    raise SpecError(f"{child}: keys must not contain NUL characters")
                queue.append((child, item))
        elif isinstance(value, list):
            queue.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, str) and "\x00" in value:
            raise SpecError(f"{path or 'body'}: must not contain NUL characters")
        elif isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"{path or 'body'}: must be a finite number, got {value}")
        elif isinstance(value, int) and not INT_RANGE[0] <= value <= INT_RANGE[1]:
            raise SpecError(f"{path or 'body'}: must be between {INT_RANGE[0]} and {INT_RANGE[1]}")


def _spec_from_body(body: Any) -> dict[str, Any]:
    """The spec dict of a submission: the spec itself, or ``{"preset": ..., "overrides": ...}``."""
    if not isinstance(body, dict):
        raise SpecError('body: must be a JSON object (a study spec or {"preset": ...})')
    if "preset" in body:
        extra = sorted(set(body) - {"preset", "overrides"})
        if extra:
            raise SpecError(f"{extra[0]}: not allowed next to 'preset' (use 'overrides')")
        overrides = body.get("overrides")
        overrides = {} if overrides is None else overrides
        if not isinstance(overrides, dict):
            raise SpecError("overrides: must be a JSON object")
        if not isinstance(body["preset"], str):
            raise SpecError("preset: must be a preset name")
        body = load_preset(body["preset"], overrides)
    _check_storable(body)
    return body


def _json(session: Session, study: StudyInfo, settings: Settings, *, full: bool = True) -> dict:
    progress = repository.study_progress(session, study.id)
    return study_json(study, progress, settings.ray_dashboard_url, full=full)


def _launch(store: Store, launcher: Launcher, study: StudyInfo, attempt: int) -> StudyInfo:
    """Submit the study's driver; on failure the study is ``failed`` with the reason."""
    try:
        job_id = launcher.submit(study.id, study.name, attempt)
    except Exception as error:
        with store.session() as session:
            repository.set_study_status(
                session, study.id, "failed", error=f"launch failed: {error}"
            )
        raise
    with store.session() as session:
        repository.set_ray_job_id(session, study.id, job_id)
        return repository.get_study(session, study.id)


@router.post("", status_code=202, dependencies=[Depends(require_token)])
def submit_study(
    response: Response,
    body: Annotated[Any, Body(description='a study spec, or {"preset": name, "overrides": {...}}')],
    store: StoreDep,
    launcher: LauncherDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict:
    """Validate the spec fully, store the study with all its trials, launch it; 202."""
    spec = parse_spec(_spec_from_body(body), max_trials=settings.max_trials)
    trials = expand_grid(spec) if spec.grid is not None else []
    with store.session() as session:
        study, created = repository.create_study(
            session,
            name=spec.name,
            task=spec.task,
            spec=spec.model_dump(mode="json", by_alias=True),
            tags=spec.tags,
            trials=trials,
            idempotency_key=idempotency_key,
        )
    if created:
        study = _launch(store, launcher, study, attempt=0)
    response.headers["Location"] = f"/studies/{study.id}"
    with store.session() as session:
        body_json = _json(session, study, settings)
    body_json["n_trials"] = planned_trial_count(spec)  # a search creates its rows as it samples
    return body_json


@router.get("")
def list_studies(
    session: SessionDep,
    settings: SettingsDep,
    status: str | None = None,
    task: str | None = None,
    tag: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict:
    """Studies, newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    page = repository.list_studies(
        session, status=status, task=task, tag=tag, limit=limit, cursor=cursor
    )
    counts = repository.studies_progress(session, [s.id for s in page.items])
    items = [
        study_json(s, counts[s.id], settings.ray_dashboard_url, full=False) for s in page.items
    ]
    return {"items": items, "next_cursor": page.next_cursor}


@router.get("/{study_id}")
def get_study(
    study_id: str,
    session: SessionDep,
    settings: SettingsDep,
) -> dict:
    """The study: spec, status, progress, timestamps, Ray job and dashboard link."""
    return _json(session, repository.get_study(session, study_id), settings)


@router.post("/{study_id}/cancel", dependencies=[Depends(require_token)])
def cancel_study(
    study_id: str,
    store: StoreDep,
    launcher: LauncherDep,
    settings: SettingsDep,
) -> dict:
    """Cancel a pending or running study (idempotent); finished trials keep their results."""
    with store.session() as session:
        study = repository.get_study(session, study_id)
        if study.status in ("succeeded", "failed"):
            raise InvalidTransition(
                f"study {study_id} is already {study.status}: nothing to cancel"
            )
        if study.status != "cancelled":
            study = repository.set_study_status(session, study_id, "cancelled")
            repository.cancel_pending_trials(session, study_id)
    if study.ray_job_id:
        threading.Thread(
            target=_stop_if_still_running, args=(store, launcher, study_id, study.ray_job_id),
            daemon=True,
        ).start()  # fmt: skip
    with store.session() as session:
        return _json(session, study, settings)


def _stop_if_still_running(store: Store, launcher: Launcher, study_id: str, job_id: str) -> None:
    """The driver notices the cancel within a second and stops; if it is stuck, stop its job."""
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while time.monotonic() < deadline:
        if launcher.status(job_id) in (*TERMINAL_JOB_STATES, None):
            break
        time.sleep(1.0)
    else:
        launcher.stop(job_id)
    with contextlib.suppress(StudyNotFound), store.session() as session:  # deleted meanwhile
        repository.cancel_pending_trials(session, study_id, include_running=True)


def _require_job_ended(launcher: Launcher, study: StudyInfo, action: str) -> None:
    """A study's driver may still be stopping after a cancel: never run two drivers, and never
    delete rows a driver is still writing."""
    if not study.ray_job_id:
        return
    state = launcher.status(study.ray_job_id)
    if state not in (*TERMINAL_JOB_STATES, None):
        raise InvalidTransition(
            f"study {study.id} is {study.status} but its Ray job is {state}: "
            f"wait for it to end before {action}"
        )


def _next_attempt(job_id: str | None) -> int:
    if not job_id:
        return 0
    match = re.search(r"-r(\d+)$", job_id)
    return int(match.group(1)) + 1 if match else 1


@router.post("/{study_id}/resume", status_code=202, dependencies=[Depends(require_token)])
def resume_study(
    study_id: str,
    store: StoreDep,
    launcher: LauncherDep,
    settings: SettingsDep,
) -> dict:
    """Re-launch an interrupted study: only its unfinished trials run."""
    with store.session() as session:
        study = repository.get_study(session, study_id)
        _require_job_ended(launcher, study, "resuming")
        progress = repository.study_progress(session, study_id)
        if study.status == "succeeded" and progress.done == progress.total:
            raise InvalidTransition(f"study {study_id} is succeeded: every trial is finished")
        study = repository.set_study_status(session, study_id, "pending", resume=True)
    study = _launch(store, launcher, study, _next_attempt(study.ray_job_id))
    with store.session() as session:
        return _json(session, study, settings)


@router.delete("/{study_id}", status_code=204, dependencies=[Depends(require_token)])
def delete_study(
    study_id: str,
    session: SessionDep,
    launcher: LauncherDep,
) -> Response:
    """Delete a finished study (whose Ray job has ended) and all its rows."""
    study = repository.get_study(session, study_id)
    if study.status not in STUDY_FINISHED:
        raise InvalidTransition(f"study {study_id} is {study.status}: cancel it before deleting it")
    _require_job_ended(launcher, study, "deleting")
    repository.delete_study(session, study_id)
    return Response(status_code=204)
