"""Run dirs written by earlier versions keep resuming, to the same numbers.

tests/fixtures/run_v0_1_0 was written by pgfsparse 0.1.0 (before recipes became
plug-ins): a run stopped after step 4 of 8, and the metrics the same code wrote
for all 8 steps in one go. Today's code must resume the old checkpoint and
reproduce those metrics: every count, mask statistic and name exactly, and every
float to 1e-5 relative. (torch's CPU kernels differ in the last bits between
processor types, and the fixture was written on another machine; the bit-for-bit
equality of a resumed run on one machine is test_cli's resume test.)
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("hydra")
pytest.importorskip("timm")

from test_cli import train  # noqa: E402

from pgfsparse.rundir.metrics import WALL_CLOCK_KEYS  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "run_v0_1_0"


def lines(path: Path):
    events = [json.loads(line) for line in path.read_text().splitlines()]
    for event in events:
        for key in WALL_CLOCK_KEYS:
            event.pop(key, None)
    return events


def test_a_run_dir_written_by_0_1_0_resumes_to_the_same_numbers(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    overrides = json.loads((FIXTURE / "overrides.json").read_text())
    summary = train(run_dir, *overrides, "checkpoint_every=4", "log_every=2", "diagnostics_every=2")
    assert summary["steps"] == 8
    resumed, expected = lines(run_dir / "metrics.jsonl"), lines(FIXTURE / "uninterrupted_metrics.jsonl")
    assert [sorted(e) for e in resumed] == [sorted(e) for e in expected]
    for got, want in zip(resumed, expected):
        exact = {k: v for k, v in want.items() if not isinstance(v, float)}
        assert {k: got[k] for k in exact} == exact, want["step"]
        floats = [k for k, v in want.items() if isinstance(v, float)]
        assert [got[k] for k in floats] == pytest.approx([want[k] for k in floats], rel=1e-5, abs=1e-12), want["step"]
