"""Extending a study: the merge of an extension body into a stored spec and its refusals
(:mod:`studies.extension`, pure, no Ray), then ``StudyLifecycle.extend`` on a real store
(SQLite and PostgreSQL) with the recording launcher of the lifecycle tests, and the migration
that adds the extension history."""

import itertools
from typing import Any

import pytest
from sqlalchemy import text

from studies.exceptions import (
    ExtensionConflict,
    InvalidTransition,
    LimitExceeded,
    SpecError,
    TooManyStudies,
)
from studies.extension import merge_spec, plan_extension
from studies.lifecycle import StudyLifecycle
from studies.spec import expand_grid, parse_spec
from studies.store import make_engine, repository, upgrade
from studies.submission import Limits
from tests.studies.test_lifecycle import RecordingLauncher, finish_every_trial

# 2 optimizers × 2 η × 1 seed: alig takes no weight decay, sgd does
GRID: dict[str, Any] = {
    "name": "extend me",
    "task": "matrix-factorisation",
    "task_options": {"n_samples": 100},
    "optimizers": ["alig", {"name": "sgd", "options": {"momentum": 0.9}}],
    "grid": {"eta": [0.01, 0.1], "batch_size": [32], "seed": [0]},
    "budget": {"epochs": 1},
    "device": "cpu",
}
SEARCH: dict[str, Any] = {
    "task": "matrix-factorisation",
    "optimizers": ["sgd", "adam"],
    "search": {"sampler": "random", "n_trials": 4, "eta": {"low": 1e-4, "high": 1.0}},
    "budget": {"epochs": 1},
}


def stored(spec: dict[str, Any]) -> dict[str, Any]:
    """The document the store keeps for ``spec`` (what a submission stores)."""
    return parse_spec(spec).model_dump(mode="json", by_alias=True)


def keys(spec: dict[str, Any]) -> set[str]:
    return {trial.key for trial in expand_grid(parse_spec(spec))}


def plan(spec: dict[str, Any], body: Any, **kwargs: Any):
    return plan_extension(stored(spec), keys(spec) if "grid" in spec else set(), body, **kwargs)


# --- the union ---------------------------------------------------------------------------------


def test_more_eta_values_and_seeds_add_exactly_the_missing_cells():
    extension = plan(GRID, {"grid": {"eta": [0.1, 1.0], "seed": [1]}})
    assert extension.spec.grid.eta == [0.01, 0.1, 1.0]  # appended, 0.1 already there
    assert extension.spec.grid.seed == [0, 1]
    assert extension.added == {"grid.eta": [1.0], "grid.seed": [1]}
    # 2 optimizers × 3 η × 2 seeds, of which the stored 2 × 2 × 1 are reused
    assert (extension.n_added, extension.n_reused) == (2 * 3 * 2 - 4, 4)
    union = {trial.key for trial in expand_grid(extension.spec)}
    assert keys(GRID) <= union
    assert {t.key for t in extension.new_trials} == union - keys(GRID)
    new_cells = {(t.optimizer, t.eta, t.seed) for t in extension.new_trials}
    assert new_cells == {
        (row, eta, seed)
        for row, eta, seed in itertools.product(["alig", "sgd"], [0.01, 0.1, 1.0], [0, 1])
        if not (eta != 1.0 and seed == 0)
    }


def test_the_merged_document_keeps_everything_else_as_stored():
    document, _ = merge_spec(stored(GRID), {"grid": {"radius": [1.0]}})
    before = stored(GRID)
    assert document["grid"]["radius"] == [None, 1.0]
    assert {k: v for k, v in document.items() if k != "grid"} == {
        k: v for k, v in before.items() if k != "grid"
    }
    assert before["grid"]["radius"] == [None]  # the stored document is not modified


def test_decades_stay_decades_when_the_union_is_one_range():
    spec = {**GRID, "grid": {**GRID["grid"], "eta": {"from": -3, "to": -1}}}
    joined = plan(spec, {"grid": {"eta": {"from": -1, "to": 1}}})
    assert joined.spec.grid.model_dump(by_alias=True)["eta"] == {
        "from": -3, "to": 1, "per_decade": 1, "infinity": False,
    }  # fmt: skip
    assert joined.added == {"grid.eta": [1.0, 10.0]}
    assert joined.n_added == 2 * 2  # 2 optimizers × 2 new η
    gap = plan(spec, {"grid": {"eta": {"from": 1, "to": 1}}})  # 1, 10 missing: written out
    assert gap.spec.grid.eta == [0.001, 0.01, 0.1, 10.0]


def test_a_batch_size_added_to_the_task_default_keeps_the_default():
    spec = {**GRID, "grid": {"eta": [0.1]}}  # batch size: the task's default, 100
    extension = plan(spec, {"grid": {"batch_size": [32]}})
    assert extension.spec.grid.batch_size == [100, 32]
    assert {t.batch_size for t in extension.new_trials} == {32}
    assert extension.n_reused == 2


def test_weight_decay_adds_trials_only_for_optimizers_that_take_it():
    extension = plan(GRID, {"grid": {"weight_decay": [1e-4]}})
    assert {t.optimizer for t in extension.new_trials} == {"sgd"}
    assert extension.n_added == 2  # sgd × 2 η; alig runs once with weight_decay null


def test_a_new_optimizer_runs_the_whole_grid_and_nothing_else():
    extension = plan(GRID, {"optimizers": ["alig", {"name": "adam", "label": "Adam"}]})
    assert [e.row for e in extension.spec.entries] == ["alig", "sgd", "Adam"]
    assert {(t.optimizer, t.eta) for t in extension.new_trials} == {("Adam", 0.01), ("Adam", 0.1)}
    assert extension.added == {"optimizers": [{"name": "adam", "label": "Adam"}]}


def test_an_existing_row_gets_more_eta_values_of_its_own():
    # the grid's values first (null dropped for sgd: it never ran ALI-G∞), then the new ones
    spec = {**GRID, "grid": {**GRID["grid"], "eta": [0.01, 0.1, None]}}
    extension = plan(spec, {"optimizers": [{"name": "sgd", "eta": [0.5, 0.1]}]})
    assert extension.spec.entries[1].eta == [0.01, 0.1, 0.5]
    assert extension.spec.entries[1].options == {"momentum": 0.9}  # kept
    assert [(t.optimizer, t.eta) for t in extension.new_trials] == [("sgd", 0.5)]
    assert extension.added == {"optimizers[1].eta": [0.5]}
    # a grid extension in the same body reaches the row before it gets its own grid
    both = plan(GRID, {"grid": {"eta": [1.0]}, "optimizers": [{"name": "sgd", "eta": [5.0]}]})
    assert both.spec.entries[1].eta == [0.01, 0.1, 1.0, 5.0]
    assert sorted((t.optimizer, t.eta) for t in both.new_trials) == [
        ("alig", 1.0), ("sgd", 1.0), ("sgd", 5.0),
    ]  # fmt: skip


def test_swept_task_options_get_more_values():
    spec = {**GRID, "grid": {**GRID["grid"], "task_options": {"rank": [1]}}}
    extension = plan(spec, {"grid": {"task_options": {"rank": [4, 1]}}})
    assert extension.spec.grid.task_options == {"rank": [1, 4]}
    assert {t.extra_axes["rank"] for t in extension.new_trials} == {4}
    assert extension.n_added == 4


def test_fixed_fields_may_repeat_their_stored_value():
    body = {"task": GRID["task"], "budget": {"epochs": 1}, "device": "cpu", "grid": {"seed": [1]}}
    assert plan(GRID, body).n_added == 4


def test_a_search_samples_more_per_optimizer_and_new_optimizers():
    extension = plan(SEARCH, {"search": {"n_trials": 10}, "optimizers": ["alig"]})
    assert extension.spec.search.n_trials == 10
    assert extension.n_added == 3 * 10 - 2 * 4  # 3 optimizers × 10 samples, 8 planned before
    assert extension.new_trials == []  # a search makes its rows as it samples
    assert extension.added == {"search.n_trials": {"from": 4, "to": 10}, "optimizers": ["alig"]}


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"task": "rbf-classification"}, "task"),
        ({"budget": {"epochs": 2}}, "budget"),
        ({"device": "cuda"}, "device"),
        ({"amp": True}, "amp"),
        ({"task_options": {"n_samples": 200}}, "task_options"),
        ({"schedule": {"kind": "cosine"}}, "schedule"),
        ({"optimizers": [{"name": "sgd", "options": {"momentum": 0.5}}]},
         r"optimizers\[0\]\.options"),
        ({"optimizers": [{"name": "adam", "label": "sgd"}]}, r"optimizers\[0\]\.name"),
        ({"grid": {"task_options": {"rank": [1, 4]}}}, r"grid\.task_options\.rank"),
        ({"search": {"n_trials": 3}}, "search"),
    ],
)  # fmt: skip
def test_what_is_not_an_addition_is_a_conflict_naming_the_field(body, field):
    with pytest.raises(ExtensionConflict, match=rf"^{field}: "):
        plan(GRID, body)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"search": {"n_trials": 3}}, r"search\.n_trials: .* cannot remove samples"),
        ({"search": {"n_trials": 8, "sampler": "tpe"}}, r"search\.sampler"),
        ({"grid": {"eta": [0.5]}}, "grid: the study is a search study"),
        ({"budget": {"epochs": 3}}, "budget"),
    ],
)
def test_a_search_refuses_all_but_more_samples(body, field):
    with pytest.raises(ExtensionConflict, match=rf"^{field}"):
        plan(SEARCH, body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1], r"^body: must be a JSON object"),
        ({}, r"^body: the extension adds no new trial"),
        ({"grid": {"eta": [0.1], "seed": [0]}}, r"^body: the extension adds no new trial"),
        ({"grid": {"weight_decay": [0.1]}, "optimizers": ["alig"]}, None),  # sgd: 2 new trials
        ({"grid": {"seed": 3}}, r"^grid\.seed: must be a list"),
        ({"grid": {"depth": [3]}}, r"^grid\.depth: not an axis"),
        ({"grid": {"eta": {"from": 2, "to": 1}}}, r"^grid\.eta: 'to' must be >= 'from'"),
        ({"grid": {"eta": [-1.0]}}, r"^grid\.eta\[2\]: must be finite and > 0"),
        ({"grid": {"seed": [-1]}}, r"^grid\.seed\[1\]"),
        ({"grid": {"radius": [float("nan")]}}, r"^grid\.radius\[0\]: must be a finite number"),
        ({"optimizers": [{"name": "nope"}]}, r"^optimizers\[2\]: unknown optimizer 'nope'"),
        ({"optimizers": [{"nam": "adam"}]}, r"^optimizers\[0\]\.name: Field required"),
        ({"optimizers": ["adam", "adam"]}, r"^optimizers\[1\]: repeats the row 'adam'"),
        ({"colour": "red"}, r"^colour: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_malformed_bodies_and_empty_extensions_are_spec_errors(body, message):
    if message is None:
        assert plan(GRID, body).n_added == 2
        return
    with pytest.raises(SpecError, match=message) as raised:
        plan(GRID, body)
    assert not isinstance(raised.value, ExtensionConflict)


def test_an_extension_only_of_weight_decays_that_nobody_takes_adds_no_trial():
    spec = {**GRID, "optimizers": ["alig"]}
    with pytest.raises(SpecError, match="adds no new trial"):
        plan(spec, {"grid": {"weight_decay": [0.1]}})


def test_the_merged_spec_passes_the_submission_limits():
    with pytest.raises(LimitExceeded, match=r"the study has 12 trials, more than the limit of 10"):
        plan(GRID, {"grid": {"seed": [1, 2]}}, limits=Limits(max_trials=10))
    with pytest.raises(LimitExceeded, match=r"grid\.eta: 3 η values .*SENSITIVITY_MAX_ETA_VALUES"):
        plan(GRID, {"grid": {"eta": [1.0]}}, limits=Limits(max_eta_values=2))


def test_stored_trials_the_merged_spec_does_not_reproduce_are_refused():
    with pytest.raises(ExtensionConflict, match=r"^grid: 1 of the study's 5 stored trials"):
        plan_extension(stored(GRID), {*keys(GRID), "0123456789abcdef"}, {"grid": {"seed": [1]}})


# --- the lifecycle -----------------------------------------------------------------------------


@pytest.fixture
def launcher() -> RecordingLauncher:
    return RecordingLauncher()


@pytest.fixture
def lifecycle(store, launcher, monkeypatch) -> StudyLifecycle:
    monkeypatch.setattr("studies.lifecycle.STOP_GRACE_SECONDS", 0.0)
    return StudyLifecycle(store, launcher)


def run_to_the_end(lifecycle, launcher, store, study_id: str) -> None:
    """What a driver does: claim the study, finish every trial, end it."""
    assert lifecycle.begin_run(study_id) is not None
    finish_every_trial(store, study_id)
    study = lifecycle.get(study_id)[0]
    launcher.states[study.ray_job_id] = "SUCCEEDED"
    assert lifecycle.finish_run(study_id)[0] == "succeeded"


def test_extending_a_finished_study_adds_rows_and_launches_it_again(lifecycle, launcher, store):
    study = lifecycle.submit(GRID, max_trials=100).study
    run_to_the_end(lifecycle, launcher, store, study.id)
    with store.session() as session:
        before = {r.key: r for r in repository.trial_records(session, study.id)}

    extended = lifecycle.extend(study.id, {"grid": {"eta": [1.0], "seed": [1]}})
    assert (extended.added, extended.reused) == (8, 4)
    after_study = extended.study
    assert (after_study.status, after_study.launch_attempt) == ("pending", 2)
    assert launcher.submitted[-1] == (study.id, "extend me", 1)
    assert after_study.spec["grid"]["eta"] == [0.01, 0.1, 1.0]
    assert after_study.spec["grid"]["seed"] == [0, 1]
    [entry] = after_study.extensions
    assert entry["added"] == {"grid.eta": [1.0], "grid.seed": [1]}
    assert (entry["from_status"], entry["trials_added"], entry["trials_reused"]) == (
        "succeeded", 8, 4,
    )  # fmt: skip
    with store.session() as session:
        after = {r.key: r for r in repository.trial_records(session, study.id)}
        unfinished = repository.unfinished_trials(session, study.id)
        assert repository.get_study(session, study.id) == after_study
    assert len(after) == 12
    assert {key: after[key] for key in before} == before  # rows untouched, timestamps included
    assert {r.key for r in unfinished} == set(after) - set(before)  # only the new ones run
    # a driver of the new launch runs them; a second extension appends to the history
    run_to_the_end(lifecycle, launcher, store, study.id)
    again = lifecycle.extend(study.id, {"optimizers": ["adam"]})
    assert (again.added, again.reused) == (6, 12)
    assert [e["added"] for e in again.study.extensions] == [
        {"grid.eta": [1.0], "grid.seed": [1]}, {"optimizers": ["adam"]},
    ]  # fmt: skip


def test_a_refused_extension_changes_nothing(lifecycle, launcher, store):
    study = lifecycle.submit(GRID, max_trials=100).study
    with pytest.raises(InvalidTransition, match="is pending: cancel it or wait"):
        lifecycle.extend(study.id, {"grid": {"seed": [1]}})
    lifecycle.begin_run(study.id)
    with pytest.raises(InvalidTransition, match="is running: cancel it or wait"):
        lifecycle.extend(study.id, {"grid": {"seed": [1]}})
    finish_every_trial(store, study.id)
    lifecycle.finish_run(study.id)
    with pytest.raises(InvalidTransition, match="its Ray job is RUNNING"):
        lifecycle.extend(study.id, {"grid": {"seed": [1]}})  # its driver is still ending
    launcher.states[study.ray_job_id] = "SUCCEEDED"
    with pytest.raises(ExtensionConflict, match=r"^budget: "):
        lifecycle.extend(study.id, {"grid": {"seed": [1]}, "budget": {"epochs": 5}})
    with pytest.raises(TooManyStudies):
        other = lifecycle.submit({**GRID, "name": "other"}, max_trials=100).study
        lifecycle.extend(study.id, {"grid": {"seed": [1]}}, limits=Limits(max_unfinished_studies=1))
    current = lifecycle.get(study.id)[0]
    assert (current.status, current.launch_attempt, current.extensions) == ("succeeded", 1, [])
    assert current.spec == stored(GRID)
    assert lifecycle.get(study.id)[1].total == 4
    assert len(launcher.submitted) == 2 and launcher.submitted[-1][0] == other.id


def test_a_cancelled_study_runs_its_unfinished_trials_again_too(lifecycle, launcher, store):
    study = lifecycle.submit(GRID, max_trials=100).study
    with store.session() as session:
        first = repository.unfinished_trials(session, study.id)[0].key
        repository.record_trial_result(session, study.id, first, status="completed",
                                       final_objective=0.25)  # fmt: skip
        # cancelled as lifecycle.cancel does, without its background stopper (it would cancel
        # pending trials again whenever it wakes up)
        repository.transition(session, study.id, "cancelled", sources=("pending",))
        repository.cancel_pending_trials(session, study.id)
    launcher.states[study.ray_job_id] = "STOPPED"
    extended = lifecycle.extend(study.id, {"grid": {"seed": [1]}})
    assert (extended.study.status, extended.added, extended.reused) == ("pending", 4, 4)
    assert extended.study.extensions[0]["from_status"] == "cancelled"
    with store.session() as session:
        unfinished = {r.key: r.status for r in repository.unfinished_trials(session, study.id)}
        kept = repository.get_trial(session, study.id, first)
    assert len(unfinished) == 7 and first not in unfinished  # 3 cancelled + 4 new pending
    assert sorted(set(unfinished.values())) == ["cancelled", "pending"]
    assert (kept.status, kept.final_objective) == ("completed", 0.25)


def test_an_unknown_study_is_not_found(lifecycle):
    from studies.exceptions import StudyNotFound

    with pytest.raises(StudyNotFound):
        lifecycle.extend("nope", {"grid": {"seed": [1]}})


# --- the migration -----------------------------------------------------------------------------


def test_0003_gives_every_stored_study_an_empty_history(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'studies.sqlite'}")
    upgrade(engine, "0002")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO sens_studies (id, name, task, spec, tags, status, created_at,"
                " updated_at) VALUES (:id, 'x', 'dnc-copy', '{}', '[]', 'succeeded',"
                " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            {"id": "a" * 32},
        )
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, extensions FROM sens_studies")).all()
    engine.dispose()
    assert rows == [("a" * 32, "[]")]
