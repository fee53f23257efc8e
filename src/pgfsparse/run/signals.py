"""Preemption: SIGTERM or SIGINT stops a run at the next step boundary, after a checkpoint.

SLURM (preemption, time limit, scancel), a laptop's shutdown and Ctrl-C all
send one of them. The first asks the training loop to checkpoint and stop
(pgf-train then exits with EXIT_STOPPED, so a requeue script can resume); a
second one ends the process at once (the last complete checkpoint is kept:
checkpoint writes are atomic).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Set by the first stop signal; the loop reads it at each step boundary."""

    def __init__(self) -> None:
        self.signal: Optional[int] = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal else ""

    def _handle(self, signum, frame) -> None:
        if self.requested:  # the second signal: stop at once, as if no handler were installed
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signal = signum
        print(
            f"pgf-train: {signal.Signals(signum).name}: stopping after this step with a checkpoint "
            "(send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """A StopRequest set by SIGTERM/SIGINT while the block runs; the previous handlers come back after it."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():  # handlers live in the main thread only
        yield request
        return
    previous = {sig: signal.signal(sig, request._handle) for sig in STOP_SIGNALS}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
