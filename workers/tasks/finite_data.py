"""Batching and evaluation for tasks whose data fit in memory as tensors."""

from collections.abc import Callable, Iterator

import torch
from torch import nn

from workers.tasks.base import Batch


def epoch_batches(
    inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[Batch]:
    """One epoch in a random order drawn from ``generator``; the last partial batch is kept.

    Each batch carries its samples' indices into the training set (for AALIG's AOVs).
    """
    order = torch.randperm(targets.shape[0], generator=generator)
    for start in range(0, order.numel(), batch_size):
        index = order[start : start + batch_size]
        yield Batch(inputs[index], targets[index], index)


@torch.no_grad()
def evaluate_in_batches(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device,
    *,
    correct: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 512,
) -> dict[str, float]:
    """Mean per-sample ``loss_fn(outputs, targets)`` over a held-out set, and the accuracy when
    ``correct(outputs, targets)`` (a per-sample boolean) is given.

    One forward pass per batch, in eval mode; the model's previous mode is restored.
    """
    was_training = model.training
    model.eval()
    total_loss, hits = 0.0, 0
    count = int(targets.shape[0])
    try:
        for start in range(0, count, batch_size):
            x = inputs[start : start + batch_size].to(device)
            y = targets[start : start + batch_size].to(device)
            outputs = model(x)
            total_loss += float(loss_fn(outputs, y).sum())
            if correct is not None:
                hits += int(correct(outputs, y).sum())
    finally:
        model.train(was_training)
    result = {"val_loss": total_loss / max(count, 1)}
    if correct is not None:
        result["val_accuracy"] = hits / max(count, 1)
    return result


def top1_correct(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample: is the arg-max class the target class?"""
    return logits.argmax(dim=1) == targets


def sign_correct(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample, for one binary score and ±1 targets: does the sign match?"""
    return torch.where(scores.squeeze(1) >= 0, 1.0, -1.0) == targets
