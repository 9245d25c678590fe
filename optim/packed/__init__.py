r"""Packed optimizers: one optimizer step for many trials trained as one vectorised model.

``packed_form(name, options)`` names the packed class that reproduces the per-trial optimizer
``name`` with ``options`` (``None``: it has none, and its trials run unpacked);
``build_packed(name, etas, options, like=...)`` builds it for one η and one option set per
member. Members of one packed optimizer share its form (``rmsprop`` with ``centered`` true and
false are two forms); a pack holding several optimizers gives each form a contiguous range of
members. See :mod:`optim.packed.base` for the contract and docs/algorithms.md, "Packed trials".
"""

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from optim.packed.base import PackedOptimizer, member_norms, per_member, project_members
from optim.packed.baselines import (
    PackedAdagrad,
    PackedAdam,
    PackedAdamW,
    PackedAMSGrad,
    PackedCenteredRMSprop,
    PackedRMSprop,
    PackedSGD,
    PackedSGDNesterov,
    PackedTFAdagrad,
    PackedTFRMSprop,
)
from optim.packed.polyak import PackedAliG, PackedL4, PackedL4Adam, PackedSPS
from optim.registry import validate_eta, validate_options

__all__ = [
    "PACKED",
    "PackedOptimizer",
    "build_packed",
    "member_norms",
    "packed_form",
    "per_member",
    "project_members",
]

#: Packed form name -> class; the form of an optimizer is its registry name, except where an
#: option that is not a number changes the update rule (``rmsprop``'s ``centered``).
PACKED: Mapping[str, type[PackedOptimizer]] = {
    "alig": PackedAliG,
    "sps": PackedSPS,
    "l4mom": PackedL4,
    "l4adam": PackedL4Adam,
    "sgd": PackedSGD,
    "sgd-nesterov": PackedSGDNesterov,
    "adam": PackedAdam,
    "adamw": PackedAdamW,
    "amsgrad": PackedAMSGrad,
    "adagrad": PackedAdagrad,
    "adagrad-tf": PackedTFAdagrad,
    "rmsprop": PackedRMSprop,
    "rmsprop-centered": PackedCenteredRMSprop,
    "rmsprop-tf": PackedTFRMSprop,
}


def packed_form(name: str, options: Mapping[str, Any]) -> str | None:
    """The packed form of optimizer ``name`` with ``options``, or ``None`` when it has none."""
    if name == "rmsprop" and validate_options(name, options).get("centered"):
        return "rmsprop-centered"
    return name if name in PACKED else None


def _numeric_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved options with pairs split into numbers (Adam's ``betas``)."""
    resolved = validate_options(name, options)
    if "betas" in resolved:
        resolved["beta1"], resolved["beta2"] = resolved.pop("betas")
    return resolved


def build_packed(
    name: str,
    etas: Sequence[float | None],
    options: Sequence[Mapping[str, Any]],
    *,
    like: torch.Tensor,
) -> PackedOptimizer:
    """The packed optimizer for members that all use optimizer ``name`` (one η and one option
    set each, checked as the per-trial registry checks them) on tensors like ``like``."""
    forms = {packed_form(name, o) for o in options}
    if len(forms) != 1 or None in forms:
        raise ValueError(f"{name}: these members do not share one packed form ({forms})")
    (form,) = forms
    checked = [validate_eta(name, eta) for eta in etas]
    return PACKED[form](checked, [_numeric_options(name, o) for o in options], like=like)
