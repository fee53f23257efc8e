"""Run outputs: metrics.jsonl and summary.json always; Weights & Biases when enabled.

metrics.jsonl holds one JSON object per event (a training log line, an
evaluation, diagnostics), each with `step` (optimizer steps done) and
`train_flops` (cumulative). On resume the file is cut back to the checkpoint's
step, so a resumed run's files equal an uninterrupted run's.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional

from .files import atomic_write_text

METRICS, SUMMARY = "metrics.jsonl", "summary.json"


class MetricsFile:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS

    def truncate_after(self, step: int) -> None:
        """Drop events logged after `step` (they will be produced again by the resumed run)."""
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, event: Dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(event, sort_keys=True) + "\n")


def write_summary(run_dir: Path, summary: Dict[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / SUMMARY, json.dumps(summary, indent=2, sort_keys=True) + "\n")


class WandbRun:
    """A thin wrapper: training FLOPs as the x-axis of eval charts; safe to call when disabled."""

    def __init__(self, cfg, run_dir: Path, name: str, tags, group: Optional[str], config: Dict[str, Any],
                 run_id: str):
        self.run = None
        if not cfg.wandb:
            return
        import wandb

        mode = cfg.mode or os.environ.get("WANDB_MODE") or "offline"
        self.run = wandb.init(
            project=cfg.project, entity=cfg.entity, name=name, group=cfg.group or group, tags=list(tags),
            config=config, dir=str(run_dir), mode=mode, id=run_id, resume="allow",
            settings=wandb.Settings(silent=True, console="off"),
        )
        self.run.define_metric("train_flops")
        for prefix in ("eval/*", "eval_strict/*", "train/*"):
            self.run.define_metric(prefix, step_metric="train_flops")

    def log(self, event: Dict[str, Any]) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in event.items() if isinstance(v, (int, float))})

    def summary(self, summary: Dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
