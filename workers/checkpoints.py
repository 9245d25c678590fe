"""A trial's training state on disk: what a checkpoint holds, how it is written, read and found.

A checkpoint is one directory (Tune copies it into the trial's directory under the study's
experiment directory, ``<storage>/study-<id>/<trial>/checkpoint_<n>``) with two files:

- ``state.pt``: :meth:`workers.trainer.TrainingRun.state_dict` — the model's and optimizer's
  ``state_dict`` (AALIG's AOVs and epoch buffers, L4's step counter and minimum-loss estimate
  and every torch optimizer's buffers live there), the LR scheduler's and AMP scaler's state, the
  counters, the divergence monitor and step statistics, the loop's running objective, the
  reports so far (the curve) and every random-number state the run draws from (:func:`rng_state`);
- ``trial.json``: the trial's key and progress (``epoch``, ``step``, ``reports``) and the size
  of ``state.pt``, so a driver finds the latest complete checkpoint of each trial without
  unpickling anything (:func:`latest_checkpoints`): a checkpoint that Tune was still copying
  when its worker died with the driver has a missing or short file and is passed over.

A pack (:mod:`workers.packed_trainer`) checkpoints **per member**: its checkpoint directory
holds ``members/<trial key>/`` with the same two files for each member still training, whose
state is :meth:`workers.packed_trainer.PackedRun.member_state` (``"kind": "pack-member"`` in
both files). A member's checkpoint does not depend on the pack it was taken in, so a driver that
re-plans the unfinished trials into other packs still continues each from its own; members
continue together when their checkpoints are at the same point (``progress``), and a member's
checkpoint continues only in a pack (possibly of one), an unpacked trial's only unpacked
(:func:`read_checkpoint` refuses the other kind).

``state.pt`` is read with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists,
tuples and dicts only (plus the ``Counter`` of ``MultiStepLR``'s milestones), so a checkpoint
cannot run code when it is read. NumPy's state is kept as a plain tuple for that reason.
"""

import json
import random
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workers.exceptions import CheckpointError

STATE_FILE = "state.pt"
INFO_FILE = "trial.json"
MEMBERS_DIR = "members"  # a pack's checkpoint: one directory per member under it
FORMAT_VERSION = 1
TRIAL = "trial"  # the state of an unpacked trial (TrainingRun.state_dict)
PACK_MEMBER = "pack-member"  # the state of one member of a pack (PackedRun.member_state)
# Tune names a trial's checkpoints checkpoint_000000, checkpoint_000001, … in its directory
CHECKPOINT_GLOB = "*/checkpoint_*"
MEMBER_GLOB = f"{CHECKPOINT_GLOB}/{MEMBERS_DIR}/*"


@dataclass(frozen=True)
class CheckpointInfo:
    """Which trial a checkpoint belongs to and how far it had trained."""

    key: str
    epoch: int
    step: int
    reports: int
    path: Path
    kind: str = TRIAL  # TRIAL or PACK_MEMBER: what continues it (a trial alone, or a pack)

    @property
    def progress(self) -> tuple[int, int, int]:
        """What orders two checkpoints of one trial: the later one trained further."""
        return (self.step, self.epoch, self.reports)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random state a trial draws from: Python's, NumPy's legacy global, torch's CPU and
    CUDA generators, and the trial's own data generator (batch order, augmentation, the DNC's
    sequences)."""
    name, keys, position, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "data": generator.get_state(),
    }


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only where CUDA is present: a run
    that used CUDA must resume on CUDA, and the trainer's device check says so)."""
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["data"])


def write_checkpoint(
    directory: str | Path, key: str, state: dict[str, Any], kind: str = TRIAL
) -> None:
    """Write the training state of trial ``key`` into ``directory`` (which must exist)."""
    directory = Path(directory)
    path = directory / STATE_FILE
    torch.save({"version": FORMAT_VERSION, "kind": kind, "key": key, "state": state}, path)
    info = {
        "version": FORMAT_VERSION,
        "kind": kind,
        "key": key,
        "epoch": int(state["epochs"]),
        "step": int(state["steps"]),
        "reports": len(state["curve"]),
        "state_bytes": path.stat().st_size,
    }
    (directory / INFO_FILE).write_text(json.dumps(info), encoding="utf-8")


def member_directory(directory: str | Path, key: str) -> Path:
    """Where a pack's checkpoint ``directory`` keeps member ``key``'s state."""
    return Path(directory) / MEMBERS_DIR / key


def write_pack_checkpoint(directory: str | Path, states: dict[str, dict[str, Any]]) -> None:
    """Write every member's state (trial key → :meth:`PackedRun.member_state`) into the pack's
    checkpoint ``directory``, one member directory each."""
    for key, state in states.items():
        target = member_directory(directory, key)
        target.mkdir(parents=True)
        write_checkpoint(target, key, state, kind=PACK_MEMBER)


def read_checkpoint(directory: str | Path, key: str, kind: str = TRIAL) -> dict[str, Any]:
    """The training state written by :func:`write_checkpoint` for trial ``key``.

    Raises :class:`~workers.exceptions.CheckpointError` for a directory without a state, a
    state of another format version or kind, or the state of another trial.
    """
    path = Path(directory) / STATE_FILE
    try:
        with torch.serialization.safe_globals([Counter]):
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as error:
        message = f"checkpoint {directory}: cannot read {STATE_FILE}: {error}"
        raise CheckpointError(message) from None
    if not isinstance(saved, dict) or saved.get("version") != FORMAT_VERSION:
        version = saved.get("version") if isinstance(saved, dict) else None
        raise CheckpointError(
            f"checkpoint {directory}: format version {version!r}, this worker reads "
            f"{FORMAT_VERSION}"
        )
    if saved.get("key") != key:
        raise CheckpointError(
            f"checkpoint {directory} belongs to trial {saved.get('key')!r}, not {key!r}"
        )
    if saved.get("kind", TRIAL) != kind:
        raise CheckpointError(
            f"checkpoint {directory} holds a {saved.get('kind', TRIAL)!r} state; continuing "
            f"this run needs a {kind!r} one"
        )
    return saved["state"]


def checkpoint_info(directory: Path) -> CheckpointInfo | None:
    """The ``trial.json`` of a complete checkpoint directory; ``None`` when it has none, an
    unreadable one, or a ``state.pt`` of another size (a checkpoint Tune was still copying
    when its worker died)."""
    try:
        info = json.loads((directory / INFO_FILE).read_text(encoding="utf-8"))
        if info.get("version") != FORMAT_VERSION:
            return None
        if (directory / STATE_FILE).stat().st_size != int(info["state_bytes"]):
            return None
        return CheckpointInfo(
            str(info["key"]), int(info["epoch"]), int(info["step"]), int(info["reports"]),
            directory, str(info.get("kind", TRIAL)),
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _checkpoint_directories(experiment: Path) -> list[Path]:
    """A trial's checkpoints and the member directories of a pack's, in a stable order."""
    return sorted([*experiment.glob(CHECKPOINT_GLOB), *experiment.glob(MEMBER_GLOB)])


def all_checkpoints(experiment_dirs: Iterable[Path]) -> list[CheckpointInfo]:
    """Every readable checkpoint in Tune's experiment directories (of any earlier run): each
    unpacked trial's and each pack member's."""
    found = []
    for experiment in experiment_dirs:
        if experiment.is_dir():
            for directory in _checkpoint_directories(experiment):
                info = checkpoint_info(directory)
                if info is not None:
                    found.append(info)
    return found


def latest_checkpoint_infos(experiment_dirs: Iterable[Path]) -> dict[str, CheckpointInfo]:
    """Each trial key's most advanced checkpoint in the experiment directories."""
    latest: dict[str, CheckpointInfo] = {}
    for info in all_checkpoints(experiment_dirs):
        current = latest.get(info.key)
        if current is None or info.progress > current.progress:
            latest[info.key] = info
    return latest


def latest_checkpoints(experiment_dirs: Iterable[Path]) -> dict[str, str]:
    """Each trial key's most advanced checkpoint (as a path string) in the experiment
    directories: what a driver hands its trials so that a run interrupted with its driver
    continues where its last checkpoint left it."""
    return {key: str(info.path) for key, info in latest_checkpoint_infos(experiment_dirs).items()}


def remove_checkpoints(experiment_dirs: Iterable[Path], keys: set[str]) -> int:
    """Delete every checkpoint of the trials ``keys`` (finished: nothing will resume them);
    return how many were removed (a pack's checkpoint counts once per member, and goes when
    its last member does). Tune keeps ``num_to_keep`` per trial after it ends, which for a
    grid of 200-epoch CIFAR trials is gigabytes nobody reads."""
    removed = 0
    for experiment in experiment_dirs:
        if not experiment.is_dir():
            continue
        for directory in _checkpoint_directories(experiment):
            try:  # complete or not: a short copy of a finished trial is garbage too
                key = json.loads((directory / INFO_FILE).read_text(encoding="utf-8"))["key"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if key in keys:
                shutil.rmtree(directory, ignore_errors=True)
                removed += 1
        for members in experiment.glob(f"{CHECKPOINT_GLOB}/{MEMBERS_DIR}"):
            if not any(members.iterdir()):  # every member of that pack checkpoint is finished
                shutil.rmtree(members.parent, ignore_errors=True)
    return removed
