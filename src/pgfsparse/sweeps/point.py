"""Sweeps that survive real life: stable folders, a status per point, locks, resume by re-launch.

    multirun/<sweep>/                    <sweep> = sweep=NAME, else built from the command's overrides
      sweep.json                         the command, its overrides, which keys vary, each launch
      sweep_status.json                  every point's status: running, finished, failed (error), skipped, stopped
      vit-n1m32-mdgf_exp-s0/             one folder per point, named as its W&B run
        status.json, error.log, run.lock, summary.json, metrics.jsonl, checkpoint.pt, ...

A point that fails is recorded and the sweep goes on; the command exits non-zero
at the end, naming the failed points. Launching the same command again (or with
the same `sweep=` / `hydra.sweep.dir`) skips finished points and resumes the
others from their last checkpoint. Works with any Hydra launcher: the files
are the only shared state.
"""
from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, List, Optional

from pgfsparse.errors import EXIT_OK, RunDirInUse, first_line
from pgfsparse.rundir.files import (
    locked,
    now,
    read_json,
    write_json,
)
from pgfsparse.rundir.layout import ERROR_LOG, LOCK, RUN_STATUS, SWEEP_STATUS


# -- one point ----------------------------------------------------------------------------
class Point:
    """One run dir's records: its status.json, its lock, its line in the sweep's status file."""

    def __init__(self, run_dir: Path, name: str, sweep_dir: Optional[Path] = None,
                 overrides: Optional[List[str]] = None):
        self.run_dir, self.name, self.sweep_dir = Path(run_dir), name, sweep_dir
        self.overrides = list(overrides or [])

    @property
    def status(self) -> Dict[str, Any]:
        return read_json(self.run_dir / RUN_STATUS, {})

    def is_finished(self, settings_digest: str) -> bool:
        """Finished earlier with the same result-changing settings (so there is nothing to do)."""
        status = self.status
        return (status.get("status") == "finished" and status.get("settings") == settings_digest
                and (self.run_dir / "summary.json").exists())

    def mark(self, state: str, *, error: Optional[BaseException] = None, exit_code: int = EXIT_OK,
             traceback_text: Optional[str] = None, **fields: Any) -> None:
        """Record `state` in the run dir and the sweep status; errors in one line (+ error.log)."""
        entry = {"status": state, "run_name": self.name, "overrides": self.overrides,
                 "sweep": self.sweep_dir.name if self.sweep_dir else None, "host": socket.gethostname(),
                 "pid": os.getpid(), "updated": now(), "exit_code": exit_code, **fields}
        if error is not None:
            entry["error"] = first_line(error)
            entry["error_type"] = type(error).__name__
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if traceback_text:
            (self.run_dir / ERROR_LOG).write_text(traceback_text)
        write_json(self.run_dir / RUN_STATUS, entry)
        if self.sweep_dir is not None:
            self._update_sweep_status(entry)

    def _update_sweep_status(self, entry: Dict[str, Any]) -> None:
        path = self.sweep_dir / SWEEP_STATUS
        with locked(self.sweep_dir / f".{SWEEP_STATUS}.lock"):
            table = read_json(path, {"sweep": self.sweep_dir.name, "points": {}})
            table["points"][self.name] = {k: entry.get(k) for k in (
                "status", "error", "error_type", "exit_code", "overrides", "updated", "step")}
            table["points"][self.name]["dir"] = self.run_dir.name
            write_json(path, table)

    @contextmanager
    def lock(self):
        """Hold run.lock (host, pid, SLURM job) while training; refuse a dir a live process holds."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / LOCK
        mine = _me()
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = read_json(path, {})
                if not _is_stale(holder, mine):
                    raise RunDirInUse(
                        f"run dir {self.run_dir} is in use by pid {holder.get('pid')} on {holder.get('host')} "
                        f"(since {holder.get('since')}): wait for it or stop it; if that process is gone, "
                        f"delete {path}") from None
                path.unlink(missing_ok=True)  # a dead holder's lock: take it over
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(mine, handle)
            break
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def _slurm_job() -> Optional[str]:
    job = os.environ.get("SLURM_JOB_ID")
    return f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job and "SLURM_ARRAY_TASK_ID" in os.environ else job


def _is_stale(holder: Dict[str, Any], me: Dict[str, Any]) -> bool:
    """A lock is stale when its process is gone: same host and a dead pid, or our own requeued SLURM job."""
    if not holder:  # unreadable (a crash between create and write)
        return True
    if holder.get("slurm_job") and holder.get("slurm_job") == me["slurm_job"]:
        return True  # SLURM requeued this job: the previous attempt is gone
    if holder.get("host") != me["host"]:
        return False  # cannot see another host's processes: assume it is alive
    return holder.get("pid") == me["pid"] or process_alive(holder.get("host"), holder.get("pid")) is False


def process_alive(host: Optional[str], pid: Any) -> Optional[bool]:
    """Whether `pid` runs on `host`; None when `host` is another machine (its processes are invisible)."""
    if host and host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, TypeError, ValueError):
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _me() -> Dict[str, Any]:
    """This process as a lock holder."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job": _slurm_job(), "since": now()}


def _live_other_holder(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The holder of a run dir's lock when another live process holds it (the lock that made us skip it)."""
    holder = read_json(run_dir / LOCK, {})
    return holder if holder and not _is_stale(holder, _me()) else None




