"""The :class:`Store`: the engine and a session factory, the one object the service and the
workers hold (engines in :mod:`.engine`, migrations in :mod:`.migrate`)."""

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Self

from sqlalchemy import URL, Engine
from sqlalchemy.orm import Session, sessionmaker

from studies.store.engine import make_engine
from studies.store.migrate import upgrade


class Store:
    """The engine and a session factory: the one object the service and the workers hold.

    ``with store.session() as session:`` is one transaction: it commits when the block ends and
    rolls back if it raises. Objects stay readable after the commit (``expire_on_commit=False``);
    the repository returns plain dataclasses anyway.
    """

    def __init__(self, url_or_engine: str | URL | Engine, *, echo: bool = False) -> None:
        self.engine: Engine = (
            url_or_engine
            if isinstance(url_or_engine, Engine)
            else make_engine(url_or_engine, echo=echo)
        )
        self.sessionmaker: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: commit on success, rollback on an exception."""
        with self.sessionmaker.begin() as session:
            yield session

    def upgrade(self, revision: str = "head") -> None:
        """Apply the schema migrations up to ``revision`` (``alembic upgrade head``)."""
        upgrade(self.engine, revision)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.dispose()
