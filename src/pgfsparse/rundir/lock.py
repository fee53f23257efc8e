"""run.lock: one live process per run dir. A lock whose process is gone is taken over."""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from pgfsparse.errors import RunDirInUse
from pgfsparse.rundir.files import now, read_json
from pgfsparse.rundir.layout import RunDir


@contextmanager
def hold_run_lock(run_dir: Path) -> Iterator[None]:
    """Hold run.lock (host, pid, SLURM job) while training; refuse a dir a live process holds."""
    folder = RunDir(run_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    path = folder.lock
    mine = _me()
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = read_json(path, {})
            if not is_stale(holder, mine):
                raise RunDirInUse(
                    f"run dir {folder.path} is in use by pid {holder.get('pid')} on {holder.get('host')} "
                    f"(since {holder.get('since')}): wait for it or stop it; if that process is gone, "
                    f"delete {path}"
                ) from None
            path.unlink(missing_ok=True)  # a dead holder's lock: take it over
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(mine, handle)
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def live_holder(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The holder of a run dir's lock when another live process holds it, else None."""
    holder = read_json(RunDir(run_dir).lock, {})
    return holder if holder and not is_stale(holder, _me()) else None


def read_holder(run_dir: Path) -> Optional[Dict[str, Any]]:
    """What run.lock says (host, pid, since), stale or not; None without a lock."""
    return read_json(RunDir(run_dir).lock)


def is_stale(holder: Dict[str, Any], me: Dict[str, Any]) -> bool:
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


def _slurm_job() -> Optional[str]:
    job = os.environ.get("SLURM_JOB_ID")
    return f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job and "SLURM_ARRAY_TASK_ID" in os.environ else job


def _me() -> Dict[str, Any]:
    """This process as a lock holder."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job": _slurm_job(), "since": now()}
