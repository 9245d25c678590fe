"""Plain reference implementations of the steps of ALI-G, AALIG, SPS and L4.

Each one is the math of docs/algorithms.md written out one tensor at a time, with no foreach
kernels, tiling or other fast paths, and no input checks: short enough to read next to the paper.
They are ``torch.optim.Optimizer`` subclasses that take every hyperparameter by keyword, with no
defaults, and read the shared ones from ``defaults``: ``AliGReference(params,
**optimizer.defaults)`` is the twin of a production ``optim.AliG``, and the tests check the
production optimizers against their twins step by step. Train with the production optimizers.
"""

from optim.reference.aalig import AALIGReference
from optim.reference.alig import AliGReference
from optim.reference.l4 import L4Reference
from optim.reference.sps import SPSReference

__all__ = ["AALIGReference", "AliGReference", "L4Reference", "SPSReference"]
