"""The task registry: one implementation per name of the catalog in ``studies.catalog.tasks``."""

from collections.abc import Mapping
from typing import Any

import torch
from pydantic import ValidationError

from studies.catalog.tasks import TASKS, TaskOptions
from workers.exceptions import TaskConfigError
from workers.tasks.base import Task
from workers.tasks.digits import Digits
from workers.tasks.dnc import DncCopyTask
from workers.tasks.image_classification import Cifar10Task, Cifar100Task, SvhnTask
from workers.tasks.matrix_factorisation import MatrixFactorisation
from workers.tasks.rbf_classification import RbfClassification

TASK_TYPES: dict[str, type[Task]] = {
    cls.name: cls
    for cls in [
        DncCopyTask,
        MatrixFactorisation,
        RbfClassification,
        Digits,
        Cifar10Task,
        Cifar100Task,
        SvhnTask,
    ]
}


def parse_task_options(name: str, options: Mapping[str, Any] | TaskOptions) -> TaskOptions:
    """``options`` validated by the catalog's model for ``name``; errors name the field."""
    if name not in TASKS:
        raise TaskConfigError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    model = TASKS[name].options
    if isinstance(options, model):
        return options
    try:
        return model.model_validate(dict(options))
    except ValidationError as error:
        problems = "; ".join(
            f"task_options.{'.'.join(str(p) for p in e['loc']) or '?'}: {e['msg']}"
            for e in error.errors()
        )
        raise TaskConfigError(f"{name}: {problems}") from None


def build_task(
    name: str, options: Mapping[str, Any] | TaskOptions, *, seed: int, device: torch.device
) -> Task:
    """An instance of the task ``name`` with validated options."""
    parsed = parse_task_options(name, options)
    if name not in TASK_TYPES:
        raise TaskConfigError(f"task {name!r} has no implementation in this worker")
    return TASK_TYPES[name](parsed, seed=seed, device=device)
