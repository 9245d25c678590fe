"""Sensitivity analyses: pure functions from ``TrialRecord`` lists to plain info objects.

Each result is a frozen dataclass with a ``to_dict()`` that is JSON without NaN/Infinity;
``studies.rendering`` draws them. See docs/algorithms.md, section "Measures".
"""

from studies.analysis._common import Direction, json_safe
from studies.analysis.cells import CellStatus
from studies.analysis.heatmap import Heatmap, heatmap
from studies.analysis.importance import (
    EVALUATORS,
    Importance,
    ImportanceByOptimizer,
    importance,
    importance_by_optimizer,
)
from studies.analysis.robustness import EtaRange, Robustness, robustness, robustness_from_heatmap
from studies.analysis.sensitivity import Sensitivity, SensitivityPoint, sensitivity
from studies.analysis.slicing import select_slice, slices
from studies.analysis.tunability import (
    OptimizerTunability,
    Tunability,
    cpe,
    cpe_weights,
    expected_best,
    tunability,
)

__all__ = [
    "EVALUATORS",
    "CellStatus",
    "Direction",
    "EtaRange",
    "Heatmap",
    "Importance",
    "ImportanceByOptimizer",
    "OptimizerTunability",
    "Robustness",
    "Sensitivity",
    "SensitivityPoint",
    "Tunability",
    "cpe",
    "cpe_weights",
    "expected_best",
    "heatmap",
    "importance",
    "importance_by_optimizer",
    "json_safe",
    "robustness",
    "robustness_from_heatmap",
    "select_slice",
    "sensitivity",
    "slices",
    "tunability",
]
