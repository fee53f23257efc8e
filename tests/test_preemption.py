"""Kills and preemption: SIGKILL, SIGTERM and a kill mid-checkpoint, each resumed with `resume=DIR` alone.

The killed runs are real `pgf-train` processes; every resumed run must end with
the weights and metrics of the same run trained without interruption.
"""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_hardening import PGF_TRAIN, TINY, cli

from pgfsparse.rundir.metrics import WALL_CLOCK_KEYS

COMMON = [*TINY, "sparsity=1:4", "recipe=srste", "budget.steps=150", "log_every=1", "checkpoint_every=10",
          "diagnostics_every=0"]


def start(run_dir: Path, cwd: Path, python_prelude: str = "") -> subprocess.Popen:
    if not PGF_TRAIN.exists():
        pytest.skip("pgf-train is not installed next to this Python")
    argv = [*COMMON, f"hydra.run.dir={run_dir}"]
    if python_prelude:  # the entry point under a patch
        driver = cwd / "driver.py"
        driver.write_text(f"{python_prelude}\nimport sys\nfrom pgfsparse.cli.pgf_train import main\n"
                          f"sys.argv = ['pgf-train', *{argv!r}]\nmain()\n")
        return subprocess.Popen([sys.executable, str(driver)], cwd=cwd, stderr=subprocess.PIPE, text=True)
    return subprocess.Popen([str(PGF_TRAIN), *argv], cwd=cwd, stderr=subprocess.PIPE, text=True)


def wait_for_step(run_dir: Path, process: subprocess.Popen, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before the kill"
        path = run_dir / "metrics.jsonl"
        if path.exists() and any(json.loads(x)["step"] >= step for x in path.read_text().splitlines() if x):
            return
        time.sleep(0.01)
    raise AssertionError(f"step {step} not reached")


def outcome(run_dir: Path):
    weights = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    events = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for event in events:
        for key in WALL_CLOCK_KEYS:
            event.pop(key, None)
    return weights, events


def assert_same(run_dir: Path, straight: Path) -> None:
    (weights, events), (want_weights, want_events) = outcome(run_dir), outcome(straight)
    assert events == want_events
    for key, value in want_weights.items():
        assert torch.equal(value, weights[key]), key


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The same run, uninterrupted (the installed command)."""
    root = tmp_path_factory.mktemp("straight")
    process = start(root / "run", root)
    assert process.wait(timeout=300) == 0, process.stderr.read()[-2000:]
    return root / "run"


def resume_alone(tmp_path: Path, run_dir: Path, monkeypatch) -> None:
    assert cli(tmp_path, f"resume={run_dir}", monkeypatch=monkeypatch) == 0


def test_sigkill_at_a_random_step_then_resume_dir_alone(straight, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    process = start(run_dir, tmp_path)
    wait_for_step(run_dir, process, random.randint(12, 100))
    process.kill()
    process.wait()
    assert not (run_dir / "summary.json").exists()
    resume_alone(tmp_path, run_dir, monkeypatch)
    assert_same(run_dir, straight)


def test_sigterm_checkpoints_at_the_next_step_exits_3_and_resumes_identically(straight, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    process = start(run_dir, tmp_path)
    wait_for_step(run_dir, process, 13)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 3
    err = process.stderr.read()
    assert "SIGTERM: stopping after this step" in err and f"resume={run_dir}" in err
    step = torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"]
    logged = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert step >= 13 and step % 10 != 0 and max(logged) == step  # its own checkpoint, at the last step it did
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["status"], status["exit_code"], status["step"]) == ("stopped", 3, step)
    resume_alone(tmp_path, run_dir, monkeypatch)
    assert_same(run_dir, straight)


# The second checkpoint (step 20) is written half and the process killed, as a power cut would.
KILL_MID_WRITE = """
import os, signal, torch
torch_save, calls = torch.save, []
def save(payload, path, *args, **kwargs):
    calls.append(path)
    if len(calls) == 2:
        open(path, 'wb').write(b'half a checkpoint')
        os.kill(os.getpid(), signal.SIGKILL)
    return torch_save(payload, path, *args, **kwargs)
torch.save = save
"""


def test_a_kill_during_a_checkpoint_write_resumes_from_the_previous_one(straight, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    process = start(run_dir, tmp_path, python_prelude=KILL_MID_WRITE)
    assert process.wait(timeout=300) == -signal.SIGKILL, process.stderr.read()[-2000:]
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 10  # the previous one, intact
    assert list(run_dir.glob(".checkpoint.pt.*.tmp"))  # the half-written one never replaced it
    resume_alone(tmp_path, run_dir, monkeypatch)
    assert_same(run_dir, straight)
