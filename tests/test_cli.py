"""pgf-train end to end on tiny runs: the installed command, every named option, budgets, resume.

Most runs go through the same path as the command (compose -> Trainer.fit) in
process, to keep the suite fast; a few call the installed `pgf-train` itself.
"""
from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("hydra")
pytest.importorskip("timm")

from hydra import compose, initialize_config_module  # noqa: E402

from pgfsparse.config.validation import to_train_config  # noqa: E402
from pgfsparse.run.trainer import Trainer  # noqa: E402
from pgfsparse.rundir.metrics import WALL_CLOCK_KEYS  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PGF_TRAIN = Path(sys.executable).parent / "pgf-train"
TINY_VIT = ["model.kwargs.embed_dim=32", "model.kwargs.depth=1", "model.kwargs.num_heads=2"]
QUIET = ["logger=local", "checkpoint_every=null", "log_every=2", "diagnostics_every=2"]


def train(run_dir: Path, *overrides: str) -> dict:
    with initialize_config_module(config_module="pgfsparse.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*QUIET, *overrides])
    choices = {"model": next((o.split("=")[1] for o in overrides if o.startswith("model=")), "vit")}
    return Trainer(to_train_config(cfg), run_dir, choices=choices).fit()


def events(run_dir: Path, kind=None):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if kind is None or e["event"] == kind]


def run_command(*args: str, env=None) -> subprocess.CompletedProcess:
    if not PGF_TRAIN.exists():
        pytest.skip("pgf-train is not installed next to this Python")
    return subprocess.run([str(PGF_TRAIN), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "WANDB_SILENT": "true", **(env or {})})


# -- the installed command ---------------------------------------------------------------
def test_installed_command_finds_its_configs_and_lists_groups():
    info = run_command("--info", "searchpath")
    assert info.returncode == 0 and "pkg://pgfsparse.conf" in info.stdout
    help_text = run_command("--help").stdout
    for group in ("model:", "sparsity:", "recipe:", "budget:", "data:", "optim:", "schedule:", "logger:",
                  "experiment:"):
        assert group in help_text
    for option in ("1:16", "decay", "sdgf_geo", "vit_b16", "swin", "digits", "imagefolder", "t5_base", "multi30k",
                   "glue", "c4"):
        assert option in help_text
    job = run_command("model=vit", "sparsity=1:16", "recipe=decay", "--cfg", "job").stdout
    assert "ff: '1:16'" in job and "name: decay" in job


def test_command_runs_digits_and_writes_outputs(tmp_path):
    run_dir = tmp_path / "run"
    done = run_command("data=digits", "sparsity=1:4", "recipe=decay", "budget.steps=4", *TINY_VIT,
                       "logger.mode=offline", f"hydra.run.dir={run_dir}", env={"WANDB_MODE": "offline"})
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("model", "sparsity", "recipe", "seed", "steps", "train_flops", "inference_flops", "eval_metric",
                "eval_value", "eval_value_strict", "wall_seconds"):
        assert key in summary
    assert (summary["sparsity"], summary["recipe"], summary["steps"]) == ("1:4", "mdgf_exp", 4)
    assert list((run_dir / "wandb").glob("offline-run-*")), "an offline W&B run is written under the run dir"
    assert (run_dir / "checkpoint.pt").exists()


def test_command_errors_are_one_line(tmp_path):
    done = run_command("data=digits", "sparsity=1:16", "recipe=dense", f"hydra.run.dir={tmp_path / 'x'}")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "contradicts the pattern" in done.stderr


def test_multirun_grid(tmp_path):
    done = run_command("-m", "data=digits", "sparsity=2:4,1:16", "recipe=srste,decay", "budget.steps=2",
                       *TINY_VIT, *QUIET, f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-2000:]
    summaries = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/summary.json"))]
    assert sorted((s["sparsity"], s["recipe"]) for s in summaries) == [
        ("1:16", "mdgf_exp"), ("1:16", "srste"), ("2:4", "mdgf_exp"), ("2:4", "srste")]


# -- each named option on local fixtures ----------------------------------------------------
def test_vit_on_digits_logs_flops_and_both_views(tmp_path):
    summary = train(tmp_path, "data=digits", "sparsity=1:4", "recipe=srste", "budget.steps=4", *TINY_VIT)
    assert summary["eval_metric"] == "top1" and 0 <= summary["eval_value_strict"] <= 100
    train_events = events(tmp_path, "train")
    assert [e["step"] for e in train_events] == [2, 4]
    flops = [e["train_flops"] for e in train_events]
    assert 0 < flops[0] < flops[1] == summary["train_flops"]
    assert any(k.endswith("/sad") for k in events(tmp_path, "diagnostics")[0])
    assert summary["inference_flops"] > 0


def test_swin_and_a_timm_model_by_name(tmp_path):
    swin = train(tmp_path / "swin", "model=swin", "data=digits", "sparsity=1:4", "budget.steps=2",
                 "model.kwargs.window_size=2", "model.kwargs.embed_dim=16", "model.kwargs.depths=[1,1]",
                 "model.kwargs.num_heads=[1,2]")
    assert swin["sparse_layers"] == 4  # fc1, fc2 in each of two blocks
    deit = train(tmp_path / "deit", "model=timm", "model.name=deit_tiny_patch16_224", "data=digits",
                 "budget.steps=2", "+model.kwargs.patch_size=4", "+model.kwargs.embed_dim=32",
                 "+model.kwargs.depth=1", "+model.kwargs.num_heads=2", "sparsity=1:8")
    assert deit["sparse_layers"] == 2 and deit["model_name"] == "deit_tiny_patch16_224"


@pytest.mark.skipif(not (SHARED_DATA / "cifar10").is_dir(), reason="../shared/data/cifar10 is absent")
def test_cifar10_from_pgf_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PGF_DATA_DIR", str(SHARED_DATA))
    summary = train(tmp_path, "data=cifar10", "sparsity=1:16", "recipe=decay", "budget.steps=2",
                    "data.batch_size=16", "data.eval_limit=64", *TINY_VIT)
    assert summary["eval"]["eval/examples"] == 64
    assert "cifar10" in summary["data_source"]


def write_image_tree(root: Path, splits=("train", "val")):
    from PIL import Image

    for split in splits:
        for label, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (16, 16), tuple(max(c - 20 * i, 0) for c in colour)).save(folder / f"{i}.png")


def test_imagefolder_tree(tmp_path):
    write_image_tree(tmp_path / "images")
    summary = train(tmp_path / "run", "data=imagefolder", f"data.path={tmp_path / 'images'}", "budget.steps=2",
                    "data.batch_size=4", *TINY_VIT)
    assert summary["eval"]["eval/examples"] == 8


def test_imagenet_schema_parquet_folder(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    folder = tmp_path / "imagenet"
    folder.mkdir()
    for split, count in (("train", 8), ("validation", 4)):
        images = []
        for i in range(count):
            buffer = io.BytesIO()
            Image.new("RGB", (16, 16), (30 * i, 0, 0)).save(buffer, format="PNG")
            images.append({"bytes": buffer.getvalue(), "path": f"{i}.png"})
        pq.write_table(pa.table({"image": images, "label": [i % 3 for i in range(count)]}), folder / f"{split}.parquet")
    summary = train(tmp_path / "run", "data=imagenet", f"data.path={folder}", "data.image_size=16",
                    "data.batch_size=4", "data.num_workers=0", "budget.steps=2", *TINY_VIT)
    assert summary["eval"]["eval/examples"] == 4
    assert sorted(os.listdir(folder)) == ["train.parquet", "validation.parquet"]  # nothing written there


# -- budgets --------------------------------------------------------------------------------
def test_epoch_budget_is_its_closed_form(tmp_path):
    # digits: 1797 images, 20% held out -> the train split's size comes from the data module
    from pgfsparse.config.schema import DataConfig
    from pgfsparse.data import build_image_data

    n_train = len(build_image_data(DataConfig(name="digits")).train)
    summary = train(tmp_path, "data=digits", "budget.epochs=0.5", "data.batch_size=64", *TINY_VIT)
    assert summary["steps"] == math.ceil(0.5 * (n_train // 64))


def test_flop_budget_is_the_smallest_step_count_reaching_it(tmp_path):
    first = train(tmp_path / "a", "data=digits", "sparsity=1:4", "recipe=ste", "budget.steps=10", *TINY_VIT)
    per_run = first["train_flops"]
    summary = train(tmp_path / "b", "data=digits", "sparsity=1:4", "recipe=ste", f"budget.train_flops={per_run}",
                    *TINY_VIT)
    assert summary["steps"] == 10 and summary["train_flops"] == pytest.approx(per_run)
    fewer = train(tmp_path / "c", "data=digits", "sparsity=1:4", "recipe=ste",
                  f"budget.train_flops={per_run * 0.999}", *TINY_VIT)
    assert fewer["steps"] == 10  # 9 steps fall short of 0.999 of ten steps' cost


# -- resume -----------------------------------------------------------------------------------
def without_wall_time(run_dir: Path):
    out = []
    for event in events(run_dir):
        out.append({k: v for k, v in event.items() if k not in WALL_CLOCK_KEYS})
    return out


@pytest.mark.parametrize("recipe", ["decay", "sdgf_step"])
def test_resume_equals_an_uninterrupted_run(tmp_path, recipe):
    common = ["data=digits", "sparsity=1:4", f"recipe={recipe}", "budget.steps=8", *TINY_VIT,
              "data.augment.random_crop=true", "recipe.mask_interval=3"]
    assert_resume_equals_uninterrupted(tmp_path, common, at=4)


def assert_resume_equals_uninterrupted(tmp_path: Path, common, at: int) -> None:
    """The run straight through vs the same run killed after its step-`at` checkpoint and started again."""
    train(tmp_path / "straight", *common)
    half = tmp_path / "halves"
    with pytest.raises(KeyboardInterrupt):
        _interrupt_after(half, at, *common, f"checkpoint_every={at}")
    train(half, *common)
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(half / "checkpoint.pt", weights_only=True)
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert without_wall_time(tmp_path / "straight") == without_wall_time(half)


def _interrupt_after(run_dir: Path, steps: int, *overrides: str) -> None:
    """Run until `steps` optimizer steps are done and checkpointed, then die as a killed job would."""
    original = Trainer._save

    def save_then_stop(self, step, wall):
        original(self, step, wall)
        if step == steps:
            raise KeyboardInterrupt

    Trainer._save = save_then_stop
    try:
        train(run_dir, *overrides)
    finally:
        Trainer._save = original


def test_corrupt_checkpoint_fails_before_anything_is_written(tmp_path):
    from pgfsparse.errors import CheckpointError

    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "metrics.jsonl").write_text('{"event": "train", "step": 2}\n')
    with pytest.raises(CheckpointError, match="damaged"):
        train(tmp_path, "data=digits", "budget.steps=2", *TINY_VIT)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"event": "train", "step": 2}\n'


def test_a_run_that_fails_while_building_still_releases_the_process_group(tmp_path, monkeypatch):
    from pgfsparse.errors import DataError
    from pgfsparse.run import distributed

    stopped = []
    monkeypatch.setattr(distributed, "stop", stopped.append)
    (tmp_path / "no-images").mkdir()  # exists (a missing data.path is refused before fit), holds no images
    with pytest.raises(DataError):
        train(tmp_path, "data=imagefolder", f"data.path={tmp_path / 'no-images'}", "budget.steps=2", *TINY_VIT)
    assert len(stopped) == 1


def test_a_built_wheel_ships_the_configs(tmp_path):
    import zipfile

    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(repo)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.skip(f"could not build a wheel here: {done.stderr.strip().splitlines()[-1:]}")
    names = zipfile.ZipFile(next(tmp_path.glob("pgfsparse-*.whl"))).namelist()
    for path in ("pgfsparse/conf/__init__.py", "pgfsparse/conf/train.yaml", "pgfsparse/conf/sparsity/1:16.yaml",
                 "pgfsparse/conf/hydra/launcher/slurm.yaml", "pgfsparse/conf/experiment/vit_b16_imagenet.yaml"):
        assert path in names, path
    # every package of the source tree ships (pyproject lists them by hand)
    for init in (repo / "src").rglob("__init__.py"):
        assert init.relative_to(repo / "src").as_posix() in names, init


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    first = train(tmp_path, "data=digits", "budget.steps=2", *TINY_VIT)
    before = (tmp_path / "metrics.jsonl").read_text()
    again = train(tmp_path, "data=digits", "budget.steps=2", *TINY_VIT)
    assert again == json.loads(json.dumps(first)) and (tmp_path / "metrics.jsonl").read_text() == before
