"""Achieved training FLOP/s and MFU: train/flops_per_s, train/mfu, summary.json, peak_flops.py.

Runs are tiny (digits, a 1-block 32-wide ViT). The expected values are recomputed from what the
run logs independently: each train event's cumulative `train_flops` and its examples/s give the
window's FLOPs and seconds.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("hydra")
pytest.importorskip("timm")

from test_cli import TINY_VIT, events, train  # noqa: E402
from test_hardening import TINY, cli  # noqa: E402

from pgfsparse.flops.peak import peak_flops, table_peak  # noqa: E402
from pgfsparse.run.recorder import _flops_postfix  # noqa: E402

BATCH = 32
# 8 steps logged every 3: windows of 3, 3 and 2 steps; decay (mdgf_exp) reaches its sparse
# fine-tune phase within them, so the FLOPs per step change during the run.
RUN = ["data=digits", "sparsity=1:4", "recipe=decay", "budget.steps=8", "log_every=3", f"data.batch_size={BATCH}",
       *TINY_VIT]


def windows(run_dir: Path):
    """(train event, window FLOPs, window seconds) from the logged cumulative FLOPs and examples/s."""
    out, previous = [], {"step": 0, "train_flops": 0.0}
    for event in events(run_dir, "train"):
        examples = (event["step"] - previous["step"]) * BATCH
        out.append((event, event["train_flops"] - previous["train_flops"], examples / event["train/examples_per_s"]))
        previous = event
    return out


@pytest.fixture(scope="module")
def run_with_peak(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("peak")
    return run_dir, train(run_dir, *RUN, "peak_flops=1e12")


def test_train_events_carry_the_window_flop_rate_and_mfu(run_with_peak):
    run_dir, _ = run_with_peak
    logged = windows(run_dir)
    assert [e["step"] for e, _, _ in logged] == [3, 6, 8]
    per_step = [flops / (e["step"] - s) for (e, flops, _), s in zip(logged, [0, 3, 6])]
    assert per_step[0] != pytest.approx(per_step[-1])  # the density changed: windows must not share one rate
    for event, flops, seconds in logged:
        assert event["train/flops_per_s"] == pytest.approx(flops / seconds, rel=1e-9)
        assert event["train/mfu"] == pytest.approx(event["train/flops_per_s"] / 1e12, rel=1e-12)


def test_summary_has_the_run_flop_rate_mfu_and_peak(run_with_peak):
    run_dir, summary = run_with_peak
    assert summary == json.loads((run_dir / "summary.json").read_text())
    assert summary["peak_flops"] == 1e12
    rate = summary["train_flops_per_s"]
    assert summary["mfu"] == pytest.approx(rate / 1e12, rel=1e-12)
    # the loop's time lies between the log windows' (its parts) and the whole run's (with the final eval)
    in_windows = sum(seconds for _, _, seconds in windows(run_dir))
    assert summary["train_flops"] / summary["wall_seconds"] < rate <= summary["train_flops"] / in_windows * (1 + 1e-9)


def test_without_a_peak_on_cpu_there_is_no_mfu(tmp_path):
    summary = train(tmp_path, *RUN, "budget.steps=2", "device=cpu")
    assert all("train/mfu" not in e and e["train/flops_per_s"] > 0 for e in events(tmp_path, "train"))
    assert summary["mfu"] is None and summary["peak_flops"] is None and summary["train_flops_per_s"] > 0


def test_a_resumed_run_rates_only_its_own_steps(tmp_path):
    from test_cli import _interrupt_after

    with pytest.raises(KeyboardInterrupt):
        _interrupt_after(tmp_path, 6, *RUN, "checkpoint_every=6")
    summary = train(tmp_path, *RUN)
    logged = windows(tmp_path)
    assert [e["step"] for e, _, _ in logged] == [3, 6, 8]
    _, flops, seconds = logged[-1]  # steps 6 and 7: all this launch trained, in about all its loop's time
    assert 0 < flops < summary["train_flops"] / 2
    assert summary["train_flops_per_s"] <= flops / seconds * (1 + 1e-9)  # the whole run's FLOPs would exceed it


def test_peak_flops_on_the_command_line_and_its_range(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    assert cli(tmp_path, *TINY, "budget.steps=2", "checkpoint_every=null", "peak_flops=1e12",
               f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch) == 0
    assert json.loads((run_dir / "summary.json").read_text())["peak_flops"] == 1e12
    assert cli(tmp_path, *TINY, "budget.steps=2", "peak_flops=-1", monkeypatch=monkeypatch) == 2
    assert "peak_flops=-1.0 is out of range: it must be > 0" in capsys.readouterr().err


# -- peak_flops.py and the progress bar -------------------------------------------------------
def test_the_override_wins_over_the_table_and_the_cpu():
    assert peak_flops(torch.device("cpu"), "fp32", override=5e11) == 5e11
    assert peak_flops(torch.device("cpu"), "fp32") is None


def test_a_cuda_device_is_found_by_a_word_of_its_name(monkeypatch):
    name = {"value": "NVIDIA A100-SXM4-80GB"}
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name["value"])
    cuda = torch.device("cuda")
    assert peak_flops(cuda, "auto") == 312e12  # bf16 autocast on GPU
    assert peak_flops(cuda, "bf16") == 312e12
    assert peak_flops(cuda, "fp32") == 19.5e12
    assert peak_flops(cuda, "bf16", override=1.0) == 1.0
    name["value"] = "Imaginary Accelerator 9000"
    assert peak_flops(cuda, "bf16") is None


def test_the_longest_whole_word_key_wins():
    assert table_peak("NVIDIA H100 PCIe", "bf16") == 756e12
    assert table_peak("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert table_peak("NVIDIA L40S", "fp32") == 91.6e12
    assert table_peak("NVIDIA L4", "fp32") == 30.3e12
    assert table_peak("NVIDIA A10G", "bf16") == 70e12
    assert table_peak("NVIDIA RTX A1000", "bf16") is None  # "A100" is not a word of it


def test_the_progress_bar_shows_a_compact_rate():
    assert _flops_postfix(1.7e11, None) == {"gflops": "170"}
    assert _flops_postfix(1.7e12, 0.1234) == {"tflops": "1.7", "mfu": "12.3%"}
    assert math.isclose(float(_flops_postfix(9.99e11, None)["gflops"]), 999)
