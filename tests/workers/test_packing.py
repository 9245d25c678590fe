"""Planning packs: who may share one, and how many packs a study gets."""

from studies.trial import Trial, TrialConfig
from workers.packing import pack_key, plan_packs


def _trial(optimizer="sgd", eta=0.1, seed=0, batch_size=16, **extra) -> Trial:
    config = TrialConfig(
        task="dnc-copy", optimizer=optimizer, eta=eta, batch_size=batch_size, seed=seed,
        budget=10, **extra,
    )  # fmt: skip
    return Trial.of(optimizer, config, {}, key=f"{optimizer}-{eta}-{seed}-{batch_size}-{extra}")


def test_members_differ_only_in_what_a_pack_trains_per_member():
    a = _trial("sgd", 0.1, seed=0)
    assert pack_key(a) == pack_key(_trial("alig", None, seed=2, radius=3.0))
    assert pack_key(a) != pack_key(_trial(batch_size=32))
    assert pack_key(a) != pack_key(_trial(divergence_factor=10.0))


def test_packs_fill_every_slot_and_respect_the_size_limit():
    trials = [_trial("sgd", 10.0**-e, seed=s) for e in range(12) for s in range(3)] + [
        _trial("alig", 10.0**e, seed=s) for e in range(6) for s in range(3)
    ]
    packs = plan_packs(trials, slots=2, max_pack_size=128)
    assert len(packs) == 2
    assert sorted(len(p) for p in packs) == [27, 27]
    assert sorted(t.key for p in packs for t in p) == sorted(t.key for t in trials)
    # round-robin: each pack holds both optimizers
    assert all({t.config.optimizer for t in p} == {"sgd", "alig"} for p in packs)
    assert [len(p) for p in plan_packs(trials, slots=1, max_pack_size=10)] == [9] * 6  # balanced
    assert len(plan_packs(trials, slots=100, max_pack_size=128)) == len(trials)


def test_packs_fill_whole_rounds_of_the_cluster():
    trials = [_trial("sgd", 10.0**-e, seed=s) for e in range(35) for s in range(9)]  # 315
    sizes = [len(p) for p in plan_packs(trials, slots=2, max_pack_size=128)]
    assert len(sizes) == 4 and max(sizes) - min(sizes) <= 1 and sum(sizes) == 315
    # a whole number of rounds already: no further split
    assert [len(p) for p in plan_packs(trials[:256], slots=2, max_pack_size=128)] == [128, 128]
    assert sorted(len(p) for p in plan_packs(trials[:3], slots=2, max_pack_size=128)) == [1, 2]
    # too few trials to fill the slots: one pack per trial, never an empty pack
    assert [len(p) for p in plan_packs(trials[:3], slots=4, max_pack_size=128)] == [1, 1, 1]


def test_what_cannot_pack_runs_alone():
    trials = [_trial("sgd", 0.1), _trial("sgd", 0.2), _trial("sgd", 0.3, amp=True)]
    packs = plan_packs(trials, slots=1, max_pack_size=8)
    assert sorted(len(p) for p in packs) == [1, 2]
