"""Bad input refused up front, divergence, unsafe files, refused resumes, W&B outages (README "Failure modes").

Runs go through the real entry point, `pgfsparse.cli.pgf_train.main()`, in process (a few as
the installed `pgf-train`), on digits with a 1-block, 32-wide ViT. Kills, signals
and preemption are in test_preemption.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import List, Union, get_args, get_origin, get_type_hints

import pytest
import torch

pytest.importorskip("hydra")
pytest.importorskip("timm")

from pgfsparse.config.schema import TrainConfig  # noqa: E402
from pgfsparse.config.validation import RANGES  # noqa: E402

PGF_TRAIN = Path(sys.executable).parent / "pgf-train"
TINY = ["data=digits", "model.kwargs.embed_dim=32", "model.kwargs.depth=1", "model.kwargs.num_heads=2", "threads=1",
        "logger=local"]


def cli(tmp_path: Path, *overrides: str, monkeypatch) -> int:
    """`pgf-train *overrides` in process, in `tmp_path`; its exit code."""
    from hydra.core.global_hydra import GlobalHydra

    from pgfsparse.cli import pgf_train as entry

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pgf-train", *overrides])
    try:
        entry.main()
        return 0
    except SystemExit as done:
        return int(done.code or 0)
    finally:
        GlobalHydra.instance().clear()


def pgf_train(*args: str, cwd: Path, env=None, timeout=300) -> subprocess.CompletedProcess:
    if not PGF_TRAIN.exists():
        pytest.skip("pgf-train is not installed next to this Python")
    return subprocess.run([str(PGF_TRAIN), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "WANDB_MODE": "disabled", **(env or {})})


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


# -- the table of bad configurations ----------------------------------------------------------
def _outside(key: str) -> str:
    """A value just outside RANGES[key]."""
    text = RANGES[key].text
    if key == "optim.betas":
        return "[0.9,1.0]"
    return {">= 1": "0", ">= 2": "1", "> 0": "0", ">= 0": "-1", "in [0, 1]": "1.5", "in [0, 1)": "1.0"}[text]


SCHEMA_DERIVED = [(f"{key}={_outside(key)}", f"{key}=") for key in RANGES]
FROM_THE_ISSUE = [
    ("data.batch_size=-4", "data.batch_size=-4 is out of range"),
    ("optim.lr=-1", "optim.lr=-1.0 is out of range"),
    ("optim.betas=[2.0,0.999]", "optim.betas=[2.0,0.999]"),
    ("optim.name=bogus", "optim.name='bogus' is not a timm optimizer"),
    ("data.num_workers=-1", "data.num_workers=-1"),
    ("optim.grad_clip=-1", "optim.grad_clip=-1.0 is out of range: it must be > 0 (or null: off)"),
    ("optim.weight_decay=-1", "optim.weight_decay=-1.0"),
    ("schedule.warmup_fraction=-1", "schedule.warmup_fraction=-1.0"),
    ("checkpoint_every=-1", "checkpoint_every=-1"),
    ("model.checkpoint=missing.pth", "model.checkpoint=missing.pth: no such file"),
    ("model.checkpoint=notes.txt", "notes.txt cannot be read"),
    ("resume=no-such-run", "resume=no-such-run: no such run dir"),
    ("data=imagefolder data.path=no-such-folder", "data.path=no-such-folder: no such file or folder"),
    ("model=timm model.name=resnet18 sparsity=1:4", "no built-in layer map for ResNet"),
    ("data.batch_size=4000", "exceeds the 1438 examples"),
    ("model=vitt", "Could not find 'model/vitt' (choose one of: swin, t5"),
    ("optim.nme=3", "Could not override 'optim.nme'"),
    ("optim.lr=fast", "optim.lr=fast"),
    ("+optim.momentum=0.9", "unknown config key(s) optim.momentum"),
    ("sparsity=1:16 recipe=dense", "contradicts the pattern"),
    ("sparsity.ff=3:2", "sparsity"),
    ("budget.steps=5 budget.epochs=1", "set one run length"),
    ("precision=fp8", "precision='fp8'"),
    ("device=tpu", "device='tpu'"),
    ("logger.mode=sometimes", "logger.mode='sometimes'"),
    ("schedule.name=linear", "schedule.name='linear'"),
    ("sparsity.layout=diagonal", "sparsity.layout='diagonal'"),
    ("model=t5 data=digits", "is a text model"),
]
BAD = SCHEMA_DERIVED + FROM_THE_ISSUE


def test_the_table_is_long_enough_and_every_numeric_key_has_a_range():
    assert len(BAD) >= 40
    numeric = _numeric_keys(TrainConfig)
    assert numeric and numeric == set(RANGES), numeric ^ set(RANGES)


def _numeric_keys(schema, prefix: str = "") -> set:
    """Dotted names of the schema's int/float fields (Optional and List of them included)."""
    keys, hints = set(), get_type_hints(schema)
    for field in fields(schema):
        kind = hints[field.name]
        if get_origin(kind) in (Union, list, List):
            args = [a for a in get_args(kind) if a is not type(None)]
            kind = args[0] if len(args) == 1 else kind
        nested = field.default_factory() if callable(field.default_factory) else None
        if is_dataclass(nested):
            keys |= _numeric_keys(type(nested), f"{prefix}{field.name}.")
        elif kind in (int, float):
            keys.add(prefix + field.name)
    return keys


@pytest.mark.parametrize("overrides, expected", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_in_one_line_with_nothing_left(overrides, expected, tmp_path, monkeypatch, capsys):
    (tmp_path / "notes.txt").write_text("not weights\n")
    before = set(os.listdir(tmp_path))
    base = [o for o in TINY if not o.startswith("model.kwargs")] if "model=" in overrides else TINY
    code = cli(tmp_path, *base, "budget.steps=2", *overrides.split(), monkeypatch=monkeypatch)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count("\n") == 0 and err.startswith("pgf-train: error: ") and expected in err, err
    assert "Traceback" not in err
    assert set(os.listdir(tmp_path)) == before, "a refused run leaves no folder (outputs/<date>/<time>/)"


@pytest.mark.parametrize("overrides", [["optim.lr=abc"], ["data.eval_limit=0"], ["model.checkpoint=missing.pth"]])
def test_the_installed_command_refuses_in_one_line_too(overrides, tmp_path):
    run_dir = tmp_path / "a" / "run"
    done = pgf_train(*TINY, "budget.steps=2", *overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "a").exists()


# -- divergence ---------------------------------------------------------------------------------
def _poison(monkeypatch, at_call: int, where: str) -> None:
    """Make the training loss (or only its gradient) NaN from the `at_call`-th loss on."""
    from pgfsparse.tasks.image_classification import ImageClassification

    original, calls = ImageClassification.loss, []

    def loss(self, model, batch):
        value = original(self, model, batch)
        calls.append(1)
        if len(calls) < at_call:
            return value
        if where == "loss":
            return value * float("nan")
        weight = next(model.parameters())
        return value + 0.0 * (weight - weight.detach()).abs().sqrt().sum()  # finite value, NaN gradient

    monkeypatch.setattr(ImageClassification, "loss", loss)


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_a_non_finite_loss_or_gradient_stops_with_code_4_keeping_the_last_checkpoint(where, tmp_path, monkeypatch,
                                                                                     capsys):
    _poison(monkeypatch, at_call=6, where=where)
    run_dir = tmp_path / "run"
    code = cli(tmp_path, *TINY, "budget.steps=10", "checkpoint_every=4", "log_every=1", f"hydra.run.dir={run_dir}",
               monkeypatch=monkeypatch)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 4 and "at step 6" in err and ("loss is nan" if where == "loss" else "gradient norm is nan") in err
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 4
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["status"], status["exit_code"]) == ("failed", 4)
    assert max(json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()) == 5


def test_a_learning_rate_that_diverges_exits_4(tmp_path, monkeypatch, capsys):
    code = cli(tmp_path, *TINY, "budget.steps=40", "optim.lr=1e3", "optim.grad_clip=null", "log_every=1",
               f"hydra.run.dir={tmp_path / 'run'}", monkeypatch=monkeypatch)
    assert code == 4, capsys.readouterr().err[-500:]
    assert not (tmp_path / "run" / "summary.json").exists()


# -- unsafe files -------------------------------------------------------------------------------
class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["resume", "model.checkpoint"])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(how, tmp_path, monkeypatch, capsys):
    marker, run_dir = tmp_path / "code-ran", tmp_path / "run"
    run_dir.mkdir()
    evil = run_dir / "checkpoint.pt" if how == "resume" else tmp_path / "weights.pth"
    torch.save({"model": {}, "optimizer": {}, "scheduler": {}, "step": 1, "rng": {}, "x": RunsCode(marker)}, evil)
    code = cli(tmp_path, *TINY, "budget.steps=2",
               f"resume={run_dir}" if how == "resume" else f"model.checkpoint={evil}", monkeypatch=monkeypatch)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert "refused" in err and "system" in err and "arbitrary code" in err
    assert "weights_only" not in err and "damaged" not in err
    assert not marker.exists(), "the pickle's code ran"


# -- resume=DIR alone, and refused resumes ----------------------------------------------------------
def test_resume_dir_alone_uses_the_runs_own_settings_and_a_refusal_changes_nothing(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    first = [*TINY, "sparsity=1:4", "recipe=srste", "budget.steps=4", "optim.lr=0.002", "data.batch_size=32"]
    assert cli(tmp_path, *first, "checkpoint_every=2", f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch) == 0
    (run_dir / "summary.json").unlink()  # as if cut off after its last checkpoint
    (run_dir / "status.json").unlink()
    before = snapshot(run_dir)
    capsys.readouterr()
    for refused in ([f"resume={run_dir}", "optim.lr=0.01", "data.batch_size=16"],
                    [f"hydra.run.dir={run_dir}", *TINY, "budget.steps=4"]):  # the defaults differ from the run's
        assert cli(tmp_path, *refused, monkeypatch=monkeypatch) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "cannot be resumed with other result-changing settings" in err, err
        assert snapshot(run_dir) == before, "a refused resume changed the run dir"
        assert sorted(os.listdir(tmp_path)) == ["run"]
    assert "data.batch_size (run: 32, given: 16); optim.lr (run: 0.002, given: 0.01)" in \
        _refusal(tmp_path, monkeypatch, capsys, f"resume={run_dir}", "optim.lr=0.01", "data.batch_size=16")
    # harmless overrides are accepted: logging, eval frequency, threads, W&B mode
    assert cli(tmp_path, f"resume={run_dir}", "log_every=1", "eval_every=3", "threads=1", "logger.mode=disabled",
               monkeypatch=monkeypatch) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["sparsity"], summary["recipe"], summary["steps"]) == ("1:4", "srste", 4)
    assert (run_dir / ".hydra" / "config.yaml").read_bytes() == before[".hydra/config.yaml"]
    assert sorted(os.listdir(tmp_path)) == ["run"]  # no outputs/<date>/<time>/ beside it


def _refusal(tmp_path, monkeypatch, capsys, *overrides) -> str:
    assert cli(tmp_path, *overrides, monkeypatch=monkeypatch) == 2
    return capsys.readouterr().err.strip()


def test_resuming_on_another_device_warns_in_one_line(tmp_path, monkeypatch, capsys):
    from hydra import compose, initialize_config_module
    from test_cli import QUIET, TINY_VIT, train

    from pgfsparse.config.validation import to_train_config
    from pgfsparse.run.resume import read_checkpoint

    overrides = [*QUIET, "data=digits", "budget.steps=2", *TINY_VIT]
    train(tmp_path, *overrides[len(QUIET):], "device=cpu")
    with initialize_config_module(config_module="pgfsparse.conf", version_base="1.3"):
        cfg = to_train_config(compose(config_name="train", overrides=[*overrides, "device=auto"]))
    read_checkpoint(tmp_path, cfg)
    assert "warning: resuming with device=auto, the run used device=cpu" in capsys.readouterr().err


# -- late failures ----------------------------------------------------------------------------
def test_a_failure_after_training_leaves_a_run_that_resumes_to_the_end(tmp_path, monkeypatch):
    from pgfsparse.run import trainer

    run_dir = tmp_path / "run"
    original = trainer.Trainer.summary
    monkeypatch.setattr(trainer.Trainer, "summary", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        cli(tmp_path, *TINY, "budget.steps=4", "checkpoint_every=null", f"hydra.run.dir={run_dir}",
            monkeypatch=monkeypatch)
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 4  # written before the evaluation
    assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"
    monkeypatch.setattr(trainer.Trainer, "summary", original)
    assert cli(tmp_path, f"resume={run_dir}", monkeypatch=monkeypatch) == 0
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "eval"] == [4]  # the final evaluation once
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 4


# -- W&B outage -----------------------------------------------------------------------------------
def test_wandb_online_without_a_server_falls_back_to_offline(tmp_path):
    pytest.importorskip("wandb")
    env = {"WANDB_MODE": "online", "WANDB_API_KEY": "0123456789" * 4, "WANDB_BASE_URL": "http://127.0.0.1:9"}
    began = time.monotonic()
    done = pgf_train(*TINY[:-1], "logger=wandb", "logger.mode=online", "budget.steps=2",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=env, timeout=120)
    took = time.monotonic() - began
    assert done.returncode == 0, done.stderr[-2000:]
    assert "W&B online is unavailable" in done.stderr and "logging offline instead" in done.stderr
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert took < 60, took
