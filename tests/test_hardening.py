"""Bad input refused up front, divergence, unsafe files, refused resumes, W&B outages (docs/failure-modes.md).

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

from conftest import run_pgf_train

pytest.importorskip("hydra")
pytest.importorskip("timm")

from pgfsparse.config.schema import TrainConfig  # noqa: E402
from pgfsparse.config.validation import RANGES  # noqa: E402

PGF_TRAIN = Path(sys.executable).parent / "pgf-train"
TINY = ["data=digits", "model.kwargs.embed_dim=32", "model.kwargs.depth=1", "model.kwargs.num_heads=2", "threads=1",
        "logger=local"]


cli = run_pgf_train  # conftest.py


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
    ("model=vitt", "Could not find 'model/vitt' (choose one of: gpt2, llama, llama_125m, swin, t5"),
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
    # issue 22, item 5: what a new user found
    ("threads=-2", "threads=-2 is out of range: it must be >= 1"),  # used before the Trainer's checks
    ("optim.betas=[0.9]", "optim.betas=[0.9] needs two values, each in [0, 1)"),
    ("hydra.run.dir=/proc/forbidden", "cannot create the run dir /proc/forbidden (No such file or directory): "
                                      "choose a writable hydra.run.dir"),
    ("sparsity=1:16 recipe.decay_end_fraction=2", "decay_end_fraction=2.0 is out of range: set decay_end_fraction "
                                                   "in [0, 1]"),
    ("model.kwargs.depth=0", "model.kwargs.depth=0 leaves vit_tiny_patch16_224 with no transformer blocks"),
    ("model.kwargs.patch_size=5", "model.kwargs.patch_size=5 does not divide the image size 8 (the pixels past the "
                                  "last whole patch would be dropped): set model.kwargs.patch_size=2 or 4, or "
                                  "data.image_size to a multiple of 5"),
    ("diagnostics_every=-1", "diagnostics_every=-1 is out of range: it must be >= 0 (0: off)"),
    ("model.kwargs.embed_dim=16 sparsity=1:32", "or allow skipping (sparsity.allow_skip=true) to leave the layer "
                                                "dense"),
    # issue 24: one-shot starts
    ("oneshot=wanda", "oneshot=wanda prunes to an N:M pattern but sparsity is dense: add e.g. sparsity=2:4"),
    ("sparsity=1:4 oneshot=wanda oneshot.samples=0", "oneshot.samples=0 is out of range: it must be >= 1"),
    ("sparsity=1:32 oneshot=sparsegpt oneshot.blocksize=48", "oneshot.blocksize=48 is not a multiple of M=32 "
                                                             "(ff=1:32)"),
    ("sparsity=1:4 oneshot=wanda oneshot.samples=5000", "oneshot.samples=5000 exceeds the 1438 examples of "
                                                        "data=digits's training split: lower oneshot.samples"),
    ("budget.steps=0", "budget.steps=0 trains nothing: it is only for evaluating a one-shot prune untrained"),
    ("sparsity=1:4 oneshot=sparsegpt recipe.dense_fraction=0.1", "so it has no dense warm-up, but "
                                                                 "recipe.dense_fraction=0.1"),
    ("sparsity=1:4 oneshot=magnitude sparsity.layout=col", "drop sparsity.layout=col"),
    ("sparsity=1:4 oneshot=obs", "Could not find 'oneshot/obs' (choose one of: magnitude, none, sparsegpt, wanda"),
    ("sparsity=1:16 recipe=sdgf_custom recipe.ladder=1:16,8:16",
     "Ambiguous value for argument 'recipe.ladder=1:16,8:16': quote it: 'recipe.ladder=\"1:16,8:16\"'"),
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

    from pgfsparse.config.validation import check, to_train_config
    from pgfsparse.run.resume import read_checkpoint
    from test_cli import QUIET, TINY_VIT, train

    overrides = [*QUIET, "data=digits", "budget.steps=2", *TINY_VIT]
    train(tmp_path, *overrides[len(QUIET):], "device=cpu")
    with initialize_config_module(config_module="pgfsparse.conf", version_base="1.3"):
        cfg = to_train_config(compose(config_name="train", overrides=[*overrides, "device=auto"]))
    read_checkpoint(tmp_path, cfg, check(cfg))
    assert "warning: resuming with device=auto, the run used device=cpu" in capsys.readouterr().err


# -- late failures ----------------------------------------------------------------------------
def test_a_failure_after_training_leaves_a_run_that_resumes_to_the_end(tmp_path, monkeypatch):
    from pgfsparse.run import recorder

    run_dir = tmp_path / "run"
    original = recorder.Recorder.summary
    monkeypatch.setattr(recorder.Recorder, "summary", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        cli(tmp_path, *TINY, "budget.steps=4", "checkpoint_every=null", f"hydra.run.dir={run_dir}",
            monkeypatch=monkeypatch)
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 4  # written before the evaluation
    assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"
    monkeypatch.setattr(recorder.Recorder, "summary", original)
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


# -- what a new user found (issue 22, item 5) ---------------------------------------------------
def test_a_crash_before_the_run_starts_leaves_no_folder(tmp_path, monkeypatch):
    from pgfsparse.run import trainer

    def build_task(*args, **kwargs):
        raise RuntimeError("boom while building the task")

    monkeypatch.setattr(trainer, "build_task", build_task)
    with pytest.raises(RuntimeError, match="boom while building the task"):
        cli(tmp_path, *TINY, "budget.steps=2", monkeypatch=monkeypatch)
    assert os.listdir(tmp_path) == [], "a run that never began leaves no outputs/<date>/<time>/ with an empty log"


def test_every_fraction_knob_of_every_recipe_is_range_checked():
    from dataclasses import fields as knobs

    from pgfsparse.sparsity.recipes import make_recipe, registered

    checked = set()
    for recipe_class in registered().values():
        for knob in (f.name for f in knobs(recipe_class) if f.name.endswith("_fraction")):
            for bad in (-0.1, 1.5):
                with pytest.raises(ValueError, match=rf"{knob}={bad} is out of range: set {knob} in \[0, 1\]"):
                    make_recipe(recipe_class, **{knob: bad})
            checked.add(knob)
    assert {"dense_fraction", "finetune_fraction", "decay_end_fraction"} <= checked


def test_diagnostics_every_0_is_off(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    assert cli(tmp_path, *TINY, "sparsity=1:4", "budget.steps=4", "log_every=1", "diagnostics_every=0",
               "checkpoint_every=null", f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch) == 0
    events = [json.loads(line)["event"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert "train" in events and "diagnostics" not in events


def _class_ordered_tree(root: Path, per_class: int = 50) -> Path:
    """train/ and val/ of two classes, 8x8 PNGs: every `a` image before every `b` one, as an ImageFolder lists them."""
    from PIL import Image

    for split in ("train", "val"):
        for label, name in enumerate(["a", "b"]):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (8, 8), (200 * label + i,) * 3).save(root / split / name / f"{i:03d}.png")
    return root


def test_eval_limit_is_a_fixed_sample_of_every_class_whatever_the_seed(tmp_path):
    from pgfsparse.config.schema import AugmentConfig, DataConfig
    from pgfsparse.data import build_image_data
    from pgfsparse.data.loader import eval_sample
    from pgfsparse.run.parts import seed_everything

    root = _class_ordered_tree(tmp_path / "tree")
    config = DataConfig(name="imagefolder", path=str(root), eval_limit=20, augment=AugmentConfig(hflip=0.0))
    drawn = []
    for seed in (0, 1):  # the run's seed seeds every RNG before the data is built
        seed_everything(seed)
        data = build_image_data(config)
        drawn.append((data.eval.labels.tolist(), data.eval.pixels.clone()))
    (labels, pixels), (labels_again, pixels_again) = drawn
    assert len(labels) == 20 and set(labels) == {0, 1}, labels  # the first 20 would all be class `a`
    assert labels == labels_again and torch.equal(pixels, pixels_again)
    indices = eval_sample(100, 20)
    assert indices == sorted(indices) and labels == [i // 50 for i in indices]  # in the split's own order
    assert "fixed seeded sample of 20 of 100 examples (data.eval_limit)" in data.source
    assert eval_sample(100, None) is None and eval_sample(100, 100) is None


def test_eval_limit_samples_class_ordered_text_rows_too(tmp_path, monkeypatch):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from pgfsparse.config.schema import TrainConfig
    from pgfsparse.tasks.glue import Glue

    folder = tmp_path / "glue" / "sst2"
    folder.mkdir(parents=True)
    for split in ("train", "validation"):
        labels = [0] * 50 + [1] * 50
        table = {"sentence": [f"text {i}" for i in range(100)], "label": labels, "idx": list(range(100))}
        pq.write_table(pa.table(table), folder / f"{split}-00000-of-00001.parquet")
    monkeypatch.setenv("PGF_DATA_DIR", str(tmp_path))
    cfg = TrainConfig()
    cfg.model.family, cfg.data.name, cfg.data.kind, cfg.data.glue_task, cfg.data.eval_limit = \
        "t5", "glue", "glue", "sst2", 20
    seen = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        task = Glue(cfg, None)
        monkeypatch.setattr(task, "build_tokenizer", lambda texts: None)  # no tokenizer is needed to pick rows
        data = task.build_data()
        seen.append([int(task.eval_pairs.rows[i]["sentence"].split()[1]) for i in range(len(task.eval_pairs))])
    assert seen[0] == seen[1] and len(seen[0]) == 20 and seen[0] == sorted(seen[0])
    assert {i // 50 for i in seen[0]} == {0, 1} and "fixed seeded sample of 20 of 100" in data.source


def test_a_truncated_checkpoint_is_refused_in_one_complete_line(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"model": {"w": torch.zeros(4096)}, "step": 1}, run_dir / "checkpoint.pt")
    whole = (run_dir / "checkpoint.pt").read_bytes()
    (run_dir / "checkpoint.pt").write_bytes(whole[: len(whole) // 2])
    before = snapshot(run_dir)
    code = cli(tmp_path, *TINY, "budget.steps=2", f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert "checkpoint.pt cannot be read: it is damaged, truncated or not a torch file (" in err
    assert err.endswith("): delete it to start afresh or restore a copy"), err
    assert "If you are seeing this error" not in err  # torch's run-on text is cut at its first sentence
    assert snapshot(run_dir) == before and os.listdir(tmp_path) == ["run"]


@pytest.mark.parametrize("exit_codes, advice", [
    ({"bad": 2}, "fix the input of the 1 point refused as bad input (exit code 2) and re-run the same command; "),
    ({"bad": 2, "crash": 1}, "fix the input of the 1 point refused as bad input (exit code 2) and re-run the same "
                             "command, which also retries the 1 other; "),
    ({"crash": 1, "stop": 3}, "re-run the same command to retry them; "),
])
def test_the_end_of_a_sweep_says_which_failures_a_retry_can_fix(exit_codes, advice, tmp_path, capsys):
    from omegaconf import OmegaConf

    from pgfsparse.sweeps.callback import SweepCallback

    sweep = tmp_path / "grid"
    sweep.mkdir()
    points = {name: {"status": "stopped" if code == 3 else "failed", "dir": name, "exit_code": code,
                     "error": f"{name} went wrong", "updated": "2026-12-03T10:00:00"}
              for name, code in exit_codes.items()}
    (sweep / "sweep_status.json").write_text(json.dumps({"points": points}))
    callback = SweepCallback()
    callback.started = "2026-12-03T09:00:00"
    with pytest.raises(SystemExit) as stopped:
        callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert stopped.value.code == max(exit_codes.values())
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"pgf-train: {advice}pgf-report {sweep} compares the rest", last


def test_an_unwritable_sweep_dir_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    code = cli(tmp_path, "-m", *TINY, "budget.steps=1", "seed=0,1", "hydra.sweep.dir=/proc/forbidden",
               monkeypatch=monkeypatch)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == ("pgf-train: error: cannot create the sweep dir /proc/forbidden (No such file or "
                                 "directory): choose a writable hydra.sweep.dir"), err
    assert os.listdir(tmp_path) == []
