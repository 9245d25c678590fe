r"""L4: practical loss-based step-size adaptation (Rolinek & Martius, NeurIPS 2018).

L4 wraps a base direction (momentum or Adam) and rescales it so that, to first order, one step
would remove a ``fraction`` α of the gap between the loss and an estimate of the reachable
minimum. One step ``t = 1, 2, ...``, with ``L`` the mini-batch loss and ``∇`` its gradient::

    m_p   <- beta1 * m_p + (1 - beta1) * ∇_p          gradient momentum (timescale 10)
    g_p    = m_p / (1 - beta1^t)                       bias-corrected gradient estimate
    v_p    = g_p                                       direction "momentum" (L4Mom)
    s_p   <- beta2 * s_p + (1 - beta2) * ∇_p^2         direction "adam" only (timescale 1000)
    v_p    = g_p / (sqrt(s_p / (1 - beta2^t)) + adam_eps)          direction "adam" (L4Adam)
    L_min  = init_factor * L  if t == 1  else  min(L_min, L)
    eta_t  = fraction * (L - gamma_l * L_min) / (<v, g> + eps)     <v, g> over all parameters
    eta_t  = max(eta_t, 0)
    p     <- p - eta_t * v_p
    L_min <- L_min * (1 + 1 / forget_time)             the minimum is slowly forgotten

Defaults are the paper's: fraction α = 0.15, gamma_l = 0.9, init_factor = 0.75,
forget_time = 1000, beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-4, eps = 1e-12.

Departures from the paper (Rolinek & Martius, "L4: Practical loss-based stepsize adaptation for
deep learning", NeurIPS 2018) and its released code:

- ``max(eta_t, 0)`` is added so a loss below ``gamma_l * L_min`` never gives an ascent step
  (``<v, g>`` is non-negative for both directions, so the numerator decides the sign);
- the moment estimates share one global step counter ``t``; a parameter whose gradient is
  ``None`` at a step is skipped (its moments are not decayed), like ``torch.optim.Adam``;
- ``fraction`` may differ per parameter group (each group gets its own ``eta_t``); the loss
  minimum, ``<v, g>`` and every other quantity are global.

See docs/algorithms.md, section L4; :class:`optim.reference.l4.L4Reference` is the same step
written plainly.
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from optim import validation
from optim.capped_step_size import StepSizeRecord
from optim.closure import loss_value, require_closure
from optim.exceptions import InvalidHyperparameterError
from optim.param_groups import check_groups, descend, shared, with_dense_grad, zeros_state
from optim.projection import global_norm

#: The base directions L4 can rescale.
DIRECTIONS = ("momentum", "adam")

#: The hyperparameters a parameter group may override; all the others are shared.
PER_GROUP = {"fraction": validation.positive}

# Keys of the optimizer-wide scalar state, kept in ``self.state`` of the first parameter so that
# ``state_dict()`` / ``load_state_dict()`` carry them.
_STEP_KEY = "l4_step"
_MIN_LOSS_KEY = "l4_min_loss"


class L4(StepSizeRecord, Optimizer):
    """L4 step-size adaptation on top of a momentum (L4Mom) or Adam (L4Adam) direction.

    Args:
        params: parameters or parameter groups (``fraction`` may differ per group).
        fraction: α > 0, the fraction of the estimated loss gap one step removes (the study's η).
        direction: ``"momentum"`` (L4Mom) or ``"adam"`` (L4Adam).
        gamma_l: γ in [0, 1], the fraction of the minimum-loss estimate taken as the target.
        init_factor: in [0, 1], the minimum-loss estimate at the first step is this times ``L``.
        forget_time: > 0, the minimum-loss estimate grows by ``1 + 1/forget_time`` every step.
        beta1: in [0, 1), decay of the gradient momentum (both directions).
        beta2: in [0, 1), decay of the squared-gradient average (``"adam"`` only).
        adam_eps: > 0, added to the Adam denominator.
        eps: >= 0, added to ``<v, g>``.
        foreach: multi-tensor kernels (default) or one tensor at a time (see
            :mod:`optim.param_groups`).

    After each ``step`` the step size ``eta_t`` of the first group is ``last_step_size``
    (``last_step_sizes`` has one per group), ``last_step_capped`` is always ``False`` (L4 has no
    cap) and ``last_min_loss`` is the ``L_min`` used in that step; ``min_loss`` and
    ``num_steps`` read the stored state.
    """

    def __init__(
        self,
        params: Iterable[Any],
        fraction: float = 0.15,
        direction: str = "momentum",
        gamma_l: float = 0.9,
        init_factor: float = 0.75,
        forget_time: float = 1000.0,
        beta1: float = 0.9,
        beta2: float = 0.999,
        adam_eps: float = 1e-4,
        eps: float = 1e-12,
        *,
        foreach: bool = True,
    ) -> None:
        if direction not in DIRECTIONS:
            raise InvalidHyperparameterError(
                f"direction must be one of {', '.join(repr(d) for d in DIRECTIONS)}, "
                f"got {direction!r}"
            )
        defaults = {
            "fraction": validation.positive("fraction", fraction),
            "direction": direction,
            "gamma_l": validation.unit_interval("gamma_l", gamma_l, closed_right=True),
            "init_factor": validation.unit_interval("init_factor", init_factor, closed_right=True),
            "forget_time": validation.positive("forget_time", forget_time),
            "beta1": validation.unit_interval("beta1", beta1),
            "beta2": validation.unit_interval("beta2", beta2),
            "adam_eps": validation.positive("adam_eps", adam_eps),
            "eps": validation.non_negative("eps", eps),
        }
        self.foreach = bool(foreach)
        super().__init__(params, defaults)
        check_groups(self, PER_GROUP)
        self._clear_step_sizes()
        self.last_min_loss: float | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("last_min_loss", None)

    @property
    def direction(self) -> str:
        """The base direction: ``"momentum"`` (L4Mom) or ``"adam"`` (L4Adam)."""
        return shared(self, "direction")

    def _global_state(self) -> dict[str, Any]:
        """The optimizer-wide scalars, stored in the state of the first parameter."""
        state = self.state[self.param_groups[0]["params"][0]]
        state.setdefault(_STEP_KEY, 0)
        state.setdefault(_MIN_LOSS_KEY, None)
        return state

    def _peek_global_state(self) -> dict[str, Any]:
        """Like ``_global_state`` but read-only: creates no state before the first step."""
        return self.state.get(self.param_groups[0]["params"][0], {})

    @property
    def num_steps(self) -> int:
        """How many steps were taken (the bias-correction step counter ``t``)."""
        return int(self._peek_global_state().get(_STEP_KEY, 0))

    @property
    def min_loss(self) -> float | None:
        """The stored minimum-loss estimate ``L_min`` (after the last step's growth); ``None``
        before the first step."""
        value = self._peek_global_state().get(_MIN_LOSS_KEY)
        return None if value is None else float(value)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Take one L4 step; ``closure`` returns the mini-batch loss (see ``optim.closure``).

        Returns what the closure returned.
        """
        loss = require_closure(closure, "L4", "the mini-batch loss")
        value = loss_value(loss, "L4")
        params = with_dense_grad(self, "L4")
        if not params:  # nothing to move: leave the state untouched
            self._record_no_step()
            return loss

        hyper = self.param_groups[0]  # the shared hyperparameters, the same in every group
        state = self._global_state()
        t = state[_STEP_KEY] + 1
        previous = state[_MIN_LOSS_KEY]
        min_loss = hyper["init_factor"] * value if previous is None else min(float(previous), value)

        self._update_moments(params)
        bias1 = 1.0 - hyper["beta1"] ** t
        bias2 = 1.0 - hyper["beta2"] ** t
        if self.foreach:
            directions, dot = self._direction_foreach(params, bias1, bias2)
        else:
            directions, dot = self._direction_per_tensor(params, bias1, bias2)

        denominator = dot + hyper["eps"]
        gap = value - hyper["gamma_l"] * min_loss
        position = {id(p): i for i, p in enumerate(params)}
        etas = []
        for group in self.param_groups:
            # 0/0 (no gradient signal and eps = 0) means "no step"; a NaN still propagates.
            eta = 0.0 if denominator == 0.0 else group["fraction"] * gap / denominator
            eta = max(eta, 0.0)
            etas.append(eta)
            chosen = [position[id(p)] for p in group["params"] if id(p) in position]
            if chosen and eta != 0.0:
                moved = [params[i] for i in chosen]
                descend(moved, [directions[i] for i in chosen], eta, foreach=self.foreach)
        self._record_step_sizes(etas, False)
        self.last_min_loss = min_loss
        state[_STEP_KEY] = t
        state[_MIN_LOSS_KEY] = min_loss * (1.0 + 1.0 / hyper["forget_time"])
        return loss

    def _update_moments(self, params: list[torch.Tensor]) -> None:
        """``m <- beta1 m + (1 - beta1) ∇`` and, for Adam, ``s <- beta2 s + (1 - beta2) ∇²``."""
        hyper = self.param_groups[0]  # the shared hyperparameters
        adam = self.direction == "adam"
        grads = [p.grad for p in params]
        exp_avgs = [zeros_state(self, p, "exp_avg") for p in params]
        exp_avg_sqs = [zeros_state(self, p, "exp_avg_sq") for p in params] if adam else []
        if self.foreach:
            torch._foreach_lerp_(exp_avgs, grads, 1.0 - hyper["beta1"])
            if adam:
                torch._foreach_mul_(exp_avg_sqs, hyper["beta2"])
                torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - hyper["beta2"])
            return
        for i, g in enumerate(grads):
            exp_avgs[i].lerp_(g, 1.0 - hyper["beta1"])
            if adam:
                exp_avg_sqs[i].mul_(hyper["beta2"]).addcmul_(g, g, value=1.0 - hyper["beta2"])

    def _direction_foreach(
        self, params: list[torch.Tensor], bias1: float, bias2: float
    ) -> tuple[list[torch.Tensor], float]:
        """The directions ``v_p`` and ``<v, g>``, with multi-tensor kernels.

        ``<v, g>`` is a squared global norm: ``||m||^2 / bias1^2`` for momentum and
        ``||m / sqrt(denom)||^2 / bias1^2`` for Adam, where ``g = m / bias1`` and
        ``v = m / (bias1 * denom)``.
        """
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        if self.direction == "momentum":
            directions = torch._foreach_div(exp_avgs, bias1)
            dot = float(global_norm(exp_avgs, foreach=True)) ** 2 / bias1**2
            return directions, dot
        exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]
        denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denoms, bias2**0.5)
        torch._foreach_add_(denoms, shared(self, "adam_eps"))
        scaled = torch._foreach_div(exp_avgs, torch._foreach_sqrt(denoms))
        dot = float(global_norm(scaled, foreach=True)) ** 2 / bias1**2
        directions = torch._foreach_div(exp_avgs, denoms)
        torch._foreach_div_(directions, bias1)
        return directions, dot

    def _direction_per_tensor(
        self, params: list[torch.Tensor], bias1: float, bias2: float
    ) -> tuple[list[torch.Tensor], float]:
        """The directions ``v_p`` and ``<v, g>``, one tensor at a time, from the formulas."""
        directions: list[torch.Tensor] = []
        device = params[0].device
        dot = torch.zeros((), dtype=params[0].dtype, device=device)
        for p in params:
            state = self.state[p]
            g_hat = state["exp_avg"] / bias1
            if self.direction == "momentum":
                v = g_hat
            else:
                s_hat = state["exp_avg_sq"] / bias2
                v = g_hat / (s_hat.sqrt() + shared(self, "adam_eps"))
            directions.append(v)
            dot = dot + (v * g_hat).sum().to(device)
        return directions, float(dot)


class L4Mom(L4):
    """L4 on the momentum direction (``L4(..., direction="momentum")``)."""

    def __init__(self, params: Iterable[Any], fraction: float = 0.15, **kwargs: Any) -> None:
        super().__init__(params, fraction, "momentum", **kwargs)


class L4Adam(L4):
    """L4 on the Adam direction (``L4(..., direction="adam")``)."""

    def __init__(self, params: Iterable[Any], fraction: float = 0.15, **kwargs: Any) -> None:
        super().__init__(params, fraction, "adam", **kwargs)
