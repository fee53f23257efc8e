"""Which code produced a result: the package version and, from a git checkout, the commit.

Every summary.json records both, so a results table can say which commit made
each row. A checkout with uncommitted changes to the package or its configs is
marked `<sha>+dirty`: its results cannot be traced to a commit.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Optional

_REPO = Path(__file__).resolve().parents[3]  # src/pgfsparse/run/ -> the checkout (for an editable install)


def package_version() -> str:
    from pgfsparse import __version__

    return __version__


@functools.lru_cache(maxsize=None)
def git_sha() -> Optional[str]:
    """HEAD of the checkout this package runs from, '+dirty' if src/ or conf/ has changes; None if not a checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(_REPO), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    if not (_REPO / "src" / "pgfsparse").is_dir():  # installed from a wheel: no checkout to ask
        return None
    try:
        sha = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src", "conf")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}+dirty" if dirty else sha
