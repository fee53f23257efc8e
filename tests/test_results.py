"""The committed results reproduce: `pgf-report results/<grid>` regenerates every committed table.

A results folder (launch/collect_results.py) holds each run's summary.json,
status.json, curves and diagnostics; its report/table.md is what the README
quotes. Regenerating it from the summaries alone must give the same text.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from pgfsparse.report.cli import main

RESULTS = Path(__file__).resolve().parents[1] / "results"
GRIDS = sorted(p.parent.parent for p in RESULTS.glob("*/report/table.md"))


@pytest.mark.parametrize("grid", GRIDS, ids=[g.name for g in GRIDS])
def test_committed_tables_are_regenerated_exactly(grid, tmp_path, monkeypatch):
    monkeypatch.chdir(RESULTS.parent)  # the documented command, from the repository root: pgf-report results/<grid>
    assert main([f"results/{grid.name}", "--out", str(tmp_path), "--no-plots"]) == 0
    assert (tmp_path / "table.md").read_text() == (grid / "report" / "table.md").read_text()


def test_there_are_committed_results():
    assert GRIDS, "results/<grid>/report/table.md: the README's tables come from here"
