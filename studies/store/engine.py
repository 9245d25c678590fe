"""Engines for SQLite (embedded default) and PostgreSQL (compose).

URLs:

- ``sqlite:///relative/path/db.sqlite`` or ``sqlite:////absolute/path/db.sqlite``: the parent
  directory is created; every connection runs in WAL mode (readers never block the writer, which
  matters while a study's driver writes results and the API reads them), with foreign keys on
  (SQLite ignores ``ON DELETE CASCADE`` otherwise) and a busy timeout (a second writer waits
  instead of failing at once). ``sqlite://`` is a private in-memory database (tests, one process).
- ``postgresql+psycopg://user:password@host:port/db`` (psycopg 3); plain ``postgresql://`` and
  ``postgres://`` are taken to mean psycopg 3 too. Connections are pinged before use, so a
  restarted server costs one reconnect instead of an error.

JSON columns are written with ``allow_nan=False``: a NaN that slipped past the codec fails the
write rather than storing text that no JSON parser reads back.
"""

import functools
import json
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.pool import StaticPool

DEFAULT_BUSY_TIMEOUT_MS = 30_000
_json_dumps = functools.partial(json.dumps, allow_nan=False)


def normalize_url(url: str | URL) -> URL:
    """The URL with the driver the store uses (``postgresql`` → ``postgresql+psycopg``).

    Raises ``ValueError`` for a backend other than SQLite or PostgreSQL.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if parsed.drivername in ("postgres", "postgresql"):  # postgres:// is the Heroku spelling
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend not in ("sqlite", "postgresql"):
        raise ValueError(f"database url: unsupported backend {backend!r}; use sqlite or postgres")
    return parsed


def make_engine(
    url: str | URL, *, echo: bool = False, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS
) -> Engine:
    """A configured engine for ``url`` (see the module docstring for what each backend gets)."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, echo=echo, busy_timeout_ms=busy_timeout_ms)
    return create_engine(parsed, echo=echo, pool_pre_ping=True, json_serializer=_json_dumps)


def _sqlite_engine(url: URL, *, echo: bool, busy_timeout_ms: int) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    options: dict[str, Any] = {}
    if in_memory:
        # one connection shared by every session, or each would see its own empty database
        options["poolclass"] = StaticPool
    else:
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
    engine = create_engine(
        url,
        echo=echo,
        json_serializer=_json_dumps,
        # the pool hands a connection to one thread at a time; API worker threads share the pool
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        **options,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                # with WAL, NORMAL is durable across application crashes (not power loss)
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        finally:
            cursor.close()

    return engine
