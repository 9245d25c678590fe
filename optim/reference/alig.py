r"""ALI-G's step written plainly (docs/algorithms.md, section ALI-G).

With ``L`` the mini-batch loss and ``g_p`` the gradient of parameter ``p``, over all groups, each
group ``k`` (maximal learning rate ``eta_k``, momentum ``mu_k``) takes::

    gamma_k = max(min(L / (sum_p ||g_p||^2 + eps), eta_k), 0)      no min when eta_k is None
    p   <- p - gamma_k g_p
    v_p <- mu_k v_p - gamma_k g_p ;   p <- p + mu_k v_p              when mu_k > 0

then all parameters ``w`` jointly ``w <- w r / ||w||`` when ``||w|| > r`` (also once at
construction). ``L / 0`` (zero loss at a stationary point with ``eps = 0``) is no step.
"""

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer


class AliGReference(Optimizer):
    """ALI-G, one tensor at a time; ``last_step_sizes`` holds the ``gamma_k`` of the last step."""

    def __init__(
        self,
        params: Iterable[Any],
        *,
        max_lr: float | None,
        momentum: float,
        radius: float | None,
        eps: float,
    ) -> None:
        super().__init__(
            params, {"max_lr": max_lr, "momentum": momentum, "radius": radius, "eps": eps}
        )
        self.last_step_sizes: list[float] = []
        self._project()

    @torch.no_grad()
    def _project(self) -> None:
        radius = self.defaults["radius"]
        if radius is None:
            return
        params = [p for group in self.param_groups for p in group["params"]]
        norm = math.sqrt(sum(float(p.pow(2).sum()) for p in params))
        if norm > radius:
            for p in params:
                p.mul_(radius / norm)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """One step; ``closure`` returns the mini-batch loss whose gradient is in ``.grad``."""
        with torch.enable_grad():
            loss = closure()
        params = [p for group in self.param_groups for p in group["params"]]
        g2 = sum(float(p.grad.pow(2).sum()) for p in params if p.grad is not None)
        denominator = g2 + self.defaults["eps"]
        polyak = float(loss) / denominator if denominator > 0 else 0.0
        self.last_step_sizes = []
        for group in self.param_groups:
            eta, mu = group["max_lr"], group["momentum"]
            gamma = max(polyak if eta is None else min(polyak, eta), 0.0)
            self.last_step_sizes.append(gamma)
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.sub_(gamma * p.grad)
                if mu > 0:
                    v = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                    v.mul_(mu).sub_(gamma * p.grad)
                    p.add_(mu * v)
        self._project()
        return loss
