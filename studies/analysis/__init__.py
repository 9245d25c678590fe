"""Sensitivity analyses: pure functions from ``TrialRecord`` lists to plain info objects.

Each result is a frozen dataclass with a ``to_dict()`` that is JSON without NaN/Infinity;
``studies.rendering`` draws them. See docs/algorithms.md, section "Measures", and
docs/analysis.md (final or best values, comparing studies, performance profiles).
"""

from studies.analysis._common import Direction, json_safe
from studies.analysis.cells import CellStatus
from studies.analysis.compare import Comparison, Problem, StudyEntry, StudyHeader, compare
from studies.analysis.heatmap import Heatmap, heatmap
from studies.analysis.importance import (
    EVALUATORS,
    Importance,
    ImportanceByOptimizer,
    importance,
    importance_by_optimizer,
)
from studies.analysis.profiles import Profile, performance_profile, tau_grid
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
from studies.analysis.values import (
    VALUE_MODES,
    CurveExtremes,
    Extremes,
    ValueMode,
    best_value,
    check_value,
    choose_values,
    curve_name,
)

__all__ = [
    "EVALUATORS",
    "VALUE_MODES",
    "CellStatus",
    "Comparison",
    "CurveExtremes",
    "Direction",
    "EtaRange",
    "Extremes",
    "Heatmap",
    "Importance",
    "ImportanceByOptimizer",
    "OptimizerTunability",
    "Problem",
    "Profile",
    "Robustness",
    "Sensitivity",
    "SensitivityPoint",
    "StudyEntry",
    "StudyHeader",
    "Tunability",
    "ValueMode",
    "best_value",
    "check_value",
    "choose_values",
    "compare",
    "cpe",
    "cpe_weights",
    "curve_name",
    "expected_best",
    "heatmap",
    "importance",
    "importance_by_optimizer",
    "json_safe",
    "performance_profile",
    "robustness",
    "robustness_from_heatmap",
    "select_slice",
    "sensitivity",
    "slices",
    "tau_grid",
    "tunability",
]
