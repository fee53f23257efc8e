"""The numbers and the file of benchmarks/gpu_check.py: the time budget, per-round ratios and their summary,
the CUDA-event timer, and the JSON report rewritten after every change.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from gpu_plan import ROOT


class Budget:
    """Seconds left of a fixed budget, from a clock started at construction."""

    def __init__(self, total_s: float, clock: Callable[[], float] = time.monotonic):
        self.total_s = float(total_s)
        self.clock = clock
        self.start = clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        return self.total_s - self.elapsed()

    def fits(self, seconds: float) -> bool:
        return self.elapsed() + seconds <= self.total_s


# -- ratios ------------------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, as benchmarks/compile_speed.py and step_time.py take it."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def round_ratios(times: Sequence[float], reference: Sequence[float]) -> List[float]:
    """Per round: time / reference time of the same round (rounds where either is missing are dropped)."""
    return [t / r for t, r in zip(times, reference) if t is not None and r is not None and r > 0]


def summarize(ratios: Sequence[float]) -> Optional[Dict[str, float]]:
    """{median, p10, p90, n} of per-round ratios; None without any."""
    if not ratios:
        return None
    return {"median": median(ratios), "p10": percentile(ratios, 0.1), "p90": percentile(ratios, 0.9), "n": len(ratios)}


# -- output -------------------------------------------------------------------------------------------------
def default_output() -> Path:
    """$OUT/gpu_check.json when $OUT is set (the device runner), else benchmarks/results/gpu_check-<date>.json."""
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu_check.json"
    return ROOT / "benchmarks" / "results" / f"gpu_check-{datetime.date.today().isoformat()}.json"


class Report:
    """The JSON file, rewritten (atomically) after every change."""

    def __init__(self, path: Path, data: Dict[str, Any], budget: Budget):
        self.path, self.data, self.budget = Path(path), data, budget
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.write()

    def add(self, section: str, entry: Dict[str, Any]) -> None:
        self.data.setdefault(section, []).append(entry)
        self.write()

    def write(self) -> None:
        self.data["elapsed_s"] = round(self.budget.elapsed(), 1)
        self.data["updated"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        os.replace(tmp, self.path)


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


def ms_per_call(fn, iters: int, torch, cuda: bool) -> float:
    """Milliseconds per call of fn over `iters` calls back to back (CUDA events on a GPU: no host sync
    between calls). Also benchmarks/sparse_inference.py's GPU timer."""
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / iters
    begin = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - begin) * 1000 / iters
