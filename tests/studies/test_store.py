"""The study store on SQLite and PostgreSQL: every repository contract, against a real database.

Each test runs twice through the parametrized ``store`` fixture (tests/conftest.py): a fresh
SQLite file and a truncated PostgreSQL database.
"""

import math
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text

from studies.exceptions import (
    IdempotencyConflict,
    InvalidCursor,
    InvalidQuery,
    InvalidTransition,
    SpecError,
    StudyError,
    StudyNotFound,
    TrialNotFound,
)
from studies.store import Store, make_engine
from studies.store import repository as repo
from studies.store.codec import decode_metrics, encode_float, encode_metrics
from studies.store.models import MetricPointRow, StudyRow, TrialRow
from studies.trial import Trial, TrialConfig, TrialRecord

SPEC = {"task": "matrix-factorisation", "optimizers": ["alig", "sgd"], "budget": {"epochs": 5}}


def new_trial(optimizer: str, eta: float | None, seed: int = 0, **extra) -> Trial:
    config = TrialConfig(
        task="matrix-factorisation",
        optimizer=optimizer,
        eta=eta,
        batch_size=32,
        seed=seed,
        budget=5,
    )
    return Trial.of(optimizer, config, extra, key=f"{optimizer}-{eta}-{seed}")


GRID = [new_trial(o, eta) for o in ("alig", "sgd") for eta in (0.01, 0.1, 1.0)] + [
    new_trial("alig", None)
]


def create(store: Store, name: str = "study", trials=GRID, **fields):
    with store.session() as session:
        study, created = repo.create_study(
            session, name=name, task=fields.pop("task", "matrix-factorisation"), spec=SPEC,
            trials=trials, **fields,
        )  # fmt: skip
    assert created
    return study


def count(store: Store, model) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(model))


# --- engine ----------------------------------------------------------------------------------


def test_sqlite_engine_uses_wal_foreign_keys_and_a_busy_timeout(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'a' / 'b' / 'db.sqlite'}", busy_timeout_ms=1234)
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 1234
    engine.dispose()
    assert (tmp_path / "a" / "b" / "db.sqlite").exists()


def test_engine_urls_are_normalised_and_other_backends_rejected():
    assert make_engine("postgresql://u@localhost/db").url.drivername == "postgresql+psycopg"
    assert make_engine("postgres://u@localhost/db").url.drivername == "postgresql+psycopg"
    with pytest.raises(ValueError, match="unsupported backend 'mysql'"):
        make_engine("mysql://u@localhost/db")


def test_session_rolls_back_on_error(store):
    with pytest.raises(RuntimeError), store.session() as session:
        repo.create_study(session, name="x", task="t", spec=SPEC, trials=GRID)
        raise RuntimeError("boom")
    assert count(store, StudyRow) == 0
    assert count(store, TrialRow) == 0


def test_timestamps_are_aware_utc(store):
    study = create(store)
    assert study.created_at.tzinfo is UTC
    with store.session() as session:
        trial = repo.get_trial(session, study.id, GRID[0].key)
    assert trial.created_at.tzinfo is UTC and trial.updated_at.tzinfo is UTC


# --- create / get / list ---------------------------------------------------------------------


def test_create_and_get_study_with_its_trials(store):
    study = create(store, name="dnc", tags=["paper", "fig3"])
    assert len(study.id) == 32 and int(study.id, 16) >= 0
    assert (study.status, study.name, study.tags, study.spec) == (
        "pending",
        "dnc",
        ["paper", "fig3"],
        SPEC,
    )
    assert study.started_at is None and study.finished_at is None and study.error is None
    with store.session() as session:
        assert repo.get_study(session, study.id) == study
        trials = repo.list_trials(session, study.id).items
    assert [t.key for t in trials] == [t.key for t in GRID]  # creation order
    infinity = trials[-1]
    assert (infinity.optimizer, infinity.eta, infinity.status, infinity.attempts) == (
        "alig", None, "pending", 0,
    )  # fmt: skip
    assert infinity.config == GRID[-1].config
    assert infinity.final_objective is None and infinity.objective_kind is None


def test_a_trial_round_trips_through_its_row(store):
    config = TrialConfig(
        task="dnc", optimizer="adam", eta=1e-3, batch_size=8, radius=1.5, weight_decay=0.1,
        seed=3, budget=2, task_options={"rank": 10},
    )  # fmt: skip
    planned = Trial.of("adam", config, {"rank": 10}, key="k")
    study = create(store, trials=[planned])
    with store.session() as session:
        trial = repo.get_trial(session, study.id, "k")
    assert trial.config == config
    assert trial.trial == planned  # the record gives back the very trial that was stored
    assert (trial.radius, trial.weight_decay, trial.seed, trial.extra_axes) == (
        1.5,
        0.1,
        3,
        {"rank": 10},
    )


def test_duplicate_trial_keys_are_a_spec_error(store):
    with pytest.raises(SpecError, match=r"trials\[1\]\.key: duplicate"), store.session() as session:
        repo.create_study(session, name="x", task="t", spec=SPEC, trials=[GRID[0], GRID[0]])
    assert count(store, StudyRow) == 0


def test_add_trials_skips_known_keys(store):
    study = create(store, trials=GRID[:2])
    with store.session() as session:
        assert repo.add_trials(session, study.id, GRID[1:4]) == 2
        assert repo.add_trials(session, study.id, GRID[1:4]) == 0
        assert repo.study_progress(session, study.id).total == 4


def test_list_studies_filters_by_status_task_and_tag(store):
    a = create(store, name="a", tags=["x", "y"])
    b = create(store, name="b", tags=["y"], task="dnc")
    c = create(store, name="c", tags=[])
    with store.session() as session:
        repo.set_study_status(session, b.id, "running")

        def names(**filters) -> list[str]:
            return [s.name for s in repo.list_studies(session, **filters).items]

        assert names() == ["c", "b", "a"]  # newest first
        assert names(status="running") == ["b"]
        assert names(status=["pending"]) == ["c", "a"]
        assert names(task="dnc") == ["b"]
        assert names(tag="y") == ["b", "a"]
        assert names(tag="x") == ["a"]
        assert names(tag="z") == []
        assert names(tag="y", status="pending") == ["a"]
        with pytest.raises(InvalidQuery, match="status: unknown status 'done'"):
            names(status="done")
    assert c.id not in (a.id, b.id)


def test_list_studies_pages_with_an_opaque_cursor(store):
    created = [create(store, name=f"s{i}") for i in range(7)]
    seen, cursor, pages = [], None, 0
    with store.session() as session:
        while True:
            page = repo.list_studies(session, limit=3, cursor=cursor)
            seen += [s.name for s in page.items]
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert pages == 3
        assert seen == [s.name for s in reversed(created)]
        # a study created after the first page does not shift the later pages
        first = repo.list_studies(session, limit=3)
    create(store, name="late")
    with store.session() as session:
        second = repo.list_studies(session, limit=3, cursor=first.next_cursor)
        assert [s.name for s in second.items] == ["s3", "s2", "s1"]


def test_same_created_at_is_ordered_by_id(store):
    studies = [create(store, name=f"s{i}") for i in range(4)]
    instant = datetime(2030, 1, 1, tzinfo=UTC)
    with store.session() as session:
        session.execute(StudyRow.__table__.update().values(created_at=instant))
    with store.session() as session:
        first = repo.list_studies(session, limit=2)
        second = repo.list_studies(session, limit=2, cursor=first.next_cursor)
    ids = [s.id for s in first.items + second.items]
    assert ids == sorted((s.id for s in studies), reverse=True)
    assert second.next_cursor is None


@pytest.mark.parametrize("cursor", ["garbage!", "e30", "WyJ0cmlhbHM6eCIsIDFd", ""])
def test_bad_cursors_and_limits_are_domain_errors(store, cursor):
    with store.session() as session:
        with pytest.raises(InvalidCursor):
            repo.list_studies(session, cursor=cursor)
        for limit in (0, 501, True):
            with pytest.raises(InvalidQuery, match="limit: must be an integer from 1 to 500"):
                repo.list_studies(session, limit=limit)
        assert repo.list_studies(session, limit=500).items == []


def test_a_cursor_of_another_listing_is_rejected(store):
    one, two = create(store), create(store)
    with store.session() as session:
        trials_cursor = repo.list_trials(session, one.id, limit=1).next_cursor
        with pytest.raises(InvalidCursor, match="not a cursor of this listing"):
            repo.list_trials(session, two.id, cursor=trials_cursor)
        with pytest.raises(InvalidCursor):
            repo.list_studies(session, cursor=trials_cursor)


# --- idempotency -----------------------------------------------------------------------------


def test_idempotency_key_same_request_returns_the_same_study(store):
    first = create(store, idempotency_key="req-1")
    with store.session() as session:
        again, created = repo.create_study(
            session, name="study", task="matrix-factorisation", spec=SPEC, trials=GRID,
            idempotency_key="req-1",
        )  # fmt: skip
    assert not created and again.id == first.id
    assert count(store, StudyRow) == 1 and count(store, TrialRow) == len(GRID)


def test_idempotency_key_with_another_body_conflicts(store):
    first = create(store, idempotency_key="req-1")
    with pytest.raises(IdempotencyConflict, match=first.id), store.session() as session:
        repo.create_study(
            session, name="study", task="matrix-factorisation", spec={**SPEC, "budget": {"epochs": 6}},
            trials=GRID, idempotency_key="req-1",
        )  # fmt: skip
    with pytest.raises(IdempotencyConflict), store.session() as session:
        repo.create_study(
            session, name="x", task="t", spec=SPEC, trials=[], idempotency_key="req-1",
            request_hash="explicit",
        )  # fmt: skip
    assert count(store, StudyRow) == 1
    create(store, idempotency_key="req-2")  # another key is another study
    create(store)  # and no key never conflicts
    assert count(store, StudyRow) == 3


def test_a_create_that_loses_the_race_for_its_key_returns_the_winner(store, monkeypatch):
    # both requests checked the key before either inserted: ON CONFLICT must settle it
    winner = create(store, idempotency_key="race")
    real, calls = repo._by_idempotency_key, []

    def lost_race(*args):
        calls.append(args)
        return None if len(calls) == 1 else real(*args)

    monkeypatch.setattr(repo, "_by_idempotency_key", lost_race)
    with store.session() as session:
        again, created = repo.create_study(
            session, name="study", task="matrix-factorisation", spec=SPEC, trials=GRID,
            idempotency_key="race",
        )  # fmt: skip
    assert (again.id, created, len(calls)) == (winner.id, False, 2)
    with pytest.raises(IdempotencyConflict), store.session() as session:
        calls.clear()
        repo.create_study(
            session, name="other", task="t", spec=SPEC, trials=GRID, idempotency_key="race"
        )
    assert count(store, StudyRow) == 1 and count(store, TrialRow) == len(GRID)


# --- status transitions ----------------------------------------------------------------------


def test_study_transitions_set_timestamps_and_errors(store):
    study = create(store)
    with store.session() as session:
        running = repo.set_study_status(session, study.id, "running")
        assert running.started_at is not None and running.finished_at is None
        assert repo.set_study_status(session, study.id, "running") == running  # no-op
        failed = repo.set_study_status(session, study.id, "failed", error="driver died")
        assert failed.finished_at >= failed.started_at and failed.error == "driver died"
        with pytest.raises(InvalidTransition, match="cannot go from failed to running"):
            repo.set_study_status(session, study.id, "running")
        resumed = repo.set_study_status(session, study.id, "running", resume=True)
        assert resumed.error is None and resumed.finished_at is None
        assert resumed.started_at >= failed.started_at
        done = repo.set_study_status(session, study.id, "succeeded")
        assert done.status == "succeeded" and done.finished_at is not None
        launched = repo.record_launch(session, study.id, study.id, 3)
        assert (launched.ray_job_id, launched.launch_attempt) == (study.id, 3)
        assert repo.get_study(session, study.id) == launched


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ([], "succeeded"),  # pending → succeeded: it never ran
        (["cancelled"], "running"),  # cancelled is terminal unless resumed
        (["running", "succeeded"], "failed"),
        (["running", "cancelled"], "pending"),
    ],
)
def test_impossible_transitions_are_rejected(store, path, bad):
    study = create(store)
    with store.session() as session:
        for status in path:
            repo.set_study_status(session, study.id, status)
        with pytest.raises(InvalidTransition):
            repo.set_study_status(session, study.id, bad)
        with pytest.raises(InvalidTransition, match="unknown study status"):
            repo.set_study_status(session, study.id, "exploded")


# --- trial lifecycle and results -------------------------------------------------------------


def test_progress_counts(store):
    study, empty = create(store), create(store, trials=[])
    keys = [t.key for t in GRID]
    with store.session() as session:
        assert repo.study_progress(session, study.id).as_dict() == {
            "total": 7, "done": 0, "pending": 7, "running": 0, "completed": 0, "diverged": 0,
            "failed": 0, "cancelled": 0,
        }  # fmt: skip
        repo.mark_trial_running(session, study.id, keys[0])
        repo.mark_trial_running(session, study.id, keys[1])
        repo.record_trial_result(
            session, study.id, keys[1], status="completed", final_objective=0.1
        )
        repo.record_trial_result(
            session, study.id, keys[2], status="diverged", final_objective=math.inf
        )
        repo.record_trial_result(session, study.id, keys[3], status="failed", reason="OOM")
        progress = repo.study_progress(session, study.id)
        assert (progress.total, progress.pending, progress.running) == (7, 3, 1)
        assert (progress.completed, progress.diverged, progress.failed, progress.done) == (
            1,
            1,
            1,
            3,
        )
        both = repo.studies_progress(session, [study.id, empty.id])
        assert both[study.id] == progress and both[empty.id].total == 0


def test_running_marks_count_attempts_and_never_undo_a_result(store):
    study = create(store)
    key = GRID[0].key
    with store.session() as session:
        assert repo.mark_trial_running(session, study.id, key)
        first = repo.get_trial(session, study.id, key)
        assert (first.status, first.attempts) == ("running", 1) and first.started_at is not None
        assert repo.reset_running_trials(session, study.id) == 1
        reset = repo.get_trial(session, study.id, key)
        assert (reset.status, reset.attempts) == ("pending", 1)  # attempts kept
        assert repo.reset_running_trials(session, study.id) == 0
        assert repo.mark_trial_running(session, study.id, key)
        repo.record_trial_result(session, study.id, key, status="completed", final_objective=0.5)
        assert not repo.mark_trial_running(session, study.id, key)  # a late start is ignored
        trial = repo.get_trial(session, study.id, key)
        assert (trial.status, trial.attempts, trial.final_objective) == ("completed", 2, 0.5)
        assert [t.key for t in repo.unfinished_trials(session, study.id)] == [
            t.key for t in GRID[1:]
        ]


def test_cancel_marks_pending_trials_and_keeps_results(store):
    study = create(store)
    keys = [t.key for t in GRID]
    with store.session() as session:
        repo.record_trial_result(
            session, study.id, keys[0], status="completed", final_objective=1.0
        )
        repo.mark_trial_running(session, study.id, keys[1])
        assert repo.cancel_pending_trials(session, study.id) == 5
        assert repo.get_trial(session, study.id, keys[1]).status == "running"
        assert repo.cancel_pending_trials(session, study.id, include_running=True) == 1
        # a cancel arriving after a result does not overwrite it
        repo.record_trial_result(session, study.id, keys[0], status="cancelled")
        assert repo.get_trial(session, study.id, keys[0]).status == "completed"
        # cancelled trials are unfinished: a resume runs them again
        assert len(repo.unfinished_trials(session, study.id)) == 6
        assert repo.study_progress(session, study.id).cancelled == 6


def test_upserting_the_same_result_twice_leaves_one_row_with_the_same_values(store):
    study = create(store)
    key = GRID[0].key
    result = {
        "status": "completed",
        "final_objective": 0.125,
        "metrics": {"loss": 0.125, "acc": 0.9},
    }
    with store.session() as session:
        first = repo.record_trial_result(session, study.id, key, **result)
    with store.session() as session:
        second = repo.record_trial_result(session, study.id, key, **result)
    assert second == first  # timestamps included
    with store.session() as session:
        rows = session.scalars(select(TrialRow).where(TrialRow.key == key)).all()
        assert len(rows) == 1
        assert (rows[0].final_objective, rows[0].objective_kind) == (0.125, "finite")
        assert rows[0].metrics == {"loss": 0.125, "acc": 0.9}
        # a different finished result replaces it; metrics=None keeps the stored metrics
        third = repo.record_trial_result(
            session,
            study.id,
            key,
            status="diverged",
            final_objective=math.nan,
            reason="loss is nan",
        )
    assert (third.status, third.objective_kind, third.reason) == ("diverged", "nan", "loss is nan")
    assert third.metrics == first.metrics
    assert count(store, TrialRow) == len(GRID)


def test_result_for_an_unknown_trial_inserts_it_when_described(store):
    study = create(store, trials=[])
    extra = new_trial("adam", 0.001, rank=5)
    with store.session() as session:
        with pytest.raises(TrialNotFound, match=re.escape("adam-0.001-0")):
            repo.record_trial_result(session, study.id, extra.key, status="completed")
        stored = repo.record_trial_result(
            session, study.id, extra.key, status="completed", final_objective=2.0, trial=extra
        )
    assert (stored.optimizer, stored.extra_axes, stored.final_objective) == (
        "adam",
        {"rank": 5},
        2.0,
    )
    with store.session() as session, pytest.raises(InvalidTransition, match="mark_trial_running"):
        repo.record_trial_result(session, study.id, extra.key, status="running")


@pytest.mark.parametrize(
    ("value", "kind"), [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf"), (-0.0, "finite")]
)
def test_non_finite_objectives_and_metrics_round_trip_with_their_kinds(store, value, kind):
    study = create(store)
    key = GRID[0].key
    metrics = {"loss": value, "grad_norm": math.inf, "step_size": 1e-3, "missing": None}
    with store.session() as session:
        repo.record_trial_result(
            session, study.id, key, status="diverged", final_objective=value, metrics=metrics
        )
    with store.session() as session:
        raw = session.execute(
            select(TrialRow.final_objective, TrialRow.objective_kind, TrialRow.metrics).where(
                TrialRow.key == key
            )
        ).one()
        trial = repo.get_trial(session, study.id, key)
        (record,) = [r for r in repo.trial_records(session, study.id) if r.key == key]
    assert raw.objective_kind == kind
    assert (raw.final_objective is None) == (kind != "finite")  # NULL unless finite
    assert raw.metrics["grad_norm"] == {"kind": "inf"}  # JSON-safe tagged value
    assert trial.objective_kind == kind
    assert math.isnan(trial.final_objective) if kind == "nan" else trial.final_objective == value
    assert trial.metrics["grad_norm"] == math.inf and trial.metrics["step_size"] == 1e-3
    assert trial.metrics["missing"] is None
    assert (math.isnan(trial.metrics["loss"]) and kind == "nan") or trial.metrics["loss"] == value
    # one representation: the listing's record is the trial; the analysis reads value()
    assert record == trial
    assert record.value() is None and record.value("missing") is None  # diverged: no value


def test_codec_round_trip_and_rejects_non_numbers():
    for value in (0.0, -1.5, 1e308, math.inf, -math.inf):
        assert decode_metrics(encode_metrics({"v": value})) == {"v": value}
    assert math.isnan(decode_metrics(encode_metrics({"v": math.nan}))["v"])
    assert encode_float(3) == (3.0, "finite")
    with pytest.raises(TypeError, match=r"metrics\.acc: expected a number, got str"):
        encode_metrics({"acc": "high"})
    with pytest.raises(TypeError, match="final_objective: expected a number, got bool"):
        encode_float(True, "final_objective")


def test_a_nan_that_bypasses_the_codec_is_refused_in_json(store):
    refused = pytest.raises(Exception, match="Out of range float values are not JSON compliant")
    with refused, store.session() as session:
        repo.create_study(session, name="x", task="t", spec={"eta": math.nan}, trials=[])
    assert count(store, StudyRow) == 0


# --- metric points ---------------------------------------------------------------------------


def test_metric_points_recorded_twice_have_no_duplicates_and_decode(store):
    study = create(store)
    key = GRID[0].key
    points = [(step, "loss", 1.0 / (step + 1)) for step in range(1_500)]
    points += [
        (10, "step_size", math.inf),
        (20, "step_size", math.nan),
        (30, "step_size", -math.inf),
    ]
    with store.session() as session:
        assert repo.record_metric_points(session, study.id, key, points) == 1_503
    with store.session() as session:
        assert repo.record_metric_points(session, study.id, key, points) == 1_503
    assert count(store, MetricPointRow) == 1_503
    with store.session() as session:
        loss = repo.metric_curve(session, study.id, key, "loss")
        sizes = repo.metric_curve(session, study.id, key, "step_size")
        everything = repo.metric_curve(session, study.id, key)
        raw = session.execute(
            select(MetricPointRow.value, MetricPointRow.kind).where(
                MetricPointRow.name == "step_size"
            )
        ).all()
    assert [p.step for p in loss] == list(range(1_500)) and loss[3].value == 0.25
    assert [(p.step, p.value) for p in sizes[::2]] == [(10, math.inf), (30, -math.inf)]
    assert math.isnan(sizes[1].value)
    assert sorted(raw, key=lambda row: row.kind) == [(None, "-inf"), (None, "inf"), (None, "nan")]
    assert len(everything) == 1_503
    assert [(p.step, p.name) for p in everything[10:12]] == [(10, "loss"), (10, "step_size")]


def test_re_recorded_points_take_the_latest_value_even_within_a_batch(store):
    study = create(store)
    key = GRID[0].key
    with store.session() as session:
        repo.record_metric_points(session, study.id, key, [(0, "loss", 1.0), (0, "loss", 2.0)])
        repo.record_metric_points(session, study.id, key, [(1, "loss", 3.0)])
        repo.record_metric_points(session, study.id, key, [(1, "loss", 4.0)])
        curve = repo.metric_curve(session, study.id, key)
    assert [(p.step, p.value) for p in curve] == [(0, 2.0), (1, 4.0)]
    with store.session() as session, pytest.raises(TypeError, match=r"points\[0\]: step"):
        repo.record_metric_points(session, study.id, key, [("0", "loss", 1.0)])


# --- listing trials, records, deletion, unknown ids ------------------------------------------


def test_list_trials_filters_and_pages(store):
    study = create(store)
    with store.session() as session:
        repo.record_trial_result(
            session, study.id, GRID[1].key, status="completed", final_objective=1.0
        )

        def keys(**filters) -> list[str]:
            return [t.key for t in repo.list_trials(session, study.id, **filters).items]

        assert keys(optimizer="sgd") == ["sgd-0.01-0", "sgd-0.1-0", "sgd-1.0-0"]
        assert keys(status="completed") == ["alig-0.1-0"]
        assert keys(status=["pending", "completed"]) == [t.key for t in GRID]
        assert keys(optimizer="alig", eta_min=0.1) == ["alig-0.1-0", "alig-1.0-0", "alig-None-0"]
        assert keys(optimizer="alig", eta_max=0.1) == ["alig-0.01-0", "alig-0.1-0"]
        assert keys(eta_min=0.05, eta_max=0.5) == ["alig-0.1-0", "sgd-0.1-0"]
        with pytest.raises(InvalidQuery, match="eta_min: must be a finite number"):
            keys(eta_min=math.nan)
        seen, cursor = [], None
        while True:
            page = repo.list_trials(session, study.id, limit=2, cursor=cursor)
            seen += [t.key for t in page.items]
            if (cursor := page.next_cursor) is None:
                break
        assert seen == [t.key for t in GRID]
        filtered = repo.list_trials(session, study.id, optimizer="sgd", limit=2)
        rest = repo.list_trials(
            session, study.id, optimizer="sgd", limit=2, cursor=filtered.next_cursor
        )
        assert [t.key for t in rest.items] == ["sgd-1.0-0"] and rest.next_cursor is None


def test_trial_records_are_plain_analysis_records(store):
    study = create(store)
    with store.session() as session:
        repo.record_trial_result(
            session, study.id, GRID[0].key, status="completed", final_objective=0.5,
            metrics={"accuracy": 0.75},
        )  # fmt: skip
        records = repo.trial_records(session, study.id)
    assert all(isinstance(r, TrialRecord) for r in records) and len(records) == len(GRID)
    first = records[0]
    assert (first.key, first.optimizer, first.eta, first.batch_size) == (
        GRID[0].key, "alig", 0.01, 32,
    )  # fmt: skip
    assert (first.status, first.final_objective, first.metrics) == (
        "completed", 0.5, {"accuracy": 0.75},
    )  # fmt: skip
    assert (first.radius, first.weight_decay, first.seed, first.extra_axes) == (None, None, 0, {})
    assert first.config == GRID[0].config
    assert records[0].value("accuracy") == 0.75
    assert records[-1].eta is None and records[-1].value() is None


def test_delete_cascades_to_trials_and_points(store):
    keep, doomed = create(store), create(store)
    with store.session() as session:
        for study in (keep, doomed):
            repo.record_metric_points(session, study.id, GRID[0].key, [(0, "loss", 1.0)])
    with store.session() as session:
        repo.get_study(session, doomed.id)
        repo.delete_study(session, doomed.id)
        with pytest.raises(StudyNotFound):  # also in the session that had loaded it
            repo.get_study(session, doomed.id)
    assert count(store, TrialRow) == len(GRID) and count(store, MetricPointRow) == 1
    with store.session() as session:
        with pytest.raises(StudyNotFound):
            repo.get_study(session, doomed.id)
        with pytest.raises(StudyNotFound):
            repo.delete_study(session, doomed.id)
        assert repo.get_study(session, keep.id).id == keep.id


def test_unknown_ids_raise_study_not_found(store):
    missing = "0" * 32
    calls = [
        lambda s: repo.get_study(s, missing),
        lambda s: repo.set_study_status(s, missing, "running"),
        lambda s: repo.record_launch(s, missing, "job", 1),
        lambda s: repo.study_progress(s, missing),
        lambda s: repo.unfinished_trials(s, missing),
        lambda s: repo.mark_trial_running(s, missing, "k"),
        lambda s: repo.reset_running_trials(s, missing),
        lambda s: repo.cancel_pending_trials(s, missing),
        lambda s: repo.record_trial_result(s, missing, "k", status="completed"),
        lambda s: repo.record_metric_points(s, missing, "k", [(0, "loss", 1.0)]),
        lambda s: repo.list_trials(s, missing),
        lambda s: repo.get_trial(s, missing, "k"),
        lambda s: repo.metric_curve(s, missing, "k"),
        lambda s: repo.trial_records(s, missing),
        lambda s: repo.add_trials(s, missing, GRID),
        lambda s: repo.delete_study(s, missing),
    ]
    with store.session() as session:
        for call in calls:
            with pytest.raises(StudyNotFound, match=missing):
                call(session)
    study = create(store)
    with store.session() as session:
        for call in (
            lambda s: repo.get_trial(s, study.id, "nope"),
            lambda s: repo.mark_trial_running(s, study.id, "nope"),
            lambda s: repo.metric_curve(s, study.id, "nope"),
        ):
            with pytest.raises(TrialNotFound, match="'nope'"):
                call(session)
    assert issubclass(StudyNotFound, StudyError) and issubclass(TrialNotFound, LookupError)


def test_a_grid_expanded_from_a_spec_is_stored_as_is(store):
    from studies.spec import expand_grid, parse_spec

    spec = {**SPEC, "grid": {"eta": [0.01, 0.1, 1], "batch_size": [32], "radius": [None]}}
    planned = expand_grid(parse_spec(spec))
    study = create(store, trials=planned)
    with store.session() as session:
        records = repo.trial_records(session, study.id)
        first = repo.get_trial(session, study.id, planned[0].key)
    assert [(r.key, r.optimizer, r.eta) for r in records] == [
        (p.key, p.optimizer, p.eta) for p in planned
    ]
    assert first.config == planned[0].config and first.trial == planned[0]


# --- guarded writes: a result is never undone, one launch and one driver at a time -----------


def test_a_crash_reported_after_the_final_result_does_not_undo_it(store):
    study = create(store)
    key = GRID[0].key
    with store.session() as session:
        repo.mark_trial_running(session, study.id, key)
        repo.record_trial_result(session, study.id, key, status="completed", final_objective=0.5)
        # Tune's on_trial_error after the final report: a failure with no objective
        kept = repo.record_trial_result(session, study.id, key, status="failed", reason="boom")
        assert (kept.status, kept.final_objective, kept.reason) == ("completed", 0.5, None)
        kept = repo.record_trial_result(session, study.id, key, status="failed", attempt=1)
        assert kept.status == "completed"


def test_a_finished_result_is_replaced_only_by_a_result_of_the_same_run(store):
    study = create(store)
    key = GRID[0].key
    with store.session() as session:
        repo.mark_trial_running(session, study.id, key)  # attempts = 1
        repo.record_trial_result(session, study.id, key, status="completed", final_objective=0.5,
                                 attempt=1)  # fmt: skip
        stale = repo.record_trial_result(session, study.id, key, status="diverged",
                                         final_objective=math.inf, attempt=0)  # fmt: skip
        assert (stale.status, stale.final_objective) == ("completed", 0.5)
        same = repo.record_trial_result(session, study.id, key, status="completed",
                                        final_objective=0.25, attempt=1)  # fmt: skip
        assert same.final_objective == 0.25
        # a failed trial may still be replaced by the same run's real result
        other = GRID[1].key
        repo.mark_trial_running(session, study.id, other)
        repo.record_trial_result(session, study.id, other, status="failed", reason="lost")
        fixed = repo.record_trial_result(session, study.id, other, status="completed",
                                         final_objective=1.0, attempt=1)  # fmt: skip
        assert fixed.status == "completed"


def test_a_launch_number_is_reserved_once_and_its_job_recorded_only_while_current(store):
    study = create(store)
    with store.session() as session:
        first = repo.reserve_launch(session, study.id, launch_attempt=0, sources=("pending",))
        assert first is not None and first.launch_attempt == 1
        # the same number again (a racing resume): nobody else gets it
        assert (
            repo.reserve_launch(session, study.id, launch_attempt=0, sources=("pending",)) is None
        )
        assert repo.record_job(session, study.id, "job-0", launch_attempt=1).ray_job_id == "job-0"
        repo.reserve_launch(session, study.id, launch_attempt=1, sources=("pending",))
        # the slow submitter of launch 0 records late: the newer launch's row is left alone
        assert repo.record_job(session, study.id, "late", launch_attempt=1) is None
        assert repo.get_study(session, study.id).ray_job_id == "job-0"


def test_a_driver_claims_only_a_pending_study_of_its_own_launch(store):
    study = create(store)
    with store.session() as session:
        repo.reserve_launch(session, study.id, launch_attempt=0, sources=("pending",))
        assert repo.claim_run(session, study.id, launch=1) is None  # not its launch
        claimed = repo.claim_run(session, study.id, launch=0)
        assert claimed is not None and claimed.status == "running"
        assert repo.claim_run(session, study.id, launch=0) is None  # one driver per launch
        repo.set_study_status(session, study.id, "cancelled")
        assert repo.claim_run(session, study.id, launch=None) is None  # a cancel is final
        assert repo.transition(session, study.id, "failed", sources=("pending", "running")) is None
        assert repo.get_study(session, study.id).status == "cancelled"


# --- the curves of many trials at once ---------------------------------------------------------


def test_curve_points_and_names_of_many_trials_in_one_study(store, monkeypatch):
    one, other = create(store, "one"), create(store, "other")
    keys = [t.key for t in GRID]
    with store.session() as session:
        repo.record_metric_points(
            session, one.id, keys[0],
            [(2, "loss", 0.5), (1, "loss", 1.0), (3, "loss", math.inf), (1, "val", 2.0)],
        )  # fmt: skip
        repo.record_metric_points(session, one.id, keys[1], [(1, "loss", 0.25)])
        repo.record_metric_points(session, one.id, keys[2], [(1, "grad", 9.0)])
        repo.record_metric_points(session, other.id, keys[0], [(1, "loss", 7.0), (1, "x", 1.0)])
    monkeypatch.setattr(repo, "CURVE_KEY_BATCH", 2)  # several IN (…) batches
    with store.session() as session:
        points = repo.curve_points(session, one.id, [keys[0], keys[1], keys[2], "nope"], "loss")
        assert points == {
            keys[0]: [(1, 1.0), (2, 0.5), (3, math.inf)],  # by step, ±inf decoded
            keys[1]: [(1, 0.25)],
            keys[2]: [],  # no point of this curve
            "nope": [],  # not a trial of the study
        }  # the other study's trial of the same key is not read
        assert repo.curve_names(session, one.id) == ["grad", "loss", "val"]
        assert repo.curve_names(session, one.id, [keys[1], keys[0]]) == ["loss", "val"]
        assert repo.curve_names(session, one.id, keys[3:]) == []
        assert repo.curve_names(session, other.id) == ["loss", "x"]
        with pytest.raises(StudyNotFound):
            repo.curve_points(session, "missing", keys, "loss")
        with pytest.raises(StudyNotFound):
            repo.curve_names(session, "missing")


def test_curve_extremes_are_the_finite_minimum_and_maximum_per_trial(store):
    one, other = create(store, "one"), create(store, "other")
    a, b = GRID[0].key, GRID[1].key
    with store.session() as session:
        repo.record_metric_points(
            session, one.id, a,
            [(1, "train_loss", 3.0), (2, "train_loss", 0.5), (3, "train_loss", 1.0),
             (2, "val_loss", 0.01), (4, "train_loss", math.nan)],
        )  # fmt: skip
        repo.record_metric_points(
            session, one.id, b,
            [(1, "train_loss", 2.0), (2, "train_loss", math.inf), (3, "train_loss", -math.inf)],
        )  # fmt: skip
        repo.record_metric_points(session, other.id, a, [(1, "train_loss", 0.001)])
    with store.session() as session:
        assert repo.curve_extremes(session, one.id, "train_loss") == {
            a: (0.5, 3.0),  # NaN and the val_loss point left out
            b: (2.0, 2.0),  # ±inf left out
        }  # GRID[2] has no point; the other study's trial of the same key is not read
        assert repo.curve_extremes(session, one.id, "val_loss") == {a: (0.01, 0.01)}
        assert repo.curve_extremes(session, other.id, "val_loss") == {}
        with pytest.raises(StudyNotFound):
            repo.curve_extremes(session, "missing", "train_loss")


def test_latest_steps_grow_with_every_new_step_of_any_trial(store):
    one, other = create(store, "one"), create(store, "other")
    a, b = GRID[0].key, GRID[1].key

    def steps(study_id: str) -> int:
        with store.session() as session:
            return repo.latest_steps(session, study_id)

    assert steps(one.id) == 0  # no point yet
    with store.session() as session:
        repo.record_metric_points(session, one.id, a, [(10, "loss", 1.0), (10, "val", 2.0)])
    assert steps(one.id) == 10
    with store.session() as session:
        repo.record_metric_points(session, one.id, b, [(5, "loss", 1.0)])
        repo.record_metric_points(session, one.id, a, [(20, "loss", 0.5)])
    assert steps(one.id) == 20 + 5  # the sum of each trial's latest step
    with store.session() as session:
        repo.record_metric_points(session, one.id, a, [(10, "loss", 0.9)])  # rewritten in place
    assert steps(one.id) == 25
    with store.session() as session:
        repo.record_metric_points(session, other.id, a, [(1000, "loss", 1.0)])
    assert steps(one.id) == 25 and steps(other.id) == 1000  # per study
    with store.session() as session, pytest.raises(StudyNotFound):
        repo.latest_steps(session, "missing")
