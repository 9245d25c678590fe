"""A Differentiable Neural Computer with the semantics of DeepMind's reference (deepmind/dnc).

Shapes are batch-first: ``B`` batch, ``N`` memory slots, ``W`` word size, ``R`` read heads and
``K`` write heads. One step of the core, with ``x`` the observation and ``r_{t-1}`` the words read
at the previous step:

    h_t, c_t = LSTM([x_t, r_{t-1}], (h_{t-1}, c_{t-1}))       both clipped to ±clip_value
    ξ_t = Linear(h_t)                                          the interface vector

Memory access (Graves et al., Nature 2016, as the reference orders it):

    content    C(M, k, β)[i] = softmax_i(β · cos(k, M[i])),
               cos(k, m) = k·m / (‖k‖‖m‖ + ε), ‖v‖ = sqrt(Σ v² + ε)
    usage      u_t = (u_{t-1} + w^w_{t-1} − u_{t-1} ∘ w^w_{t-1}) ∘ ψ_t,
               ψ_t = Π_i (1 − f^i_t w^{r,i}_{t-1})               (no gradient through w^w_{t-1})
    allocation û = ε + (1 − ε) u,  φ = argsort(û) ascending (stable),
               a[φ_j] = (1 − û[φ_j]) Π_{i<j} û[φ_i]
    write      w^w_t = g^w (g^a a_t + (1 − g^a) C(M_{t-1}, k^w, β^w))
               M_t = M_{t-1} ∘ (1 − w^w e^T) + w^w v^T
    linkage    L_t[i, j] = (1 − w^w[i] − w^w[j]) L_{t-1}[i, j] + w^w[i] p_{t-1}[j],  L_t[i, i] = 0
               p_t = (1 − Σ_i w^w[i]) p_{t-1} + w^w
    read       f^i = L_t w^{r,i}_{t-1},  b^i = L_t^T w^{r,i}_{t-1}
               w^{r,i}_t = π^i_back b^i + π^i_fwd f^i + π^i_content C(M_t, k^{r,i}, β^{r,i})
               r^i_t = M_t^T w^{r,i}_t

    y_t = Linear([h_t, r_t])                                   clipped to ±clip_value

Interface activations follow the reference: write vectors and keys linear; erase vectors, free
gates, allocation and write gates sigmoid; read modes a softmax over [backward per write head,
forward per write head, content]. Key strengths are β = softplus(β̂) ≥ 0 by default, as the
reference's ``CosineWeights`` (``strength_op=tf.nn.softplus``); ``key_strength="oneplus"`` gives
the DNC paper's β = 1 + softplus(β̂) ≥ 1 instead.
With several write heads the reference allocates for them in turn, marking each allocation as
used before the next one; that is kept here although the task uses one write head.

Initialisation follows Sonnet 1: weights from a normal truncated at two standard deviations with
std 1/sqrt(fan_in), zero biases, and an LSTM forget-gate bias of +1 added in the cell.
"""

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

EPSILON = 1e-6  # the reference's _EPSILON: norms, cosine denominators and usage before cumprod


def _sonnet_init_(linear: nn.Linear) -> None:
    """Sonnet 1's default Linear initialiser: truncated normal, std 1/sqrt(fan_in), zero bias."""
    std = 1.0 / math.sqrt(linear.in_features)
    nn.init.trunc_normal_(linear.weight, std=std, a=-2 * std, b=2 * std)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


KeyStrength = Literal["softplus", "oneplus"]


def oneplus(x: torch.Tensor) -> torch.Tensor:
    """1 + softplus(x), the DNC paper's map onto [1, ∞) for key strengths."""
    return 1.0 + F.softplus(x)


KEY_STRENGTH_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "softplus": F.softplus,  # the reference's CosineWeights default: β ∈ (0, ∞)
    "oneplus": oneplus,  # the paper's: β ∈ (1, ∞)
}


# --------------------------------------------------------------------------------------------
# Addressing (addressing.py in the reference)
# --------------------------------------------------------------------------------------------


def vector_norms(m: torch.Tensor) -> torch.Tensor:
    """sqrt(Σ m² + ε) over the last axis, keeping it; ε keeps the gradient finite at 0."""
    return torch.sqrt((m * m).sum(dim=-1, keepdim=True) + EPSILON)


def content_weights(
    memory: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor
) -> torch.Tensor:
    """Content addressing: softmax over slots of strength × cosine(key, memory row).

    ``memory`` [B, N, W], ``keys`` [B, H, W], ``strengths`` [B, H] (already activated, ≥ 0);
    returns [B, H, N].
    """
    dot = keys @ memory.transpose(1, 2)  # [B, H, N]
    norm = vector_norms(keys) @ vector_norms(memory).transpose(1, 2)  # outer product [B, H, N]
    similarity = dot / (norm + EPSILON)
    return torch.softmax(similarity * strengths.unsqueeze(-1), dim=-1)


def usage_after_write(prev_usage: torch.Tensor, write_weights: torch.Tensor) -> torch.Tensor:
    """u + (1 − u) ∘ w, with w = 1 − Π_k (1 − w^w_k) the combined effect of all write heads.

    ``prev_usage`` [B, N], ``write_weights`` [B, K, N]. The reference stops the gradient through
    the write weights here (usage is treated as bookkeeping), so do we.
    """
    write_weights = 1.0 - torch.prod(1.0 - write_weights.detach(), dim=1)
    return prev_usage + (1.0 - prev_usage) * write_weights


def usage_after_read(
    prev_usage: torch.Tensor, free_gates: torch.Tensor, read_weights: torch.Tensor
) -> torch.Tensor:
    """u ∘ ψ with retention ψ = Π_i (1 − f_i w^{r,i}): slots just read may be freed.

    ``prev_usage`` [B, N], ``free_gates`` [B, R], ``read_weights`` [B, R, N].
    """
    retention = torch.prod(1.0 - free_gates.unsqueeze(-1) * read_weights, dim=1)
    return prev_usage * retention


def update_usage(
    prev_usage: torch.Tensor,
    prev_write_weights: torch.Tensor,
    free_gates: torch.Tensor,
    prev_read_weights: torch.Tensor,
) -> torch.Tensor:
    """u_t = (u_{t-1} + w^w_{t-1} − u_{t-1} ∘ w^w_{t-1}) ∘ ψ_t (the reference's ``Freeness``)."""
    usage = usage_after_write(prev_usage, prev_write_weights)
    return usage_after_read(usage, free_gates, prev_read_weights)


def allocation_weights(usage: torch.Tensor) -> torch.Tensor:
    """Allocation: the least-used slots get weight, a[φ_j] = (1 − û[φ_j]) Π_{i<j} û[φ_i].

    ``usage`` [B, N] → [B, N]. û = ε + (1 − ε) u keeps the cumulative product away from exact
    zeros (as the reference does). The sort is stable, so ties go to the lower index as with the
    reference's ``top_k`` on 1 − u; the permutation itself carries no gradient, the sorted values
    do (gather is differentiable), exactly as in the reference.
    """
    usage = EPSILON + (1.0 - EPSILON) * usage
    sorted_usage, indices = torch.sort(usage, dim=-1, stable=True)
    # exclusive cumulative product: [1, û_0, û_0 û_1, ...]
    ones = torch.ones_like(sorted_usage[..., :1])
    prod_sorted = torch.cumprod(torch.cat([ones, sorted_usage[..., :-1]], dim=-1), dim=-1)
    sorted_allocation = (1.0 - sorted_usage) * prod_sorted
    # unsort: the value computed for sorted position j belongs to slot indices[j]
    return torch.zeros_like(sorted_allocation).scatter(-1, indices, sorted_allocation)


def write_allocation_weights(usage: torch.Tensor, write_gates: torch.Tensor) -> torch.Tensor:
    """Allocation weights for each write head in turn: [B, N], [B, K] → [B, K, N].

    After head k allocates, its gated allocation counts as used so head k+1 picks other slots.
    """
    weights = []
    for k in range(write_gates.shape[1]):
        alloc = allocation_weights(usage)
        weights.append(alloc)
        usage = usage + (1.0 - usage) * write_gates[:, k : k + 1] * alloc
    return torch.stack(weights, dim=1)


def update_link(
    prev_link: torch.Tensor, prev_precedence: torch.Tensor, write_weights: torch.Tensor
) -> torch.Tensor:
    """L[i, j] ← (1 − w[i] − w[j]) L[i, j] + w[i] p[j], then the diagonal set to zero.

    ``prev_link`` [B, K, N, N], ``prev_precedence`` and ``write_weights`` [B, K, N]. L[i, j] is
    how strongly slot i was written right after slot j; self-links are meaningless, hence zeroed.
    """
    w_i = write_weights.unsqueeze(-1)  # [B, K, N, 1]
    w_j = write_weights.unsqueeze(-2)  # [B, K, 1, N]
    link = (1.0 - w_i - w_j) * prev_link + w_i * prev_precedence.unsqueeze(-2)
    n = link.shape[-1]
    off_diagonal = 1.0 - torch.eye(n, dtype=link.dtype, device=link.device)
    return link * off_diagonal


def update_precedence(prev_precedence: torch.Tensor, write_weights: torch.Tensor) -> torch.Tensor:
    """p ← (1 − Σ_i w[i]) p + w: the degree to which each slot was the last one written."""
    return (1.0 - write_weights.sum(dim=-1, keepdim=True)) * prev_precedence + write_weights


def directional_read_weights(
    link: torch.Tensor, prev_read_weights: torch.Tensor, forward: bool
) -> torch.Tensor:
    """Forward f = L w (the slots written after those read) or backward b = L^T w.

    ``link`` [B, K, N, N], ``prev_read_weights`` [B, R, N] → [B, R, K, N] (one per read/write
    head pair, as in the reference).
    """
    if forward:
        return torch.einsum("bkij,brj->brki", link, prev_read_weights)
    return torch.einsum("bkji,brj->brki", link, prev_read_weights)


def read_weights(
    read_modes: torch.Tensor,
    content: torch.Tensor,
    forward: torch.Tensor,
    backward: torch.Tensor,
) -> torch.Tensor:
    """Mix the read modes: Σ_k (π[backward_k] b_k + π[forward_k] f_k) + π[content] c.

    ``read_modes`` [B, R, 2K + 1] laid out as [backward × K, forward × K, content] (the reference's
    order), ``content`` [B, R, N], ``forward`` and ``backward`` [B, R, K, N] → [B, R, N].
    """
    k = forward.shape[2]
    backward_mode = read_modes[..., :k].unsqueeze(-1)
    forward_mode = read_modes[..., k : 2 * k].unsqueeze(-1)
    content_mode = read_modes[..., 2 * k].unsqueeze(-1)
    return (
        content_mode * content
        + (forward_mode * forward).sum(dim=2)
        + (backward_mode * backward).sum(dim=2)
    )


def erase_and_write(
    memory: torch.Tensor, write_weights: torch.Tensor, erase: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """M ∘ Π_k (1 − w_k e_k^T) + Σ_k w_k v_k^T.

    ``memory`` [B, N, W], ``write_weights`` [B, K, N], ``erase`` and ``values`` [B, K, W].
    """
    weighted_resets = write_weights.unsqueeze(-1) * erase.unsqueeze(2)  # [B, K, N, W]
    memory = memory * torch.prod(1.0 - weighted_resets, dim=1)
    return memory + write_weights.transpose(1, 2) @ values


# --------------------------------------------------------------------------------------------
# Memory access (access.py in the reference)
# --------------------------------------------------------------------------------------------


class AccessState(NamedTuple):
    """Everything the memory carries from one step to the next."""

    memory: torch.Tensor  # [B, N, W]
    read_weights: torch.Tensor  # [B, R, N]
    write_weights: torch.Tensor  # [B, K, N]
    link: torch.Tensor  # [B, K, N, N]
    precedence: torch.Tensor  # [B, K, N]
    usage: torch.Tensor  # [B, N]


class Interface(NamedTuple):
    """The controller's instructions to the memory for one step (activations applied)."""

    write_vectors: torch.Tensor  # [B, K, W]
    erase_vectors: torch.Tensor  # [B, K, W] in (0, 1)
    free_gates: torch.Tensor  # [B, R] in (0, 1)
    allocation_gates: torch.Tensor  # [B, K] in (0, 1)
    write_gates: torch.Tensor  # [B, K] in (0, 1)
    read_modes: torch.Tensor  # [B, R, 2K + 1], rows sum to 1
    write_keys: torch.Tensor  # [B, K, W]
    write_strengths: torch.Tensor  # [B, K] ≥ 0 (softplus) or ≥ 1 (oneplus)
    read_keys: torch.Tensor  # [B, R, W]
    read_strengths: torch.Tensor  # [B, R] ≥ 0 (softplus) or ≥ 1 (oneplus)


class MemoryAccess(nn.Module):
    """The DNC's memory: one linear map of the controller output to the interface, then one step
    of write-then-read addressing. Returns the read words [B, R, W] and the new state."""

    def __init__(
        self,
        input_size: int,
        memory_slots: int,
        word_size: int,
        read_heads: int,
        write_heads: int,
        key_strength: KeyStrength = "softplus",
    ) -> None:
        super().__init__()
        if key_strength not in KEY_STRENGTH_ACTIVATIONS:
            raise ValueError(f"key_strength must be one of {sorted(KEY_STRENGTH_ACTIVATIONS)}")
        self.key_strength = key_strength
        self._strength = KEY_STRENGTH_ACTIVATIONS[key_strength]
        self.memory_slots = memory_slots
        self.word_size = word_size
        self.read_heads = read_heads
        self.write_heads = write_heads
        k, r, w = write_heads, read_heads, word_size
        # the sizes of the interface's pieces, in the order of ``Interface``
        self._sizes = [k * w, k * w, r, k, k, r * (2 * k + 1), k * w, k, r * w, r]
        # One linear layer for the whole interface: the reference uses one ``snt.Linear`` per
        # piece, which is the same function and, with per-layer fan-in init, the same init.
        self.interface = nn.Linear(input_size, sum(self._sizes))
        _sonnet_init_(self.interface)

    def parse_interface(self, controller_output: torch.Tensor) -> Interface:
        """Split the interface vector into its named pieces and apply their activations."""
        b = controller_output.shape[0]
        k, r, w = self.write_heads, self.read_heads, self.word_size
        (
            write_vectors,
            erase_vectors,
            free_gates,
            allocation_gates,
            write_gates,
            read_modes,
            write_keys,
            write_strengths,
            read_keys,
            read_strengths,
        ) = torch.split(self.interface(controller_output), self._sizes, dim=-1)
        return Interface(
            write_vectors=write_vectors.reshape(b, k, w),
            erase_vectors=torch.sigmoid(erase_vectors).reshape(b, k, w),
            free_gates=torch.sigmoid(free_gates),
            allocation_gates=torch.sigmoid(allocation_gates),
            write_gates=torch.sigmoid(write_gates),
            read_modes=torch.softmax(read_modes.reshape(b, r, 2 * k + 1), dim=-1),
            write_keys=write_keys.reshape(b, k, w),
            write_strengths=self._strength(write_strengths),
            read_keys=read_keys.reshape(b, r, w),
            read_strengths=self._strength(read_strengths),
        )

    def initial_state(
        self, batch_size: int, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> AccessState:
        """All zeros: empty memory, nothing read, written or used (the reference's start)."""
        n, w, r, k = self.memory_slots, self.word_size, self.read_heads, self.write_heads

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(batch_size, *shape, device=device, dtype=dtype)

        return AccessState(
            memory=zeros(n, w),
            read_weights=zeros(r, n),
            write_weights=zeros(k, n),
            link=zeros(k, n, n),
            precedence=zeros(k, n),
            usage=zeros(n),
        )

    def forward(
        self, controller_output: torch.Tensor, prev: AccessState
    ) -> tuple[torch.Tensor, AccessState]:
        """One access step: update usage, write, update linkage, read."""
        xi = self.parse_interface(controller_output)
        usage = update_usage(prev.usage, prev.write_weights, xi.free_gates, prev.read_weights)

        # write weights come from the memory *before* this step's write
        write_content = content_weights(prev.memory, xi.write_keys, xi.write_strengths)
        write_alloc = write_allocation_weights(usage, xi.allocation_gates * xi.write_gates)
        alloc_gate = xi.allocation_gates.unsqueeze(-1)
        write_weights = xi.write_gates.unsqueeze(-1) * (
            alloc_gate * write_alloc + (1.0 - alloc_gate) * write_content
        )
        memory = erase_and_write(prev.memory, write_weights, xi.erase_vectors, xi.write_vectors)

        link = update_link(prev.link, prev.precedence, write_weights)
        precedence = update_precedence(prev.precedence, write_weights)

        # reads see the memory and links *after* this step's write
        read_w = read_weights(
            xi.read_modes,
            content_weights(memory, xi.read_keys, xi.read_strengths),
            directional_read_weights(link, prev.read_weights, forward=True),
            directional_read_weights(link, prev.read_weights, forward=False),
        )
        read_words = read_w @ memory  # [B, R, W]
        state = AccessState(memory, read_w, write_weights, link, precedence, usage)
        return read_words, state


# --------------------------------------------------------------------------------------------
# Controller and core (dnc.py in the reference)
# --------------------------------------------------------------------------------------------


class SonnetLSTMCell(nn.Module):
    """Sonnet 1's ``snt.LSTM`` cell: one weight over [x, h], gates (i, j, f, o), forget bias +1.

    c' = σ(f + 1) c + σ(i) tanh(j),  h' = σ(o) tanh(c'). One bias vector (torch's ``LSTMCell``
    has two), so the parameter count matches the reference.
    """

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.forget_bias = forget_bias
        self.gates = nn.Linear(input_size + hidden_size, 4 * hidden_size)
        _sonnet_init_(self.gates)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step; returns the new (h, c)."""
        h, c = state
        i, j, f, o = self.gates(torch.cat([x, h], dim=-1)).chunk(4, dim=-1)
        c = torch.sigmoid(f + self.forget_bias) * c + torch.sigmoid(i) * torch.tanh(j)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class DNCState(NamedTuple):
    """The core's recurrent state: the last read words, the memory state, the LSTM state."""

    read_words: torch.Tensor  # [B, R, W]
    access: AccessState
    controller: tuple[torch.Tensor, torch.Tensor]  # (h, c), each [B, controller_size]


class DNC(nn.Module):
    """The DNC core unrolled over a batch-first sequence: [B, T, input_size] → [B, T, output_size].

    Controller input is [x_t, r_{t-1}]; output is Linear([h_t, r_t]). Controller output, state and
    logits are clipped to ±clip_value, as the reference's ``clip_value`` does.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        memory_slots: int = 16,
        word_size: int = 16,
        read_heads: int = 4,
        write_heads: int = 1,
        controller_size: int = 64,
        clip_value: float = 20.0,
        key_strength: KeyStrength = "softplus",
    ) -> None:
        super().__init__()
        self.clip_value = clip_value
        self.controller_size = controller_size
        read_size = read_heads * word_size
        self.controller = SonnetLSTMCell(input_size + read_size, controller_size)
        self.access = MemoryAccess(
            controller_size, memory_slots, word_size, read_heads, write_heads, key_strength
        )
        self.output_linear = nn.Linear(controller_size + read_size, output_size)
        _sonnet_init_(self.output_linear)

    def _clip(self, x: torch.Tensor) -> torch.Tensor:
        # clamp as tf.clip_by_value: outside the band the gradient is zero
        return torch.clamp(x, -self.clip_value, self.clip_value)

    def initial_state(
        self, batch_size: int, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> DNCState:
        """All-zero state, as the reference's ``initial_state``."""
        access = self.access.initial_state(batch_size, device, dtype)
        b, r, w = batch_size, self.access.read_heads, self.access.word_size
        h = torch.zeros(b, self.controller_size, device=device, dtype=dtype)
        return DNCState(
            read_words=torch.zeros(b, r, w, device=device, dtype=dtype),
            access=access,
            controller=(h, torch.zeros_like(h)),
        )

    def step(self, x: torch.Tensor, prev: DNCState) -> tuple[torch.Tensor, DNCState]:
        """One time step: x [B, input_size] → logits [B, output_size] and the next state."""
        controller_input = torch.cat([x, prev.read_words.flatten(1)], dim=-1)
        h, c = self.controller(controller_input, prev.controller)
        # h is both the output and part of the state: clipping it once covers both
        h, c = self._clip(h), self._clip(c)
        read_words, access = self.access(h, prev.access)
        logits = self._clip(self.output_linear(torch.cat([h, read_words.flatten(1)], dim=-1)))
        return logits, DNCState(read_words, access, (h, c))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Unroll over time from the zero state: [B, T, input_size] → logits [B, T, output_size]."""
        state = self.initial_state(inputs.shape[0], inputs.device, inputs.dtype)
        outputs = []
        for t in range(inputs.shape[1]):
            logits, state = self.step(inputs[:, t], state)
            outputs.append(logits)
        return torch.stack(outputs, dim=1)
