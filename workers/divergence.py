"""Divergence as an outcome: when a trial's loss has blown up, stop it and say why.

A trial diverges when its mini-batch loss is not finite, or exceeds ``factor × (1 + L0)`` where
``L0`` is the loss of its first mini-batch (the ``1 +`` keeps the test meaningful for tasks
whose initial loss is near zero). The default factor 1e3 matches the service's contract.
"""

import math
from dataclasses import dataclass


@dataclass
class DivergenceMonitor:
    """Watches the stream of mini-batch losses; ``check`` returns the reason once diverged."""

    factor: float = 1e3
    initial_loss: float | None = None

    def check(self, loss: float) -> str | None:
        """``None`` while the loss is acceptable, else a short human-readable reason."""
        if not math.isfinite(loss):
            return f"loss became {loss}"
        if self.initial_loss is None:
            self.initial_loss = loss
            return None
        limit = self.factor * (1.0 + abs(self.initial_loss))
        if loss > limit:
            initial = self.initial_loss
            return f"loss {loss:.3g} exceeded {self.factor:g} × (1 + initial loss {initial:.3g})"
        return None

    def state_dict(self) -> dict[str, float | None]:
        """What a checkpoint keeps: the first loss (the factor is the trial's configuration)."""
        return {"initial_loss": self.initial_loss}

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        self.initial_loss = state["initial_loss"]
