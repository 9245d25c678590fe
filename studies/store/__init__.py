"""The SQL store of studies: SQLite embedded, PostgreSQL in compose (SQLAlchemy 2, Alembic).

- :mod:`.models` the ORM schema; :mod:`.migrations` its Alembic history (``migrate.upgrade``);
- :mod:`.engine` ``make_engine(url)``; :mod:`.store` :class:`Store` (engine + ``session()``);
- :mod:`.rows` the one row ↔ object conversion (trials are :class:`studies.trial.TrialRecord`);
- :mod:`.repository` every query, as functions of a session, returning records and
  :mod:`.read_models` dataclasses;
- :mod:`.codec` how NaN/±inf survive SQL and JSON.

Typical use::

    store = Store("sqlite:///data/studies.sqlite")
    store.upgrade()
    with store.session() as session:
        study, created = repository.create_study(session, name=..., task=..., spec=..., trials=...)
"""

from studies.store import repository
from studies.store.engine import make_engine, normalize_url
from studies.store.migrate import upgrade
from studies.store.read_models import CurvePoint, Page, Progress, StudyInfo
from studies.store.store import Store

__all__ = [
    "CurvePoint",
    "Page",
    "Progress",
    "Store",
    "StudyInfo",
    "make_engine",
    "normalize_url",
    "repository",
    "upgrade",
]
