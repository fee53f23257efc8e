"""The sweep as a whole: a Hydra callback in the launching process.

When a multirun starts it writes sweep.json (the command, which keys vary, each launch); at its
end it prints one line per state, names the failed points and exits with their highest code.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict

from pgfsparse.errors import EXIT_BAD_INPUT, EXIT_CRASH
from pgfsparse.rundir.files import now, read_json, write_json
from pgfsparse.rundir.layout import SWEEP_FILE, SWEEP_STATUS
from pgfsparse.rundir.lock import live_holder


# -- the sweep as a whole: a Hydra callback in the launching process -------------------------
def _callback_base():
    try:
        from hydra.experimental.callback import Callback
    except ImportError:  # pragma: no cover - Hydra is a core dependency
        return object
    return Callback


if TYPE_CHECKING:  # pragma: no cover - the checker sees Hydra's class, which it is at run time
    from hydra.experimental.callback import Callback as _CallbackBase
else:
    _CallbackBase = _callback_base()


class QuietSacct(logging.Filter):
    """Keeps the first of submitit's `Bypassing sacct error` warnings, with why, and drops the repeats.

    submitit asks `sacct` for its jobs' states (after 2, 4, 8, ... s, then every 10 min). On a
    cluster without accounting (AccountingStorageType=accounting_storage/none, as the one of
    launch/local_slurm.sh) every call fails and is logged three times; submitit then goes by each
    job's result file, which is all a sweep needs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Bypassing sacct error" not in message:
            return True
        if self.seen:
            return False
        self.seen = True
        record.msg, record.args = f"{message} (pgf-train: further sacct errors are not shown)", ()
        return True


def quiet_sacct() -> None:
    """QuietSacct on submitit's logger, once (its own logging config keeps a logger's filters), reset per launch."""
    logger = logging.getLogger("submitit")
    for installed in logger.filters:
        if isinstance(installed, QuietSacct):
            installed.seen = False
            return
    logger.addFilter(QuietSacct())


class SweepCallback(_CallbackBase):
    """Writes sweep.json when a multirun starts; at its end prints a summary and exits non-zero on failures."""

    def on_multirun_start(self, config, **kwargs) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.started = now()
        quiet_sacct()  # hydra/launcher=slurm on a cluster without accounting
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            sweep_dir.mkdir(parents=True, exist_ok=True)
        except OSError:  # the launcher's own mkdir fails next, and pgf-train says so in one line
            return
        overrides = list(config.hydra.overrides.task)
        preset = config.hydra.sweeper.get("params") or {}  # a grid written in an experiment file
        parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in preset.items()] + overrides)
        record = read_json(sweep_dir / SWEEP_FILE, {})
        launches = record.get("launches", []) + [
            {"started": self.started, "host": socket.gethostname(), "pid": os.getpid()}
        ]
        write_json(
            sweep_dir / SWEEP_FILE,
            {
                "name": sweep_dir.name,
                "command": "pgf-train -m " + " ".join(overrides),
                "overrides": overrides,
                "varying": sorted({o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()}),
                "launches": launches,
            },
        )

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        points = read_json(sweep_dir / SWEEP_STATUS, {}).get("points", {})
        this_launch = {name: p for name, p in points.items() if (p.get("updated") or "") >= self.started}
        counts: Dict[str, int] = {}
        for point in this_launch.values():
            counts[point["status"]] = counts.get(point["status"], 0) + 1
        shown = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        print(f"pgf-train: sweep {sweep_dir}: {shown or 'no points ran'}", file=sys.stderr)
        elsewhere = {
            name: holder
            for name, p in this_launch.items()
            if p["status"] == "running" and (holder := live_holder(sweep_dir / (p.get("dir") or name)))
        }
        for name, holder in sorted(elsewhere.items()):  # another launch trains it (its lock made us skip it)
            print(
                f"pgf-train:   running {name}: in pid {holder['pid']} on {holder['host']}, another launch",
                file=sys.stderr,
            )
        failed = {
            name: p
            for name, p in this_launch.items()
            if p["status"] in ("failed", "running", "stopped") and name not in elsewhere
        }
        for name, point in sorted(failed.items()):
            state = "stopped" if point["status"] == "stopped" else "failed"
            print(f"pgf-train:   {state} {name}: {point.get('error') or 'stopped without a summary'}", file=sys.stderr)
        if failed:
            bad = sum(p.get("exit_code") == EXIT_BAD_INPUT for p in failed.values())  # fails alike every time
            retry = len(failed) - bad  # crashes and stops: another try may pass
            if bad:
                also = f", which also retries the {retry} other{'s' if retry > 1 else ''}" if retry else ""
                advice = (
                    f"fix the input of the {bad} point{'s' if bad > 1 else ''} "
                    f"refused as bad input (exit code 2) and re-run the same command{also}"
                )
            else:
                advice = "re-run the same command to retry them"
            print(f"pgf-train: {advice}; pgf-report {sweep_dir} compares the rest", file=sys.stderr)
            sys.exit(max(int(p.get("exit_code") or EXIT_CRASH) for p in failed.values()))
