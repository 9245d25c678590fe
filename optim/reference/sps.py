r"""SPS_max's step written plainly (docs/algorithms.md, section SPS).

With ``L`` the mini-batch loss and ``g_p`` the gradient of parameter ``p``, over all groups, each
group ``k`` (cap ``gamma_b,k = max_lr``) takes::

    gamma_k = max(min((L - f*) / (c sum_p ||g_p||^2 + eps), gamma_b,k), 0)
    p <- p - gamma_k g_p

and no parameter moves when ``sqrt(sum_p ||g_p||^2) < 1e-8`` (the authors' code).
"""

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer


class SPSReference(Optimizer):
    """SPS_max, one tensor at a time; ``last_step_sizes`` holds the ``gamma_k`` of the last step."""

    def __init__(
        self, params: Iterable[Any], *, max_lr: float, c: float, f_star: float, eps: float
    ) -> None:
        super().__init__(params, {"max_lr": max_lr, "c": c, "f_star": f_star, "eps": eps})
        self.last_step_sizes: list[float] = []

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """One step; ``closure`` returns the mini-batch loss whose gradient is in ``.grad``."""
        with torch.enable_grad():
            loss = closure()
        c, f_star, eps = (self.defaults[name] for name in ("c", "f_star", "eps"))
        params = [p for group in self.param_groups for p in group["params"]]
        g2 = sum(float(p.grad.pow(2).sum()) for p in params if p.grad is not None)
        self.last_step_sizes = [0.0] * len(self.param_groups)
        if math.sqrt(g2) < 1e-8:
            return loss
        polyak = (float(loss) - f_star) / (c * g2 + eps)
        for k, group in enumerate(self.param_groups):
            gamma = max(min(polyak, group["max_lr"]), 0.0)
            self.last_step_sizes[k] = gamma
            for p in group["params"]:
                if p.grad is not None:
                    p.sub_(gamma * p.grad)
        return loss
