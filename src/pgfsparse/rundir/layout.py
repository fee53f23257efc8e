"""Every file name of a run dir and of a sweep dir: the one place they are spelled.

    multirun/<sweep>/                  SweepDir
      sweep.json                       the command, its overrides, which keys vary, each launch
      sweep_status.json                every point's status (running, finished, failed, skipped, stopped)
      mlflow.db                        logger=mlflow's local MLflow store: every point's run (in any run dir's parent)
      <run name>/                      RunDir, named as its W&B run
        status.json, error.log, run.lock, summary.json, metrics.jsonl, checkpoint.pt,
        .hydra/ (config.yaml, overrides.yaml), tokenizer/ (text runs), wandb/

A collected run (pgf-collect, for committed results) keeps summary.json and status.json and
splits metrics.jsonl into curves.jsonl (train and eval events) and diagnostics.jsonl.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SUMMARY = "summary.json"
RUN_STATUS = "status.json"
ERROR_LOG = "error.log"
LOCK = "run.lock"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
HYDRA_SUBDIR = ".hydra"
TOKENIZER_SUBDIR = "tokenizer"
CURVES = "curves.jsonl"  # collected runs: the train and eval events of metrics.jsonl
DIAGNOSTICS = "diagnostics.jsonl"  # collected runs: the diagnostics events of metrics.jsonl
SWEEP_FILE = "sweep.json"
SWEEP_STATUS = "sweep_status.json"
REPORT_SUBDIR = "report"  # pgf-report's default output folder inside the folder it reads
MLFLOW_DB = "mlflow.db"  # logger=mlflow's local SQLite store, in the run dir's parent folder (a sweep: one store)

# Files whose presence makes a folder a run dir, and a sweep dir (what pgf-report looks for).
RUN_MARKERS = (SUMMARY, RUN_STATUS, ERROR_LOG, METRICS, CHECKPOINT)
SWEEP_MARKERS = (SWEEP_FILE, SWEEP_STATUS)


@dataclass(frozen=True)
class RunDir:
    """One run's folder and the path of every file in it."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    summary = property(lambda self: self.path / SUMMARY)
    status = property(lambda self: self.path / RUN_STATUS)
    error_log = property(lambda self: self.path / ERROR_LOG)
    lock = property(lambda self: self.path / LOCK)
    metrics = property(lambda self: self.path / METRICS)
    checkpoint = property(lambda self: self.path / CHECKPOINT)
    hydra = property(lambda self: self.path / HYDRA_SUBDIR)
    hydra_config = property(lambda self: self.path / HYDRA_SUBDIR / "config.yaml")
    saved_overrides = property(lambda self: self.path / HYDRA_SUBDIR / "overrides.yaml")
    tokenizer = property(lambda self: self.path / TOKENIZER_SUBDIR)
    curves = property(lambda self: self.path / CURVES)
    diagnostics = property(lambda self: self.path / DIAGNOSTICS)
    # in the parent folder: a sweep's points (or a day's outputs/<date>/ runs) share one MLflow store
    mlflow_db = property(lambda self: self.path.parent / MLFLOW_DB)
    mlflow_lock = property(lambda self: self.path.parent / f".{MLFLOW_DB}.lock")  # its first creation


@dataclass(frozen=True)
class SweepDir:
    """One sweep's folder: its record, its status table, and a RunDir per point."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    record = property(lambda self: self.path / SWEEP_FILE)
    status = property(lambda self: self.path / SWEEP_STATUS)
    status_lock = property(lambda self: self.path / f".{SWEEP_STATUS}.lock")
    report = property(lambda self: self.path / REPORT_SUBDIR)
    mlflow_db = property(lambda self: self.path / MLFLOW_DB)

    def point(self, name: str) -> RunDir:
        return RunDir(self.path / name)
