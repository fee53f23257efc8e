#!/usr/bin/env python
# python launch/quote_reports.py docs/results.md
"""Refresh the report tables a Markdown page quotes, so the page never carries a number typed by hand.

A quoted table sits right under a marker naming its file,

    <!-- quote results/cifar10/report/table.md -->
    | model | sparsity | ... |

and this replaces the table lines under each marker with the file's table lines
(paths are relative to the repository root). It rewrites the page only when something changed, and says which
tables it refreshed. tests/test_results.py checks every quoted block equals its file.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- quote (\S+) -->\n((?:\|.*\n)*)", re.M)


def table_lines(path: Path) -> str:
    """The Markdown table rows of a report file (its notes and captions are left out)."""
    return "".join(line + "\n" for line in path.read_text().splitlines() if line.startswith("|"))


def quoted(page: str) -> List[Tuple[str, str]]:
    """(file, the table lines the page quotes under its marker) for every marker."""
    return [(m[1], m[2]) for m in MARKER.finditer(page)]


def refresh(page: str, root: Path = ROOT) -> str:
    def replace(match: re.Match) -> str:
        source = root / match[1]
        if not source.exists():
            raise SystemExit(f"quote_reports: {match[1]} does not exist: run the pgf-report command that writes it")
        return f"<!-- quote {match[1]} -->\n" + table_lines(source)
    return MARKER.sub(replace, page)


def main(argv: List[str]) -> int:
    if not argv:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    for name in argv:
        path = Path(name)
        before = path.read_text()
        after = refresh(before)
        if after != before:
            path.write_text(after)
        changed = [f for (f, old), (_, new) in zip(quoted(before), quoted(after)) if old != new]
        print(f"quote_reports: {name}: {len(quoted(after))} tables, refreshed {', '.join(changed) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
