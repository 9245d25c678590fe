"""The hand-written migration creates exactly the ORM schema, on SQLite and on PostgreSQL."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Engine, Integer, MetaData, inspect

from studies.store import make_engine, upgrade
from studies.store.migrate import VERSION_TABLE, alembic_config
from studies.store.models import Base


def differences(engine: Engine, metadata: MetaData) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        return compare_metadata(context, metadata)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'studies.sqlite'}"
    else:
        url = request.getfixturevalue("empty_postgres_url")
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_upgrade_from_empty_matches_the_orm_metadata(empty_engine):
    upgrade(empty_engine)
    tables = set(inspect(empty_engine).get_table_names())
    assert tables == {
        "sens_studies",
        "sens_trials",
        "sens_metric_points",
        "studies_alembic_version",
    }
    assert differences(empty_engine, Base.metadata) == []


def test_the_comparison_would_see_a_difference(empty_engine):
    # guards the test above against a comparison that reports nothing whatever the schema
    upgrade(empty_engine)
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["sens_trials"].append_column(Column("learning_rate_decay", Integer))
    diff = differences(empty_engine, changed)
    assert [entry[0] for entry in diff] == ["add_column"]


def test_upgrade_is_idempotent_and_records_the_head_revision(empty_engine):
    upgrade(empty_engine)
    upgrade(empty_engine)  # already at head: nothing to do, no error
    with empty_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        revision = context.get_current_revision()
    assert revision == "0003"


def test_upgrade_accepts_a_url_and_creates_the_sqlite_directory(tmp_path):
    path = tmp_path / "not" / "yet" / "there.sqlite"
    upgrade(f"sqlite:///{path}")
    assert path.exists()


def test_the_script_directory_has_one_head():
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(alembic_config()).get_heads() == ["0003"]


def test_0002_counts_the_launches_of_studies_made_before_it(empty_engine):
    from sqlalchemy import text

    upgrade(empty_engine, "0001")
    rows = [("a" * 32, None), ("b" * 32, "dnc-" + "b" * 32), ("c" * 32, "dnc-" + "c" * 32 + "-r2")]
    with empty_engine.begin() as connection:
        for study_id, job_id in rows:
            connection.execute(
                text(
                    "INSERT INTO sens_studies (id, name, task, spec, tags, status, ray_job_id,"
                    " created_at, updated_at) VALUES (:id, 'x', 'dnc-copy', '{}', '[]',"
                    " 'succeeded', :job, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"id": study_id, "job": job_id},
            )
    upgrade(empty_engine)
    with empty_engine.connect() as connection:
        counts = dict(connection.execute(text("SELECT id, launch_attempt FROM sens_studies")).all())
    # never launched: 0; the first launch's job id: 1; the second resume ("-r2"): 3 launches
    assert counts == {"a" * 32: 0, "b" * 32: 1, "c" * 32: 3}
