"""Grouping a study's unfinished trials into packs (docs/architecture.md, "Packed trials").

Trials may share a pack when they differ only in what a pack trains per member: η, radius,
weight decay, the optimizer and its options, and the seed (:func:`pack_key`), and when their
optimizer has a packed form and their task is packable
(:func:`workers.packed_trainer.packable_trial`). Every other trial runs alone.

:func:`plan_packs` splits each group into packs of at most ``max_pack_size`` members and,
when there are fewer packs than the cluster has slots for trials, splits them further, so that
every slot has work (77 trials on 2 slots: 2 packs, not 77 trials behind each other), and
into a whole number of rounds of the cluster (315 trials, at most 128 a pack, on 2 slots: 4 packs
of about 79, not 3 of 105, the third of which would run alone). Members
are dealt round-robin, so each pack gets a mix of optimizers and η values and the packs end at
about the same time however many of their members diverge early.
"""

import json
import math

from studies.trial import Trial
from workers.packed_trainer import packable_trial

#: What members of a pack may differ in (everything else of their config is shared).
MEMBER_FIELDS = frozenset(
    {"optimizer", "eta", "optimizer_options", "radius", "weight_decay", "seed"}
)


def pack_key(trial: Trial) -> str:
    """The part of ``trial``'s config that its pack's members share, as a canonical string."""
    shared = trial.config.model_dump(mode="json", exclude=set(MEMBER_FIELDS))
    return json.dumps(shared, sort_keys=True)


def plan_packs(trials: list[Trial], *, slots: int, max_pack_size: int) -> list[list[Trial]]:
    """``trials`` as a list of packs (a pack of one runs unpacked), in a stable order."""
    groups: dict[str, list[Trial]] = {}
    alone: list[list[Trial]] = []
    for trial in trials:
        if packable_trial(trial.config):
            groups.setdefault(pack_key(trial), []).append(trial)
        else:
            alone.append([trial])
    counts = {key: math.ceil(len(members) / max_pack_size) for key, members in groups.items()}
    # More packs while a slot would stay idle, splitting the group with the largest packs; and
    # while the packs do not fill whole rounds of the cluster: 3 packs of 105 on 2 slots take
    # two rounds of 105 members, 4 packs of 79 two rounds of 79.
    while groups and _idle_slots(sum(counts.values()) + len(alone), slots):
        key = max(groups, key=lambda k: len(groups[k]) / counts[k])
        if len(groups[key]) <= counts[key]:  # every pack of the largest group has one member
            break
        counts[key] += 1
    packs: list[list[Trial]] = []
    for key, members in groups.items():
        n = counts[key]
        packs.extend(members[i::n] for i in range(n))
    return packs + alone


def _idle_slots(packs: int, slots: int) -> bool:
    """Whether ``packs`` packs leave a slot idle in some round of a ``slots``-slot cluster."""
    return packs < slots or packs % slots != 0
