"""Run the Alembic migrations shipped in ``studies/store/migrations`` from Python.

No ``alembic.ini`` is needed: :func:`alembic_config` points Alembic at the package's migration
directory and hands it an open connection. ``alembic`` on the command line works too, with
``-x``-less configs that set ``script_location = studies.store:migrations`` and
``sqlalchemy.url``.
"""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Connection, Engine

from studies.store.engine import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Not Alembic's default "alembic_version": Optuna's RDB storage (search studies keep their
# sampler history in the same database) runs its own Alembic history under that name.
VERSION_TABLE = "studies_alembic_version"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the store's migrations, optionally bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        # env.py uses this connection instead of opening its own (and its transaction)
        config.attributes["connection"] = connection
    return config


def upgrade(url_or_engine: str | URL | Engine, revision: str = "head") -> None:
    """``alembic upgrade <revision>`` on the database (an empty one gets the whole schema).

    Given a URL, a temporary engine is made with :func:`make_engine` (so SQLite gets WAL and
    foreign keys) and disposed of afterwards; given an engine, it is used and left open.
    """
    engine = url_or_engine if isinstance(url_or_engine, Engine) else make_engine(url_or_engine)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), revision)
    finally:
        if engine is not url_or_engine:
            engine.dispose()
