"""The study domain's exceptions (the service maps each to one HTTP status, in one place)."""


class StudyError(Exception):
    """Base class of every error raised by :mod:`studies`."""


class SpecError(StudyError, ValueError):
    """A study spec is invalid; the message names the offending field."""


class StudyNotFound(StudyError, LookupError):
    """No study with that id."""


class TrialNotFound(StudyError, LookupError):
    """No trial with that key in the study."""


class IdempotencyConflict(StudyError):
    """The idempotency key was used before with a different request body."""


class InvalidTransition(StudyError):
    """The requested status change is not allowed from the study's current status."""


class InvalidCursor(StudyError, ValueError):
    """A paging cursor is malformed or from another listing."""


class InvalidQuery(StudyError, ValueError):
    """A listing's filter or page size is out of range; the message names the parameter."""


class LimitExceeded(SpecError):
    """A submission is over one of the service's configured limits; the message names the field,
    the limit and the setting (``SENSITIVITY_…``) that sets it."""


class TooManyStudies(StudyError):
    """Too many unfinished studies at once (``SENSITIVITY_MAX_UNFINISHED_STUDIES``): retry once
    some have finished."""


class ClusterUnavailable(StudyError):
    """The cluster that runs study drivers did not answer (unreachable, an error, a timeout).

    Nothing about the study changed because of it: a pending study stays pending and the
    reconciler launches it once the cluster answers again; never a reason to fail a study.
    """


class ExtensionConflict(StudyError):
    """An extension of a study asks for more than an addition (another task, budget, device,
    changed options, fewer values, …); the message names the field and what is refused."""
