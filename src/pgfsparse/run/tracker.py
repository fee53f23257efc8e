"""Experiment trackers (W&B, MLflow): one small interface, so the Recorder tells each the same things.

A tracker is opened with the run's identity (`TrackedRun`), then receives every metrics.jsonl
event (`log`), the summary.json record once the run has finished (`summary`), and `finish` at
the end, finished or not. The local files are the record: a tracker that cannot reach its
server says so in one line and logs somewhere local instead, never stopping the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol


@dataclass(frozen=True)
class TrackedRun:
    """What every tracker is told about a run when it starts."""

    name: str  # the run's name (rundir/naming.py), the same in every tracker
    tags: List[str]  # 'model:vit', 'sparsity:1:4', 'recipe:mdgf_exp', 'seed:0', then logger.tags
    group: Optional[str]  # the sweep's name in a multirun (W&B's group, MLflow's experiment)
    config: Dict[str, Any]  # the canonical config (Recorder.tracker_config)
    run_id: str  # kept in the checkpoint: a resumed launch continues the same tracked run
    run_dir: Path


class Tracker(Protocol):
    def log(self, event: Dict[str, Any]) -> None:
        """One metrics.jsonl event: its step, its cumulative `train_flops` and its values."""

    def summary(self, summary: Dict[str, Any]) -> None:
        """summary.json's record, after the final evaluation."""

    def finish(self) -> None:
        """The end of this launch: finished when `summary` was called, else stopped or failed."""


def open_trackers(cfg, run: TrackedRun) -> List[Tracker]:
    """The trackers `cfg` (a LoggerConfig) turns on: logger.wandb, logger.mlflow, either or both."""
    trackers: List[Tracker] = []
    if cfg.wandb:
        from pgfsparse.run.wandb_logger import WandbRun

        trackers.append(WandbRun(cfg, run))
    if cfg.mlflow:
        from pgfsparse.run.mlflow_logger import MlflowRun

        trackers.append(MlflowRun(cfg, run))
    return trackers
