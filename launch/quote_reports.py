#!/usr/bin/env python
# python launch/quote_reports.py docs/results.md
"""Refresh the report tables a Markdown page quotes, so the page never carries a number typed by hand.

A quoted table sits right under a marker naming its file,

    <!-- quote results/cifar10/report/table.md -->
    | model | sparsity | ... |

and this replaces the table lines under each marker with the file's table lines
(paths are relative to the repository root). A file holding several tables (compare.md of a
report made with two --baseline options) is quoted one table per marker: FILE is its first
table, FILE#2 the second. It rewrites the page only when something changed, and says which
tables it refreshed. tests/test_results.py checks every quoted block equals its file.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- quote (\S+?) -->\n((?:\|.*\n)*)", re.M)


def tables(path: Path) -> List[str]:
    """The Markdown tables of a report file, each as its row lines (notes and captions left out)."""
    blocks = re.findall(r"(?:^\|.*\n?)+", path.read_text(), re.M)
    return [block if block.endswith("\n") else block + "\n" for block in blocks]


def references(path: Path, relative: str) -> List[Tuple[str, str]]:
    """(marker reference, table lines) of every table of a file: 'FILE' for the first, 'FILE#2' for the second..."""
    return [(relative if i == 1 else f"{relative}#{i}", lines) for i, lines in enumerate(tables(path), 1)]


def table_lines(reference: str, root: Path = ROOT) -> str:
    """The table a marker names: FILE (its first table) or FILE#N."""
    name, _, index = reference.partition("#")
    source = root / name
    if not source.exists():
        raise SystemExit(f"quote_reports: {name} does not exist: run the pgf-report command that writes it")
    found = tables(source)
    n = int(index) if index.isdigit() else 1
    if not 1 <= n <= len(found):
        raise SystemExit(f"quote_reports: {name} has {len(found)} table(s), not {n}: fix the marker {reference}")
    return found[n - 1]


def quoted(page: str) -> List[Tuple[str, str]]:
    """(reference, the table lines the page quotes under its marker) for every marker."""
    return [(m[1], m[2]) for m in MARKER.finditer(page)]


def refresh(page: str, root: Path = ROOT) -> str:
    def replace(match: re.Match) -> str:
        return f"<!-- quote {match[1]} -->\n" + table_lines(match[1], root)

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
