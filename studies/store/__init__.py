"""The SQL store of studies: SQLite embedded, PostgreSQL in compose (SQLAlchemy 2, Alembic).

- :mod:`.models` the ORM schema; :mod:`.migrations` its Alembic history (``migrate.upgrade``);
- :mod:`.engine` ``make_engine(url)`` and :class:`Store` (engine + ``session()`` transactions);
- :mod:`.repository` every query, as functions of a session, returning :mod:`.views` dataclasses;
- :mod:`.codec` how NaN/±inf survive SQL and JSON.

Typical use::

    store = Store("sqlite:///data/studies.sqlite")
    store.upgrade()
    with store.session() as session:
        study, created = repository.create_study(session, name=..., task=..., spec=..., trials=...)
"""

from studies.store import repository
from studies.store.engine import Store, make_engine, normalize_url
from studies.store.migrate import upgrade
from studies.store.views import (
    CurvePoint,
    NewTrial,
    Page,
    Progress,
    StudyInfo,
    TrialInfo,
    TrialLike,
)

__all__ = [
    "CurvePoint",
    "NewTrial",
    "Page",
    "Progress",
    "Store",
    "StudyInfo",
    "TrialInfo",
    "TrialLike",
    "make_engine",
    "normalize_url",
    "repository",
    "upgrade",
]
