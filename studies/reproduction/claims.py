"""A paper's claim as data, and the claims each preset ships with."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from studies.exceptions import SpecError
from studies.presets import preset_document

ClaimKind = Literal[
    "good_over_interval",  # every grid point of the optimizer in [eta_low, eta_high] is good
    "good_decades_at_most",  # the optimizer's good-η range spans at most `decades` decades
    "best_at_most",  # the optimizer's best value is at most `value`
    "best_at_least",  # the optimizer's best value is at least `value` (e.g. an accuracy)
    "best_within_floor",  # the best value is within `within` (relative) of a task fact's floor
    "best_below_others",  # the optimizer's best value is below each of `others`' best value
]


class Claim(BaseModel):
    """One published claim: where it is, what it says, and how it is checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str  # stable within the preset
    source: str  # paper, section, figure or table
    statement: str  # what the paper says, in our words, and how we read it
    kind: ClaimKind
    optimizer: str  # the heatmap row the claim is about
    metric: str = "final_objective"
    direction: Literal["minimize", "maximize"] = "minimize"
    slice: dict[str, Any] = Field(default_factory=dict)  # e.g. {"rank": 1}
    params: dict[str, Any] = Field(default_factory=dict)  # the check's numbers


def preset_claims(name: str) -> list[Claim]:
    """The claims shipped in preset ``name``'s JSON (none for a preset without a paper)."""
    raw = preset_document(name).get("claims", [])
    try:
        return [Claim.model_validate(item) for item in raw]
    except ValidationError as error:  # a shipped file is wrong: say which
        raise SpecError(f"preset {name}: invalid claims: {error}") from None
