"""The reproduction report on synthetic records: each claim kind passes and fails as stated,
per-seed counts, "not enough budget", and a study's preset found by its tag."""

import pytest

from studies.catalog.matrix_data import training_floors
from studies.presets import load_preset
from studies.reproduction import Claim, preset_claims, reproduction_report, study_reproduction
from studies.trial import TrialRecord

FLOORS = {"rank_floors": {"1": 0.2, "4": 0.01}}


def rec(optimizer, eta, value, seed=0, status="completed", **extra):
    return TrialRecord(
        key=f"{optimizer}-{eta}-{seed}-{extra}", optimizer=optimizer, eta=eta, batch_size=16,
        seed=seed, status=status, final_objective=value if status == "completed" else None,
        extra_axes=extra,
    )  # fmt: skip


def claim(kind, optimizer="alig", **fields):
    return Claim(id=kind, source="paper", statement="s", kind=kind, optimizer=optimizer, **fields)


def report(claims, records, study_budget=100, paper_budget=100, facts=FLOORS):
    return reproduction_report(
        "p", claims, records, study_budget=study_budget, paper_budget=paper_budget, facts=facts
    ).claims


def dnc_records(alig_values, sgd_values, seeds=(0, 1, 2)):
    etas_alig = [1e2, 1e3, 1e4, 1e5, 1e6]
    etas_sgd = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    out = []
    for seed in seeds:
        out += [rec("alig", e, v, seed) for e, v in zip(etas_alig, alig_values, strict=True)]
        out += [rec("sgd", e, v, seed) for e, v in zip(etas_sgd, sgd_values, strict=True)]
    return out


INTERVAL = claim("good_over_interval", params={"eta_low": 0.1, "eta_high": 1e6})
BEST = claim("best_at_most", params={"value": 1e-7})
SGD_NARROW = claim("good_decades_at_most", "sgd", params={"decades": 2})


def test_the_dnc_claims_pass_on_records_that_show_them():
    records = dnc_records([5e-8, 4e-8, 6e-8, 4e-8, 5e-8], [1.0, 1e-7, 2e-7, 1.0, 1.0])
    results = {r.id: r for r in report([INTERVAL, BEST, SGD_NARROW], records)}
    assert results["good_over_interval"].status == "pass"
    assert results["good_over_interval"].measured["good_points"] == "5/5"
    assert (results["best_at_most"].claimed, results["best_at_most"].measured) == (1e-7, 4e-8)
    assert results["best_at_most"].status == "pass"
    assert results["good_decades_at_most"].measured == pytest.approx(1.0)  # 1e-2 … 1e-1
    assert results["good_decades_at_most"].status == "pass"
    assert all((r.seeds_holding, r.seeds_total) == (3, 3) for r in results.values())


def test_the_dnc_claims_fail_on_records_that_contradict_them():
    records = dnc_records([5e-8, 4e-8, 1e-3, 4e-8, 5e-8], [1e-7] * 5)
    results = {r.id: r for r in report([INTERVAL, BEST, SGD_NARROW], records)}
    assert results["good_over_interval"].status == "fail"
    assert results["good_over_interval"].measured["not_good"] == [1e4]
    assert results["good_decades_at_most"].status == "fail"  # SGD good over 4 decades


def test_a_diverged_seed_breaks_a_claim_and_the_seed_count_says_where_it_holds():
    records = dnc_records([5e-8] * 5, [1.0] * 5)
    records = [r for r in records if not (r.eta == 1e4 and r.seed == 2)]
    records.append(rec("alig", 1e4, None, seed=2, status="diverged"))
    (result,) = report([INTERVAL], records)
    assert result.status == "fail"  # the cell with a diverged seed is not good
    assert (result.seeds_holding, result.seeds_total) == (2, 3)


def test_floor_and_below_others_claims_on_a_rank_slice():
    floor = claim("best_within_floor", "aalig", slice={"rank": 1},
                  params={"fact": "rank_floors", "key": "1", "within": 0.1})  # fmt: skip
    below = claim("best_below_others", "aalig", slice={"rank": 1},
                  params={"others": ["alig", "sps"]})  # fmt: skip
    records = [
        rec("aalig", 0.1, 0.21, rank=1), rec("aalig", 1.0, 0.5, rank=1),
        rec("alig", 0.1, 0.3, rank=1), rec("sps", 0.1, 0.25, rank=1),
        rec("aalig", 0.1, 0.011, rank=4), rec("alig", 0.1, 0.001, rank=4),
    ]  # fmt: skip
    results = {r.id: r for r in report([floor, below], records)}
    assert results["best_within_floor"].claimed == pytest.approx(0.22)
    assert (results["best_within_floor"].measured, results["best_within_floor"].status) == (
        0.21, "pass",
    )  # fmt: skip
    assert results["best_below_others"].status == "pass"
    assert results["best_below_others"].measured == {"aalig": 0.21, "alig": 0.3, "sps": 0.25}
    worse = [r if r.optimizer != "aalig" else rec("aalig", r.eta, 0.4, rank=1)
             for r in records if r.extra_axes == {"rank": 1}]  # fmt: skip
    results = {r.id: r for r in report([floor, below], worse)}
    assert results["best_within_floor"].status == "fail"
    assert results["best_below_others"].status == "fail"


def test_a_sensitivity_claim_needs_trials_that_ended():
    """No good η at all passes "good over at most d decades" only when the optimizer has
    trials that ended: a study not started, or whose row only failed, measures nothing."""
    pending = [rec(o, e, None, seed, status="pending") for o in ("sgd", "alig")
               for e in (0.01, 0.1) for seed in (0, 1)]  # fmt: skip
    (result,) = report([SGD_NARROW], pending)
    assert (result.status, result.measured, result.seeds_holding) == ("no data", None, 0)
    failed_sgd = [rec("alig", 0.1, 1e-7), rec("sgd", 0.1, None, status="failed")]
    (result,) = report([SGD_NARROW], failed_sgd)
    assert (result.status, result.measured) == ("no data", None)
    # one SGD seed still running (or failed) where the other is as good as the best: it
    # could still be good
    for status in ("running", "failed"):
        partial = [rec("alig", 0.1, 1e-7), rec("sgd", 0.1, 1e-7),
                   rec("sgd", 0.1, None, seed=1, status=status)]  # fmt: skip
        (result,) = report([SGD_NARROW], partial)
        assert (result.status, result.measured) == ("no data", None), status
    # SGD ended, every seed diverged or far from the best: no good η, the claim holds
    ended = [rec("alig", 0.1, 1e-7), rec("sgd", 0.1, None, status="diverged"),
             rec("sgd", 1.0, 1.0)]  # fmt: skip
    (result,) = report([SGD_NARROW], ended)
    assert (result.status, result.measured) == ("pass", 0.0)


def test_below_others_is_not_judged_without_a_rival_and_beats_a_diverged_one():
    below = claim("best_below_others", "aalig", params={"others": ["alig", "sps"]})
    base = [rec("aalig", 0.1, 0.2), rec("alig", 0.1, 0.3)]
    for sps in ([], [rec("sps", 0.1, None, status="pending")],
                [rec("sps", 0.1, None, status="failed")]):  # fmt: skip
        (result,) = report([below], base + sps)
        assert (result.status, result.measured) == ("no data", None), sps
    for status in ("running", "failed"):  # an sps cell without every seed: not yet beaten
        partial = [*base, rec("sps", 0.1, 0.01), rec("sps", 0.1, None, seed=1, status=status)]
        (result,) = report([below], partial)
        assert (result.status, result.measured) == ("no data", None), status
    (result,) = report([below], [*base, rec("sps", 0.1, None, status="diverged")])
    assert result.status == "pass"
    assert result.measured == {"aalig": 0.2, "alig": 0.3, "sps": "no cell with every seed finite"}
    assert result.claimed == "below alig, sps"


def test_accuracy_claims_and_missing_data():
    accuracy = claim("best_at_least", "sgd", metric="val_accuracy", direction="maximize",
                     params={"value": 0.95})  # fmt: skip
    records = [
        TrialRecord("a", "sgd", 0.1, 128, status="completed", final_objective=0.1,
                    metrics={"val_accuracy": 0.953}),
        TrialRecord("b", "sgd", 1.0, 128, status="completed", final_objective=0.2,
                    metrics={"val_accuracy": 0.91}),
    ]  # fmt: skip
    (result,) = report([accuracy], records)
    assert (result.measured, result.status) == (0.953, "pass")
    (missing,) = report([claim("best_at_most", "adam", params={"value": 1.0})], records)
    assert missing.status == "no data"


def test_a_reduced_budget_is_not_enough_budget_but_still_measured():
    records = dnc_records([5e-8] * 5, [1.0] * 5)
    (result,) = report([BEST], records, study_budget=2_000, paper_budget=10_000)
    assert (result.status, result.measured) == ("not enough budget", 5e-8)


def test_a_study_finds_its_presets_claims_by_its_tag():
    spec = load_preset("matrix-factorisation-aalig", {"budget": {"epochs": 2}})
    assert "preset:matrix-factorisation-aalig" in spec["tags"]
    result = study_reproduction(spec["tags"], spec["task"], spec, [])
    assert result.preset == "matrix-factorisation-aalig"
    assert result.budget == {"study": 2, "paper": 50}
    assert [c.id for c in result.claims] == [c.id for c in preset_claims(result.preset)]
    assert {c.status for c in result.claims} == {"not enough budget"}
    full = study_reproduction(spec["tags"], spec["task"], {**spec, "budget": {"epochs": 50}}, [])
    assert {c.status for c in full.claims} == {"no data"}
    assert study_reproduction(["mine"], "digits", {"budget": {"epochs": 3}}, []).claims == []


def test_every_shipped_claim_is_checkable_and_the_floors_come_from_the_task():
    for name in ("dnc-heatmap", "matrix-factorisation-aalig"):
        assert preset_claims(name), name
    mf = preset_claims("matrix-factorisation-aalig")
    assert {c.params.get("key") for c in mf if c.kind == "best_within_floor"} == {"1", "4"}
    assert set(training_floors()) >= {"1", "4"}
