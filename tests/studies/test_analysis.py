"""studies.analysis: hand-computed answers on synthetic TrialRecords."""

import json
import math
import subprocess
import sys
from itertools import count

import numpy as np
import pytest

from studies.analysis import (
    CurveExtremes,
    choose_values,
    cpe,
    cpe_weights,
    expected_best,
    heatmap,
    importance,
    importance_by_optimizer,
    robustness,
    sensitivity,
    slices,
    tunability,
)
from studies.trial import TrialRecord

_keys = count()


def rec(optimizer, eta, value=None, *, status=None, seed=0, batch_size=32, **axes):
    """A record; ``value`` given → completed with that final objective, else ``status``."""
    if status is None:
        status = "completed" if value is not None else "pending"
    return TrialRecord(
        key=f"t{next(_keys)}",
        optimizer=optimizer,
        eta=eta,
        batch_size=batch_size,
        seed=seed,
        status=status,
        final_objective=value if status == "completed" else None,
        **axes,
    )


def seeds(optimizer, eta, outcomes, **kw):
    """One record per seed: a number is a completed value, a string a status."""
    return [
        rec(optimizer, eta, o, seed=s, **kw)
        if not isinstance(o, str)
        else rec(optimizer, eta, status=o, seed=s, **kw)
        for s, o in enumerate(outcomes)
    ]


def curve(optimizer, values, etas=(1e-3, 1e-2, 1e-1, 1.0, 10.0), **kw):
    """One seed per η; ``"diverged"`` (or any status string) instead of a number."""
    return [
        r for eta, v in zip(etas, values, strict=True) for r in seeds(optimizer, eta, [v], **kw)
    ]


# ---------------------------------------------------------------------------- heatmap


@pytest.fixture
def table_records():
    return [
        *seeds("sgd", 0.01, [3.0, 1.0, 2.0]),  # median 2, ok
        *seeds("sgd", 0.1, [1.0, "diverged", 5.0]),  # median 3 of the finite ones, partial
        *seeds("sgd", 1.0, ["diverged", "diverged", "diverged"]),
        *seeds("alig", 0.01, ["pending", "running", "cancelled"]),  # nothing finished: missing
        *seeds("alig", 0.1, [4.0, 7.0, 4.0]),
        *seeds("alig", None, [0.5, 0.7, 0.6]),  # ALI-G∞: last column
        *seeds("adam", 1.0, ["failed", "failed"]),
        *seeds("adam", 0.1, [2.0, "pending"]),
    ]


def test_heatmap_medians_statuses_and_counts(table_records):
    hm = heatmap(table_records)
    assert hm.rows == ["sgd", "alig", "adam"]  # first-seen order
    assert hm.columns == [0.01, 0.1, 1.0, None]
    assert hm.values == [
        [2.0, 3.0, None, None],
        [None, 4.0, None, pytest.approx(0.6)],
        [None, 2.0, None, None],
    ]
    assert hm.status == [
        ["ok", "partial", "diverged", "missing"],
        ["missing", "ok", "missing", "ok"],
        ["missing", "partial", "failed", "missing"],
    ]
    assert hm.n_ok == [[3, 2, 0, 0], [0, 3, 0, 3], [0, 1, 0, 0]]
    assert hm.n_total == [[3, 3, 3, 0], [3, 3, 0, 3], [0, 2, 2, 0]]
    assert hm.slice == {"batch_size": 32, "radius": None, "weight_decay": None}
    assert hm.metric == "final_objective"
    assert hm.direction == "minimize"


def test_heatmap_given_row_order_filters_and_adds_rows(table_records):
    hm = heatmap(table_records, optimizers=["alig", "sgd", "l4adam"])
    assert hm.rows == ["alig", "sgd", "l4adam"]
    assert hm.status[2] == ["missing"] * 4
    assert hm.values[0][1] == 4.0


def test_heatmap_json_has_null_never_nan(table_records):
    hm = heatmap(table_records)
    text = json.dumps(hm.to_dict(), allow_nan=False)
    data = json.loads(text)
    assert data["values"][0] == [2.0, 3.0, None, None]
    assert data["columns"][-1] is None
    assert data["status"][0][2] == "diverged"


def test_completed_trial_with_a_non_finite_value_counts_as_diverged():
    records = [rec("sgd", 0.1, math.nan, seed=0), rec("sgd", 0.1, math.inf, seed=1)]
    hm = heatmap(records)
    assert hm.status == [["diverged"]]
    assert hm.values == [[None]]
    json.dumps(hm.to_dict(), allow_nan=False)


def test_heatmap_of_another_metric_and_maximise_direction():
    records = [
        TrialRecord("a", "sgd", 0.1, 32, status="completed", final_objective=0.3,
                    metrics={"val_accuracy": 0.9}),
        TrialRecord("b", "sgd", 0.1, 32, seed=1, status="completed", final_objective=0.2,
                    metrics={"val_accuracy": 0.8}),
        TrialRecord("c", "sgd", 1.0, 32, status="completed", final_objective=0.2),
    ]  # fmt: skip
    hm = heatmap(records, metric="val_accuracy", direction="maximize")
    assert hm.values == [[pytest.approx(0.85), None]]
    assert hm.status == [["ok", "missing"]]  # completed without the metric: nothing to show
    with pytest.raises(ValueError, match="direction"):
        heatmap(records, direction="lower")


@pytest.fixture
def sliced_records():
    return [
        rec("sgd", 0.1, 1.0, batch_size=32),
        rec("sgd", 0.1, 2.0, batch_size=128),
        rec("sgd", 1.0, 3.0, batch_size=128),
        rec("alig", 0.1, 4.0, batch_size=32, radius=1.0),
        rec("alig", 1.0, 5.0, batch_size=32),
    ]


def test_slices_lists_each_distinct_combination(sliced_records):
    assert slices(sliced_records) == [
        {"batch_size": 32, "radius": 1.0, "weight_decay": None},
        {"batch_size": 32, "radius": None, "weight_decay": None},
        {"batch_size": 128, "radius": None, "weight_decay": None},
    ]


def test_heatmap_requires_a_slice_and_names_the_axes(sliced_records):
    with pytest.raises(ValueError) as info:
        heatmap(sliced_records)
    message = str(info.value)
    assert "batch_size in [32, 128]" in message
    assert "radius in [1.0, None]" in message
    assert "weight_decay" not in message  # constant axes need no choice
    with pytest.raises(ValueError, match=r"radius in \[1.0, None\]"):
        heatmap(sliced_records, slice={"batch_size": 32})


def test_heatmap_selects_one_slice(sliced_records):
    hm = heatmap(sliced_records, slice={"batch_size": 32, "radius": None})
    assert hm.rows == ["sgd", "alig"]
    assert hm.columns == [0.1, 1.0]
    assert hm.values == [[1.0, None], [None, 5.0]]
    assert hm.slice == {"batch_size": 32, "radius": None, "weight_decay": None}
    for s in slices(sliced_records):  # every listed slice can be passed back
        assert heatmap(sliced_records, slice=s).slice == s


def test_bad_slices_are_value_errors(sliced_records):
    with pytest.raises(ValueError, match="unknown slice axes"):
        heatmap(sliced_records, slice={"batch_size": 32, "radius": None, "lr": 1})
    with pytest.raises(ValueError, match="no trial has batch_size=64"):
        heatmap(sliced_records, slice={"batch_size": 64, "radius": None})
    with pytest.raises(ValueError, match="no trial in the slice"):
        heatmap(sliced_records, slice={"batch_size": 128, "radius": 1.0})


def test_extra_axes_are_slice_axes():
    records = [
        rec("sgd", 0.1, 1.0, extra_axes={"rank": 2}),
        rec("sgd", 0.1, 2.0, extra_axes={"rank": 4}),
    ]
    with pytest.raises(ValueError, match=r"rank in \[2, 4\]"):
        heatmap(records)
    assert heatmap(records, slice={"rank": 4}).values == [[2.0]]


def test_empty_records_give_an_empty_heatmap():
    hm = heatmap([])
    assert (hm.rows, hm.columns, hm.values) == ([], [], [])


# ------------------------------------------------------------------------- robustness


def test_range_is_broken_by_a_diverged_eta():
    # best in the slice 0.5 → cutoff 5 (inclusive): good = T T T F T
    result = robustness(curve("sgd", [5.0, 0.5, 1.0, "diverged", 2.0]))
    r = result.ranges["sgd"]
    assert (r.eta_low, r.eta_high) == (1e-3, 1e-1)
    assert r.decades == pytest.approx(2.0)
    assert (r.best_eta, r.best_value, r.n_good, r.includes_infinity) == (1e-2, 0.5, 3, False)
    assert result.reference_value == 0.5
    assert result.cutoff == pytest.approx(5.0)
    assert result.mode == "relative"


def test_range_is_relative_to_the_best_of_any_optimizer_in_the_slice():
    records = curve("sgd", [5.0, 0.5, 1.0, "diverged", 2.0]) + curve(
        "adam", [0.05, 0.1, 0.2, 0.6, 3.0]
    )  # best 0.05 → cutoff 0.5
    result = robustness(records)
    sgd, adam = result.ranges["sgd"], result.ranges["adam"]
    assert (sgd.eta_low, sgd.eta_high, sgd.decades, sgd.n_good) == (1e-2, 1e-2, 0.0, 1)
    assert (adam.eta_low, adam.eta_high, adam.n_good) == (1e-3, 1e-1, 3)


def test_equal_widths_go_to_the_run_with_the_best_eta():
    # best 0.5 at η = 1 → cutoff 5: runs [1e-3, 1e-2] and [1, 10], one decade each
    r = robustness(curve("sgd", [1.0, 1.0, 100.0, 0.5, 0.6])).ranges["sgd"]
    assert (r.eta_low, r.eta_high, r.decades, r.best_eta) == (1.0, 10.0, pytest.approx(1.0), 1.0)


def test_equal_widths_are_equal_whatever_the_rounding_of_their_logarithms():
    # runs [0.1, 0.3] and [10, 30]: log10(3) both, but log10(0.3 / 0.1) and log10(30 / 10)
    # differ in the last bit; the run with the best η (0.1) wins
    etas = [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
    records = [
        rec("sgd", e, v) for e, v in zip(etas, [1.0, 2.0, 50.0, 50.0, 2.0, 2.0], strict=True)
    ]
    r = robustness(records).ranges["sgd"]
    assert (r.eta_low, r.eta_high, r.best_eta) == (0.1, 0.3, 0.1)
    assert r.decades == pytest.approx(math.log10(3))


def test_wider_run_wins_over_the_run_with_the_best_eta():
    r = robustness(curve("sgd", [1.0, 1.0, 1.0, 100.0, 0.5])).ranges["sgd"]
    assert (r.eta_low, r.eta_high, r.best_eta, r.best_value) == (1e-3, 1e-1, 10.0, 0.5)


def test_alig_infinity_extends_a_run_but_adds_no_width():
    records = curve("alig", [100.0, 1.0, 2.0], etas=(0.1, 1.0, 10.0)) + seeds("alig", None, [1.5])
    r = robustness(records).ranges["alig"]
    assert (r.eta_low, r.eta_high, r.decades) == (1.0, None, None)
    assert (r.n_good, r.includes_infinity, r.best_eta) == (3, True, 1.0)
    json.dumps(robustness(records).to_dict(), allow_nan=False)


def test_only_the_optimizers_own_grid_counts_for_contiguity():
    # columns 0.1, 0.3, 1: sgd never ran 0.3, so it does not break sgd's run
    records = curve("sgd", [1.0, 2.0], etas=(0.1, 1.0)) + curve("adam", [1.0], etas=(0.3,))
    r = robustness(records).ranges["sgd"]
    assert (r.eta_low, r.eta_high, r.n_good) == (0.1, 1.0, 2)
    # an unfinished point of its own grid does break it
    records += seeds("sgd", 0.3, ["pending"])
    r = robustness(records).ranges["sgd"]
    assert (r.eta_low, r.eta_high, r.n_good) == (0.1, 0.1, 1)


def test_optimizer_without_a_good_eta_has_all_fields_none():
    records = curve("sgd", [1.0, 2.0], etas=(0.1, 1.0)) + curve(
        "adam", [50.0, "diverged"], etas=(0.1, 1.0)
    )
    r = robustness(records).ranges["adam"]
    assert (r.eta_low, r.eta_high, r.decades, r.best_eta, r.best_value) == (None,) * 5
    assert (r.n_good, r.includes_infinity) == (0, False)


def test_threshold_mode():
    result = robustness(curve("sgd", [0.9, 1.5, 0.2, 0.3, 1.0]), threshold=1.0)
    r = result.ranges["sgd"]
    assert (r.eta_low, r.eta_high, r.n_good) == (1e-1, 10.0, 3)
    assert (result.mode, result.cutoff, result.tolerance) == ("absolute", 1.0, None)


def test_relative_mode_with_a_non_positive_best():
    # best −2, factor 10 → cutoff −2 + 9·2 = 16
    result = robustness(curve("sgd", [-2.0, 10.0, 20.0], etas=(0.1, 1.0, 10.0)))
    assert result.cutoff == pytest.approx(16.0)
    assert result.ranges["sgd"].eta_high == 1.0


def test_maximise_mode_for_val_accuracy():
    def acc(optimizer, eta, value, seed=0):
        return TrialRecord(f"{optimizer}{eta}{seed}", optimizer, eta, 32, seed=seed,
                           status="completed", final_objective=1.0,
                           metrics={"val_accuracy": value})  # fmt: skip

    etas = (1e-3, 1e-2, 1e-1, 1.0)
    records = [acc("sgd", e, v) for e, v in zip(etas, [0.90, 0.955, 0.96, 0.80], strict=True)]
    records += [acc("adam", e, v) for e, v in zip(etas, [0.951, 0.952, 0.5, 0.953], strict=True)]
    result = robustness(records, metric="val_accuracy", direction="maximize")  # gap 0.01 → 0.95
    sgd, adam = result.ranges["sgd"], result.ranges["adam"]
    assert (sgd.eta_low, sgd.eta_high, sgd.best_eta, sgd.best_value) == (1e-2, 1e-1, 1e-1, 0.96)
    # runs [1e-3, 1e-2] (1 decade) and [1] (0): the wider one, though the best is at η = 1
    assert (adam.eta_low, adam.eta_high, adam.best_eta) == (1e-3, 1e-2, 1.0)
    assert result.tolerance == 0.01
    by_threshold = robustness(records, "val_accuracy", "maximize", threshold=0.9).ranges["sgd"]
    assert (by_threshold.eta_low, by_threshold.eta_high) == (1e-3, 1e-1)


def test_robustness_rejects_bad_tolerances():
    records = curve("sgd", [1.0, 2.0], etas=(0.1, 1.0))
    with pytest.raises(ValueError, match="either tolerance"):
        robustness(records, tolerance=5.0, threshold=1.0)
    with pytest.raises(ValueError, match="factor >= 1"):
        robustness(records, tolerance=0.5)
    with pytest.raises(ValueError, match="gap >= 0"):
        robustness(records, direction="maximize", tolerance=-1.0)


# ------------------------------------------------------------------------- tunability


def test_expected_best_closed_form_by_hand():
    pool = [4.0, 1.0, 2.0]
    assert expected_best(pool, 1) == pytest.approx(7 / 3)  # the mean
    # min of 2: 1 w.p. 1 − (2/3)² = 5/9, 2 w.p. (2/3)² − (1/3)² = 3/9, 4 w.p. 1/9
    assert expected_best(pool, 2) == pytest.approx(15 / 9)
    assert expected_best(pool, 3) == pytest.approx(37 / 27)
    # max of 2: 4 w.p. 5/9, 2 w.p. 3/9, 1 w.p. 1/9
    assert expected_best(pool, 2, "maximize") == pytest.approx(27 / 9)


def test_expected_best_with_ties():
    # [1, 1, 3]: the min of 2 is 3 only if both draws are 3 (1/9)
    assert expected_best([1.0, 3.0, 1.0], 2) == pytest.approx(8 / 9 + 3 / 9)
    assert expected_best([2.0, 2.0, 2.0], 5) == pytest.approx(2.0)


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_expected_best_matches_monte_carlo(direction):
    rng = np.random.default_rng(0)
    pool = np.array([0.3, 1.2, 1.2, 2.5, 4.0, 7.5, 0.3, 9.0])
    best = np.min if direction == "minimize" else np.max
    for k in (1, 2, 3, 5, 8):
        draws = best(pool[rng.integers(0, len(pool), size=(200_000, k))], axis=1)
        standard_error = draws.std() / math.sqrt(len(draws))
        exact = expected_best(pool.tolist(), k, direction)
        assert abs(draws.mean() - exact) < 4 * standard_error + 1e-12


def test_expected_best_with_a_diverged_point_is_infinite():
    assert expected_best([1.0, math.inf], 3) == math.inf
    assert expected_best([1.0, -math.inf], 3, "maximize") == -math.inf
    assert expected_best([1.0, math.inf], 1, "maximize") == math.inf
    with pytest.raises(ValueError, match="NaN"):
        expected_best([1.0, math.nan], 1)
    with pytest.raises(ValueError, match="k must be"):
        expected_best([1.0], 0)


def test_cpe_weights_and_score():
    assert cpe_weights(3) == pytest.approx([3 / 6, 2 / 6, 1 / 6])
    assert sum(cpe_weights(11)) == pytest.approx(1.0)
    assert cpe([6.0, 3.0, 0.0]) == pytest.approx(3.0 + 1.0)
    assert cpe([1.0, None]) is None
    assert cpe([]) is None


@pytest.fixture
def tunability_records():
    return [
        *seeds("sgd", 0.01, [1.0, 1.0, 1.0]),
        *seeds("sgd", 0.1, [2.0]),
        *seeds("sgd", 1.0, [4.0]),
        *seeds("sgd", 10.0, ["diverged", "diverged"]),
        *seeds("sgd", 100.0, ["pending"]),  # not in the pool: says nothing yet
        *seeds("adam", 0.01, [4.0]),
        *seeds("adam", 0.1, [1.0]),
        *seeds("adam", 1.0, [2.0]),
        *seeds("adam", 10.0, [8.0]),
        *seeds("adam", 100.0, ["failed"]),  # not in the pool either
    ]


def test_tunability_pools_and_cpe(tunability_records):
    result = tunability(tunability_records)
    adam = result.optimizers["adam"]
    assert adam.etas == [0.01, 0.1, 1.0, 10.0]
    assert adam.p_k[0] == pytest.approx(15 / 4)
    adam3 = tunability(tunability_records, k_max=3, optimizers=["adam"]).optimizers["adam"]
    assert len(adam3.p_k) == 3
    sgd = result.optimizers["sgd"]
    assert sgd.etas == [0.01, 0.1, 1.0, 10.0]
    assert sgd.values == [1.0, 2.0, 4.0, None]
    assert sgd.n_diverged == 1
    assert sgd.p_k == [None] * 4  # "inf": every budget can draw only diverged points
    assert sgd.prob_all_diverged == pytest.approx([1 / 4, 1 / 16, 1 / 64, 1 / 256])
    assert sgd.cpe is None
    json.dumps(result.to_dict(), allow_nan=False)


def test_tunability_diverged_policies(tunability_records):
    worst = tunability(tunability_records, diverged="worst")
    assert worst.diverged_value == 8.0  # the slice's worst finite value (adam at η = 10)
    assert worst.optimizers["sgd"].p_k[0] == pytest.approx((1 + 2 + 4 + 8) / 4)
    fixed = tunability(tunability_records, diverged=100.0).optimizers["sgd"]
    assert fixed.p_k[0] == pytest.approx(107 / 4)
    with pytest.raises(ValueError, match="diverged must be"):
        tunability(tunability_records, diverged="nan")


def test_tunability_cpe_by_hand():
    records = [*seeds("sgd", 0.01, [1.0]), *seeds("sgd", 0.1, [2.0]), *seeds("sgd", 1.0, [4.0])]
    sgd = tunability(records).optimizers["sgd"]
    assert sgd.p_k == pytest.approx([7 / 3, 5 / 3, 37 / 27])
    assert sgd.cpe == pytest.approx((3 * 7 / 3 + 2 * 5 / 3 + 37 / 27) / 6)


def test_tunability_of_an_optimizer_with_an_empty_pool():
    records = [*seeds("sgd", 0.1, [1.0]), *seeds("adam", 0.1, ["pending"])]
    adam = tunability(records).optimizers["adam"]
    assert (adam.p_k, adam.cpe, adam.etas) == ([], None, [])


# ------------------------------------------------------------------------- sensitivity


def test_sensitivity_points_hold_median_band_and_divergence(table_records):
    info = sensitivity(table_records)
    sgd = info.curves["sgd"]
    assert [p.eta for p in sgd] == [0.01, 0.1, 1.0]  # only its own grid
    assert (sgd[0].median, sgd[0].low, sgd[0].high) == (2.0, 1.0, 3.0)
    assert (sgd[1].status, sgd[1].n_diverged) == ("partial", 1)
    assert (sgd[2].median, sgd[2].n_diverged) == (None, 3)
    json.dumps(info.to_dict(), allow_nan=False)


# ------------------------------------------------------------------------- importance


@pytest.fixture
def eta_only_records():
    # depends on η only: (log10 η + 1)² + 1, plus a little seed noise; not on batch size
    return [
        rec("sgd", eta, (math.log10(eta) + 1) ** 2 + 1 + 1e-3 * seed, seed=seed, batch_size=bs)
        for eta in (1e-3, 1e-2, 1e-1, 1.0, 10.0)
        for bs in (16, 32, 64, 128)
        for seed in (0, 1)
    ]


def test_importance_finds_eta(eta_only_records):
    records = [*eta_only_records, rec("sgd", 100.0, status="diverged"), rec("sgd", 1e-4,
               status="failed")]  # fmt: skip
    result = importance(records, optimizer="sgd")
    assert set(result.params) == {"eta", "batch_size"}
    # the diverged trial is kept (as the penalty), the failed one left out
    assert (result.n_trials, result.n_diverged, result.n_excluded) == (41, 1, 1)
    assert result.scale == "log10"
    worst = max(math.log10(r.final_objective) for r in eta_only_records)
    assert result.diverged_penalty == pytest.approx(worst + 1.0)  # a decade above the worst
    for name in ("fanova", "ped_anova"):
        scores = result.importances[name]
        assert scores["eta"] > 0.8, (name, scores)
        assert sum(scores.values()) == pytest.approx(1.0)
    assert importance(records, optimizer="sgd").importances == result.importances  # seeded
    json.dumps(result.to_dict(), allow_nan=False)


def test_a_diverged_trial_on_the_raw_scale_is_worse_by_the_spread_of_the_values(
    eta_only_records,
):
    # maximising the objective as if it were an accuracy: raw scale, the penalty lies the
    # spread of the finite values below the worst
    records = [*eta_only_records, rec("sgd", 100.0, status="diverged")]
    result = importance(records, direction="maximize", optimizer="sgd")
    values = [r.final_objective for r in eta_only_records]
    assert result.scale == "raw"
    spread = max(values) - min(values)
    assert spread > 0
    assert result.diverged_penalty == pytest.approx(min(values) - spread)


def test_importance_never_pools_optimizers_on_one_eta_axis(eta_only_records):
    other = [
        rec("alig", eta, 5.0 + eta_value + 1e-3 * seed, seed=seed, radius=radius)
        for eta, eta_value in ((None, 0.0), (0.1, 1.0))
        for radius in (None, 1.0)
        for seed in (0, 1)
    ]
    with pytest.raises(ValueError, match="one optimizer at a time"):
        importance(eta_only_records + other)
    result = importance_by_optimizer(
        [*eta_only_records, *other, rec("adam", 0.1, 1.0)], evaluators=["fanova"]
    )
    assert list(result.optimizers) == ["sgd", "alig"]
    assert result.skipped == {"adam": "importance needs at least 2 trials with a finite "
                              "'final_objective', found 1"}  # fmt: skip
    alig = result.optimizers["alig"]
    assert set(alig.params) == {"eta", "radius"} and alig.optimizer == "alig"
    assert alig.importances["fanova"]["eta"] > alig.importances["fanova"]["radius"]
    assert sum(alig.importances["fanova"].values()) == pytest.approx(1.0)
    json.dumps(result.to_dict(), allow_nan=False)


def test_importance_on_log10_follows_decades_not_the_worst_trials():
    # η matters by decades at small losses; batch size moves the one large loss a lot
    records = [
        rec("sgd", eta, 10.0 ** (-k) * (1000.0 if (k == 0 and bs == 128) else 1.0), seed=0,
            batch_size=bs)
        for k, eta in enumerate((1e-3, 1e-2, 1e-1, 1.0, 10.0))
        for bs in (16, 128)
    ]  # fmt: skip
    log_scale = importance(records, optimizer="sgd", evaluators=["fanova"])
    raw = importance(records, optimizer="sgd", evaluators=["fanova"], scale="raw")
    assert log_scale.importances["fanova"]["eta"] > 0.5
    assert raw.importances["fanova"]["batch_size"] > log_scale.importances["fanova"]["batch_size"]
    with pytest.raises(ValueError, match="log10 needs"):
        importance([rec("sgd", 0.1, -1.0), rec("sgd", 1.0, 2.0)], optimizer="sgd", scale="log10")


def test_importance_errors(eta_only_records):
    with pytest.raises(ValueError, match="at least 2 trials"):
        importance([rec("sgd", 0.1, 1.0), rec("sgd", 1.0, status="diverged")])
    with pytest.raises(ValueError, match="at least 2 values"):
        importance([rec("sgd", 0.1, 1.0, seed=0), rec("sgd", 0.1, 2.0, seed=1)])
    with pytest.raises(ValueError, match="evaluators must be among"):
        importance(eta_only_records, evaluators=["shap"])


# ------------------------------------------------------------------- seeds that diverged


@pytest.fixture
def seeded_records():
    return [
        *seeds("sgd", 0.01, [2.0, 2.2, 2.1]),
        *seeds("sgd", 0.1, [1.0, 1.1, "diverged"]),  # one seed of three diverged
        *seeds("sgd", 1.0, [1.5, 1.4, 1.6]),
    ]


def test_a_cell_with_a_diverged_seed_is_not_good_by_default(seeded_records):
    strict = robustness(seeded_records).ranges["sgd"]
    # η = 0.1 has the best median of its survivors but is not good: the range is broken there
    assert (strict.eta_low, strict.eta_high, strict.n_good) == (1.0, 1.0, 1)
    assert (strict.seeds, strict.diverged_seeds) == (3, 1)  # the table says what it rests on
    relaxed = robustness(seeded_records, min_finite_fraction=0.6)
    assert (relaxed.ranges["sgd"].eta_low, relaxed.ranges["sgd"].eta_high) == (0.01, 1.0)
    assert relaxed.min_finite_fraction == 0.6 and relaxed.ranges["sgd"].n_good == 3
    with pytest.raises(ValueError, match="min_finite_fraction"):
        robustness(seeded_records, min_finite_fraction=0.0)
    table = heatmap(seeded_records)
    assert table.n_diverged == [[0, 1, 0]] and table.n_total == [[3, 3, 3]]
    assert table.to_dict()["n_diverged"] == [[0, 1, 0]]


def test_tunability_counts_a_diverged_seed_as_the_worst_outcome(seeded_records):
    strict = tunability(seeded_records, diverged="worst").optimizers["sgd"]
    assert strict.values == [2.1, None, 1.5] and strict.n_diverged == 1  # η = 0.1 is diverged
    relaxed = tunability(seeded_records, diverged="worst", min_finite_fraction=0.5)
    # the diverged seed enters as the worst finite value (2.2): median(1.0, 1.1, 2.2) = 1.1
    assert relaxed.optimizers["sgd"].values == [2.1, 1.1, 1.5]
    assert relaxed.min_finite_fraction == 0.5
    penalised = tunability(seeded_records, diverged=100.0, min_finite_fraction=0.5)
    assert penalised.optimizers["sgd"].values[1] == 1.1  # median(1.0, 1.1, 100)


def test_tunability_leaves_failed_and_unfinished_seeds_out_instead_of_calling_them_diverged():
    records = [
        *seeds("sgd", 0.01, [0.1, "failed"]),
        *seeds("sgd", 0.1, [0.2, 0.3]),
        *seeds("sgd", 1.0, [0.4, 0.5, "running"]),
    ]
    pool = tunability(records).optimizers["sgd"]  # diverged="inf": one diverged point → None
    assert pool.values == [0.1, 0.25, 0.45] and pool.n_diverged == 0
    assert pool.p_k[0] == pytest.approx((0.1 + 0.25 + 0.45) / 3)
    assert pool.cpe is not None
    # a diverged seed still makes its point diverged, whatever failed beside it
    mixed = tunability([*records, *seeds("sgd", 10.0, [0.1, "diverged", "failed"])])
    assert mixed.optimizers["sgd"].values[-1] is None
    assert mixed.optimizers["sgd"].n_diverged == 1


def test_studies_analysis_and_rendering_import_no_server_or_torch():
    code = (
        "import sys, studies.analysis, studies.rendering; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray', 'fastapi'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_importance_by_optimizer_refuses_when_no_optimizer_can_be_analysed():
    with pytest.raises(ValueError, match="at least 2 trials with a finite"):
        importance_by_optimizer([rec("sgd", 0.1, 1.0), rec("adam", 0.1, status="pending")])
    with pytest.raises(ValueError, match="the study has no trial"):
        importance_by_optimizer([])


# ---------------------------------------------------------------------------- final or best


def best_of(records, lows):
    """``records`` read at their best: ``lows`` maps a key to its train_loss curve's minimum."""
    extremes = {key: {"train_loss": CurveExtremes(low, 10.0)} for key, low in lows.items()}
    return choose_values(records, "best", extremes=extremes)


def test_the_good_eta_range_widens_when_trials_are_read_at_their_best():
    records = curve("sgd", [1.0, 50.0, 100.0], etas=(0.01, 0.1, 1.0))
    final = robustness(records).ranges["sgd"]
    assert (final.eta_low, final.eta_high, final.decades) == (0.01, 0.01, 0.0)  # 50 > 10 × 1
    best = best_of(records, {r.key: low for r, low in zip(records, (2.0, 5.0, 8.0), strict=True)})
    ranges = robustness(best).ranges["sgd"]  # the first keeps its final 1, below its curve's 2
    assert (ranges.eta_low, ranges.eta_high, ranges.decades, ranges.best_value) == (
        0.01, 1.0, 2.0, 1.0,
    )  # fmt: skip


def test_tunability_at_the_best_values_keeps_a_diverged_point_diverged():
    records = curve("sgd", [4.0, 2.0, "diverged"], etas=(0.01, 0.1, 1.0))
    best = best_of(records, {r.key: 0.5 for r in records})  # the diverged one's curve too
    pool = tunability(best, diverged="worst").optimizers["sgd"]
    assert pool.values == [0.5, 0.5, None] and pool.n_diverged == 1
    # P_1 = mean of the pool with the diverged point at the worst finite value (0.5)
    assert pool.p_k[0] == pytest.approx(0.5)
    unfinished = [rec("sgd", 0.1, status="pending"), rec("sgd", 0.1, status="failed", seed=1)]
    assert best_of(unfinished, {r.key: 0.1 for r in unfinished}) == unfinished
