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

Trials that continue from checkpoints (a driver that died, a round that lost them) are grouped
by where they continue: members whose pack-member checkpoints were taken at the same point
form packs of their own (a pack of one too: its state is a pack member's), and a trial with an
unpacked trial's checkpoint runs alone, where that checkpoint continues (:func:`runs_packed`).
"""

import json
import math
from collections.abc import Mapping

from studies.trial import Trial
from workers.checkpoints import PACK_MEMBER, CheckpointInfo
from workers.packed_trainer import packable_trial

#: What members of a pack may differ in (everything else of their config is shared).
MEMBER_FIELDS = frozenset(
    {"optimizer", "eta", "optimizer_options", "radius", "weight_decay", "seed"}
)


def pack_key(trial: Trial) -> str:
    """The part of ``trial``'s config that its pack's members share, as a canonical string."""
    shared = trial.config.model_dump(mode="json", exclude=set(MEMBER_FIELDS))
    return json.dumps(shared, sort_keys=True)


def _continues_packed(trial: Trial, checkpoints: Mapping[str, CheckpointInfo]) -> bool:
    info = checkpoints.get(trial.key)
    return info is not None and info.kind == PACK_MEMBER


def runs_packed(pack: list[Trial], checkpoints: Mapping[str, CheckpointInfo]) -> bool:
    """Whether a planned pack runs as a pack: several members, or one that continues from a
    pack member's checkpoint (a pack of one otherwise runs as the plain trial)."""
    return len(pack) > 1 or _continues_packed(pack[0], checkpoints)


def plan_packs(
    trials: list[Trial],
    *,
    slots: int,
    max_pack_size: int,
    checkpoints: Mapping[str, CheckpointInfo] | None = None,
) -> list[list[Trial]]:
    """``trials`` as a list of packs, in a stable order; ``checkpoints`` (trial key → its
    latest checkpoint) groups the trials that continue by where they continue."""
    checkpoints = checkpoints or {}
    groups: dict[tuple[str, tuple[int, int, int] | None], list[Trial]] = {}
    alone: list[list[Trial]] = []
    for trial in trials:
        info = checkpoints.get(trial.key)
        if packable_trial(trial.config) and (info is None or info.kind == PACK_MEMBER):
            point = None if info is None else info.progress
            groups.setdefault((pack_key(trial), point), []).append(trial)
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
