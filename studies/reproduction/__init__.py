"""The reproduction report: a paper preset's published claims, checked on a study's results.

Each paper preset carries its paper's claims as data (``"claims"`` in the preset's JSON: the
source, the statement, the metric and a check of a registered kind, :mod:`.checks`).
:func:`reproduction_report` evaluates every claim of the preset a study was submitted from on
the study's stored records: the claimed value, the measured one, pass or fail, and for how many
seeds it holds alone; "not enough budget" when the study ran a smaller budget than the paper.
See docs/algorithms.md, section "Reproduction report".
"""

from studies.reproduction.checks import CLAIM_CHECKS
from studies.reproduction.claims import Claim, preset_claims
from studies.reproduction.report import (
    ClaimResult,
    ReproductionReport,
    reproduction_report,
    study_reproduction,
)

__all__ = [
    "CLAIM_CHECKS",
    "Claim",
    "ClaimResult",
    "ReproductionReport",
    "preset_claims",
    "reproduction_report",
    "study_reproduction",
]
