"""A sweep's results copied into a folder small enough for git: no checkpoints, no W&B files.

For every point of the sweep it keeps summary.json (finished points), status.json (every
point: failed and unfinished ones stay visible; a point still training is recorded as
unfinished at its last logged step) and diagnostics.jsonl (the diagnostics lines of
metrics.jsonl: the gradient-noise curves), plus curves.jsonl (the train and eval lines, for
training curves). Taking a snapshot again overwrites what the last one copied, except the
curves of a point whose sweep folder has no metrics.jsonl (one restored from the results
folder). `pgf-report DEST` then regenerates every table and plot from these files alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, Iterable, List

from pgfsparse.rundir.layout import RunDir, SweepDir
from pgfsparse.rundir.records import RunStatus


def snapshot_sweep(sweep: Path, dest: Path) -> int:
    """Copy every point of `sweep` (a multirun/<sweep> folder) into `dest`; returns the number of points."""
    source, target = SweepDir(sweep), SweepDir(dest)
    target.path.mkdir(parents=True, exist_ok=True)
    points = sorted(p for p in source.path.iterdir() if p.is_dir() and RunDir(p).status.exists())
    for point in points:
        _snapshot_point(RunDir(point), target.point(point.name))
    for name in (source.record, source.status):
        if name.exists():
            shutil.copyfile(name, target.path / name.name)
    return len(points)


def _snapshot_point(point: RunDir, out: RunDir) -> None:
    out.path.mkdir(parents=True, exist_ok=True)
    events = _events(point.metrics)
    if point.metrics.exists() or not out.curves.exists():
        # a point restored from the results folder (launch/evidence.sh) has no metrics: keep its collected curves
        _write_events(out.diagnostics, [e for e in events if e["event"] == "diagnostics"])
        _write_events(out.curves, [e for e in events if e["event"] in ("train", "eval")])
    if point.summary.exists():
        shutil.copyfile(point.summary, out.summary)
    status = RunStatus.read(point)
    if status is None:
        return
    if status.status == "running":  # a snapshot: the copy is unfinished wherever it is read
        status.status, status.collected_while_training = "unfinished", True  # the report says so, not "stopped"
        status.step, status.pid = max((e["step"] for e in events), default=0), None
    status.write(out)


def _events(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


def _write_events(path: Path, events: Iterable[Dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in events))
