"""One trial's full configuration: what the trainer runs and what the trial key is made of.

A study spec expands into these (one per grid point × optimizer × seed); the trainer in
``workers`` consumes them. Every field is plain JSON so a config travels unchanged through SQL,
Ray Tune and HTTP.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TrialConfig(BaseModel):
    """Everything that determines one training run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str  # a key of studies.tasks.TASKS
    task_options: dict[str, Any] = Field(default_factory=dict)  # validated by the task's model
    optimizer: str  # a key of optim.registry.OPTIMIZERS
    eta: Annotated[float, Field(gt=0)] | None  # max_lr / fraction / lr; None = ALI-G∞ only
    optimizer_options: dict[str, Any] = Field(default_factory=dict)  # e.g. {"momentum": 0.9}
    batch_size: Annotated[int, Field(ge=1)]
    radius: Annotated[float, Field(gt=0)] | None = None  # joint l2 ball; None = unconstrained
    weight_decay: Annotated[float, Field(ge=0)] | None = None  # for optimizers that take it
    seed: int = 0  # initialisation, data order, fresh batches
    budget: Annotated[int, Field(ge=1)]  # in the task's unit (steps or epochs)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when available
    threads: Annotated[int, Field(ge=1)] = 1  # torch CPU threads (the trial's CPU share)
    amp: bool = False  # mixed precision (CUDA only; ignored on the CPU)
    report_every: Annotated[int, Field(ge=1)] | None = None  # steps between reports (step tasks)
    divergence_factor: Annotated[float, Field(gt=1)] = 1e3  # loss > factor × (1 + L0) diverges
