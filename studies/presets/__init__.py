"""Paper presets: study specs shipped as JSON files, loadable by name with overrides.

- ``smoke``: a tiny matrix-factorisation grid (3 optimizers × 5 η, 2 epochs) that finishes in
  well under a minute on two CPU cores;
- ``dnc-heatmap``: the ALI-G paper's Figure 3 grid on DNC repeat-copy (η = 1e-4 … 1e4 for the
  baselines, ALI-G up to 1e6 and ∞ with eps = 0 as in the authors' code, L4 fractions 0.05 … 0.95,
  10,000 steps);
- ``matrix-factorisation-aalig``: the AALIG paper's §5.1 (ranks 1, 4, 10 and the true model;
  AALIG vs ALI-G, SPS, Adam, SGD; 3 seeds);
- ``cifar10-wrn``: the ALI-G paper's CIFAR-10 setting (WRN-40-4, batch 256, r = 100, μ = 0.9,
  200 epochs; η around the published 1 for ALI-G and 0.1 for SGD).
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

    The result is not validated here: pass it to :func:`studies.spec.parse_spec`.
    """
    if name not in preset_names():
        raise SpecError(
            f"preset: unknown preset {name!r}; valid presets: {', '.join(preset_names())}"
        )
    text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return _merge(json.loads(text), overrides or {})


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
