r"""L4's step written plainly (docs/algorithms.md, section L4).

Step ``t = 1, 2, ...`` with ``L`` the mini-batch loss and ``∇_p`` the gradient of parameter ``p``::

    m_p   <- beta1 m_p + (1 - beta1) ∇_p ;    g_p = m_p / (1 - beta1^t)
    v_p    = g_p                                                    direction "momentum"
    s_p   <- beta2 s_p + (1 - beta2) ∇_p^2 ;  v_p = g_p / (sqrt(s_p / (1 - beta2^t)) + adam_eps)
                                                                    direction "adam"
    L_min  = init_factor L  at t = 1,  else  min(L_min, L)
    eta_k  = max(fraction_k (L - gamma_l L_min) / (sum_p <v_p, g_p> + eps), 0)   group k
    p     <- p - eta_k v_p
    L_min <- L_min (1 + 1 / forget_time)

``0 / 0`` (no gradient signal with ``eps = 0``) is no step; a step where no parameter has a
gradient changes nothing.
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer


class L4Reference(Optimizer):
    """L4, one tensor at a time.

    After a step, ``last_step_sizes`` holds the ``eta_k``, ``last_min_loss`` the ``L_min`` used,
    ``min_loss`` the grown ``L_min`` and ``num_steps`` the step counter ``t``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        *,
        fraction: float,
        direction: str,
        gamma_l: float,
        init_factor: float,
        forget_time: float,
        beta1: float,
        beta2: float,
        adam_eps: float,
        eps: float,
    ) -> None:
        hyperparameters = {"fraction": fraction, "direction": direction, "gamma_l": gamma_l}
        hyperparameters |= {"init_factor": init_factor, "forget_time": forget_time}
        hyperparameters |= {"beta1": beta1, "beta2": beta2, "adam_eps": adam_eps, "eps": eps}
        super().__init__(params, hyperparameters)
        self.num_steps = 0
        self.min_loss: float | None = None
        self.last_min_loss: float | None = None
        self.last_step_sizes: list[float] = []

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """One step; ``closure`` returns the mini-batch loss whose gradient is in ``.grad``."""
        with torch.enable_grad():
            loss = closure()
        beta1, beta2, adam_eps = (self.defaults[k] for k in ("beta1", "beta2", "adam_eps"))
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            self.last_step_sizes = [0.0] * len(self.param_groups)
            return loss
        self.num_steps += 1
        t = self.num_steps

        directions, dot = {}, 0.0
        for p in params:
            state = self.state[p]
            m = state.setdefault("exp_avg", torch.zeros_like(p))
            m.mul_(beta1).add_((1 - beta1) * p.grad)
            g = m / (1 - beta1**t)
            if self.defaults["direction"] == "momentum":
                v = g
            else:
                s = state.setdefault("exp_avg_sq", torch.zeros_like(p))
                s.mul_(beta2).add_((1 - beta2) * p.grad * p.grad)
                v = g / ((s / (1 - beta2**t)).sqrt() + adam_eps)
            directions[p] = v
            dot += float((v * g).sum())

        value = float(loss)
        first = self.min_loss is None
        min_loss = self.defaults["init_factor"] * value if first else min(self.min_loss, value)
        denominator = dot + self.defaults["eps"]
        target = value - self.defaults["gamma_l"] * min_loss
        self.last_step_sizes = []
        for group in self.param_groups:
            eta = max(group["fraction"] * target / denominator, 0.0) if denominator != 0 else 0.0
            self.last_step_sizes.append(eta)
            for p in group["params"]:
                if p in directions:
                    p.sub_(eta * directions[p])
        self.last_min_loss = min_loss
        self.min_loss = min_loss * (1 + 1 / self.defaults["forget_time"])
        return loss
