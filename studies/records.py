"""Plain trial records: what the analysis functions consume (no SQL, no ORM objects).

The store turns its rows into these; tests build them by hand. ``eta=None`` is ALI-G∞ and sorts
after every finite η (an infinite maximal learning rate).
"""

import math
from dataclasses import dataclass, field
from typing import Any, Literal

TrialStatus = Literal["pending", "running", "completed", "diverged", "failed", "cancelled"]
FINISHED = ("completed", "diverged", "failed")


@dataclass(frozen=True)
class TrialRecord:
    """One trial's configuration axes and outcome."""

    key: str
    optimizer: str
    eta: float | None
    batch_size: int
    radius: float | None = None
    weight_decay: float | None = None
    seed: int = 0
    status: TrialStatus = "pending"
    final_objective: float | None = None  # None unless completed with a finite objective
    metrics: dict[str, float] = field(default_factory=dict)  # last reported values
    extra_axes: dict[str, Any] = field(default_factory=dict)  # e.g. task options swept (rank)

    def value(self, metric: str = "final_objective") -> float | None:
        """The finite value of ``metric`` for a completed trial, else ``None``."""
        if self.status != "completed":
            return None
        raw = self.final_objective if metric == "final_objective" else self.metrics.get(metric)
        if raw is None or not math.isfinite(raw):
            return None
        return float(raw)


def eta_sort_key(eta: float | None) -> float:
    """Order η values with ALI-G∞ (``None``) last."""
    return math.inf if eta is None else eta
