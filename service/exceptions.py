"""The service's own errors, and the one table that maps every domain error to an HTTP status.

Every 4xx body is ``{"detail": "<message naming the field or resource>"}``. No input may
produce a 500: domain errors are mapped here, request validation errors are reformatted with
their field paths, and anything else is a bug.
"""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from optim.exceptions import OptimError
from service.models import ErrorOut
from studies.exceptions import (
    ClusterUnavailable,
    ExtensionConflict,
    IdempotencyConflict,
    InvalidCursor,
    InvalidQuery,
    InvalidTransition,
    SpecError,
    StudyError,
    StudyNotFound,
    TooManyStudies,
    TrialNotFound,
)
from workers.exceptions import LaunchError, TaskConfigError


class ServiceError(Exception):
    """Base class of the service's own errors."""


class NotAuthorized(ServiceError):
    """A mutating request without the configured API token."""


class AnalysisUnavailable(ServiceError):
    """An analysis cannot be computed from the study's results (yet); the message says why."""


RETRY_AFTER_SECONDS = 30  # what a 503 (the cluster) and a 429 (too many studies) suggest

# the most specific class first: the first match wins
STATUS_CODES: list[tuple[type[Exception], int]] = [
    (NotAuthorized, 401),
    (ClusterUnavailable, 503),
    (TooManyStudies, 429),
    (StudyNotFound, 404),
    (TrialNotFound, 404),
    (InvalidTransition, 409),
    (ExtensionConflict, 409),
    (IdempotencyConflict, 422),
    (SpecError, 422),
    (InvalidCursor, 422),
    (InvalidQuery, 422),
    (AnalysisUnavailable, 422),
    (OptimError, 422),
    (TaskConfigError, 422),
    (LaunchError, 503),
    (StudyError, 422),
]


# the extra headers of an error's response, by the same first-match rule
ERROR_HEADERS: list[tuple[type[Exception], dict[str, str]]] = [
    (NotAuthorized, {"WWW-Authenticate": "Bearer"}),
    (ClusterUnavailable, {"Retry-After": str(RETRY_AFTER_SECONDS)}),
    (LaunchError, {"Retry-After": str(RETRY_AFTER_SECONDS)}),
    (TooManyStudies, {"Retry-After": str(RETRY_AFTER_SECONDS)}),
]


def status_code_for(error: Exception) -> int:
    """The HTTP status of a domain error (see :data:`STATUS_CODES`)."""
    for kind, code in STATUS_CODES:
        if isinstance(error, kind):
            return code
    raise LookupError(type(error).__name__)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that may answer ``codes`` (each in :data:`STATUS_CODES`;
    422 is also every request validation error): ``{"detail": ...}`` bodies (ErrorOut), each
    described by the errors that map to it."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        kinds = [kind.__name__ for kind, status in STATUS_CODES if status == code]
        if not kinds:
            raise LookupError(f"no error maps to HTTP {code}")
        if code == 422:
            kinds.insert(0, "request validation")
        responses[code] = {"model": ErrorOut, "description": ", ".join(kinds)}
    return responses


async def _domain_error(request: Request, error: Exception) -> JSONResponse:
    headers = next((h for kind, h in ERROR_HEADERS if isinstance(error, kind)), None)
    return JSONResponse({"detail": str(error)}, status_code_for(error), headers=headers)


def _location(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else f".{part}"
    return text.lstrip(".") or "body"


def _message(error: dict) -> str:
    if error.get("type") == "json_invalid":  # its loc is ("body", <character position>)
        position = error["loc"][-1]
        reason = (error.get("ctx") or {}).get("error", "")
        return f"body: invalid JSON at character {position}: {reason}".rstrip(": ")
    text = str(error["msg"]).removeprefix("Value error, ")
    return f"{_location(tuple(error['loc']))}: {text}"


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": "; ".join(_message(e) for e in error.errors())}, 422)


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping on ``app``."""
    for kind, _ in STATUS_CODES:
        app.add_exception_handler(kind, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
