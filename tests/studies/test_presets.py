"""The shipped presets parse, expand as documented and take overrides."""

import pytest

from studies.exceptions import SpecError
from studies.presets import load_preset, preset_names
from studies.spec import expand_grid, parse_spec, planned_trial_count


def test_the_five_presets_ship_and_parse():
    assert preset_names() == [
        "cifar10-wrn", "dnc-heatmap", "matrix-factorisation-aalig", "smoke", "svhn-wrn",
    ]  # fmt: skip
    for name in preset_names():
        parse_spec(load_preset(name))


BASELINE_ETAS = [m * 10.0**k for k in range(-4, 2) for m in (1, 3)]  # 1e-4, 3e-4, …, 30
L4_FRACTIONS = [round(0.05 * i, 2) for i in range(1, 20)]  # 0.05, 0.10, …, 0.95


def test_dnc_heatmap_is_the_authors_figure_3_script():
    spec = parse_spec(load_preset("dnc-heatmap"))
    assert "grid:authors-script" in spec.tags
    trials = expand_grid(spec)
    # 5 baselines × 12 η + 2 L4 × 19 α + ALI-G's 6 η and ∞, each for 3 seeds
    assert planned_trial_count(spec) == len(trials) == (5 * 12 + 2 * 19 + 7) * 3 == 315
    by_row: dict[str, list] = {}
    for t in trials:
        if t.config.seed == 0:
            by_row.setdefault(t.optimizer, []).append(t.eta)
    assert list(by_row) == [
        "sgd", "sgd-momentum", "adam", "adagrad", "rmsprop", "l4mom", "l4adam", "alig",
    ]  # fmt: skip
    for row in ("sgd", "sgd-momentum", "adam", "adagrad", "rmsprop"):
        assert by_row[row] == pytest.approx(BASELINE_ETAS, rel=1e-12), row
    assert by_row["l4mom"] == by_row["l4adam"] == pytest.approx(L4_FRACTIONS, rel=1e-12)
    assert by_row["alig"] == [*[10.0**k for k in range(2, 8)], None]
    assert all(t.config.budget == 10_000 and t.config.batch_size == 16 for t in trials)
    assert {t.config.seed for t in trials} == {0, 1, 2}

    def config(row: str):
        return next(t.config for t in trials if t.optimizer == row)

    assert config("alig").optimizer_options == {"eps": 0.0}
    # "nag" in the authors' script is tf.train.MomentumOptimizer(lr, 0.9): heavy-ball, not Nesterov
    assert (config("sgd-momentum").optimizer, config("sgd-momentum").optimizer_options) == (
        "sgd",
        {"momentum": 0.9},
    )
    # TF1's Adagrad and RMSProp, as the script ran them, under the paper's row names
    assert config("adagrad").optimizer == "adagrad-tf"
    assert config("rmsprop").optimizer == "rmsprop-tf"
    assert config("adam").optimizer == "adam" and config("adam").optimizer_options == {}


def test_dnc_clips_every_row_but_alig_and_l4_as_the_authors_did():
    from studies.catalog.tasks import TASKS

    no_clip = set(TASKS["dnc-copy"].options().no_clip_for)
    trials = expand_grid(parse_spec(load_preset("dnc-heatmap")))
    unclipped = {t.optimizer for t in trials if t.config.optimizer in no_clip}
    assert unclipped == {"alig", "l4mom", "l4adam"}


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


def test_the_wrn_presets_run_the_alig_papers_settings_with_sgds_schedule():
    assert {"cifar10-wrn", "svhn-wrn"} <= set(preset_names())
    cifar = expand_grid(parse_spec(load_preset("cifar10-wrn")))
    assert {t.config.task_options["model"] for t in cifar} == {"wrn-40-4"}
    assert {(t.config.budget, t.config.radius) for t in cifar} == {(200, 100.0)}
    # the paper's batch sizes: SGD 128, ALI-G 256 (one shared axis: both rows run both)
    assert {t.batch_size for t in cifar} == {128, 256}
    sgd = [t.config for t in cifar if t.optimizer == "sgd-nesterov"]
    alig = [t.config for t in cifar if t.optimizer == "alig"]
    assert sorted({c.eta for c in sgd}) == [0.01, 0.1, 1.0]
    assert sorted({c.eta for c in alig}) == [0.1, 1.0, 10.0]
    assert {c.weight_decay for c in sgd} == {5e-4} and {c.weight_decay for c in alig} == {None}
    assert all(c.optimizer_options == {"momentum": 0.9} for c in sgd + alig)
    schedule = sgd[0].schedule
    assert (schedule.kind, schedule.milestones, schedule.factor) == (
        "multistep", [60, 120, 160], 0.2,
    )  # fmt: skip
    svhn = expand_grid(parse_spec(load_preset("svhn-wrn")))
    options = svhn[0].config.task_options
    assert (options["model"], options["dropout"], options["augment"]) == ("wrn-16-4", 0.4, False)
    assert {(t.config.budget, t.config.radius, t.batch_size) for t in svhn} == {(160, 50.0, 128)}
    assert sorted({t.eta for t in svhn if t.optimizer == "alig"}) == [0.001, 0.01, 0.1]
    schedule = svhn[0].config.schedule
    assert (schedule.kind, schedule.milestones, schedule.factor) == ("multistep", [80, 120], 0.1)
