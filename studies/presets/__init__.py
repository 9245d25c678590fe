"""Paper presets: study specs shipped as JSON files, loadable by name with overrides.

- ``smoke``: a tiny matrix-factorisation grid (3 optimizers × 5 η, 2 epochs) that finishes in
  well under a minute on two CPU cores;
- ``dnc-heatmap``: the ALI-G paper's Figure 3 on DNC repeat-copy, with the grid and settings of
  the authors' script (ali-g ``experiments/reproduce/dnc.py`` with ``lberrada/dnc@8080dd4``; tag
  ``grid:authors-script``), since Figure 3 shows that script's runs; the paper's text (baselines
  and ALI-G over 1e-4 … 1e4) matches an older version of it. Rows: sgd, "sgd-momentum" (heavy-ball
  0.9: the script's "nag" is ``tf.train.MomentumOptimizer(lr, 0.9)``, Nesterov off), adam,
  "adagrad" and "rmsprop" as TensorFlow 1 ran them (``adagrad-tf``, ``rmsprop-tf``), each at
  η ∈ {1, 3} × 10^k from 1e-4 to 30 (12 values); L4Mom and L4Adam at α = 0.05, 0.10, …, 0.95;
  ALI-G with eps = 0 at η = 1e2 … 1e7 and ∞. Batch 16, 10,000 steps, gradients clipped at norm
  50 for all but ALI-G and L4 (the task's default). Seeds 0, 1, 2 (the paper ran one unseeded
  run per cell; a cell is the median, since the band edges are seed-sensitive): 315 trials;
- ``matrix-factorisation-aalig``: the AALIG paper's §5.1 on the benchmark code's data (ranks 1,
  4, 10 and the true model; AALIG vs ALI-G, SPS, Adam, SGD; batch 100, 50 epochs, 3 seeds).
  The paper's baselines are SLS, PAL, Adam and coin betting, of which the registry has Adam:
  its "below the others" claims name Adam only; ALI-G, SPS and SGD are rows of this preset;
- ``cifar10-wrn``: the ALI-G paper's CIFAR-10 setting (WRN-40-4; SGD-Nesterov 0.9 with weight
  decay 5e-4 and the step schedule ×0.2 at epochs 60/120/160; ALI-G with r = 100, μ = 0.9;
  batch sizes 128 (SGD's) and 256 (ALI-G's) as one shared axis; 200 epochs). The radius is an
  axis of the whole study, so SGD is held in the r = 100 ball too, which the paper's SGD is not
  (docs/algorithms.md, departures);
- ``svhn-wrn``: the ALI-G paper's SVHN setting (WRN-16-4, dropout 0.4, 160 epochs, ALI-G with
  r = 50; the SGD schedule is the WRN paper's, not confirmed in the ALI-G sources).

A paper preset also carries ``claims``: the paper's published results as data, checked on a
finished study by :mod:`studies.reproduction`.
"""

import copy
import json
from importlib import resources
from typing import Any

from studies.exceptions import SpecError


def preset_names() -> list[str]:
    """The names of the shipped presets, sorted."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name.removesuffix(".json") for f in files if f.name.endswith(".json"))


def load_preset(name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The preset's spec as a dict, with ``overrides`` merged in (nested dicts merge by key).

    The result is not validated here: pass it to :func:`studies.spec.parse_spec`. The preset's
    ``claims`` (its paper's published results, :mod:`studies.reproduction`) are not part of the
    spec and are left out; the spec is tagged ``preset:<name>`` so a study knows its preset.
    """
    document = preset_document(name)
    document.pop("claims", None)
    merged = _merge(document, overrides or {})
    tag = f"{PRESET_TAG}{name}"
    tags = merged.get("tags")
    if isinstance(tags, list) and tag not in tags:
        merged["tags"] = [*tags, tag]
    elif tags is None:
        merged["tags"] = [tag]
    return merged


PRESET_TAG = "preset:"  # the tag that names the preset a study was submitted from


def preset_document(name: str) -> dict[str, Any]:
    """The preset's JSON as shipped (spec fields and claims)."""
    if name not in preset_names():
        raise SpecError(
            f"preset: unknown preset {name!r}; valid presets: {', '.join(preset_names())}"
        )
    text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def preset_of(tags: list[str]) -> str | None:
    """The preset a study was submitted from, by its ``preset:<name>`` tag (None if none)."""
    names = [tag.removeprefix(PRESET_TAG) for tag in tags if tag.startswith(PRESET_TAG)]
    return names[0] if names and names[0] in preset_names() else None


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
