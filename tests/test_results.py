"""The committed results reproduce: `pgf-report results/<grid>` regenerates every committed table.

A results folder (launch/collect_results.py) holds each run's summary.json,
status.json, curves and diagnostics; its report/table.md is what the README
quotes. Regenerating it from the summaries alone must give the same text.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from pgfsparse.report.cli import main

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
GRIDS = sorted(p.parent.parent for p in RESULTS.glob("*/report/table.md"))


@pytest.mark.parametrize("grid", GRIDS, ids=[g.name for g in GRIDS])
def test_committed_tables_are_regenerated_exactly(grid, tmp_path, monkeypatch):
    monkeypatch.chdir(RESULTS.parent)  # the documented command, from the repository root: pgf-report results/<grid>
    assert main([f"results/{grid.name}", "--out", str(tmp_path), "--no-plots"]) == 0
    assert (tmp_path / "table.md").read_text() == (grid / "report" / "table.md").read_text()


def test_there_are_committed_results():
    assert GRIDS, "results/<grid>/report/table.md: the README's tables come from here"


def test_collecting_keeps_the_curves_of_a_point_restored_without_metrics(tmp_path):
    """launch/evidence.sh restores finished points as summary + status only: their curves must survive."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("collect_results", ROOT / "launch" / "collect_results.py")
    collect_results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(collect_results)
    sweep, dest = tmp_path / "multirun" / "grid", tmp_path / "results" / "grid"
    point = sweep / "vit-n1m32-srste-s0"
    point.mkdir(parents=True)
    (point / "status.json").write_text(json.dumps({"status": "finished", "exit_code": 0}))
    (point / "summary.json").write_text(json.dumps({"eval_value": 58.46}))
    lines = [{"event": "train", "step": 20, "train/loss": 2.0}, {"event": "diagnostics", "step": 100, "x": 1.0},
             {"event": "eval", "step": 9360, "eval/top1": 58.46}]
    (point / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    assert collect_results.collect(sweep, dest) == 1
    curves = (dest / point.name / "curves.jsonl").read_text()
    diagnostics = (dest / point.name / "diagnostics.jsonl").read_text()
    assert [json.loads(x)["step"] for x in curves.splitlines()] == [20, 9360]
    assert [json.loads(x)["step"] for x in diagnostics.splitlines()] == [100]

    (point / "metrics.jsonl").unlink()  # a new session: the point restored from results/ holds no metrics
    assert collect_results.collect(sweep, dest) == 1
    assert (dest / point.name / "curves.jsonl").read_text() == curves
    assert (dest / point.name / "diagnostics.jsonl").read_text() == diagnostics
    assert json.loads((dest / point.name / "summary.json").read_text()) == {"eval_value": 58.46}
