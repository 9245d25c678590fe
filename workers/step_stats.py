"""Step-size diagnostics of Polyak-type optimizers between two reports.

ALI-G, AALIG, SPS and L4 expose ``last_step_size`` and ``last_step_capped`` after each step; a
study reports the mean effective step size and the fraction of steps capped at η over each
reporting interval (the paper's argument is that a good η is one that is rarely the binding
constraint late in training).
"""

from dataclasses import dataclass

import torch


@dataclass
class StepSizeStats:
    """Accumulates step sizes until :meth:`flush`."""

    total: float = 0.0
    capped: int = 0
    count: int = 0

    def record(self, optimizer: torch.optim.Optimizer) -> None:
        """Add the optimizer's last step (no-op for optimizers that do not report one)."""
        size = getattr(optimizer, "last_step_size", None)
        if size is None:
            return
        self.total += float(size)
        self.capped += bool(getattr(optimizer, "last_step_capped", False))
        self.count += 1

    def flush(self) -> dict[str, float]:
        """``step_size_mean`` and ``step_capped_fraction`` since the last flush (empty if none)."""
        if self.count == 0:
            return {}
        result = {
            "step_size_mean": self.total / self.count,
            "step_capped_fraction": self.capped / self.count,
        }
        self.total, self.capped, self.count = 0.0, 0, 0
        return result

    def state_dict(self) -> dict[str, float | int]:
        """The sums since the last flush (zero at a report, where checkpoints are taken)."""
        return {"total": self.total, "capped": self.capped, "count": self.count}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self.total, self.capped, self.count = (
            float(state["total"]),
            int(state["capped"]),
            int(state["count"]),
        )
