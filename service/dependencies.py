"""Request dependencies: the store, the launcher, the lifecycle, the settings and the token
checks (mutations always when a token is set; every read too with ``protect_reads``)."""

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.exceptions import NotAuthorized
from studies.exceptions import InvalidQuery
from studies.lifecycle import Launcher, StudyLifecycle
from studies.settings import Settings
from studies.store import Store


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_launcher(request: Request) -> Launcher:
    return request.app.state.launcher


def get_lifecycle(request: Request) -> StudyLifecycle:
    return StudyLifecycle(request.app.state.store, request.app.state.launcher)


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back if it raises."""
    with request.app.state.store.session() as session:
        yield session


def require_token(request: Request) -> None:
    """Mutating requests need ``Authorization: Bearer <token>`` when a token is configured."""
    expected = request.app.state.settings.api_token
    if not expected:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthorized("authorization: this request needs 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise NotAuthorized("authorization: the bearer token is not valid")


# routes that answer without the token even when reads are protected: the health check (for
# load balancers and compose) — the API docs are not routes of the app's routers, so they stay
# open too (they describe the API, not its data)
OPEN_PATHS = frozenset({"/health"})


def require_read_token(request: Request) -> None:
    """Every route needs the token when ``protect_reads`` is set (and a token is configured),
    but :data:`OPEN_PATHS`; without ``protect_reads`` only mutating routes do."""
    settings = request.app.state.settings
    if settings.protect_reads and request.url.path not in OPEN_PATHS:
        require_token(request)


def check_idempotency_key(key: str | None) -> str | None:
    """An ``Idempotency-Key`` must say something: an empty or blank one is a 422 (it would be
    stored as a key every empty-keyed request shares)."""
    if key is not None and not key.strip():
        raise InvalidQuery("idempotency-key: must not be empty (leave the header out instead)")
    return key


# the parameter types handlers declare (FastAPI's Annotated-dependency idiom)
SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
LauncherDep = Annotated[Launcher, Depends(get_launcher)]
SessionDep = Annotated[Session, Depends(get_session)]
LifecycleDep = Annotated[StudyLifecycle, Depends(get_lifecycle)]


def reject_nul_characters(request: Request) -> None:
    """Refuse NUL characters in the path, the query and the idempotency key (422): PostgreSQL
    text cannot hold them, so they would otherwise fail in the database as a 500."""
    items = [*request.path_params.items(), *request.query_params.multi_items()]
    if "idempotency-key" in request.headers:
        items.append(("idempotency-key", request.headers["idempotency-key"]))
    for name, value in items:
        if "\x00" in name or "\x00" in str(value):
            raise InvalidQuery(f"{name}: must not contain NUL characters")
