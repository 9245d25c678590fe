"""Data sets by name, never by path: the only way a task reaches files (docs/datasets.md).

A study spec may name a data set, never a location. Workers read data only under the operator's
data-set directory, ``Settings().resolved_datasets_dir`` (env ``SENSITIVITY_DATASETS_DIR``,
default ``<data_dir>/datasets``), read from the settings at each call so a test or a restarted
worker sees the current value.

* :func:`resolve_file` turns a name from a spec into a file inside that directory. The name must
  have the catalog's shape (:data:`studies.catalog.tasks.DATASET_NAME`: a plain file name, checked
  again here because this is the boundary that matters), and its ``Path.resolve()``-d location
  (symlinks followed) must still lie inside the directory.
* :func:`verify_manifest` checks a file against the operator's ``MANIFEST.sha256`` (the format
  of ``sha256sum``) when that file exists: a file it does not list, or lists with another hash,
  is refused.
* :func:`image_root` is the fixed folder of a torchvision data set (``<dir>/cifar10`` …), and
  :func:`require_downloads_allowed` refuses ``download: true`` unless the operator set
  ``SENSITIVITY_ALLOW_DOWNLOADS``.

Errors are :class:`~workers.exceptions.TaskDataError` (or ``TaskConfigError`` for a refused
download) whose messages start with the option, quote only the name the spec gave and paths
relative to the data-set directory, and never quote a file's content: they become a trial's
failure reason, which every API client can read.
"""

import hashlib
import re
from pathlib import Path

from studies.catalog.tasks import DATASET_NAME, DATASET_NAME_RULE
from studies.settings import Settings
from workers.exceptions import TaskConfigError, TaskDataError

MANIFEST = "MANIFEST.sha256"
DIRECTORY = "the operator's data-set directory"  # how messages name it (never its path)
# one ``sha256sum`` line: the hex digest, a space, " " (text) or "*" (binary mode), the name
_MANIFEST_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")
_CHUNK = 1 << 20


def datasets_dir() -> Path:
    """The absolute data-set directory of the current settings (it need not exist)."""
    return Settings().resolved_datasets_dir


def resolve_file(name: str, option: str = "dataset") -> Path | None:
    """The resolved path of the file ``name`` inside the data-set directory, ``None`` when there
    is no regular file of that name.

    Raises :class:`TaskDataError` for a name that is not a plain file name, or one that resolves
    (through a symlink) outside the directory. Nothing outside is opened, and the message is the
    same whether or not a symlink's target exists, so it tells nothing about the outside.
    """
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name):
        raise TaskDataError(f"{option}: {DATASET_NAME_RULE}")
    root = datasets_dir()
    try:
        path = (root / name).resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
        raise TaskDataError(f"{option}: {name!r} cannot be resolved in {DIRECTORY}") from None
    if not path.is_relative_to(root):
        raise TaskDataError(f"{option}: {name!r} points outside {DIRECTORY}; refused")
    return path if path.is_file() else None


def sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(option: str = "dataset") -> dict[str, str] | None:
    """``{file name: lower-case sha256}`` from the operator's manifest, ``None`` without one.

    Blank lines and ``#`` comments are skipped; any other line that is not ``<sha256>  <name>``
    makes the manifest unusable (a :class:`TaskDataError` naming the line number only).
    """
    path = resolve_file(MANIFEST, option)
    if path is None:
        return None
    hashes: dict[str, str] = {}
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _MANIFEST_LINE.fullmatch(line)
        if match is None:
            raise TaskDataError(
                f"{option}: line {number} of the operator's {MANIFEST} is not "
                "'<sha256>  <file name>'"
            )
        hashes[match.group(2)] = match.group(1).lower()
    return hashes


def verify_manifest(name: str, path: Path, option: str = "dataset") -> None:
    """Refuse the file ``name`` (resolved to ``path``) unless the manifest, when there is one,
    lists it with its sha256; without a manifest every file is accepted."""
    hashes = read_manifest(option)
    if hashes is None:
        return
    if name not in hashes:
        raise TaskDataError(f"{option}: {name!r} is not listed in the operator's {MANIFEST}")
    if sha256(path) != hashes[name]:
        raise TaskDataError(
            f"{option}: {name!r} does not match its sha256 in the operator's {MANIFEST} "
            "(corrupted or replaced); refused"
        )


def image_root(folder: str) -> Path:
    """``<datasets_dir>/<folder>``: where torchvision reads (and may download) one image set.

    ``folder`` is fixed by the task (``cifar10``, ``cifar100``, ``svhn``), never taken from a
    spec; the operator may make it a symlink (torchvision's md5 checks guard the content).
    """
    return datasets_dir() / folder


def require_downloads_allowed(option: str = "download") -> None:
    """Raise :class:`TaskConfigError` unless the operator allows downloads into the directory."""
    if not Settings().allow_downloads:
        raise TaskConfigError(
            f"{option}: downloads are disabled on this service (the operator enables them with "
            f"SENSITIVITY_ALLOW_DOWNLOADS=true); ask the operator to put the data set in "
            f"{DIRECTORY}, and leave {option} false"
        )
