"""The ``workers`` package's exceptions (mapped to HTTP codes by the service in one place)."""


class WorkerError(Exception):
    """Base class of every error raised by :mod:`workers`."""


class TaskConfigError(WorkerError, ValueError):
    """A trial configuration is invalid (unknown task, bad option, optimizer unfit for task)."""


class TaskDataError(TaskConfigError):
    """A task's data cannot be read (missing or malformed files); the message names the option."""


class LaunchError(WorkerError):
    """A study could not be launched (Ray unreachable, job submission refused)."""


class CheckpointError(WorkerError):
    """A trial's checkpoint cannot be used (unreadable, another format, another trial's)."""
