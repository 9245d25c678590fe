"""What every task implements so that one trainer can run any optimizer on it.

A task owns its data, its model and its per-sample loss; the trainer owns the loop, the
optimizer, the budget and the reporting. Finite-data tasks yield the sample indices of each batch
(AALIG keeps one approximate optimal value per training sample); infinite-data tasks (a fresh
batch every step) yield none.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from studies.catalog.tasks import TASKS, TaskOptions, TaskSpec


@dataclass
class Batch:
    """One mini-batch: model inputs, targets, the samples' indices and task-specific extras."""

    inputs: Any
    targets: torch.Tensor
    indices: torch.Tensor | None = None  # positions in the training set (finite-data tasks)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. the DNC's loss mask

    def to(self, device: torch.device) -> "Batch":
        """The batch with every tensor moved to ``device`` (indices stay where AALIG wants them)."""

        def move(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return value.to(device, non_blocking=True)
            if isinstance(value, tuple | list):
                return type(value)(move(v) for v in value)
            return value

        return Batch(
            move(self.inputs),
            move(self.targets),
            None if self.indices is None else self.indices.to(device),
            {key: move(value) for key, value in self.extras.items()},
        )

    def __len__(self) -> int:
        return int(self.targets.shape[0])


def stack_batches(batches: list[Batch]) -> Batch:
    """Batches of several data streams stacked along a new first dimension (one per stream);
    they must have the same shapes (:meth:`Task.stack_batches` may pad them first)."""

    def stack(values: list[Any]) -> Any:
        first = values[0]
        if isinstance(first, torch.Tensor):
            return torch.stack(values)
        if isinstance(first, tuple | list):
            return type(first)(stack(list(group)) for group in zip(*values, strict=True))
        return first

    first = batches[0]
    return Batch(
        stack([b.inputs for b in batches]),
        stack([b.targets for b in batches]),
        None if first.indices is None else torch.stack([b.indices for b in batches]),
        {key: stack([b.extras[key] for b in batches]) for key in first.extras},
    )


class Task(ABC):
    """A registered workload. Subclasses set ``name`` (a key of ``studies.catalog.tasks.TASKS``)."""

    name: ClassVar[str]
    loss_lower_bound: ClassVar[float] = 0.0  # B for AALIG's AOVs: 0 for CE, hinge, squared loss
    # whether many trials of this task can train as one vectorised model (workers.packed_trainer):
    # the model's forward runs under torch.func.vmap and changes no buffer in place
    packable: ClassVar[bool] = True

    def __init__(self, options: TaskOptions, *, seed: int, device: torch.device) -> None:
        self.options = options
        self.seed = seed
        self.device = device

    @property
    def spec(self) -> TaskSpec:
        """This task's catalog entry."""
        return TASKS[self.name]

    @property
    def n_train(self) -> int | None:
        """Number of training samples, or ``None`` for infinite data."""
        return None

    @abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model (seeded by the trainer before the call)."""

    @abstractmethod
    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        """One epoch of shuffled training batches, or an endless stream for step budgets."""

    @abstractmethod
    def per_sample_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The unreduced training loss, shape ``[len(batch)]``; its mean is the batch loss."""

    def evaluate(self, model: nn.Module, batch_size: int) -> dict[str, float]:
        """Validation metrics (``val_loss``, ``val_accuracy``, …); none by default."""
        return {}

    def evaluate_members(
        self, forward: Callable[[Any], torch.Tensor], batch_size: int
    ) -> list[dict[str, float]] | None:
        """:meth:`evaluate` for the members of a pack at once: ``forward(inputs)`` returns the
        members' outputs stacked ``[K, …]``; one dict per member, or ``None`` when the task
        has no vectorised evaluation (the pack then evaluates member by member)."""
        return None

    def stack_batches(self, batches: list[Batch]) -> Batch:
        """One batch per data stream of a pack, stacked along a new first dimension."""
        return stack_batches(batches)

    def grad_clip_norm(self, optimizer: str) -> float | None:
        """Global-norm gradient clipping for ``optimizer`` on this task (``None`` = none)."""
        return None


class RecurrentTask(Task):
    """A task whose model is a recurrent core over batch-first sequences ``[B, T, C]``.

    The model has ``initial_state(batch_size, device, dtype)`` (a pytree of tensors with the
    batch first), ``step(x_t, state) -> (output_t, state)`` for one time step ``x_t [B, C]``, and
    a ``forward`` that unrolls ``step`` from the initial state and stacks the outputs over time
    ``[B, T, out]``; the loss is a function of those outputs (:meth:`loss_from_outputs`). A pack
    of such a task may unroll the sequence itself and run each time step as one compiled
    function (:mod:`workers.compiled_unroll`).
    """

    #: the task options :meth:`build_model` reads: packs that agree on them share one compiled
    #: time step (the others, such as data lengths, only change what the step is fed)
    model_fields: ClassVar[tuple[str, ...]]

    @abstractmethod
    def loss_from_outputs(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The per-sample loss ``[..., B]`` from the outputs ``[..., B, T, out]`` (a leading
        member dimension broadcasts against the batch's targets)."""

    def per_sample_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self.loss_from_outputs(model(batch.inputs), batch)
