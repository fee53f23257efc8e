"""pgf-report --wandb / --wandb-dry-run: the W&B Report's spec against what pgf-train really logs to W&B.

The committed sweeps under results/ are read, never written. What each of their runs logged is
rebuilt independently of the report's code: its Hydra config composed from the overrides in its
status.json, then the Recorder's own config and tags, W&B's group rule (logger.group, else the
sweep's name) and the metric keys of the events it logged (curves.jsonl, diagnostics.jsonl).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Tuple

import pytest

pytest.importorskip("wandb_workspaces")
pytest.importorskip("hydra")

from hydra import compose, initialize_config_module  # noqa: E402

from pgfsparse.cli.pgf_report import main  # noqa: E402
from pgfsparse.config.schema import TrainConfig  # noqa: E402
from pgfsparse.config.spec import resolve  # noqa: E402
from pgfsparse.config.validation import to_train_config  # noqa: E402
from pgfsparse.report import wandb_report  # noqa: E402
from pgfsparse.run.recorder import Recorder  # noqa: E402
from pgfsparse.rundir.layout import RunDir, SweepDir  # noqa: E402
from pgfsparse.rundir.records import RunStatus, RunSummary  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CIFAR10 = ROOT / "results" / "cifar10"
SHAKESPEARE = ROOT / "results" / "tiny_shakespeare"


@pytest.fixture(scope="module", autouse=True)
def hydra_conf():
    with initialize_config_module(config_module="pgfsparse.conf", version_base="1.3"):
        yield


# -- what a run logged to W&B, rebuilt from its folder -----------------------------------------------
def flatten(config: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """{'recipe': {'name': 'srste'}} -> {'recipe': {...}, 'recipe.name': 'srste'}: every key W&B can address."""
    flat: Dict[str, Any] = {}
    for key, value in config.items():
        flat[prefix + key] = value
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
    return flat


@functools.lru_cache(maxsize=None)
def composed(overrides: Tuple[str, ...]) -> TrainConfig:
    """pgf-train's config for `overrides` (cached: the seeds of a setting differ in `seed` only)."""
    return to_train_config(compose(config_name="train", overrides=list(overrides)))


@functools.lru_cache(maxsize=None)
def logged(run_dir: Path) -> SimpleNamespace:
    """The config, tags, group, history keys and summary keys W&B holds for the run in `run_dir`."""
    summary, status = RunSummary.read(run_dir), RunStatus.read(run_dir)
    assert summary is not None and status is not None
    setting = tuple(o for o in status.overrides if not o.startswith("seed="))
    cfg = dataclasses.replace(composed(setting), seed=summary.seed)
    spec = resolve(cfg, model=summary.model)
    recorder = SimpleNamespace(cfg=cfg, spec=spec, sweep_name=summary.sweep)
    history = set()
    for path in (RunDir(run_dir).curves, RunDir(run_dir).diagnostics, RunDir(run_dir).metrics):
        if path.exists():
            for line in path.read_text().splitlines():
                history |= {k for k, v in json.loads(line).items() if isinstance(v, (int, float))}
    scalars = {k for k, v in summary.to_dict().items() if isinstance(v, (int, float, str))}
    return SimpleNamespace(
        config=flatten(Recorder.tracker_config(recorder)),  # the canonical config the trackers get
        tags=Recorder.tags(recorder),
        group=cfg.logger.group or summary.sweep,  # WandbRun: logger.group, else the sweep's name
        history=history,
        summary=history | scalars,  # W&B's summary: the last value of each logged key, then summary.json's scalars
        sparsity=summary.sparsity,
        recipe=summary.recipe,
        budget=json.dumps(summary.budget, sort_keys=True),
    )


def run_dirs(root: Path) -> List[Path]:
    return sorted(p.parent for p in root.rglob("*.json") if p == RunDir(p.parent).summary)


def snapshot(root: Path) -> Dict[str, tuple]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# -- reading the spec -----------------------------------------------------------------------------------
def grids(spec: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [block["metadata"] for block in spec["spec"]["blocks"] if block["type"] == "panel-grid"]


def leaves(filters: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The conditions of a run set's filter (the v2 format: a flat list, groups one level deep)."""
    out = []
    for item in filters["filters"]:
        out += leaves(item) if "filters" in item else [item]
    return out


def condition(runset: Dict[str, Any], name: str) -> Dict[str, Any]:
    (found,) = [c for c in leaves(runset["filters"]) if c["key"] == {"section": "run", "name": name}]
    return found


def config_key(backend: str) -> str:
    """W&B's grouping key of a nested config value ('recipe.value.name') -> the config's key ('recipe.name')."""
    return ".".join(part for part in backend.split(".") if part != "value")


def selected(runset: Dict[str, Any], run: SimpleNamespace) -> bool:
    """Does the run set's filter (an AND of IN conditions here) select the run?"""
    values = {"group": [run.group], "tags": run.tags}
    conditions = leaves(runset["filters"])
    assert all(c["op"] == "IN" and c.get("connector", "AND") == "AND" for c in conditions)
    return all(set(values[c["key"]["name"]]) & set(c["value"]) for c in conditions)


def dry_run(root: Path, tmp_path: Path, *extra: str) -> Dict[str, Any]:
    before = snapshot(root)
    out = tmp_path / "spec.json"
    assert main([str(root), "--wandb-dry-run", str(out), *extra]) == 0
    assert snapshot(root) == before, "the dry run wrote into the results it read"
    assert sorted(os.listdir(tmp_path)) == ["spec.json"]
    return json.loads(out.read_text())


# -- the tests --------------------------------------------------------------------------------------------
def test_cifar10_spec_has_a_grid_per_sparsity_plotting_top1_against_flops_by_recipe(tmp_path):
    spec = dry_run(CIFAR10, tmp_path)
    runs = [logged(d) for d in run_dirs(CIFAR10)]
    sparsities = Counter(r.sparsity for r in runs)
    # the committed grid and its iso-FLOP runs (more patterns land as the evidence runs finish)
    assert {"dense", "2:4", "1:16", "1:32"} <= set(sparsities)
    seen = []
    for grid in grids(spec):
        (runset,) = grid["runSets"]
        (tag,) = condition(runset, "tags")["value"]
        sparsity = tag.split(":", 1)[1]
        seen.append(sparsity)
        mine = [r for r in runs if r.sparsity == sparsity]
        # the filter selects exactly this sparsity's runs of these sweeps
        assert [r for r in runs if selected(runset, r)] == mine
        assert sorted(condition(runset, "group")["value"]) == sorted({r.group for r in mine})
        # the runs table: a group per setting (recipe x budget here), each counting its seeds
        keys = [config_key(k["name"]) for k in runset["grouping"]]
        assert all(k["section"] == "config" for k in runset["grouping"]) and keys[0] == "recipe.name"
        assert all(key in r.config for r in mine for key in keys)
        table = Counter(tuple(json.dumps(r.config[k]) for k in keys) for r in mine)
        settings = Counter((r.recipe, r.budget) for r in mine)
        assert sorted(table.values()) == sorted(settings.values())
        # the headline: eval/top1 against train_flops, grouped by recipe.name
        panels = grid["panelBankSectionConfig"]["panels"]
        (headline,) = [
            p["config"]
            for p in panels
            if p["viewType"] == "Run History Line Plot" and p["config"]["metrics"] == ["eval/top1"]
        ]
        assert headline["xAxis"] == "train_flops" and headline["groupBy"] == "recipe.value.name"
        assert headline["aggregate"] is True and "higher is better" in headline["chartTitle"]
        assert all("recipe.name" in r.config for r in mine)
        # every plotted key is one these runs logged: history keys for line plots, summary keys for scatter plots
        for panel in panels:
            config = panel["config"]
            if panel["viewType"] == "Run History Line Plot":
                assert all({config["xAxis"], *config["metrics"]} <= r.history for r in mine), config["chartTitle"]
            else:
                keys = {config["xAxis"].split(":", 1)[1], config["yAxis"].split(":", 1)[1]}
                assert all(keys <= r.summary for r in mine), config["chartTitle"]
        curves = [p["config"] for p in panels if p["config"].get("metrics") == ["train/loss"]]
        assert len(curves) == 1 and curves[0]["xAxis"] == "train_flops"
        noise = [p["config"] for p in panels if p["config"].get("metrics", [""])[0].startswith("sparsity/")]
        assert len(noise) == (0 if sparsity == "dense" else 2)  # a dense run logs no diagnostics
    assert sorted(seen) == sorted(sparsities)  # one grid per sparsity


def test_a_lower_is_better_headline_says_so_and_a_sweep_name_with_equals_signs_survives(tmp_path):
    spec = dry_run(SHAKESPEARE, tmp_path)
    (grid,) = grids(spec)
    (runset,) = grid["runSets"]
    runs = [logged(d) for d in run_dirs(SHAKESPEARE)]
    # the library re-parses filter strings, turning '=' into '=='; the group must come through as logged
    assert (
        condition(runset, "group")["value"]
        == sorted({r.group for r in runs})
        == ["experiment=shakespeare_char_cpu__seed=0,1"]
    )
    assert all(selected(runset, r) for r in runs)
    titles = [p["config"]["chartTitle"] for p in grid["panelBankSectionConfig"]["panels"]]
    perplexity = [t for t in titles if t.startswith(("eval/perplexity", "final eval/perplexity"))]
    assert len(perplexity) == 2 and all("(lower is better)" in t for t in perplexity)


def test_a_swept_key_and_a_logger_group_reach_the_runs_table_and_the_filter(tmp_path):
    """A sweep over optim.lr logged under logger.group=lr-study: settings split by optim.lr, filtered by that group."""
    sweep = tmp_path / "sweeps" / "lr_sweep"
    sweep.mkdir(parents=True)
    SweepDir(sweep).record.write_text(json.dumps({"name": "lr_sweep", "varying": ["optim.lr", "seed"]}))
    for lr in ("0.001", "0.003"):
        for seed in (0, 1):
            name = f"vit-n1m32-srste-s{seed}-lr={lr}"
            run = sweep / name
            run.mkdir()
            overrides = ["sparsity=1:32", "recipe=srste", f"seed={seed}", f"optim.lr={lr}", "logger.group=lr-study"]
            RunStatus(status="finished", run_name=name, overrides=overrides, sweep="lr_sweep").write(run)
            RunSummary.from_dict(
                dict(
                    run_name=name,
                    sweep="lr_sweep",
                    model="vit",
                    sparsity="1:32",
                    recipe="srste",
                    seed=seed,
                    steps=10,
                    train_flops=1e9,
                    inference_flops=1e6,
                    eval_metric="top1",
                    eval_value=50.0,
                    eval_value_strict=49.0,
                    eval_higher_is_better=True,
                    eval={"eval/top1": 50.0},
                    wall_seconds=1.0,
                    budget={"kind": "steps", "value": 10.0},
                )
            ).write(run)
    out = tmp_path / "spec.json"
    assert main([str(sweep.parent), "--wandb-dry-run", str(out), "--wandb", "my-team/sparse"]) == 0
    spec = json.loads(out.read_text())
    assert spec["project"] == {"name": "sparse", "entityName": "my-team"}
    (grid,) = grids(spec)
    (runset,) = grid["runSets"]
    runs = [logged(d) for d in run_dirs(sweep)]
    assert condition(runset, "group")["value"] == ["lr-study"] == sorted({r.group for r in runs})
    keys = [config_key(k["name"]) for k in runset["grouping"]]
    assert keys == ["recipe.name", "optim.lr"] and all(k in r.config for r in runs for k in keys)
    assert sorted(Counter(r.config["optim.lr"] for r in runs).values()) == [2, 2]  # two settings of two seeds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again: connections are refused


def test_without_network_the_save_fails_in_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.chdir(tmp_path)
    before = snapshot(CIFAR10)
    start = time.monotonic()
    assert main([str(CIFAR10), "--wandb", "my-team/pgfsparse"]) == 1
    assert time.monotonic() - start < 15
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("pgf-report: error: W&B is unreachable (127.0.0.1:") and "--wandb-dry-run" in line
    assert captured.out == "" and os.listdir(tmp_path) == [] and snapshot(CIFAR10) == before


def test_a_silent_server_is_given_up_after_the_timeout(tmp_path, monkeypatch, capsys):
    """The W&B client retries a server that accepts but never answers for minutes: pgf-report stops waiting."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)  # accepts connections, never answers
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{listener.getsockname()[1]}")
    answered = threading.Event()
    wr = pytest.importorskip("wandb_workspaces.reports.v2")
    monkeypatch.setattr(wr.Report, "save", lambda self, **_: answered.wait(30))  # a client stuck on that server
    monkeypatch.setattr(wandb_report, "SAVE_TIMEOUT", 0.5)
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    try:
        assert main([str(CIFAR10), "--wandb", "my-team/pgfsparse"]) == 1
    finally:
        answered.set()
        listener.close()
    assert time.monotonic() - start < 10
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("pgf-report: error: W&B at http://127.0.0.1:") and "did not answer within 0.5 s" in line
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("target", ["pgfsparse", "a/b/c", "/pgfsparse"])
def test_a_target_that_is_not_entity_slash_project_is_one_line(target, tmp_path, capsys):
    assert main([str(CIFAR10), "--wandb", target, "--wandb-dry-run", str(tmp_path / "spec.json")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"pgf-report: error: --wandb {target}: give ENTITY/PROJECT, the W&B project the runs were logged to"
    assert os.listdir(tmp_path) == []
