"""Every error pgf-train turns into one line, and its exit codes: the one place they are defined.

Errors are printed, recorded (status.json) and tabled (pgf-report) one line each. The engine
(pgfsparse.sparsity), the report and the export keep their own narrow errors next to their code.
"""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """The first line of `error`'s message, or its type's name when the message is empty."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class ConfigError(ValueError):
    """A configuration that cannot run, explained in one line."""


class Contradiction(ConfigError):
    """Recipe and sparsity disagree (a sparse recipe without pattern, or dense with one).

    A single run stops with the message; a multirun job skips, so a grid such as
    `sparsity=dense,1:16 recipe=srste,decay` never trains the dense baseline twice.
    """


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used, explained in one line."""


class DataError(Exception):
    """A data problem with a one-line message naming the fix."""


class DataNotFoundError(DataError, FileNotFoundError):
    """No data where it was looked for."""


class DataUnreachableError(DataError, RuntimeError):
    """The hub (or a cache) could not be used."""


class DataConfigError(DataError, ValueError):
    """A data.* setting does not match the data (column, split, batch size)."""


# Exit codes of pgf-train (docs/failure-modes.md): a multirun exits with its points' highest code.
# 3: stopped by SIGTERM/SIGINT after a checkpoint (a requeue script resumes it).
EXIT_OK, EXIT_CRASH, EXIT_BAD_INPUT, EXIT_STOPPED, EXIT_DIVERGED = 0, 1, 2, 3, 4


class RunDirInUse(RuntimeError):
    """Another live process holds this run dir."""


class Divergence(RuntimeError):
    """The loss or the gradient became NaN or infinite: the run stops before writing a checkpoint of it."""


class Stopped(RuntimeError):
    """The run stopped on a signal after writing its checkpoint at `step`."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step
