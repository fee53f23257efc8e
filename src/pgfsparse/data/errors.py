"""Data problems the user fixes: one-line messages that say where we looked and what to set.

All derive from `DataError` (the CLI prints it without a traceback) and from
the matching built-in, so `except FileNotFoundError` keeps working too.
"""


class DataError(Exception):
    """A data problem with a one-line message naming the fix."""


class DataNotFoundError(DataError, FileNotFoundError):
    """No data where it was looked for."""


class DataUnreachableError(DataError, RuntimeError):
    """The hub (or a cache) could not be used."""


class DataConfigError(DataError, ValueError):
    """A data.* setting does not match the data (column, split, batch size)."""
