r"""What every packed optimizer shares: members, per-member hyperparameters, compaction.

A *pack* trains ``n`` independent copies ("members") of one model as one vectorised model: each
parameter is one tensor of shape ``[n, *shape]`` whose slice ``k`` is member ``k``'s parameter.
A packed optimizer updates all members at once with one hyperparameter value *per member*
(tensors of shape ``[n]``, never a Python float shared by the pack), so that member ``k``
follows exactly the trajectory its per-trial optimizer (:mod:`optim.registry`) would give it:
every global quantity of the per-trial optimizer (a squared gradient norm, a loss, a
projection) becomes a per-member quantity over the member's slices only.

The pack calls ``step(params, grads, losses, active)`` with the member-stacked parameters
(views into the pack's tensors, updated in place), their gradients, the members' mini-batch
losses ``[n]`` and, optionally, which members step (``active [n]``, boolean: a member whose
loss scaler found an overflow skips the step, as its trial's ``GradScaler`` skips it, and keeps
its parameters, buffers, estimates and step count as they were). Each member counts its own
steps (``counts [n]``: the ``t`` of Adam's and L4's bias corrections). ``keep(index)`` drops
the members not in ``index`` (a diverged member leaves the pack) from every per-member tensor
the optimizer holds. See docs/algorithms.md, "Packed trials".
"""

import abc
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import torch

from optim.exceptions import MemberStateError


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
    #: the states that a pack of this form creates only for some member mixes (a momentum
    #: buffer exists where a member has momentum), with the value a member of a pack that had
    #: none starts from: members of such packs may continue in one with the state
    optional_states: ClassVar[Mapping[str, float]] = MappingProxyType({})

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
        self.fills: dict[str, float | torch.Tensor] = {}  # each state's initial value
        # steps taken by each member (float64: the exponent of the bias corrections)
        self.counts = torch.zeros(self.n, dtype=torch.float64, device=self.device)
        self.last_step_size: torch.Tensor | None = None
        self.last_step_capped: torch.Tensor | None = None

    def _tensor(self, values: Sequence[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=self.dtype, device=self.device)

    def _buffers(
        self, key: str, params: Sequence[torch.Tensor], fill: float | torch.Tensor = 0.0
    ) -> list[torch.Tensor]:
        """The per-parameter state ``key``, created filled with ``fill`` (a number, or one
        value per member ``[n]``) on first use."""
        if key not in self.state:
            self.fills[key] = fill
            self.state[key] = [_filled(p, fill) for p in params]
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
        active: torch.Tensor | None = None,
    ) -> None:
        """One step of every member, or of the members ``active`` (boolean ``[n]``; ``None``:
        all): ``params`` (``[n, …]`` each) are updated in place.

        The update rule runs on every member (its arithmetic is per member); the others' rows
        of the parameters and of every per-member tensor and state are put back afterwards, so
        that a non-finite gradient of a skipping member reaches nothing.
        """
        params, grads = list(params), list(grads)
        if active is None or bool(active.all()):
            self.counts += 1
            self._step(params, grads, losses)
            return
        held = (~active).nonzero().squeeze(1)
        tensors = {name: v.index_select(0, held) for name, v in self._per_member_tensors().items()}
        state = {key: [t.index_select(0, held) for t in ts] for key, ts in self.state.items()}
        rows = [p.index_select(0, held) for p in params]
        self.counts += active.to(self.counts.dtype)
        self._step(params, grads, losses)
        for p, row in zip(params, rows, strict=True):
            p.index_copy_(0, held, row)
        for name, row in tensors.items():
            setattr(self, name, getattr(self, name).index_copy(0, held, row))
        for key, tensors_of_key in self.state.items():
            before = state.get(key)
            if before is None:  # created by this step: the held members' rows start as new
                fill = self.fills[key]
                if isinstance(fill, torch.Tensor):
                    fill = fill.index_select(0, held)
                before = [_filled(t.index_select(0, held), fill) for t in tensors_of_key]
            for t, row in zip(tensors_of_key, before, strict=True):
                t.index_copy_(0, held, row)

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
        estimates and step count) as copies, for a checkpoint that another pack can
        continue: :meth:`load_member_states`."""
        return {
            "tensors": {n: v[position].clone() for n, v in self._per_member_tensors().items()},
            "state": {key: [t[position].clone() for t in ts] for key, ts in self.state.items()},
        }

    def load_member_states(self, states: Sequence[Mapping[str, Any]]) -> None:
        """Continue from one :meth:`member_state` per member, in the pack's member order.

        The states may come from different packs: a state some of them lack is filled from
        :attr:`optional_states`, or refused (:class:`~optim.exceptions.MemberStateError`,
        before anything of this optimizer changes)."""
        if len(states) != self.n:
            raise ValueError(f"{len(states)} member states for a pack of {self.n} members")
        # every state any member has: members of packs that made different states (one with
        # a momentum member, one without) continue together
        keys = dict.fromkeys(key for state in states for key in state["state"])
        stacked_states = {key: self._stacked_state(key, states) for key in keys}
        first = states[0]
        for name in first["tensors"]:
            stacked = torch.stack([state["tensors"][name] for state in states])
            setattr(self, name, stacked.to(self.device))
        if "counts" not in first["tensors"]:  # written when the pack counted its steps once
            self.counts = self._tensor([float(state["steps"]) for state in states]).double()
        self.state = stacked_states

    def _stacked_state(self, key: str, states: Sequence[Mapping[str, Any]]) -> list[torch.Tensor]:
        """State ``key`` of every member of ``states``, stacked; a member without it (its pack
        never made it) starts from the form's value of :attr:`optional_states`."""
        lacking = sum(key not in state["state"] for state in states)
        if lacking and key not in self.optional_states:
            raise MemberStateError(
                f"{self.name}: {lacking} of {len(states)} member states have no {key!r}, "
                f"which every member of this packed form keeps"
            )
        like = next(state["state"][key] for state in states if key in state["state"])
        fill = self.optional_states.get(key, 0.0)
        return [
            torch.stack(
                [
                    state["state"][key][i] if key in state["state"] else torch.full_like(t, fill)
                    for state in states
                ]
            ).to(self.device)
            for i, t in enumerate(like)
        ]

    def _record(self, sizes: torch.Tensor, capped: torch.Tensor | None = None) -> None:
        self.last_step_size = sizes
        self.last_step_capped = (
            torch.zeros_like(sizes, dtype=torch.bool) if capped is None else capped
        )


def _filled(like: torch.Tensor, fill: float | torch.Tensor) -> torch.Tensor:
    """A tensor like ``like`` holding ``fill``: one number, or one value per member."""
    if isinstance(fill, torch.Tensor):
        return torch.ones_like(like) * per_member(fill.to(like.dtype), like)
    return torch.full_like(like, fill)


def math_inf(value: float | None) -> float:
    """η as a float: ``None`` (ALI-G∞, no cap) is ``inf``."""
    return float("inf") if value is None else float(value)
