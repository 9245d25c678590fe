"""Performance profiles, the comparison of studies and the final/best values, on synthetic
records against hand-computed answers (Dolan & Moré 2002 for the profiles)."""

import io
import itertools
import json
import math
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from studies.analysis import (
    CurveExtremes,
    Problem,
    best_value,
    choose_values,
    compare,
    curve_name,
    heatmap,
    performance_profile,
    robustness,
    sensitivity,
    tau_grid,
    tunability,
)
from studies.analysis.values import CURVE_OF, FINAL_ONLY
from studies.rendering.profiles import profile_steps, render_profile
from studies.trial import TrialRecord

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def rec(key, optimizer, eta, value=None, *, status=None, seed=0, metrics=None, **axes):
    """A record; ``value`` given → completed with that final objective, else ``status``."""
    status = status or ("completed" if value is not None else "pending")
    return TrialRecord(
        key=key, optimizer=optimizer, eta=eta, batch_size=32, seed=seed, status=status,
        final_objective=value if status == "completed" else None, metrics=metrics or {},
        **axes,
    )  # fmt: skip


# --------------------------------------------------------------------------- the τ grid


def test_the_tau_grid_is_20_points_per_decade_from_1_to_tau_max():
    grid = tau_grid(1e3)
    assert len(grid) == 61
    assert grid[0] == 1.0 and grid[-1] == 1000.0 and grid[20] == pytest.approx(10.0)
    assert grid[7] == pytest.approx(10 ** (7 / 20))
    assert all(b > a for a, b in itertools.pairwise(grid))
    off = tau_grid(50.0)  # 50 is not a grid point: it is added last
    assert off[-1] == 50.0 and off[-2] == pytest.approx(10 ** (33 / 20)) and len(off) == 35
    for bad in (1.0, 0.5, math.inf, math.nan, 1e13, True):
        with pytest.raises(ValueError, match="tau_max"):
            tau_grid(bad)


# --------------------------------------------------------------------------- profiles

# three problems, three optimizers: a win, a tie, a diverged optimizer (None) and one that the
# third problem did not run (absent)
COSTS = {
    "p1": {"A": 1.0, "B": 2.0, "C": 4.0},
    "p2": {"A": 3.0, "B": 3.0, "C": None},
    "p3": {"B": 5.0, "C": 0.5},
}


def test_ratios_are_costs_over_the_best_cost_of_the_problem():
    profile = performance_profile(COSTS)
    assert profile.problems == ["p1", "p2", "p3"]
    assert profile.optimizers == ["A", "B", "C"]  # first seen
    assert profile.costs == {
        "A": [1.0, 3.0, None], "B": [2.0, 3.0, 5.0], "C": [4.0, None, 0.5],
    }  # fmt: skip
    assert profile.ratios["A"] == [1.0, 1.0, math.inf]  # not run on p3: r = ∞
    assert profile.ratios["B"] == [2.0, 1.0, 10.0]  # the tie on p2 is r = 1 for both
    assert profile.ratios["C"] == [4.0, math.inf, 1.0]  # diverged on p2: r = ∞


def test_rho_is_the_share_of_problems_within_tau():
    profile = performance_profile(COSTS)
    grid = profile.tau
    rho = {name: dict(zip(grid, values, strict=True)) for name, values in profile.rho.items()}
    third = 1 / 3
    # τ = 1: the wins, ties counting for both
    assert [rho[n][1.0] for n in "ABC"] == [2 * third, third, third]
    # B's ratio 2 lies between grid points 10^(6/20) ≈ 1.995 and 10^(7/20) ≈ 2.24
    assert profile.rho["B"][6] == pytest.approx(third)
    assert profile.rho["B"][7] == pytest.approx(2 * third)
    # B's ratio 10 is the grid point τ = 10 exactly (k = 20): counted there
    assert profile.rho["B"][19] == pytest.approx(2 * third)
    assert profile.rho["B"][20] == pytest.approx(1.0)
    # C's ratio 4 lies between 10^(12/20) ≈ 3.98 and 10^(13/20) ≈ 4.47
    assert profile.rho["C"][12] == pytest.approx(third)
    assert profile.rho["C"][13] == pytest.approx(2 * third)
    # an infinite ratio never counts: A and C end at 2/3, B at 1
    assert [profile.rho[n][-1] for n in "ABC"] == pytest.approx([2 * third, 1.0, 2 * third])
    for values in profile.rho.values():
        assert all(b >= a for a, b in itertools.pairwise(values))  # non-decreasing


def test_the_optimizers_can_be_given_and_an_unrun_one_is_infinite_everywhere():
    profile = performance_profile(COSTS, optimizers=["C", "A", "D"])
    assert profile.optimizers == ["C", "A", "D"]
    assert profile.ratios["D"] == [math.inf] * 3
    assert profile.rho["D"] == [0.0] * len(profile.tau)
    # the minimum is over the listed optimizers: without B, A wins p1 and p2, C wins p3
    assert profile.ratios["A"] == [1.0, 1.0, math.inf]
    assert profile.ratios["C"] == [4.0, math.inf, 1.0]


def test_a_problem_that_no_optimizer_solved_counts_in_the_denominator():
    profile = performance_profile({"p1": {"A": 2.0, "B": 1.0}, "p2": {"A": None, "B": None}})
    assert profile.ratios == {"A": [2.0, math.inf], "B": [1.0, math.inf]}
    assert profile.rho["B"][0] == 0.5 and profile.rho["A"][-1] == 0.5


def test_costs_must_be_positive_and_the_refusal_names_the_problem():
    with pytest.raises(ValueError, match=r"study s2: the best value of B is 0 <= 0"):
        performance_profile({"s1": {"A": 1.0}, "s2": {"B": 0.0}}, problem_label="study")
    with pytest.raises(ValueError, match=r"problem p: the best value of A is -1"):
        performance_profile({"p": {"A": -1.0}})
    with pytest.raises(ValueError, match="NaN"):
        performance_profile({"p": {"A": math.nan}})
    with pytest.raises(ValueError, match="at least one problem"):
        performance_profile({})


def test_the_profile_json_has_null_for_infinite_ratios():
    data = json.loads(json.dumps(performance_profile(COSTS).to_dict(), allow_nan=False))
    assert data["ratios"]["A"] == [1.0, 1.0, None]
    assert data["costs"]["C"] == [4.0, None, 0.5]
    assert data["tau_max"] == 1000.0 and len(data["tau"]) == 61


def test_the_plot_steps_are_the_exact_profile():
    taus, rhos = profile_steps([2.0, 1.0, 10.0], 1e3)
    assert taus == [1.0, 2.0, 10.0, 1e3]
    assert rhos == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    assert profile_steps([math.inf, math.inf], 1e3) == ([1.0, 1e3], [0.0, 0.0])
    assert profile_steps([1.0, 5e3], 1e3) == ([1.0, 1e3], [0.5, 0.5])  # beyond τ_max: never


def test_the_profile_renders_as_png_and_svg():
    profile = performance_profile(COSTS, optimizers=["A", "B", "C", "$\\bad$"])
    png = render_profile(profile, "png")
    assert png.startswith(PNG_SIGNATURE)
    assert Image.open(io.BytesIO(png)).size == (700, 450)
    svg = render_profile(profile, "svg", title="profiles $x$")
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert "no finite value" in svg.decode()  # the optimizer that was never run
    with pytest.raises(ValueError, match="format"):
        render_profile(profile, "bmp")


# --------------------------------------------------------------------------- final and best


def extremes(**by_key):
    """``key=(low, high)`` → the Extremes of the final objective's curve (train_loss)."""
    return {key: {"train_loss": CurveExtremes(*lh)} for key, lh in by_key.items()}


def test_the_final_objective_s_curve_is_the_training_loss_and_final_only_metrics_have_none():
    assert curve_name("final_objective") == "train_loss"
    assert curve_name("val_accuracy") == "val_accuracy"
    with pytest.raises(ValueError, match=r"objective_median.*final result only"):
        curve_name("objective_median")


def test_the_value_tables_agree_with_what_the_store_callback_writes():
    from workers.store_callback import CURVE_METRICS, FINAL_ONLY_METRICS

    assert set(FINAL_ONLY) == set(FINAL_ONLY_METRICS)
    assert set(CURVE_OF.values()) <= set(CURVE_METRICS)


def test_best_is_the_lowest_of_the_final_value_and_the_curve():
    records = [
        rec("a", "sgd", 0.1, 2.0),  # the curve went lower than the end: best 1.5
        rec("b", "sgd", 0.1, 1.0, seed=1),  # the curve's windows never got as low: final
        rec("c", "sgd", 0.1, 3.0, seed=2),  # no curve stored: final
        rec("d", "sgd", 1.0, status="diverged"),  # best before divergence: 0.3
        rec("e", "sgd", 1.0, math.inf, seed=1),  # completed but not finite: no final value
    ]
    known = extremes(a=(1.5, 9.0), b=(1.2, 4.0), d=(0.3, 50.0), e=(0.2, 0.9))
    assert [best_value(r, "final_objective", "minimize", known) for r in records] == [
        1.5, 1.0, 3.0, 0.3, 0.2,
    ]  # fmt: skip
    chosen = choose_values(records, "best", extremes=known)
    assert [r.final_objective for r in chosen] == [1.5, 1.0, 3.0, None, math.inf]
    assert [r.status for r in chosen] == [r.status for r in records]  # outcomes unchanged
    assert [r.value() for r in chosen] == [1.5, 1.0, 3.0, None, None]
    assert choose_values(records, "final", extremes=known) == records


def test_a_diverged_trial_stays_diverged_under_best():
    records = [
        rec("a", "sgd", 0.1, 2.0),
        rec("b", "sgd", 1.0, status="diverged"),
        rec("c", "sgd", 1.0, math.nan, seed=1),
    ]
    known = extremes(a=(1.0, 2.0), b=(0.01, 1.0), c=(0.01, 1.0))
    table = heatmap(choose_values(records, "best", extremes=known))
    assert table.values == [[1.0, None]]
    assert table.status == [["ok", "diverged"]]
    assert table.n_diverged == [[0, 2]]
    ranges = robustness(choose_values(records, "best", extremes=known)).ranges["sgd"]
    assert (ranges.eta_low, ranges.eta_high, ranges.best_value) == (0.1, 0.1, 1.0)


def test_best_follows_the_metric_s_direction_and_curve():
    records = [
        rec("a", "sgd", 0.1, 0.5, metrics={"val_accuracy": 0.80, "val_loss": 0.7}),
        rec("b", "sgd", 0.1, 0.4, seed=1, metrics={"val_accuracy": 0.85, "val_loss": 0.6}),
    ]
    known = {
        "a": {"val_accuracy": CurveExtremes(0.1, 0.90), "val_loss": CurveExtremes(0.5, 2.0)},
        "b": {"val_accuracy": CurveExtremes(0.1, 0.85)},
    }
    best = choose_values(records, "best", "val_accuracy", "maximize", known)
    assert [r.metrics["val_accuracy"] for r in best] == [0.90, 0.85]
    assert [r.final_objective for r in best] == [0.5, 0.4]  # other metrics untouched
    assert heatmap(best, "val_accuracy", "maximize").values == [[pytest.approx(0.875)]]
    loss = choose_values(records, "best", "val_loss", "minimize", known)
    assert [r.metrics["val_loss"] for r in loss] == [0.5, 0.6]
    with pytest.raises(ValueError, match="final result only"):
        choose_values(records, "best", "objective_median", "minimize", known)
    with pytest.raises(ValueError, match="value must be one of"):
        choose_values(records, "peak")


def test_best_is_never_worse_than_final_in_any_analysis():
    records = [
        rec(f"{o}{eta}{s}", o, eta, v, seed=s)
        for o, rows in {"sgd": [3.0, 1.0, 8.0], "adam": [2.0, 0.9, 0.7]}.items()
        for eta, v in zip((0.01, 0.1, 1.0), rows, strict=True)
        for s in range(2)
    ]
    known = extremes(**{r.key: (r.final_objective * 0.5, 10.0) for r in records})
    final, best = records, choose_values(records, "best", extremes=known)
    for f_row, b_row in zip(heatmap(final).values, heatmap(best).values, strict=True):
        assert all(b <= f for f, b in zip(f_row, b_row, strict=True))
        assert b_row == pytest.approx([0.5 * f for f in f_row])
    f_tune, b_tune = tunability(final), tunability(best)
    assert b_tune.optimizers["sgd"].cpe == pytest.approx(0.5 * f_tune.optimizers["sgd"].cpe)
    curves = sensitivity(best).curves["adam"]
    assert [p.median for p in curves] == pytest.approx([1.0, 0.45, 0.35])


# --------------------------------------------------------------------------- comparing studies


def grid(prefix, values, seeds=1, **axes):
    """Records of one study: ``{optimizer: [value per η of 0.01, 0.1, 1]}``; a string is a
    status; every seed has the same outcome."""
    out = []
    for optimizer, row in values.items():
        for eta, v in zip((0.01, 0.1, 1.0), row, strict=True):
            for s in range(seeds):
                key = f"{prefix}-{optimizer}-{eta}-{s}"
                if isinstance(v, str):
                    out.append(rec(key, optimizer, eta, status=v, seed=s, **axes))
                else:
                    out.append(rec(key, optimizer, eta, v, seed=s, **axes))
    return out


@pytest.fixture
def problems():
    one = grid("s1", {"alig": [4.0, 1.0, 2.0], "sgd": [9.0, 3.0, "diverged"]})
    two = grid(
        "s2",
        {"alig": [0.5, 0.4, "diverged"], "sgd": ["diverged"] * 3, "adam": [0.2, 0.8, 50.0]},
    )
    return [
        Problem("s1", "first", "matrix-factorisation", one),
        Problem("s2", "second", "digits", two),
    ]


def test_compare_lists_each_optimizer_per_study_as_robustness_answers(problems):
    result = compare(problems)
    assert [h.id for h in result.studies] == ["s1", "s2"]
    assert list(result.optimizers) == ["alig", "sgd", "adam"]
    assert result.optimizers["adam"]["s1"] is None  # s1 did not run adam
    for problem in problems:
        ranges = robustness(problem.records).ranges
        tuned = tunability(problem.records, diverged="worst")
        for name, entry in ranges.items():
            got = result.optimizers[name][problem.id]
            assert (got.eta_low, got.eta_high, got.decades, got.n_good) == (
                entry.eta_low, entry.eta_high, entry.decades, entry.n_good,
            )  # fmt: skip
            if entry.best_value is not None:
                assert (got.best_value, got.best_eta) == (entry.best_value, entry.best_eta)
            assert got.cpe == tuned.optimizers[name].cpe
    s1 = result.optimizers["sgd"]["s1"]
    # sgd's best 3 is within 10× of alig's 1: range 0.01–0.1 (9 passes the cutoff 10 too)
    assert (s1.eta_low, s1.eta_high, s1.decades, s1.best_value, s1.best_eta) == (
        0.01, 0.1, 1.0, 3.0, 0.1,
    )  # fmt: skip
    assert result.optimizers["sgd"]["s2"].best_value is None  # every cell diverged


def test_compare_gives_the_best_value_that_robustness_hides_without_a_good_point():
    records = grid("s", {"a": [1.0, 2.0, 3.0], "b": [50.0, 20.0, 40.0]})
    assert robustness(records).ranges["b"].best_value is None  # 20 > 10 × 1: not good
    result = compare([Problem("s", "s", "digits", records)])
    entry = result.optimizers["b"]["s"]
    assert (entry.n_good, entry.best_value, entry.best_eta) == (0, 20.0, 0.1)
    assert result.profile.ratios["b"] == [20.0]


def test_the_profile_of_a_comparison_is_over_the_studies(problems):
    profile = compare(problems).profile
    assert profile.problems == ["s1", "s2"]
    assert profile.costs == {"alig": [1.0, 0.4], "sgd": [3.0, None], "adam": [None, 0.2]}
    assert profile.ratios == {
        "alig": [1.0, 2.0], "sgd": [3.0, math.inf], "adam": [math.inf, 1.0],
    }  # fmt: skip
    assert [profile.rho[n][0] for n in ("alig", "sgd", "adam")] == [0.5, 0.0, 0.5]
    assert [profile.rho[n][-1] for n in ("alig", "sgd", "adam")] == [1.0, 0.5, 0.5]
    data = json.loads(json.dumps(compare(problems).to_dict(), allow_nan=False))
    assert data["optimizers"]["adam"]["s1"] is None
    assert data["profile"]["ratios"]["sgd"] == [3.0, None]


def test_ties_between_studies_and_optimizers(problems):
    records = grid("t", {"a": [2.0, 2.0, 5.0], "b": [7.0, 2.0, 2.0]})
    profile = compare([Problem("t", "t", "digits", records)]).profile
    assert profile.ratios == {"a": [1.0], "b": [1.0]}
    entry = compare([Problem("t", "t", "digits", records)]).optimizers["a"]["t"]
    assert entry.best_eta == 0.01  # the lowest η among ties


def test_a_cell_with_a_diverged_seed_is_not_a_cost_by_default():
    records = [
        rec("a0", "a", 0.1, 1.0), rec("a1", "a", 0.1, status="diverged", seed=1),
        rec("b0", "b", 0.1, 2.0), rec("b1", "b", 0.1, 2.0, seed=1),
    ]  # fmt: skip
    strict = compare([Problem("s", "s", "digits", records)])
    assert strict.profile.costs == {"a": [None], "b": [2.0]}
    lenient = compare([Problem("s", "s", "digits", records)], min_finite_fraction=0.5)
    assert lenient.profile.costs == {"a": [1.0], "b": [2.0]}


def test_compare_refusals_name_the_study(problems):
    with pytest.raises(ValueError, match="at least one study"):
        compare([])
    with pytest.raises(ValueError, match="s1 is named more than once"):
        compare([problems[0], problems[0]])
    maximised = Problem("acc", "acc", "digits", problems[0].records, direction="maximize")
    with pytest.raises(ValueError, match="maximised in study acc"):
        compare([problems[0], maximised])
    sliced = [*grid("b", {"a": [1.0, 2.0, 3.0]}), *grid("c", {"a": [1.0, 2.0, 3.0]}, radius=1.0)]
    with pytest.raises(ValueError, match=r"study many: .*choose a value for each"):
        compare([Problem("many", "many", "digits", sliced)])
    chosen = compare([Problem("many", "many", "digits", sliced, slice={"radius": 1.0})])
    assert chosen.studies[0].slice["radius"] == 1.0
    zero = grid("z", {"a": [0.0, 1.0, 2.0], "b": [1.0, 1.0, 1.0]})
    with pytest.raises(ValueError, match="study z: the best value of a is 0 <= 0"):
        compare([Problem("z", "z", "digits", zero)])
    with pytest.raises(ValueError, match="tau_max"):
        compare(problems, tau_max=1.0)
