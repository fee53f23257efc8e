#!/usr/bin/env python
# python launch/collect_results.py multirun/cifar10_grid results/cifar10_grid
"""Copy a sweep's results into a folder small enough for git: no checkpoints, no W&B files.

For every point of the sweep it keeps `summary.json` (finished points),
`status.json` (every point: failed and unfinished ones stay visible; a point
still training is recorded as unfinished at its last logged step) and
`diagnostics.jsonl` (the diagnostics lines of metrics.jsonl: the gradient-noise
curves), plus `curves.jsonl` (the train and eval lines, for training curves).
Run it again at any time: it overwrites what it copied before, except the curves of
a point whose sweep folder has no metrics.jsonl (one restored from DEST). `pgf-report
DEST` then regenerates every table and plot from these files alone.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def collect(sweep: Path, dest: Path) -> int:
    points = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "status.json").exists())
    for point in points:
        out = dest / point.name
        out.mkdir(parents=True, exist_ok=True)
        metrics = point / "metrics.jsonl"
        events = [json.loads(line) for line in metrics.read_text().splitlines() if line] if metrics.exists() else []
        if metrics.exists() or not (out / "curves.jsonl").exists():
            # a point restored from results/ (launch/evidence.sh) has no metrics: keep its collected curves
            _write(out / "diagnostics.jsonl", [e for e in events if e["event"] == "diagnostics"])
            _write(out / "curves.jsonl", [e for e in events if e["event"] in ("train", "eval")])
        if (point / "summary.json").exists():
            shutil.copyfile(point / "summary.json", out / "summary.json")
        status = json.loads((point / "status.json").read_text())
        if status["status"] == "running":  # a snapshot: the copy is unfinished wherever it is read
            status.update(status="unfinished", step=max((e["step"] for e in events), default=0),
                          collected_while_training=True)  # so the report says so, not "stopped"
            status.pop("pid", None)
        (out / "status.json").write_text(json.dumps(status, indent=2, sort_keys=True) + "\n")
    for name in ("sweep.json", "sweep_status.json"):
        if (sweep / name).exists():
            shutil.copyfile(sweep / name, dest / name)
    return len(points)


def _write(path: Path, events) -> None:
    path.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in events))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="a sweep dir (multirun/<sweep>)")
    parser.add_argument("dest", type=Path, help="where to copy (e.g. results/<grid>)")
    args = parser.parse_args(argv)
    if not args.sweep.is_dir():
        sys.exit(f"collect_results: error: {args.sweep} is not a folder: pass a sweep dir such as multirun/<sweep>")
    args.dest.mkdir(parents=True, exist_ok=True)
    print(f"collected {collect(args.sweep, args.dest)} points from {args.sweep} into {args.dest}")


if __name__ == "__main__":
    main()
