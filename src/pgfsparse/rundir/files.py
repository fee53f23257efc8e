"""Run-dir files written whole or not at all, JSON records, and advisory locks.

A reader, a parallel job or a crash never sees half a file: everything is written to a temporary name in
the target's own folder (one file system, so the rename is atomic) and renamed over the target only once
complete.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A free temporary path next to `path` to write (a file or a folder); moved onto `path` when the block ends.

    If the block raises, nothing is moved and the temporary is removed. The name
    is unique per call, so parallel writers of one target never share it.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# -- small file helpers ----------------------------------------------------------------------
def now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")  # readers never see half a file


@contextmanager
def locked(path: Path):
    """An exclusive advisory lock on `path` (parallel jobs update one sweep file)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
