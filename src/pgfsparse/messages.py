"""Exceptions as one-line messages: errors are printed, recorded and tabled one line each."""
from __future__ import annotations


def first_line(error: BaseException) -> str:
    """The first line of `error`'s message, or its type's name when the message is empty."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
