"""Per-sample classification losses: the unreduced losses every classification task returns.

For logits ``s`` (shape ``[B, C]``) and integer targets ``y`` (shape ``[B]``), each function
returns one loss per sample (shape ``[B]``); the trainer's batch loss is their mean, and AALIG
reads them one by one. Both losses are bounded below by 0, the ``loss_lower_bound`` of the tasks.

- Cross-entropy: ``ℓ(s, y) = −s_y + log Σ_j exp(s_j)``.
- Multi-class hinge (Crammer & Singer, 2001; the SVM loss of Deep Frank-Wolfe, Berrada et al.,
  2019): ``ℓ(s, y) = max_j (m·[j ≠ y] + s_j − s_y)`` with margin ``m`` (default 1). The ``j = y``
  term is exactly 0, so ``ℓ ≥ 0``. ALI-G trained on this loss is DFW (docs/algorithms.md,
  "Baselines").
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

PerSampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_shapes(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if logits.dim() != 2 or targets.dim() != 1 or logits.shape[0] != targets.shape[0]:
        raise ValueError(
            f"expected logits [B, C] and targets [B], got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )


def per_sample_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each sample, shape ``[B]`` (``F.cross_entropy(..., reduction="none")``)."""
    _check_shapes(logits, targets)
    return F.cross_entropy(logits, targets, reduction="none")


def per_sample_multiclass_hinge(
    logits: torch.Tensor, targets: torch.Tensor, margin: float = 1.0
) -> torch.Tensor:
    """Crammer-Singer hinge ``max_j (margin·[j ≠ y] + s_j − s_y)`` of each sample, shape ``[B]``.

    Non-negative by construction (the ``j = y`` term is exactly 0). Its gradient is a
    subgradient: ``amax`` splits it evenly between tied maximisers.
    """
    _check_shapes(logits, targets)
    index = targets.long().unsqueeze(1)
    true_score = logits.gather(1, index)  # s_y, [B, 1]
    # margin everywhere except the true class, where the term must be exactly s_y − s_y = 0
    delta = torch.full_like(logits, margin).scatter(1, index, 0.0)
    return (logits + delta - true_score).amax(dim=1)


PER_SAMPLE_LOSSES: dict[str, PerSampleLoss] = {
    "ce": per_sample_cross_entropy,
    "hinge": per_sample_multiclass_hinge,
}
