"""Study spec validation (each bad spec names its field) and deterministic grid expansion."""

import pytest

from studies.exceptions import SpecError
from studies.spec import Decades, StudySpec, expand_grid, parse_spec, planned_trial_count
from studies.trial import Trial

MINIMAL = {
    "task": "matrix-factorisation",
    "optimizers": ["alig", "sgd"],
    "grid": {"eta": [0.01, 0.1, 1], "batch_size": [32], "radius": [None], "seed": [0]},
    "budget": {"epochs": 5},
}


def spec_with(**changes):
    return {**MINIMAL, **changes}


def test_minimal_spec_from_the_design_doc_expands_to_six_trials():
    trials = expand_grid(parse_spec(MINIMAL))
    assert len(trials) == 6
    assert [(t.optimizer, t.eta) for t in trials] == [
        ("alig", 0.01), ("alig", 0.1), ("alig", 1.0), ("sgd", 0.01), ("sgd", 0.1), ("sgd", 1.0),
    ]  # fmt: skip
    assert all(t.config.budget == 5 and t.config.batch_size == 32 for t in trials)


def test_keys_are_stable_unique_and_independent_of_unrelated_fields():
    first = [t.key for t in expand_grid(parse_spec(MINIMAL))]
    again = [t.key for t in expand_grid(parse_spec(MINIMAL))]
    renamed = [t.key for t in expand_grid(parse_spec(spec_with(name="other", tags=["x"])))]
    assert first == again == renamed
    assert len(set(first)) == len(first)
    assert all(len(k) == 16 and int(k, 16) >= 0 for k in first)
    longer = [t.key for t in expand_grid(parse_spec(spec_with(budget={"epochs": 6})))]
    assert set(first).isdisjoint(longer)  # the budget defines the trial too


def test_decades_and_infinity_only_for_alig():
    spec = spec_with(grid={"eta": {"from": -4, "to": 6, "per_decade": 1, "infinity": True}})
    trials = expand_grid(parse_spec(spec))
    alig = [t.eta for t in trials if t.optimizer == "alig"]
    sgd = [t.eta for t in trials if t.optimizer == "sgd"]
    assert alig == [*[10.0**k for k in range(-4, 7)], None]
    assert sgd == [10.0**k for k in range(-4, 7)]
    assert Decades(**{"from": 0, "to": 1, "per_decade": 2}).values() == [1.0, 3.16227766017, 10.0]


def test_full_grid_count_with_sweeps_seeds_and_decay():
    spec = spec_with(
        optimizers=["alig", "sgd", {"name": "sgd", "label": "sgd-momentum", "options": {"momentum": 0.9}}],
        grid={"eta": [0.1, 1], "batch_size": [16, 32], "radius": [None, 10.0],
              "weight_decay": [None, 1e-4], "seed": [0, 1], "task_options": {"rank": [1, 4]}},
    )  # fmt: skip
    parsed = parse_spec(spec)
    # sgd rows: 2 η × 2 bs × 2 r × 2 wd × 2 ranks × 2 seeds = 64 each; alig has no decay: 32
    assert planned_trial_count(parsed) == 64 + 64 + 32
    trials = expand_grid(parsed)
    assert len(trials) == planned_trial_count(parsed)  # the count needs no expansion
    assert {t.optimizer for t in trials} == {"alig", "sgd", "sgd-momentum"}
    assert {t.extra_axes["rank"] for t in trials} == {1, 4}
    assert all(t.config.task_options["rank"] == t.extra_axes["rank"] for t in trials)


def test_per_optimizer_eta_grids():
    spec = spec_with(optimizers=[{"name": "l4mom", "eta": [0.05, 0.5, 0.95]}, "sgd"])
    trials = expand_grid(parse_spec(spec))
    assert [t.eta for t in trials if t.optimizer == "l4mom"] == [0.05, 0.5, 0.95]
    assert len(trials) == 6


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"grid": {"eta": []}}, "grid.eta: must not be empty"),
        ({"grid": {"eta": [0.1, -1.0]}}, r"grid.eta\[1\]: must be finite and > 0, got -1.0"),
        ({"grid": {"eta": [0.0]}}, r"grid.eta\[0\]: must be finite and > 0"),
        ({"grid": {"eta": [0.1], "seed": []}}, "grid.seed: must not be empty"),
        ({"grid": {"eta": [0.1], "batch_size": [0]}}, r"grid.batch_size\[0\]: Input should be greater"),
        ({"grid": {"eta": [0.1], "radius": [-1.0]}}, r"grid.radius\[0\]: Input should be greater than 0"),
        ({"optimizers": ["sgd", "lbfgs"]}, r"optimizers\[1\]: unknown optimizer 'lbfgs'; valid names: alig"),
        ({"optimizers": []}, "optimizers: must not be empty"),
        ({"optimizers": ["sgd", "sgd"]}, r"optimizers\[1\]: duplicate row 'sgd'"),
        ({"optimizers": [{"name": "sgd", "options": {"betas": [0.9, 0.9]}}]},
         r"optimizers\[0\].options: sgd does not accept option\(s\) betas"),
        ({"optimizers": [{"name": "sgd", "eta": [None]}]}, r"optimizers\[0\].eta: null \(ALI-G∞\) is only"),
        ({"task": "imagenet"}, "task: unknown task 'imagenet'; valid tasks: dnc-copy"),
        ({"task_options": {"rank": 3}}, "task_options.rank: Input should be 1, 4, 10 or 'true-model'"),
        ({"task_options": {"colour": "red"}}, "task_options.colour: Extra inputs are not permitted"),
        ({"budget": {"epochs": 0}}, "budget.epochs: Input should be greater than or equal to 1"),
        ({"budget": {"steps": 100}}, "budget.steps: task matrix-factorisation is budgeted in epochs"),
        ({"budget": {}}, "budget: give exactly one of 'steps' or 'epochs'"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
        ({"grid": None}, "grid: give exactly one of 'grid' or 'search'"),
        ({"grid": {"eta": {"from": 2, "to": 1}}}, "grid.eta: 'to' must be >= 'from'"),
        ({"grid": {"eta": [0.1], "seed": list(range(3000))}}, "grid: the study has 6000 trials, more than the limit of 5000"),
    ],
)  # fmt: skip
def test_bad_specs_name_the_field(changes, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(spec_with(**changes))


def test_aalig_needs_an_epoch_task_and_its_options_come_from_the_study():
    dnc = {
        "task": "dnc-copy",
        "optimizers": ["aalig"],
        "grid": {"eta": [1.0]},
        "budget": {"steps": 10},
    }
    with pytest.raises(
        SpecError, match=r"optimizers\[0\]: aalig needs a task with an epoch budget"
    ):
        parse_spec(dnc)
    with pytest.raises(SpecError, match=r"optimizers\[0\].options.n_samples: set by the study"):
        parse_spec(spec_with(optimizers=[{"name": "aalig", "options": {"n_samples": 5}}]))
    assert len(expand_grid(parse_spec(spec_with(optimizers=["aalig"])))) == 3


def test_search_spec_counts_trials_and_has_no_grid():
    spec = parse_spec(
        spec_with(
            grid=None, search={"sampler": "tpe", "n_trials": 8, "eta": {"low": 1e-3, "high": 10}}
        )
    )
    assert planned_trial_count(spec) == 16
    with pytest.raises(SpecError, match="search study"):
        expand_grid(spec)
    with pytest.raises(SpecError, match=r"search\.eta: need finite 0 < low < high"):
        parse_spec(spec_with(grid=None, search={"n_trials": 2, "eta": {"low": 1, "high": 0.5}}))


def test_search_batch_sizes_are_distinct_at_submission_but_a_stored_spec_still_loads():
    search = {"n_trials": 2, "eta": {"low": 1e-3, "high": 1}, "batch_size": [32, 32]}
    with pytest.raises(SpecError, match=r"search\.batch_size: must not repeat a value"):
        parse_spec(spec_with(grid=None, search=search))
    with pytest.raises(SpecError, match=r"search\.batch_size: must not be empty"):
        parse_spec(spec_with(grid=None, search={**search, "batch_size": []}))
    # a study stored before the check: the driver and the reconciler read it as it is
    stored = StudySpec.model_validate(spec_with(grid=None, search=search))
    assert stored.search.batch_size == [32, 32]


def test_an_absurd_grid_is_refused_without_expanding_it():
    huge = spec_with(grid={"eta": {"from": -12, "to": 12, "per_decade": 20},
                           "batch_size": list(range(1, 101)), "seed": list(range(100))})  # fmt: skip
    with pytest.raises(SpecError, match="the study has 9620000 trials, more than the limit"):
        parse_spec(huge)


def test_non_object_spec_is_rejected():
    with pytest.raises(SpecError, match="spec: must be a JSON object"):
        parse_spec([1, 2])  # type: ignore[arg-type]


# --- learning-rate schedules -------------------------------------------------------------

# MINIMAL's keys as computed before schedules existed: a constant schedule keeps every key
MINIMAL_KEYS = [
    "181ebc2c08947bfe", "09b606b0fdd5fa4d", "5f23fc9e332182ce",
    "37a4b2239b34bd0b", "20bdd6c10cefa1b7", "eb78d57dcbcaf05b",
]  # fmt: skip
MULTISTEP = {"kind": "multistep", "milestones": [2, 4], "factor": 0.2}


def test_the_default_schedule_keeps_the_keys_and_the_config_json_of_before():
    trials = expand_grid(parse_spec(MINIMAL))
    assert [t.key for t in trials] == MINIMAL_KEYS
    explicit = expand_grid(parse_spec(spec_with(schedule={"kind": "constant"})))
    assert [t.key for t in explicit] == MINIMAL_KEYS
    assert "schedule" not in trials[0].config.model_dump(mode="json")
    assert trials[0].config.schedule.kind == "constant"


def test_the_schedule_is_part_of_every_trial_and_of_its_key():
    trials = expand_grid(parse_spec(spec_with(schedule=MULTISTEP)))
    assert set(t.key for t in trials).isdisjoint(MINIMAL_KEYS)
    cosine = expand_grid(parse_spec(spec_with(schedule={"kind": "cosine"})))
    assert set(t.key for t in trials).isdisjoint(t.key for t in cosine)
    config = trials[0].config
    assert config.schedule.milestones == [2, 4] and config.schedule.factor == 0.2
    again = Trial.from_json(trials[0].to_json())
    assert again.key == trials[0].key and again.config == config
    assert config.model_dump(mode="json")["schedule"] == {**MULTISTEP}
    warmup = {"kind": "warmup", "length": 1, "then": {"kind": "cosine", "eta_min_factor": 0.1}}
    config = expand_grid(parse_spec(spec_with(schedule=warmup)))[0].config
    assert config.schedule.then.eta_min_factor == 0.1 and config.schedule.start_factor == 0.1


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"kind": "multistep", "milestones": [2, 2]},
         r"schedule.milestones\[1\]: must be greater than the milestone before it \(2\)"),
        ({"kind": "multistep", "milestones": [0, 2]},
         r"schedule.milestones\[0\]: Input should be greater than or equal to 1"),
        ({"kind": "multistep", "milestones": [2, 5]},
         r"schedule.milestones\[1\]: must be < the budget \(5 epochs\), got 5"),
        ({"kind": "multistep", "milestones": []}, "schedule.milestones: List should have at least"),
        ({"kind": "multistep", "milestones": [1], "factor": 0}, "schedule.factor: Input should be greater than 0"),
        ({"kind": "multistep", "milestones": [1], "factor": 1.5}, "schedule.factor: Input should be less than"),
        ({"kind": "cosine", "eta_min_factor": -0.1}, "schedule.eta_min_factor: Input should be greater"),
        ({"kind": "warmup", "length": 5}, r"schedule.length: the warm-up must be shorter than the budget \(5 epochs\)"),
        ({"kind": "warmup", "length": 2, "then": {"kind": "multistep", "milestones": [2]}},
         r"schedule.then.milestones\[0\]: must be after the warm-up \(> 2\)"),
        ({"kind": "warmup", "length": 1, "then": {"kind": "warmup", "length": 1}},
         "schedule.then: Input tag 'warmup' found"),
        ({"kind": "step"}, "schedule: Input tag 'step' found using 'kind'"),
        ({"kind": "cosine", "T_max": 3}, "schedule.T_max: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_bad_schedules_name_the_field(schedule, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(spec_with(schedule=schedule))
