"""Evaluating a preset's claims on a study's records."""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from studies.analysis import json_safe
from studies.reproduction.checks import CLAIM_CHECKS
from studies.reproduction.claims import Claim
from studies.trial import TrialRecord

ClaimStatus = Literal["pass", "fail", "not enough budget", "no data"]


@dataclass(frozen=True)
class ClaimResult:
    """One claim as measured on the study."""

    id: str
    source: str
    statement: str
    optimizer: str
    metric: str
    slice: dict[str, Any]
    claimed: Any
    measured: Any
    status: ClaimStatus
    seeds_holding: int  # seeds on which the claim holds when checked on that seed alone
    seeds_total: int


@dataclass(frozen=True)
class ReproductionReport:
    """Every claim of the study's preset, checked."""

    preset: str | None
    budget: dict[str, Any]  # the study's and the paper's budget
    claims: list[ClaimResult]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data (non-finite floats become ``None``)."""
        return json_safe(asdict(self))


def _holds(claim: Claim, records: Sequence[TrialRecord], facts: Mapping[str, Any]) -> Any:
    try:
        return CLAIM_CHECKS[claim.kind](claim, records, facts)
    except ValueError:  # e.g. a slice the study does not have
        return None, None, None


def reproduction_report(
    preset: str | None,
    claims: Sequence[Claim],
    records: Sequence[TrialRecord],
    *,
    study_budget: int,
    paper_budget: int | None,
    facts: Mapping[str, Any] | None = None,
) -> ReproductionReport:
    """Check ``claims`` on ``records``; a study whose budget is below the paper's gets
    "not enough budget" for every claim (its measured values are still shown)."""
    facts = facts or {}
    short = paper_budget is not None and study_budget < paper_budget
    seeds = sorted({r.seed for r in records})
    results = []
    for claim in claims:
        claimed, measured, holds = _holds(claim, records, facts)
        per_seed = [_holds(claim, [r for r in records if r.seed == s], facts)[2] for s in seeds]
        if short:
            status: ClaimStatus = "not enough budget"
        elif holds is None:
            status = "no data"
        else:
            status = "pass" if holds else "fail"
        results.append(
            ClaimResult(
                id=claim.id,
                source=claim.source,
                statement=claim.statement,
                optimizer=claim.optimizer,
                metric=claim.metric,
                slice=dict(claim.slice),
                claimed=claimed,
                measured=measured,
                status=status,
                seeds_holding=sum(1 for h in per_seed if h),
                seeds_total=len(seeds),
            )
        )
    budget = {"study": study_budget, "paper": paper_budget}
    return ReproductionReport(preset, budget, results)


def study_reproduction(
    tags: Sequence[str], task: str, spec: Mapping[str, Any], records: Sequence[TrialRecord]
) -> ReproductionReport:
    """The report of a stored study: the claims of the preset it was submitted from (none when
    it was not), its budget against the preset's, the task's facts (e.g. the rank floors)."""
    from studies.catalog.tasks import TASKS
    from studies.presets import preset_document, preset_of
    from studies.reproduction.claims import preset_claims

    preset = preset_of(list(tags))
    if preset is None:
        return ReproductionReport(None, {"study": _amount(spec), "paper": None}, [])
    facts = TASKS[task].facts() if task in TASKS else {}
    return reproduction_report(
        preset,
        preset_claims(preset),
        records,
        study_budget=_amount(spec),
        paper_budget=_amount(preset_document(preset)),
        facts=facts,
    )


def _amount(spec: Mapping[str, Any]) -> int:
    budget = spec.get("budget") or {}
    return int(budget.get("steps") or budget.get("epochs") or 0)
