"""The optimizer library's exceptions.

Every error is a ``ValueError`` so callers that only know the documented contract
("bad hyperparameters raise ``ValueError``") can catch them; the subclasses let the service map
them precisely (all of them are client errors: HTTP 422).
"""


class OptimError(ValueError):
    """Base class of every error raised by :mod:`optim`."""


class InvalidHyperparameterError(OptimError):
    """A hyperparameter is out of range; the message names the field and the value."""


class UnknownOptimizerError(OptimError):
    """An optimizer name is not in the registry; the message lists the valid names."""


class MissingClosureError(OptimError):
    """``step()`` was called without the closure the optimizer needs (the message says how)."""


class MemberStateError(OptimError):
    """Member states of a packed optimizer do not fit together (a state that some members
    have and others lack, where no member may lack it); a pack continued from them would not
    follow its members' trajectories."""
