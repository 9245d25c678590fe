"""The trial type: made once by the spec's expansion, the same object after JSON and SQL."""

import math

import pytest

from studies.spec import expand_grid, parse_spec, search_trial
from studies.trial import Trial, TrialConfig, TrialRecord, trial_key

SPEC = {
    "task": "matrix-factorisation",
    "optimizers": ["alig", {"name": "sgd", "label": "sgd-m", "options": {"momentum": 0.9}}],
    "grid": {"eta": [0.1, 1.0], "batch_size": [32], "task_options": {"rank": [1, 4]}},
    "budget": {"epochs": 3},
}


def test_the_axes_are_the_configs_values_and_the_key_hashes_row_and_config():
    trials = expand_grid(parse_spec(SPEC))
    assert len(trials) == 2 * 2 * 2 and len({t.key for t in trials}) == len(trials)
    for trial in trials:
        config = trial.config
        assert (trial.eta, trial.batch_size, trial.radius, trial.weight_decay, trial.seed) == (
            config.eta, config.batch_size, config.radius, config.weight_decay, config.seed,
        )  # fmt: skip
        assert trial.extra_axes == {"rank": config.task_options["rank"]}
        expected = trial_key({"row": trial.optimizer, **config.model_dump(exclude={"threads"})})
        assert trial.key == expected
    sgd = next(t for t in trials if t.optimizer == "sgd-m")
    assert sgd.config.optimizer == "sgd" and sgd.config.optimizer_options == {"momentum": 0.9}


def test_the_cpu_share_is_not_part_of_the_key_but_the_row_label_is():
    config = TrialConfig(task="digits", optimizer="sgd", eta=0.1, batch_size=8, budget=1)
    more_threads = config.model_copy(update={"threads": 4})
    assert Trial.of("sgd", config, {}).key == Trial.of("sgd", more_threads, {}).key
    assert Trial.of("sgd", config, {}).key != Trial.of("sgd-2", config, {}).key


def test_json_round_trip_gives_back_the_same_trial_under_its_stored_key():
    (trial, *_) = expand_grid(parse_spec(SPEC))
    assert Trial.from_json(trial.to_json()) == trial
    renamed = {**trial.to_json(), "key": "stored-before"}
    assert Trial.from_json(renamed).key == "stored-before"
    with pytest.raises(ValueError, match="eta"):
        Trial.from_json({**trial.to_json(), "config": {**trial.to_json()["config"], "eta": -1}})


def test_a_search_sample_makes_the_same_trial_every_time():
    spec = parse_spec(
        {**{k: v for k, v in SPEC.items() if k != "grid"},
         "search": {"n_trials": 4, "eta": {"low": 1e-3, "high": 1.0}, "batch_size": [16, 32]}}
    )  # fmt: skip
    first = search_trial(spec, 1, {"eta": 0.05, "batch_size": 16})
    assert first == search_trial(spec, 1, {"eta": 0.05, "batch_size": 16})
    assert (first.optimizer, first.eta, first.batch_size) == ("sgd-m", 0.05, 16)


def test_a_record_gives_back_its_trial_and_only_finite_completed_values():
    (trial, *_) = expand_grid(parse_spec(SPEC))
    record = TrialRecord(
        key=trial.key, optimizer=trial.optimizer, eta=trial.eta, batch_size=trial.batch_size,
        extra_axes=trial.extra_axes, status="completed", final_objective=0.25,
        metrics={"val_loss": math.inf, "train_loss": 0.5}, config=trial.config,
    )  # fmt: skip
    assert record.trial == trial and record.finished
    assert record.value() == 0.25 and record.value("train_loss") == 0.5
    assert record.value("val_loss") is None and record.value("missing") is None
    diverged = TrialRecord("k", "sgd", 0.1, 32, status="diverged", final_objective=math.nan)
    assert diverged.value() is None and diverged.finished
    with pytest.raises(ValueError, match="without its config"):
        _ = diverged.trial
