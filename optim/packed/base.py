r"""What every packed optimizer shares: members, per-member hyperparameters, compaction.

A *pack* trains ``n`` independent copies ("members") of one model as one vectorised model: each
parameter is one tensor of shape ``[n, *shape]`` whose slice ``k`` is member ``k``'s parameter.
A packed optimizer updates all members at once with one hyperparameter value *per member*
(tensors of shape ``[n]``, never a Python float shared by the pack), so that member ``k``
follows exactly the trajectory its per-trial optimizer (:mod:`optim.registry`) would give it:
every global quantity of the per-trial optimizer (a squared gradient norm, a loss, a
projection) becomes a per-member quantity over the member's slices only.

The pack calls ``step(params, grads, losses)`` with the member-stacked parameters (views into
the pack's tensors, updated in place), their gradients and the members' mini-batch losses
``[n]``; ``keep(index)`` drops the members not in ``index`` (a diverged member leaves the pack)
from every per-member tensor the optimizer holds. See docs/algorithms.md, "Packed trials".
"""

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch


def per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values [n]`` shaped ``[n, 1, …, 1]`` to broadcast against the stacked tensor ``like``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def member_norms(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Each member's l2 norm over all of ``tensors`` jointly, ``[n]``.

    Computed as the per-trial code does (a norm of the per-tensor norms), in the tensors' dtype.
    """
    norms = [torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1) for t in tensors]
    return torch.linalg.vector_norm(torch.stack(norms), dim=0)


@torch.no_grad()
def project_members(params: Sequence[torch.Tensor], radius: torch.Tensor) -> None:
    """Project each member jointly onto its l2 ball ``||w_k|| <= radius[k]`` in place
    (``inf``: unconstrained). Members inside their ball are left untouched, as per trial."""
    if not bool(torch.isfinite(radius).any()):
        return
    norms = member_norms(params)
    outside = norms > radius
    scale = torch.where(outside, radius / norms, torch.ones_like(norms))
    for p in params:
        p.mul_(per_member(scale.to(p.dtype), p))


class PackedOptimizer(abc.ABC):
    """Base of the packed optimizers: per-member hyperparameters and compaction.

    Subclasses set ``name`` (the registry name of the per-trial optimizer they reproduce),
    ``closure`` (``"none"`` or ``"loss"``: whether ``step`` reads the losses), ``numeric`` (the
    options that become per-member tensors) and implement :meth:`_step`. The η of each member is
    the tensor ``eta`` (``inf`` for ALI-G∞).
    """

    name: ClassVar[str]
    closure: ClassVar[str] = "none"
    numeric: ClassVar[tuple[str, ...]] = ()
    reports_step_size: ClassVar[bool] = False

    def __init__(
        self,
        etas: Sequence[float | None],
        options: Sequence[Mapping[str, Any]],
        *,
        like: torch.Tensor,
    ) -> None:
        if len(etas) != len(options) or not etas:
            raise ValueError("a packed optimizer needs one η and one option set per member")
        self.n = len(etas)
        self.dtype, self.device = like.dtype, like.device
        self.eta = self._tensor([math_inf(e) for e in etas])
        self.base_eta = self.eta.clone()
        for key in self.numeric:
            setattr(self, key, self._tensor([float(o[key]) for o in options]))
        self.state: dict[str, list[torch.Tensor]] = {}
        self.steps = 0
        self.last_step_size: torch.Tensor | None = None
        self.last_step_capped: torch.Tensor | None = None

    def _tensor(self, values: Sequence[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=self.dtype, device=self.device)

    def _buffers(
        self, key: str, params: Sequence[torch.Tensor], fill: float = 0.0
    ) -> list[torch.Tensor]:
        """The per-parameter state ``key``, created filled with ``fill`` on first use."""
        if key not in self.state:
            self.state[key] = [torch.full_like(p, fill) for p in params]
        return self.state[key]

    def scale_eta(self, factor: float) -> None:
        """``eta = base η × factor``: a learning-rate schedule's multiplier for this step."""
        self.eta = self.base_eta * factor

    @torch.no_grad()
    def step(
        self,
        params: Sequence[torch.Tensor],
        grads: Sequence[torch.Tensor],
        losses: torch.Tensor,
    ) -> None:
        """One step of every member: ``params`` (``[n, …]`` each) are updated in place."""
        self.steps += 1
        self._step(list(params), list(grads), losses)

    @abc.abstractmethod
    def _step(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], losses: torch.Tensor
    ) -> None:
        """Update ``params`` in place from ``grads`` and the members' ``losses`` ``[n]``."""

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the members ``index`` (positions, ascending), in every per-member tensor."""
        for name, value in list(vars(self).items()):
            if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == self.n:
                setattr(self, name, value.index_select(0, index.to(value.device)))
        self.state = {
            key: [t.index_select(0, index.to(t.device)) for t in tensors]
            for key, tensors in self.state.items()
        }
        self.n = int(index.numel())

    def _per_member_tensors(self) -> dict[str, torch.Tensor]:
        """The attributes that hold one value per member (first dimension ``n``)."""
        return {
            name: value
            for name, value in vars(self).items()
            if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == self.n
        }

    def member_state(self, position: int) -> dict[str, Any]:
        """Member ``position``'s share of the optimizer (its hyperparameters, buffers, running
        estimates and the step counter) as copies, for a checkpoint that another pack can
        continue: :meth:`load_member_states`."""
        return {
            "steps": self.steps,
            "tensors": {n: v[position].clone() for n, v in self._per_member_tensors().items()},
            "state": {key: [t[position].clone() for t in ts] for key, ts in self.state.items()},
        }

    def load_member_states(self, states: Sequence[Mapping[str, Any]]) -> None:
        """Continue from one :meth:`member_state` per member, in the pack's member order
        (every member taken at the same step)."""
        if len(states) != self.n:
            raise ValueError(f"{len(states)} member states for a pack of {self.n} members")
        steps = {int(state["steps"]) for state in states}
        if len(steps) != 1:
            raise ValueError(f"member states taken at different steps: {sorted(steps)}")
        self.steps = steps.pop()
        first = states[0]
        for name in first["tensors"]:
            stacked = torch.stack([state["tensors"][name] for state in states])
            setattr(self, name, stacked.to(self.device))
        self.state = {
            key: [
                torch.stack([state["state"][key][i] for state in states]).to(self.device)
                for i in range(len(tensors))
            ]
            for key, tensors in first["state"].items()
        }

    def _record(self, sizes: torch.Tensor, capped: torch.Tensor | None = None) -> None:
        self.last_step_size = sizes
        self.last_step_capped = (
            torch.zeros_like(sizes, dtype=torch.bool) if capped is None else capped
        )


def math_inf(value: float | None) -> float:
    """η as a float: ``None`` (ALI-G∞, no cap) is ``inf``."""
    return float("inf") if value is None else float(value)
