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

import datetime
import fcntl
import json
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, List, Optional

from .files import atomic_write_text
from .messages import first_line
from .naming import naming_overrides, run_name, sweep_name

SWEEP_FILE, SWEEP_STATUS, RUN_STATUS, ERROR_LOG, LOCK = (
    "sweep.json", "sweep_status.json", "status.json", "error.log", "run.lock")

# Exit codes of pgf-train (README "Failure modes"): a multirun exits with its points' highest code.
# 3: stopped by SIGTERM/SIGINT after a checkpoint (a requeue script resumes it).
EXIT_OK, EXIT_CRASH, EXIT_BAD_INPUT, EXIT_STOPPED, EXIT_DIVERGED = 0, 1, 2, 3, 4


class RunDirInUse(RuntimeError):
    """Another live process holds this run dir."""


# -- small file helpers ----------------------------------------------------------------------
def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")  # readers never see half a file


@contextmanager
def _locked(path: Path):
    """An exclusive advisory lock on `path` (parallel jobs update one sweep file)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- Hydra resolvers: the sweep folder and each point's subfolder ---------------------------------
def default_sweep_override(argv: List[str]) -> List[str]:
    """`sweep=<name from the command's overrides>` to add to a multirun command that names no sweep.

    Hydra resolves the sweep dir again inside every job, from the job's own
    overrides, so the name is fixed once here, on the command line, before Hydra starts.
    """
    if not {"-m", "--multirun"} & set(argv):
        return []
    overrides, skip_next = [], False
    for arg in argv:
        if skip_next:
            skip_next = False
        elif arg in _FLAGS_WITH_VALUE:
            skip_next = True
        elif "=" in arg and not arg.startswith("-"):
            overrides.append(arg)
    if any(o.lstrip("+~").startswith(("sweep=", "hydra.sweep.dir=")) for o in overrides):
        return []
    return [f"sweep='{sweep_name(overrides)}'"]  # quoted: the name holds '=' and ','


_FLAGS_WITH_VALUE = {"-cd", "--config-dir", "-cn", "--config-name", "-cp", "--config-path", "-p", "--package",
                     "-c", "--cfg", "--info", "--experimental-rerun"}


def _point_dir_name(*, _root_) -> str:
    """The run name of this job, plus the other keys its sweep varies (read from sweep.json)."""
    from .validation import resolve_patterns_and_recipe

    overrides = list(_root_.hydra.overrides.task)
    try:
        patterns, recipe = resolve_patterns_and_recipe(_root_)
    except Exception:  # noqa: BLE001 - an impossible point still needs a stable folder; its job reports why
        return "job-" + "-".join(sorted(o.replace("/", "-").replace(":", "x") for o in overrides))[:90]
    varying = read_json(Path(str(_root_.hydra.sweep.dir)) / SWEEP_FILE, {}).get("varying", [])
    model = _root_.hydra.runtime.choices.get("model") or _root_.model.family
    return run_name(model, patterns, recipe, _root_.seed, naming_overrides(overrides, varying))


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("pgf_run_name"):
        OmegaConf.register_new_resolver("pgf_run_name", _point_dir_name)


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
                 "pid": os.getpid(), "updated": _now(), "exit_code": exit_code, **fields}
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
        with _locked(self.sweep_dir / f".{SWEEP_STATUS}.lock"):
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
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job": _slurm_job(), "since": _now()}


def _live_other_holder(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The holder of a run dir's lock when another live process holds it (the lock that made us skip it)."""
    holder = read_json(run_dir / LOCK, {})
    return holder if holder and not _is_stale(holder, _me()) else None


# -- the sweep as a whole: a Hydra callback in the launching process -------------------------
def _callback_base():
    try:
        from hydra.experimental.callback import Callback
    except ImportError:  # pragma: no cover - Hydra is a core dependency
        return object
    return Callback


class SweepCallback(_callback_base()):
    """Writes sweep.json when a multirun starts; at its end prints a summary and exits non-zero on failures."""

    def on_multirun_start(self, config, **kwargs) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.started = _now()
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        overrides = list(config.hydra.overrides.task)
        preset = config.hydra.sweeper.get("params") or {}  # a grid written in an experiment file
        parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in preset.items()] + overrides)
        record = read_json(sweep_dir / SWEEP_FILE, {})
        launches = record.get("launches", []) + [{"started": self.started, "host": socket.gethostname(),
                                                  "pid": os.getpid()}]
        write_json(sweep_dir / SWEEP_FILE, {
            "name": sweep_dir.name,
            "command": "pgf-train -m " + " ".join(overrides),
            "overrides": overrides,
            "varying": sorted({o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()}),
            "launches": launches,
        })

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        points = read_json(sweep_dir / SWEEP_STATUS, {}).get("points", {})
        this_launch = {name: p for name, p in points.items() if (p.get("updated") or "") >= self.started}
        counts: Dict[str, int] = {}
        for point in this_launch.values():
            counts[point["status"]] = counts.get(point["status"], 0) + 1
        shown = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        print(f"pgf-train: sweep {sweep_dir}: {shown or 'no points ran'}", file=sys.stderr)
        elsewhere = {name: holder for name, p in this_launch.items() if p["status"] == "running"
                     and (holder := _live_other_holder(sweep_dir / (p.get("dir") or name)))}
        for name, holder in sorted(elsewhere.items()):  # another launch trains it (its lock made us skip it)
            print(f"pgf-train:   running {name}: in pid {holder['pid']} on {holder['host']}, another launch",
                  file=sys.stderr)
        failed = {name: p for name, p in this_launch.items()
                  if p["status"] in ("failed", "running", "stopped") and name not in elsewhere}
        for name, point in sorted(failed.items()):
            state = "stopped" if point["status"] == "stopped" else "failed"
            print(f"pgf-train:   {state} {name}: {point.get('error') or 'stopped without a summary'}", file=sys.stderr)
        if failed:
            print(f"pgf-train: re-run the same command to retry them; pgf-report {sweep_dir} compares the rest",
                  file=sys.stderr)
            sys.exit(max(int(p.get("exit_code") or EXIT_CRASH) for p in failed.values()))
