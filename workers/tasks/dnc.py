"""The ``dnc-copy`` task: a DNC on DeepMind's repeat-copy (ALI-G paper, Figure 3).

Data (``RepeatCopy`` in deepmind/dnc). Per sample, pattern length L ~ U{min_length..max_length},
repeat count R ~ U{min_repeats..max_repeats} and a pattern P ∈ {0, 1}^{L × bits}. With
``bits`` data channels, observation channel ``bits`` is the start flag and ``bits + 1`` the
repeat count; target channel ``bits`` is the end marker. Over T = L (R + 1) + 3 steps:

    step       0      1..L    L+1          L+2 .. L+1+LR        L+2+LR
    obs        start  P       R/10 (rep.)  0                    0
    target     0      0       0            P tiled R times      end marker
    mask       0      0       0            1                    1

(The reference feeds R divided by a normaliser, 10 by default; see docs/algorithms.md, "dnc-copy".)
Samples are zero-padded with mask 0 to the longest sample in the batch. Batch-first tensors:
inputs [B, T, bits + 2], targets [B, T, bits + 1], mask [B, T].

Loss (the reference's ``masked_sigmoid_cross_entropy``, in nats): per sample

    ℓ = Σ_t mask_t Σ_c [max(y, 0) - y·target + log1p(exp(-|y|))]_{t,c}

whose batch mean is the reference's loss "averaged over the batch". Every step draws a fresh
batch (infinite data, ``n_train`` None).

Evaluation, at every report: ``heldout_loss`` and ``heldout_bit_errors``, the mean per-sequence
loss and wrong bits over a fixed held-out set of ``heldout_batches`` batches of
``HELDOUT_BATCH_SIZE`` sequences drawn once from ``HELDOUT_SEED`` (the same data for every trial
seed and batch size); and, as before, ``val_loss`` and ``val_bit_errors`` on one held-out batch
of the trial's batch size drawn from the trial's seed.
"""

from collections.abc import Callable, Iterator
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from studies.catalog.tasks import DncCopyOptions, TaskOptions
from workers.tasks.base import Batch, RecurrentTask
from workers.tasks.dnc_model import DNC

REPEAT_NORMALISER = 10.0  # R is fed as R / 10, the reference's default normaliser
_VALIDATION_SEED_OFFSET = 1_000_003  # keeps the held-out batch apart from training streams
HELDOUT_SEED = 20_190_601  # the fixed held-out set's seed, independent of the trial seed
HELDOUT_BATCH_SIZE = 16  # the held-out set is ``heldout_batches`` batches of this size


def repeat_copy_batch(
    options: DncCopyOptions, batch_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One repeat-copy batch ``(obs, target, mask)`` drawn from ``generator`` (on its device).

    The number of random draws does not depend on the sampled lengths (patterns are drawn at the
    maximum length and cut), so the stream for a given generator state is fixed.
    """
    device = generator.device
    bits = options.bits
    lengths = torch.randint(
        options.min_length,
        options.max_length + 1,
        (batch_size,),
        generator=generator,
        device=device,
    )
    repeats = torch.randint(
        options.min_repeats,
        options.max_repeats + 1,
        (batch_size,),
        generator=generator,
        device=device,
    )
    patterns = torch.randint(
        0, 2, (batch_size, options.max_length, bits), generator=generator, device=device
    ).float()

    totals = lengths * (repeats + 1) + 3
    steps = int(totals.max())
    t = torch.arange(steps, device=device).unsqueeze(0)  # [1, T]
    L = lengths.unsqueeze(1)  # [B, 1]
    R = repeats.unsqueeze(1)
    target_start = L + 2
    end_step = target_start + L * R  # the end marker's step

    obs = torch.zeros(batch_size, steps, bits + 2, device=device)
    target = torch.zeros(batch_size, steps, bits + 1, device=device)

    obs[:, 0, bits] = 1.0  # start flag
    in_pattern = (t >= 1) & (t <= L)  # [B, T]
    pattern_row = (t - 1).clamp(0, options.max_length - 1).expand(batch_size, -1)
    rows = torch.gather(patterns, 1, pattern_row.unsqueeze(-1).expand(-1, -1, bits))
    obs[..., :bits] = rows * in_pattern.unsqueeze(-1)
    obs[..., bits + 1] = (t == L + 1) * (R / REPEAT_NORMALISER)

    in_copy = (t >= target_start) & (t < end_step)
    # step t of the copy phase shows pattern row (t − L − 2) mod L: the pattern tiled R times
    copy_row = torch.remainder((t - target_start).clamp(min=0), L)
    rows = torch.gather(patterns, 1, copy_row.unsqueeze(-1).expand(-1, -1, bits))
    target[..., :bits] = rows * in_copy.unsqueeze(-1)
    target[..., bits] = (t == end_step).float()

    mask = ((t >= target_start) & (t <= end_step)).float()
    return obs, target, mask


def sigmoid_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Elementwise sigmoid cross-entropy as TensorFlow's ``sigmoid_cross_entropy_with_logits``
    (the authors' loss): ``max(x, 0) - x·z + log1p(exp(-|x|))``.

    Written out rather than ``F.binary_cross_entropy_with_logits``: under ``torch.func.vmap``
    (packed trials) that function is computed in a form that rounds ``log(1 + e^-20)`` to 0 in
    float32, so at the ±20 logit clip a packed member's loss was exactly 0 where the same trial
    alone has 2.06e-9 per bit, and ALI-G's step (proportional to the loss) stopped; plain torch
    also gives 0 for a 0-target at -20. This form is the same operations plain and vmapped, and
    its floor, ``log1p(e^-20)`` per bit for either target, is TensorFlow's.
    """
    return logits.clamp(min=0) - logits * target + torch.log1p(torch.exp(-logits.abs()))


def masked_sigmoid_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Per-sample loss: sigmoid cross-entropy summed over channels and masked steps → [B]."""
    xent = sigmoid_cross_entropy(logits, target).sum(dim=-1)
    return (xent * mask).sum(dim=-1)


def bit_errors(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample count of wrong bits (prediction = logit > 0) on the masked steps → [B]."""
    wrong = ((logits > 0).float() != target).float().sum(dim=-1)
    return (wrong * mask).sum(dim=-1)


def _loss_and_errors(
    model: nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    device: torch.device,
) -> tuple[float, float]:
    """Mean per-sequence loss and bit errors over every sequence of ``batches``."""
    losses, errors = [], []
    for obs, target, mask in batches:
        obs, target, mask = obs.to(device), target.to(device), mask.to(device)
        logits = model(obs)
        losses.append(masked_sigmoid_cross_entropy(logits, target, mask))
        errors.append(bit_errors(logits, target, mask))
    return float(torch.cat(losses).mean()), float(torch.cat(errors).mean())


class DncCopyTask(RecurrentTask):
    """DNC (DeepMind's reference design) on repeat-copy; fresh batches, gradient clip at 50."""

    name: ClassVar[str] = "dnc-copy"
    model_fields: ClassVar[tuple[str, ...]] = (
        "bits", "memory_slots", "word_size", "read_heads", "controller_size", "clip_value",
        "key_strength",
    )  # fmt: skip

    def __init__(self, options: TaskOptions, *, seed: int, device: torch.device) -> None:
        if not isinstance(options, DncCopyOptions):
            raise TypeError(f"dnc-copy needs DncCopyOptions, got {type(options).__name__}")
        super().__init__(options, seed=seed, device=device)
        self.opts: DncCopyOptions = options
        # held-out batches by batch size, drawn once so every evaluation sees the same data
        self._validation: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._heldout: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None

    @property
    def input_size(self) -> int:
        """Observation channels: the bits, a start flag and the repeat count."""
        return self.opts.bits + 2

    @property
    def output_size(self) -> int:
        """Target channels: the bits and the end marker."""
        return self.opts.bits + 1

    def build_model(self) -> nn.Module:
        o = self.opts
        return DNC(
            self.input_size,
            self.output_size,
            memory_slots=o.memory_slots,
            word_size=o.word_size,
            read_heads=o.read_heads,
            write_heads=1,
            controller_size=o.controller_size,
            clip_value=o.clip_value,
            key_strength=o.key_strength,
        ).to(self.device)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        while True:
            obs, target, mask = repeat_copy_batch(self.opts, batch_size, generator)
            yield Batch(inputs=obs, targets=target, indices=None, extras={"mask": mask})

    def stack_batches(self, batches: list[Batch]) -> Batch:
        """Streams' batches padded with masked-out zero steps to the longest, then stacked.

        The DNC is causal and the loss counts masked steps only, so trailing padding changes
        neither a sample's loss nor its gradient (only the order of additions of zeros)."""
        steps = max(b.inputs.shape[1] for b in batches)

        def pad(t: torch.Tensor) -> torch.Tensor:
            extra = steps - t.shape[1]
            return F.pad(t, (0, 0) * (t.dim() - 2) + (0, extra)) if extra else t

        return super().stack_batches(
            [
                Batch(pad(b.inputs), pad(b.targets), None, {"mask": pad(b.extras["mask"])})
                for b in batches
            ]
        )

    def loss_from_outputs(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return masked_sigmoid_cross_entropy(outputs, batch.targets, batch.extras["mask"])

    def heldout_set(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The fixed held-out set: ``heldout_batches`` batches of ``HELDOUT_BATCH_SIZE``, on the
        CPU, drawn once from ``HELDOUT_SEED`` (independent of the trial seed)."""
        if self._heldout is None:
            generator = torch.Generator().manual_seed(HELDOUT_SEED)
            self._heldout = [
                repeat_copy_batch(self.opts, HELDOUT_BATCH_SIZE, generator)
                for _ in range(self.opts.heldout_batches)
            ]
        return self._heldout

    def evaluate(self, model: nn.Module, batch_size: int) -> dict[str, float]:
        """Loss and bit errors per sequence on the fixed held-out set (``heldout_*``) and on one
        held-out batch of ``batch_size`` from the trial's seed (``val_*``), the same every call."""
        validation = self._validation_batch(batch_size)
        device = next(model.parameters()).device
        with torch.no_grad():
            val_loss, val_errors = _loss_and_errors(model, [validation], device)
            heldout_loss, heldout_errors = _loss_and_errors(model, self.heldout_set(), device)
        return {
            "val_loss": val_loss,
            "val_bit_errors": val_errors,
            "heldout_loss": heldout_loss,
            "heldout_bit_errors": heldout_errors,
        }

    def _validation_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The held-out batch of ``batch_size`` from the trial's seed, drawn once."""
        if batch_size not in self._validation:
            generator = torch.Generator().manual_seed(self.seed + _VALIDATION_SEED_OFFSET)
            self._validation[batch_size] = repeat_copy_batch(self.opts, batch_size, generator)
        return self._validation[batch_size]

    def evaluate_members(
        self, forward: Callable[[torch.Tensor], torch.Tensor], batch_size: int
    ) -> list[dict[str, float]]:
        """:meth:`evaluate` for K members at once: ``forward(obs)`` gives logits ``[K, B, T, C]``;
        the same sums per sequence, then means over sequences, member by member."""
        device = self.device

        def per_member(
            batches: list[tuple[torch.Tensor, ...]],
        ) -> tuple[torch.Tensor, torch.Tensor]:
            losses, errors = [], []
            for obs, target, mask in batches:
                obs, target, mask = obs.to(device), target.to(device), mask.to(device)
                logits = forward(obs)
                target = target.expand_as(logits)  # the same targets for every member
                losses.append(masked_sigmoid_cross_entropy(logits, target, mask))
                errors.append(bit_errors(logits, target, mask))
            return torch.cat(losses, dim=1).mean(dim=1), torch.cat(errors, dim=1).mean(dim=1)

        with torch.no_grad():
            val_loss, val_errors = per_member([self._validation_batch(batch_size)])
            heldout_loss, heldout_errors = per_member(self.heldout_set())
        columns = {
            "val_loss": val_loss.tolist(),
            "val_bit_errors": val_errors.tolist(),
            "heldout_loss": heldout_loss.tolist(),
            "heldout_bit_errors": heldout_errors.tolist(),
        }
        return [
            dict(zip(columns, values, strict=True))
            for values in zip(*columns.values(), strict=True)
        ]

    def grad_clip_norm(self, optimizer: str) -> float | None:
        if optimizer in self.opts.no_clip_for:
            return None
        return self.opts.grad_clip
