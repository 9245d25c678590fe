"""What a study may name: the task catalog (:mod:`.tasks`) and the optimizer catalog
(:mod:`.optimizers`), both importable without torch; ``workers.tasks`` and ``optim.registry``
implement them under the same names."""

from studies.catalog.optimizers import OPTIMIZERS, OptimizerInfo, optimizer_info, validate_options
from studies.catalog.tasks import TASKS, TaskOptions, TaskSpec

__all__ = [
    "OPTIMIZERS",
    "TASKS",
    "OptimizerInfo",
    "TaskOptions",
    "TaskSpec",
    "optimizer_info",
    "validate_options",
]
