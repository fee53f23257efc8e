"""One point of a sweep (or a single run): its status.json, its lock, its line in the sweep's status table.

A point that fails is recorded and the sweep goes on; the command exits non-zero at the
end, naming the failed points (sweeps/callback.py). Launching the same command again (or
with the same `sweep=` / `hydra.sweep.dir`) skips finished points and resumes the others
from their last checkpoint. Works with any Hydra launcher: the files are the only shared
state. Their names and records live in pgfsparse.rundir.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, List, Optional

from pgfsparse.errors import EXIT_OK, first_line
from pgfsparse.rundir.files import locked, now, read_json, write_json
from pgfsparse.rundir.layout import RunDir, SweepDir
from pgfsparse.rundir.lock import hold_run_lock
from pgfsparse.rundir.records import RunStatus

SWEEP_TABLE_KEYS = ("status", "error", "error_type", "exit_code", "overrides", "updated", "step")


class Point:
    """One run dir's records: its status.json, its lock, its line in the sweep's status file."""

    def __init__(
        self,
        run_dir: Path,
        name: Optional[str],
        sweep_dir: Optional[Path] = None,
        overrides: Optional[List[str]] = None,
    ):
        self.run_dir, self.name, self.sweep_dir = Path(run_dir), name, sweep_dir
        self.overrides = list(overrides or [])

    @property
    def status(self) -> Optional[RunStatus]:
        return RunStatus.read(self.run_dir)

    def is_finished(self, settings_digest: str) -> bool:
        """Finished earlier with the same result-changing settings (so there is nothing to do)."""
        status = self.status
        return (
            status is not None
            and status.status == "finished"
            and status.settings == settings_digest
            and RunDir(self.run_dir).summary.exists()
        )

    def mark(
        self,
        state: str,
        *,
        error: Optional[BaseException] = None,
        exit_code: int = EXIT_OK,
        traceback_text: Optional[str] = None,
        **fields: Any,
    ) -> None:
        """Record `state` in the run dir and the sweep status; errors in one line (+ error.log)."""
        entry = RunStatus(
            status=state,
            run_name=self.name,
            overrides=self.overrides,
            sweep=self.sweep_dir.name if self.sweep_dir else None,
            host=socket.gethostname(),
            pid=os.getpid(),
            updated=now(),
            exit_code=exit_code,
            **fields,
        )
        if error is not None:
            entry.error, entry.error_type = first_line(error), type(error).__name__
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if traceback_text:
            RunDir(self.run_dir).error_log.write_text(traceback_text)
        entry.write(self.run_dir)
        if self.sweep_dir is not None:
            self._update_sweep_status(self.sweep_dir, entry)

    def recount(self, finished: RunStatus) -> None:
        """A finished point a new launch skips: its line in the sweep table dated now, so the launch's
        summary counts it, while its own status.json stays as the run wrote it (committed results
        collected from the run dir do not change at every re-launch)."""
        if self.sweep_dir is not None:
            self._update_sweep_status(self.sweep_dir, replace(finished, updated=now()))

    def _update_sweep_status(self, sweep_dir: Path, entry: RunStatus) -> None:
        sweep = SweepDir(sweep_dir)
        with locked(sweep.status_lock):
            table = read_json(sweep.status, {"sweep": sweep.path.name, "points": {}})
            line = {k: getattr(entry, k) for k in SWEEP_TABLE_KEYS}
            table["points"][self.name] = {**line, "dir": self.run_dir.name}
            write_json(sweep.status, table)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run dir's lock while training (rundir/lock.py)."""
        with hold_run_lock(self.run_dir):
            yield
