"""metrics.jsonl: one JSON object per event of a run (a training log line, an evaluation,
diagnostics), each with `step` (optimizer steps done) and
`train_flops` (cumulative). On resume the file is cut back to the checkpoint's
step, so a resumed run's files equal an uninterrupted run's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

from pgfsparse.rundir.files import atomic_write_text
from pgfsparse.rundir.layout import RunDir

# Training-log fields measured by the clock: the only ones a resumed run does not reproduce exactly.
WALL_CLOCK_KEYS = ("train/examples_per_s", "train/flops_per_s", "train/mfu")


class MetricsFile:
    def __init__(self, run_dir: Path):
        self.path = RunDir(run_dir).metrics

    def truncate_after(self, step: int, final: bool = False) -> None:
        """Drop events logged after `step` (they will be produced again by the resumed run).

        `final`: `step` is the final checkpoint's, which the final evaluation follows: drop that one too.
        """
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if line and _kept(json.loads(line), step, final)]
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, event: Dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(event, sort_keys=True) + "\n")


def _kept(event: Dict[str, Any], step: int, final: bool) -> bool:
    return event["step"] < step or (event["step"] == step and not (final and event["event"] == "eval"))
