"""Sweeps that survive real life: names, the status files, locks, failures, re-launch and resume.

The grid tests run the installed `pgf-train -m` (a multirun needs Hydra's own
entry point) on digits with a 1-block, 32-wide ViT: each point takes well under
a second of training.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pgfsparse.errors import RunDirInUse
from pgfsparse.rundir.naming import naming_overrides, run_name, sweep_name
from pgfsparse.sparsity.pattern import NM
from pgfsparse.sweeps.point import Point
from pgfsparse.sweeps.resolvers import default_sweep_override

PGF_TRAIN = Path(sys.executable).parent / "pgf-train"
TINY = ["data=digits", "model.kwargs.depth=1", "model.kwargs.num_heads=2", "logger=local", "log_every=2",
        "threads=1"]


def pgf_train(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    if not PGF_TRAIN.exists():
        pytest.skip("pgf-train is not installed next to this Python")
    return subprocess.run([str(PGF_TRAIN), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "WANDB_MODE": "disabled"})


def read(path: Path):
    return json.loads(Path(path).read_text())


# -- names -------------------------------------------------------------------------------------
def test_run_names_are_the_wandb_slug_plus_the_keys_a_sweep_varies():
    assert run_name("vit", {"ff": NM(1, 32)}, "mdgf_exp", 0) == "vit-n1m32-mdgf_exp-s0"
    assert run_name("vit", {}, "dense", 2) == "vit-dense-dense-s2"
    assert run_name("t5", {"ff": NM(1, 8), "qk": NM(1, 4)}, "decay", 1) == "t5-ff-n1m8_qk-n1m4-mdgf_exp-s1"
    extra = naming_overrides(["model.kwargs.depth=3", "sparsity=1:32", "seed=1", "threads=1", "data=digits"],
                             varying=["model.kwargs.depth", "sparsity", "seed", "threads"])
    assert extra == [("model.kwargs.depth", "3")]  # sparsity and seed are in the base name; threads never
    assert run_name("vit", {"ff": NM(1, 32)}, "srste", 1, extra) == "vit-n1m32-srste-s1-depth=3"


def test_sweep_names_depend_only_on_what_changes_results():
    a = sweep_name(["sparsity=1:16,1:32", "recipe=srste,decay", "model.kwargs.depth=3"])
    assert a == "depth=3__recipe=srste,decay__sparsity=n1m16,n1m32"
    assert sweep_name(["model.kwargs.depth=3", "recipe=srste,decay", "sparsity=1:16,1:32", "threads=1",
                       "hydra/launcher=joblib", "logger=local"]) == a
    assert ":" not in a and "/" not in sweep_name(["data.path=/x/y"])
    long = sweep_name([f"key{i}=value{i}" for i in range(30)])
    assert len(long) == 89 and long != sweep_name([f"key{i}=value{i}" for i in range(31)])
    assert sweep_name(["threads=2"]) == "default"


def test_the_command_names_its_sweep_unless_told():
    argv = ["-m", "sparsity=1:16,1:32", "-cd", "my=dir", "recipe=srste"]
    assert default_sweep_override(argv) == ["sweep='recipe=srste__sparsity=n1m16,n1m32'"]
    assert default_sweep_override(["-m", "sweep=mine", "seed=0,1"]) == []
    assert default_sweep_override(["-m", "hydra.sweep.dir=/x", "seed=0,1"]) == []
    assert default_sweep_override(["seed=0"]) == []  # a single run has no sweep


# -- locks ---------------------------------------------------------------------------------------
def write_lock(run_dir: Path, **holder) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.lock").write_text(json.dumps(holder))


def test_a_live_holder_is_refused_and_a_dead_one_taken_over(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    host = socket.gethostname()
    write_lock(tmp_path / "live", host=host, pid=os.getppid(), since="t")
    with pytest.raises(RunDirInUse, match=f"pid {os.getppid()} on {host}.*delete .*run.lock"):
        with Point(tmp_path / "live", "x").lock():
            pass
    write_lock(tmp_path / "remote", host="another-host", pid=1, since="t")
    with pytest.raises(RunDirInUse):
        with Point(tmp_path / "remote", "x").lock():
            pass
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_lock(tmp_path / "dead", host=host, pid=dead.pid, since="t")
    with Point(tmp_path / "dead", "x").lock():
        assert read(tmp_path / "dead" / "run.lock")["pid"] == os.getpid()
    assert not (tmp_path / "dead" / "run.lock").exists()  # released


def test_a_requeued_slurm_job_takes_over_its_own_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    write_lock(tmp_path / "run", host="node-17", pid=99, slurm_job="4242", since="t")
    with Point(tmp_path / "run", "x").lock():
        assert read(tmp_path / "run" / "run.lock")["host"] == socket.gethostname()


def test_the_end_of_a_sweep_tells_a_point_another_launch_trains_from_a_dead_one(tmp_path, capsys):
    """Two launches share a grid: the point the other one holds is running there, not failed here."""
    from omegaconf import OmegaConf

    from pgfsparse.sweeps.callback import SweepCallback

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    sweep, host = tmp_path / "grid", socket.gethostname()
    holders = {"mine": ("finished", os.getpid()), "other": ("running", os.getppid()), "gone": ("running", dead.pid)}
    for name, (_, pid) in holders.items():
        (sweep / name).mkdir(parents=True)
        write_lock(sweep / name, host=host, pid=pid, since="t")  # a finished point's lock is gone in life
    table = {"points": {name: {"status": state, "dir": name, "updated": "2026-12-03T10:00:00", "exit_code": 0}
                        for name, (state, _) in holders.items()}}
    (sweep / "sweep_status.json").write_text(json.dumps(table))
    callback, config = SweepCallback(), OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    callback.started = "2026-12-03T09:00:00"
    with pytest.raises(SystemExit) as stopped:
        callback.on_multirun_end(config)
    assert stopped.value.code == 1  # the dead holder's point: stopped without a summary
    err = capsys.readouterr().err
    assert f"running other: in pid {os.getppid()} on {host}, another launch" in err
    assert "failed gone: stopped without a summary" in err and "failed other" not in err

    del table["points"]["gone"]
    (sweep / "sweep_status.json").write_text(json.dumps(table))
    callback.on_multirun_end(config)  # nothing failed: no exit
    assert "re-run the same command" not in capsys.readouterr().err


# -- grids ---------------------------------------------------------------------------------------
def test_a_failing_point_is_recorded_and_the_grid_goes_on(tmp_path):
    """2 x 2 through the joblib launcher: width 16 cannot take 1:32 (rows of 16), the other three train."""
    grid = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY, "budget.steps=4",
            "model.kwargs.embed_dim=16,32", "sparsity=1:4,1:32", "recipe=srste", "sweep=grid"]
    done = pgf_train(*grid, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    bad = "vit-n1m32-srste-s0-embed_dim=16"
    assert f"failed {bad}:" in done.stderr and "1 failed, 3 finished" in done.stderr
    sweep = tmp_path / "multirun" / "grid"
    points = read(sweep / "sweep_status.json")["points"]
    assert sorted(points) == sorted([bad, "vit-n1m32-srste-s0-embed_dim=32", "vit-n1m4-srste-s0-embed_dim=16",
                                     "vit-n1m4-srste-s0-embed_dim=32"])
    assert points[bad]["status"] == "failed" and "1:32" in points[bad]["error"]
    assert read(sweep / bad / "status.json")["error_type"] == "ConfigError"
    finished = {p: read(sweep / p / "summary.json") for p in points if p != bad}
    assert all(s["steps"] == 4 and s["run_name"] == p and s["sweep"] == "grid" for p, s in finished.items())
    assert all(len(s["git_sha"] or "x" * 40) >= 40 and s["budget"] == {"kind": "steps", "value": 4.0}
               for s in finished.values())
    assert read(sweep / "sweep.json")["varying"] == ["model.kwargs.embed_dim", "sparsity"]

    # the report: three rows with their figures, the failed point listed
    report = subprocess.run([str(PGF_TRAIN.parent / "pgf-report"), str(sweep), "--out", str(tmp_path / "report")],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr[-2000:]
    rows = (tmp_path / "report" / "runs.csv").read_text().splitlines()
    assert len(rows) == 5 and sum(",finished," in r for r in rows) == 3 and sum(",failed," in r for r in rows) == 1
    table = (tmp_path / "report" / "table.md").read_text()
    assert bad in table and "Failed" in table
    assert (tmp_path / "report" / "accuracy_vs_flops.png").stat().st_size > 10_000

    # a re-launch trains nothing new: finished points are skipped, the failed one fails again
    before = {p: [(sweep / p / f).read_bytes() for f in ("metrics.jsonl", "status.json")] for p in finished}
    again = pgf_train(*grid, cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.count("already finished") == 3
    assert "3 finished" in again.stderr  # counted in this launch's summary line ...
    # ... while their records stay byte for byte as the runs wrote them
    assert {p: [(sweep / p / f).read_bytes() for f in ("metrics.jsonl", "status.json")] for p in finished} == before


def test_a_crashing_point_leaves_its_traceback_and_the_others_run(tmp_path, monkeypatch):
    """In process: seed 1's training raises; seeds 0 and 2 finish and the sweep exits 1 (a crash)."""
    from hydra.core.global_hydra import GlobalHydra

    from pgfsparse.cli import pgf_train as cli
    from pgfsparse.run import trainer

    real_fit = trainer.Trainer.fit

    def fit(self, on_start=None):
        if self.cfg.seed == 1:
            raise RuntimeError("boom in the loop")
        return real_fit(self, on_start)

    monkeypatch.setattr(trainer.Trainer, "fit", fit)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pgf-train", "-m", *TINY, "model.kwargs.embed_dim=32", "sparsity=1:4",
                                      "budget.steps=2", "seed=0,1,2", "sweep=crash", "hydra/job_logging=disabled"])
    try:
        with pytest.raises(SystemExit) as stopped:
            cli.main()
    finally:
        GlobalHydra.instance().clear()
    assert stopped.value.code == 1
    sweep = tmp_path / "multirun" / "crash"
    crashed = sweep / "vit-n1m4-mdgf_exp-s1"
    assert read(crashed / "status.json")["error"] == "boom in the loop"
    assert 'raise RuntimeError("boom in the loop")' in (crashed / "error.log").read_text()
    assert {p.parent.name for p in sweep.glob("*/summary.json")} == {"vit-n1m4-mdgf_exp-s0", "vit-n1m4-mdgf_exp-s2"}


def test_a_grid_cut_off_midway_resumes_where_it_stopped(tmp_path):
    """Kill the sweep while its second point trains; the re-launch skips the first and resumes the second."""
    grid = ["-m", *TINY, "model.kwargs.embed_dim=32", "sparsity=1:4", "recipe=decay", "budget.steps=4,400",
            "checkpoint_every=10", "sweep=cut"]
    if not PGF_TRAIN.exists():
        pytest.skip("pgf-train is not installed next to this Python")
    sweep = tmp_path / "multirun" / "cut"
    first, second = sweep / "vit-n1m4-mdgf_exp-s0-steps=4", sweep / "vit-n1m4-mdgf_exp-s0-steps=400"
    process = subprocess.Popen([str(PGF_TRAIN), *grid], cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not (second / "checkpoint.pt").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert (first / "summary.json").exists() and not (second / "summary.json").exists(), "killed too late"
    assert read(second / "status.json")["status"] == "running" and (second / "run.lock").exists()
    first_metrics = (first / "metrics.jsonl").read_bytes()

    done = pgf_train(*grid, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "already finished" in done.stderr and "resuming" in done.stderr
    assert (first / "metrics.jsonl").read_bytes() == first_metrics
    status = read(second / "status.json")
    assert status["status"] == "finished" and 10 <= status["resumed_from"] < 400
    steps = [e["step"] for e in map(json.loads, (second / "metrics.jsonl").read_text().splitlines())
             if e["event"] == "train"]
    assert steps == list(range(2, 401, 2))  # cut back to the checkpoint, then continued: no gap, no repeat


def test_a_diverging_run_stops_with_exit_code_4(tmp_path):
    done = pgf_train(*TINY, "model.kwargs.embed_dim=32", "sparsity=1:4", "budget.steps=6", "optim.lr=1e9",
                     "optim.grad_clip=null", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 4
    assert "pgf-train: error: the training loss is nan" in done.stderr
    assert read(tmp_path / "run" / "status.json")["error_type"] == "Divergence"


# -- W&B: what a dashboard groups by -------------------------------------------------------------
class FakeWandbRun:
    def __init__(self, **init):
        self.init, self.logged, self.summary = init, [], {}

    def define_metric(self, *args, **kwargs):
        pass

    def log(self, values):
        self.logged.append(values)

    def finish(self):
        pass


def test_wandb_runs_carry_canonical_config_keys_and_the_sweep_group(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from hydra import compose, initialize_config_module

    from pgfsparse.config.validation import to_train_config
    from pgfsparse.run.trainer import Trainer

    runs = []
    monkeypatch.setattr(wandb, "init", lambda **init: runs.append(FakeWandbRun(**init)) or runs[-1])
    with initialize_config_module(config_module="pgfsparse.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*TINY, "model.kwargs.embed_dim=32", "sparsity=1:4",
                                                      "recipe=auto", "budget.steps=2", "logger=wandb"])
    Trainer(to_train_config(cfg), tmp_path / "run", choices={"model": "vit"}, sweep_name="grid",
            name="vit-n1m4-mdgf_exp-s0").fit()
    init = runs[0].init
    assert init["name"] == "vit-n1m4-mdgf_exp-s0" and init["group"] == "grid"
    assert {"model:vit", "sparsity:1:4", "recipe:mdgf_exp", "seed:0"} <= set(init["tags"])
    config = init["config"]
    assert (config["recipe"]["name"], config["sparsity"]["ff"], config["seed"]) == ("mdgf_exp", "1:4", 0)
    assert any("eval/top1" in event and "train_flops" in event for event in runs[0].logged)


def test_impossible_corners_are_skipped_not_failed(tmp_path, monkeypatch):
    """sparsity=dense,1:4 x recipe=dense,srste: two real points train, the two contradictions are skipped."""
    from hydra.core.global_hydra import GlobalHydra

    from pgfsparse.cli import pgf_train as cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pgf-train", "-m", *TINY, "model.kwargs.embed_dim=32", "budget.steps=2",
                                      "sparsity=dense,1:4", "recipe=dense,srste", "sweep=corners",
                                      "hydra/job_logging=disabled"])
    try:
        cli.main()  # no SystemExit: nothing failed
    finally:
        GlobalHydra.instance().clear()
    points = read(tmp_path / "multirun" / "corners" / "sweep_status.json")["points"]
    assert {name: p["status"] for name, p in points.items()} == {
        "vit-dense-dense-s0": "finished", "vit-dense-srste-s0": "skipped",
        "vit-n1m4-dense-s0": "skipped", "vit-n1m4-srste-s0": "finished"}
    assert "needs an N:M pattern" in points["vit-dense-srste-s0"]["error"]


class FakeHydra:
    def __init__(self, launcher):
        self.launcher = launcher


@pytest.mark.parametrize("given, cores, launcher, local_world, expected", [
    (3, 8, {}, "1", 3),                                                    # threads=3 wins
    (None, 8, {"_target_": "hydra_plugins.basic"}, "1", 8),               # alone: every usable core
    (None, 8, {"_target_": "hydra_plugins.joblib.JoblibLauncher", "n_jobs": 2}, "1", 4),
    (None, 8, {"_target_": "hydra_plugins.joblib.JoblibLauncher", "n_jobs": -1}, "1", 1),  # one job per core
    (None, 8, {}, "4", 2),                                                 # torchrun: 4 ranks on this node
    (None, 2, {"_target_": "hydra_plugins.joblib.JoblibLauncher", "n_jobs": 4}, "1", 1),   # never below 1
])
def test_threads_split_the_usable_cores(given, cores, launcher, local_world, expected, monkeypatch):
    from pgfsparse.cli.pgf_train import _threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", local_world)
    monkeypatch.delenv("SLURM_STEP_ID", raising=False)
    assert _threads(given, FakeHydra(launcher)) == expected
