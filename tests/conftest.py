"""Suite-wide settings."""

import contextlib
import itertools
from collections.abc import Iterator

import pytest
import torch
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from studies.store import Store
from studies.store.migrate import upgrade
from tests.postgres import PostgresUnavailable, create_database, postgres_server

# One intra-op thread: the test models are tiny, and on a 2-core machine shared with Ray workers
# and servers OpenMP spin-waiting with more threads makes them many times slower.
torch.set_num_threads(1)


# --- the study store: a throwaway PostgreSQL server and a migrated Store on each backend ------

_database_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL server for the whole run; the URL of an empty database on it.

    Fails (never skips) without the server binaries: PostgreSQL is a supported backend, so a
    run that silently tested SQLite alone would pass for the wrong reason.
    """
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(postgres_server())
        except PostgresUnavailable as error:
            pytest.fail(str(error), pytrace=False)
        yield url


@pytest.fixture
def empty_postgres_url(postgres_url: str) -> str:
    """A new, empty database on the test server (for migration tests)."""
    return create_database(postgres_url, f"empty_{next(_database_numbers)}")


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_url: str) -> str:
    """A database migrated once per run; ``store`` empties its tables before each test."""
    url = create_database(postgres_url, "store")
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    """A migrated, empty :class:`Store` on SQLite (a fresh file) and on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("store") / "data" / "studies.sqlite"
        instance = Store(f"sqlite:///{path}")
        instance.upgrade()
    else:
        # the server starts only when a PostgreSQL case runs (e.g. not under -k sqlite)
        instance = Store(request.getfixturevalue("migrated_postgres_url"))
        _truncate(instance)
    try:
        yield instance
    finally:
        instance.dispose()


def _truncate(store: Store) -> None:
    """Empty the tables (faster than a new database per test).

    A connection an earlier test left idle in a transaction would block TRUNCATE forever; the
    lock timeout turns that into a failure naming the connections that hold the tables.
    """
    with store.engine.connect() as connection:
        try:
            with connection.begin():
                connection.execute(text("SET LOCAL lock_timeout = '20s'"))
                connection.execute(
                    text("TRUNCATE sens_studies, sens_trials, sens_metric_points RESTART IDENTITY")
                )
        except OperationalError:
            holders = connection.execute(
                text(
                    "SELECT pid, state, query FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).all()
            pytest.fail(f"an earlier test left connections holding the store: {holders}")


# --- a private Ray head (dashboard + Jobs API) shared by the execution tests ------------------


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator["LocalRayHead"]:  # noqa: F821
    """A Ray head on free loopback ports for the whole run; stopped by its own process id."""
    from tests.ray_cluster import ray_head as start_head

    with start_head(tmp_path_factory.mktemp("ray")) as head:
        yield head
