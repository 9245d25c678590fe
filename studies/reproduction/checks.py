"""The checks a claim can name: each takes the records of the claim's slice and returns the
claimed value, the measured value and whether the claim holds (``None``: nothing to measure).

"Good" is the good-η range's notion (:mod:`studies.analysis.robustness`, default tolerance: a
factor 10 of the slice's best; a cell needs every seed finite). An optimizer's best value is its
best cell (median over seeds) among the cells with every seed finite.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from studies.analysis import heatmap, robustness, robustness_from_heatmap
from studies.analysis._common import sign
from studies.analysis.cells import reliable
from studies.reproduction.claims import Claim
from studies.trial import TrialRecord

Outcome = tuple[Any, Any, bool | None]  # claimed, measured, holds
Check = Callable[[Claim, Sequence[TrialRecord], Mapping[str, Any]], Outcome]


def _best(records: Sequence[TrialRecord], claim: Claim, optimizer: str) -> float | None:
    result = robustness(
        records, claim.metric, claim.direction, claim.slice or None, optimizers=[optimizer]
    )
    return result.ranges[optimizer].best_value


def _all_ended(records: Sequence[TrialRecord], claim: Claim, optimizer: str) -> bool:
    """Whether ``optimizer`` has trials in the claim's slice and every one of them ended
    finite or diverged: what it shows is then about the optimizer, not about trials still
    running or lost to an error (either could still make a cell good)."""
    table = heatmap(records, claim.metric, claim.direction, claim.slice or None)
    if optimizer not in table.rows:
        return False
    row = table.rows.index(optimizer)
    cells = zip(table.n_ok[row], table.n_diverged[row], table.n_total[row], strict=True)
    totals = [(ok + diverged, total) for ok, diverged, total in cells if total > 0]
    return bool(totals) and all(ended == total for ended, total in totals)


def _good_over_interval(claim: Claim, records: Sequence[TrialRecord], _: Mapping) -> Outcome:
    low, high = claim.params["eta_low"], claim.params["eta_high"]
    table = heatmap(records, claim.metric, claim.direction, claim.slice or None)
    cutoff = robustness_from_heatmap(table).cutoff
    if claim.optimizer not in table.rows or cutoff is None:
        return [low, high], None, None
    row = table.rows.index(claim.optimizer)
    inside = [
        j
        for j, eta in enumerate(table.columns)
        if eta is not None and low <= eta <= high and table.n_total[row][j] > 0
    ]
    if not inside:
        return [low, high], None, None
    s = sign(claim.direction)
    good = [
        j
        for j in inside
        if (value := table.values[row][j]) is not None
        and s * value <= s * cutoff
        and reliable(table.n_ok[row][j], table.n_total[row][j], 1.0)
    ]
    measured = {
        "good_points": f"{len(good)}/{len(inside)}",
        "not_good": [table.columns[j] for j in inside if j not in good],
        "cutoff": cutoff,
    }
    return [low, high], measured, len(good) == len(inside)


def _good_decades_at_most(claim: Claim, records: Sequence[TrialRecord], _: Mapping) -> Outcome:
    limit = claim.params["decades"]
    result = robustness(records, claim.metric, claim.direction, claim.slice or None)
    if claim.optimizer not in result.ranges:
        return limit, None, None
    found = result.ranges[claim.optimizer]
    if found.n_good == 0:
        # no good η at all: certainly not robust, once something in the slice has a value to
        # compare with and every trial of the optimizer ended (none pending, running, failed)
        if result.cutoff is None or not _all_ended(records, claim, claim.optimizer):
            return limit, None, None
        return limit, 0.0, True
    decades = math.inf if found.includes_infinity else found.decades
    return limit, decades, decades is not None and decades <= limit


def _best_at_most(claim: Claim, records: Sequence[TrialRecord], _: Mapping) -> Outcome:
    best = _best(records, claim, claim.optimizer)
    return claim.params["value"], best, None if best is None else best <= claim.params["value"]


def _best_at_least(claim: Claim, records: Sequence[TrialRecord], _: Mapping) -> Outcome:
    best = _best(records, claim, claim.optimizer)
    return claim.params["value"], best, None if best is None else best >= claim.params["value"]


def _best_within_floor(claim: Claim, records: Sequence[TrialRecord], facts: Mapping) -> Outcome:
    floors = facts.get(claim.params["fact"], {})
    floor = floors.get(str(claim.params["key"]))
    within = claim.params["within"]
    best = _best(records, claim, claim.optimizer)
    claimed = None if floor is None else floor * (1 + within)
    if best is None or claimed is None:
        return claimed, best, None
    return claimed, best, best <= claimed


#: what a rival of ``best_below_others`` measures when all its trials ended and none of its
#: cells has every seed finite (each cell has a diverged seed): it is beaten
NO_FINITE_CELL = "no cell with every seed finite"


def _best_below_others(claim: Claim, records: Sequence[TrialRecord], _: Mapping) -> Outcome:
    """The optimizer's best is below every rival's. A rival whose trials all ended with a
    diverged seed in every cell counts as beaten; a rival without a best value otherwise
    (missing, or trials pending, running or failed) leaves the claim unmeasured rather than
    judged on the others alone."""
    names = claim.params["others"]
    claimed = "below " + ", ".join(names)
    best = _best(records, claim, claim.optimizer)
    others = {name: _best(records, claim, name) for name in names}
    unknown = [n for n, v in others.items() if v is None and not _all_ended(records, claim, n)]
    if best is None or unknown:
        return claimed, None, None
    measured = {
        claim.optimizer: best,
        **{name: NO_FINITE_CELL if value is None else value for name, value in others.items()},
    }
    holds = all(value is None or best < value for value in others.values())
    return claimed, measured, holds


CLAIM_CHECKS: dict[str, Check] = {
    "good_over_interval": _good_over_interval,
    "good_decades_at_most": _good_decades_at_most,
    "best_at_most": _best_at_most,
    "best_at_least": _best_at_least,
    "best_within_floor": _best_within_floor,
    "best_below_others": _best_below_others,
}
