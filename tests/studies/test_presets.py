"""The shipped presets parse, expand as documented and take overrides."""

import pytest

from studies.exceptions import SpecError
from studies.presets import load_preset, preset_names
from studies.spec import expand_grid, parse_spec, planned_trial_count


def test_the_four_presets_ship_and_parse():
    assert preset_names() == ["cifar10-wrn", "dnc-heatmap", "matrix-factorisation-aalig", "smoke"]
    for name in preset_names():
        parse_spec(load_preset(name))


def test_dnc_heatmap_is_the_papers_figure_3_grid():
    trials = expand_grid(parse_spec(load_preset("dnc-heatmap")))
    by_row: dict[str, list] = {}
    for t in trials:
        by_row.setdefault(t.optimizer, []).append(t.eta)
    assert by_row["sgd"] == [10.0**k for k in range(-4, 5)]
    assert by_row["alig"] == [*[10.0**k for k in range(-4, 7)], None]
    assert by_row["l4mom"][0] == 0.05 and by_row["l4mom"][-1] == 0.95
    assert set(by_row) == {
        "sgd",
        "sgd-momentum",
        "adam",
        "adagrad",
        "rmsprop",
        "l4mom",
        "l4adam",
        "alig",
    }
    assert all(t.config.budget == 10_000 and t.config.batch_size == 16 for t in trials)
    alig = next(t for t in trials if t.optimizer == "alig")
    assert alig.config.optimizer_options == {"eps": 0.0}


def test_smoke_is_small_and_matrix_factorisation_sweeps_ranks():
    assert planned_trial_count(parse_spec(load_preset("smoke"))) == 15
    trials = expand_grid(parse_spec(load_preset("matrix-factorisation-aalig")))
    assert {t.extra_axes["rank"] for t in trials} == {1, 4, 10, "true-model"}


def test_overrides_merge_nested_fields():
    spec = load_preset("smoke", {"budget": {"epochs": 1}, "grid": {"seed": [0, 1]}})
    assert spec["budget"] == {"epochs": 1}
    assert spec["grid"]["seed"] == [0, 1] and spec["grid"]["batch_size"] == [32]
    assert planned_trial_count(parse_spec(spec)) == 30
    assert load_preset("smoke")["grid"]["seed"] == [0]  # the shipped file is untouched


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(
        SpecError, match="preset: unknown preset 'nope'; valid presets: cifar10-wrn"
    ):
        load_preset("nope")
