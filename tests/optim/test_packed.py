"""Packed optimizers against the per-trial optimizers of the registry as the reference.

K members, each with its own η and options, take 60 steps on a non-quadratic loss: once as K
per-trial optimizers (``optim.registry.build_optimizer``) on K separate models, once as one
packed optimizer on the member-stacked tensors. Every member's parameters must agree to 1e-10
relative in float64 (1e-5 in float32 over 20 steps), and so must the step sizes reported.
"""

import copy
from collections.abc import Callable

import pytest
import torch

from optim.exceptions import MemberStateError
from optim.packed import PACKED, build_packed, packed_form, project_members
from optim.packed.base import PackedOptimizer
from optim.registry import build_optimizer

SHAPES = [(3, 4), (5,)]

# per optimizer: the members' (η, options); every option a member may vary is varied
MEMBERS: dict[str, list[tuple[float | None, dict]]] = {
    "alig": [(0.1, {}), (None, {"momentum": 0.9}), (1.0, {"momentum": 0.5, "eps": 0.0})],
    "sps": [(0.1, {}), (1.0, {"c": 0.8}), (10.0, {"eps": 0.0})],
    "l4mom": [(0.15, {}), (0.5, {}), (0.05, {})],
    "l4adam": [(0.15, {}), (0.5, {}), (0.05, {})],
    "sgd": [(0.01, {}), (0.05, {"momentum": 0.9}), (0.02, {"weight_decay": 1e-2})],
    "sgd-nesterov": [(0.01, {}), (0.02, {"momentum": 0.5, "weight_decay": 1e-3})],
    "adam": [(1e-3, {}), (1e-2, {"betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 1e-2})],
    "adamw": [(1e-3, {}), (1e-2, {"weight_decay": 0.1})],
    "amsgrad": [(1e-3, {}), (3e-2, {"betas": [0.5, 0.9]})],
    "adagrad": [(1e-2, {}), (1e-1, {"eps": 1e-6, "weight_decay": 1e-3})],
    "adagrad-tf": [(1e-2, {}), (1e-1, {"initial_accumulator": 1.0})],
    "rmsprop": [(1e-3, {}), (1e-2, {"alpha": 0.9, "momentum": 0.5, "weight_decay": 1e-3})],
    "rmsprop-centered": [(1e-3, {"centered": True}), (1e-2, {"centered": True, "momentum": 0.9})],
    "rmsprop-tf": [(1e-3, {}), (1e-2, {"decay": 0.5, "momentum": 0.9, "eps": 1e-6})],
}


def _registry_name(form: str) -> str:
    return "rmsprop" if form == "rmsprop-centered" else form


def _loss(params: list[torch.Tensor], target: list[torch.Tensor]) -> torch.Tensor:
    """A smooth non-quadratic loss with minimum 0 at ``target`` (it interpolates, so Polyak
    steps stay bounded and the trajectories contract: rounding differences do not grow)."""
    return sum(
        ((p - t) ** 2 * (1 + 0.5 * torch.sin(p) ** 2)).sum()
        for p, t in zip(params, target, strict=True)
    )


def _initial(k: int, dtype: torch.dtype) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(100 + k)
    start = [torch.randn(s, generator=generator, dtype=dtype) for s in SHAPES]
    target = [torch.randn(s, generator=generator, dtype=dtype) for s in SHAPES]
    return start, target


def _skips(step: int, member: int) -> bool:
    """A pattern of skipped steps (an AMP overflow): every member skips other steps, and
    member 0 skips its first two, before any of its state exists."""
    return (step + 2 * member) % 5 == 0 or (member == 0 and step < 2)


def _run(
    form: str,
    dtype: torch.dtype,
    steps: int,
    radius: float | None = None,
    skips: Callable[[int, int], bool] | None = None,
):
    """The per-trial reference and the pack; ``skips(step, member)``: that member takes no
    step then (its trial's optimizer is not stepped; in the pack its gradient is made
    non-finite and it is left out of ``active``)."""
    name = _registry_name(form)
    members = MEMBERS[form]
    starts, targets = zip(*(_initial(k, dtype) for k in range(len(members))), strict=True)

    # the reference: one per-trial optimizer per member
    reference, sizes = [], []
    for (eta, options), start, target in zip(members, starts, targets, strict=True):
        params = [p.clone().requires_grad_() for p in start]
        opt = build_optimizer(name, params, eta, radius, **options)
        member_sizes = []
        k = len(reference)
        for step in range(steps):
            opt.zero_grad()
            loss = _loss(params, target)
            loss.backward()
            if skips is not None and skips(step, k):
                member_sizes.append(None)
                continue
            opt.step(lambda loss=loss: loss) if name in (
                "alig",
                "sps",
                "l4mom",
                "l4adam",
            ) else opt.step()
            member_sizes.append(getattr(opt, "last_step_size", None))
        reference.append([p.detach() for p in params])
        sizes.append(member_sizes)

    # the pack: stacked tensors, one packed optimizer
    stacked = [torch.stack([s[i] for s in starts]).requires_grad_() for i in range(len(SHAPES))]
    stacked_targets = [torch.stack([t[i] for t in targets]) for i in range(len(SHAPES))]
    packed = build_packed(name, [e for e, _ in members], [o for _, o in members], like=stacked[0])
    radii = torch.tensor([radius or float("inf")] * len(members), dtype=dtype)
    project_members([p.data for p in stacked], radii)
    packed_sizes = []
    for step in range(steps):
        for p in stacked:
            p.grad = None
        losses = torch.stack(
            [
                _loss([p[k] for p in stacked], [t[k] for t in stacked_targets])
                for k in range(len(members))
            ]
        )
        losses.sum().backward()
        active = None
        if skips is not None:
            active = torch.tensor([not skips(step, k) for k in range(len(members))])
            for p in stacked:  # an overflowed member's gradient, which must reach nothing
                p.grad[~active] = float("nan")
                p.grad[~active, 0] = float("inf")
        packed.step([p.data for p in stacked], [p.grad for p in stacked], losses.detach(), active)
        project_members([p.data for p in stacked], radii)
        packed_sizes.append(packed.last_step_size)
    return reference, sizes, [p.detach() for p in stacked], packed_sizes, packed


@pytest.mark.parametrize("form", sorted(PACKED))
def test_every_packed_form_is_tested(form):
    assert form in MEMBERS


@pytest.mark.parametrize("form", sorted(MEMBERS))
@pytest.mark.parametrize(
    ("dtype", "steps", "rtol"), [(torch.float64, 60, 1e-10), (torch.float32, 20, 1e-5)]
)
def test_packed_members_follow_their_per_trial_trajectories(form, dtype, steps, rtol):
    reference, sizes, stacked, packed_sizes, packed = _run(form, dtype, steps)
    for k, params in enumerate(reference):
        for p_ref, p_pack in zip(params, stacked, strict=True):
            torch.testing.assert_close(p_pack[k], p_ref, rtol=rtol, atol=rtol * 1e-2)
    if packed.reports_step_size:
        for k in range(len(reference)):
            got = torch.tensor([float(s[k]) for s in packed_sizes], dtype=torch.float64)
            want = torch.tensor([float(s) for s in sizes[k]], dtype=torch.float64)
            torch.testing.assert_close(got, want, rtol=max(rtol, 1e-9), atol=0.0)


@pytest.mark.parametrize("form", sorted(MEMBERS))
def test_members_that_skip_steps_follow_trials_whose_steps_were_skipped(form):
    """``active``: members left out take no step (parameters, buffers, estimates and their own
    step count untouched, whatever their gradient holds), as a trial whose GradScaler skipped
    the step; the others step as usual."""
    reference, sizes, stacked, packed_sizes, packed = _run(form, torch.float64, 40, skips=_skips)
    for k, params in enumerate(reference):
        for p_ref, p_pack in zip(params, stacked, strict=True):
            torch.testing.assert_close(p_pack[k], p_ref, rtol=1e-10, atol=1e-12)
        assert int(packed.counts[k]) == sum(not _skips(s, k) for s in range(40))
    if packed.reports_step_size:
        for k in range(len(reference)):
            for step, want in enumerate(sizes[k]):
                if want is not None:
                    assert float(packed_sizes[step][k]) == pytest.approx(float(want), rel=1e-9)


@pytest.mark.parametrize("form", ["alig", "sgd", "adam"])
def test_radius_projects_each_member_onto_its_own_ball(form):
    reference, _, stacked, _, _ = _run(form, torch.float64, 30, radius=1.5)
    for k, params in enumerate(reference):
        for p_ref, p_pack in zip(params, stacked, strict=True):
            torch.testing.assert_close(p_pack[k], p_ref, rtol=1e-10, atol=1e-12)
        norm = torch.sqrt(sum((p[k] ** 2).sum() for p in stacked))
        assert float(norm) <= 1.5 + 1e-12


def test_keep_drops_members_from_every_per_member_tensor():
    """After ``keep``, the remaining member continues exactly as if it had never been packed."""
    members = MEMBERS["adam"]
    starts, targets = zip(*(_initial(k, torch.float64) for k in range(2)), strict=True)
    stacked = [torch.stack([s[i] for s in starts]).requires_grad_() for i in range(2)]
    packed = build_packed("adam", [e for e, _ in members], [o for _, o in members], like=stacked[0])
    alone = [p.clone().requires_grad_() for p in starts[1]]
    solo = build_optimizer("adam", alone, members[1][0], **members[1][1])
    order = [0, 1]  # the members still in the pack, by their original position
    for step in range(10):
        if step == 3:  # member 0 leaves the pack
            index = torch.tensor([1])
            packed.keep(index)
            stacked = [p.detach()[index].clone().requires_grad_() for p in stacked]
            order = [1]
        losses = torch.stack(
            [_loss([p[i] for p in stacked], targets[m]) for i, m in enumerate(order)]
        )
        losses.sum().backward()
        packed.step([p.data for p in stacked], [p.grad for p in stacked], losses.detach())
        for p in stacked:
            p.grad = None
        solo.zero_grad()
        _loss(alone, targets[1]).backward()
        solo.step()
    assert packed.n == 1
    for p_pack, p_solo in zip(stacked, alone, strict=True):
        torch.testing.assert_close(p_pack[0], p_solo.detach(), rtol=1e-10, atol=1e-13)


def test_forms():
    assert packed_form("rmsprop", {"centered": True}) == "rmsprop-centered"
    assert packed_form("rmsprop", {}) == "rmsprop"
    assert packed_form("aalig", {}) is None
    with pytest.raises(ValueError, match="packed form"):
        build_packed("rmsprop", [0.1, 0.1], [{}, {"centered": True}], like=torch.zeros(2))


def test_a_packed_optimizer_without_its_update_rule_cannot_be_built():
    class Incomplete(PackedOptimizer):
        name = "incomplete"

    with pytest.raises(TypeError, match="_step"):
        Incomplete([0.1], [{}], like=torch.zeros(1))


def test_member_states_carry_each_members_own_step_count():
    """A member's state holds its own step count (a pack continued from states whose members
    skipped different steps keeps them apart); a state written when a pack counted its steps
    once (``"steps"``, no ``counts``) gives every member that count."""
    like = torch.zeros(3, 2, dtype=torch.float64)
    packed = build_packed("adam", [1e-3, 1e-3, 1e-3], [{}, {}, {}], like=like)
    grads = [torch.ones_like(like)]
    packed.step([like.clone()], grads, torch.ones(3), torch.tensor([True, False, True]))
    packed.step([like.clone()], grads, torch.ones(3), torch.tensor([True, False, False]))
    states = [packed.member_state(k) for k in range(3)]
    assert [float(s["tensors"]["counts"]) for s in states] == [2.0, 0.0, 1.0]

    other = build_packed("adam", [1e-3] * 2, [{}, {}], like=like[:2])
    other.load_member_states([states[2], states[0]])
    assert other.counts.tolist() == [1.0, 2.0]

    legacy = [dict(s, steps=7, tensors={n: v for n, v in s["tensors"].items() if n != "counts"})
              for s in states[:2]]  # fmt: skip
    other.load_member_states(legacy)
    assert other.counts.tolist() == [7.0, 7.0]


@pytest.mark.parametrize("form", ["sgd", "alig"])
def test_members_of_packs_with_and_without_a_momentum_buffer_continue_together(form):
    """A pack whose members have no momentum makes no momentum buffer; a member of it and a
    momentum member of another pack continue in one pack (in either order) exactly as they
    would have in their own packs: the momentum member keeps its buffer, the other starts
    from zeros (``μ·0 + g = g``, as in its first step)."""
    gen = torch.Generator().manual_seed(0)
    like = torch.zeros(2, 3, dtype=torch.float64)
    # pack A: a momentum member and one without; pack B: no momentum, so no buffer
    a = build_packed(form, [0.1, 0.2], [{"momentum": 0.9}, {}], like=like)
    b = build_packed(form, [0.3], [{}], like=like[:1])
    params_a, params_b = (
        [torch.randn(2, 3, generator=gen, dtype=torch.float64)],
        [torch.randn(1, 3, generator=gen, dtype=torch.float64)],
    )

    def step(packed, params, rows):  # the same gradients and losses for a member everywhere
        grads = [torch.stack([gradients[r] for r in rows])]
        packed.step(params, grads, torch.stack([losses[r] for r in rows]))

    for _ in range(3):
        gradients = torch.randn(3, 3, generator=gen, dtype=torch.float64)  # rows: a0, a1, b0
        losses = torch.rand(3, generator=gen, dtype=torch.float64) + 1.0
        step(a, params_a, [0, 1])
        step(b, params_b, [2])
    assert "momentum_buffer" in a.state and "momentum_buffer" not in b.state
    for order in ([("b", 0), ("a", 0)], [("a", 0), ("b", 0)]):
        packs = {"a": (a, params_a, [0, 1]), "b": (b, params_b, [2])}
        merged = build_packed(
            form, [float(packs[p][0].eta[k]) for p, k in order],
            [{"momentum": float(packs[p][0].momentum[k])} for p, k in order], like=like,
        )  # fmt: skip
        merged.load_member_states([packs[p][0].member_state(k) for p, k in order])
        params = [torch.stack([packs[p][1][0][k] for p, k in order])]
        alone = {p: (copy.deepcopy(packed), [t.clone() for t in ps]) for p, (packed, ps, _) in
                 packs.items()}  # fmt: skip
        for _ in range(3):
            gradients = torch.randn(3, 3, generator=gen, dtype=torch.float64)
            losses = torch.rand(3, generator=gen, dtype=torch.float64) + 1.0
            step(merged, params, [packs[p][2][k] for p, k in order])
            for p, (packed, ps) in alone.items():
                step(packed, ps, packs[p][2])
        for row, (p, k) in enumerate(order):
            assert torch.equal(params[0][row], alone[p][1][0][k]), (order, p)


def test_member_states_that_lack_a_state_every_member_keeps_are_refused():
    like = torch.zeros(2, 2, dtype=torch.float64)
    packed = build_packed("adam", [1e-3, 1e-3], [{}, {}], like=like)
    packed.step([like.clone()], [torch.ones_like(like)], torch.ones(2))
    states = [packed.member_state(k) for k in range(2)]
    del states[1]["state"]["exp_avg"]
    other = build_packed("adam", [1e-3, 1e-3], [{}, {}], like=like)
    with pytest.raises(MemberStateError, match="adam: 1 of 2 member states have no 'exp_avg'"):
        other.load_member_states(states)
