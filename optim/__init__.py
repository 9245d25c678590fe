"""PyTorch optimizers measured by the service: ALI-G, AALIG, SPS, L4 and a registry of baselines."""

from optim.aalig import AALIG
from optim.alig import AliG
from optim.exceptions import (
    InvalidHyperparameterError,
    MissingClosureError,
    OptimError,
    UnknownOptimizerError,
)
from optim.l4 import L4
from optim.projection import project_onto_ball
from optim.registry import OPTIMIZERS, OptimizerInfo, build_optimizer, optimizer_info
from optim.sps import SPS

__all__ = [
    "AALIG",
    "L4",
    "OPTIMIZERS",
    "SPS",
    "AliG",
    "InvalidHyperparameterError",
    "MissingClosureError",
    "OptimError",
    "OptimizerInfo",
    "UnknownOptimizerError",
    "build_optimizer",
    "optimizer_info",
    "project_onto_ball",
]
