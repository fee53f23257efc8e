"""pgf-report on hand-written run dirs with known numbers: rows, seeds aggregated, failures listed, figures drawn.

Every expectation is worked out by hand from the numbers written here (60, 62,
64 -> mean 62, sample std 2), not recomputed with the code under test. The
command runs in process through `main([...])`; two checks run the installed
`pgf-report` to cover the entry point and its exit status.
"""
from __future__ import annotations

import ast
import csv
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pgfsparse.cli.pgf_report import main
from pgfsparse.report import (
    collect_runs,
    format_budget,
    parse_run_name,
    summarize,
    to_markdown,
)
from pgfsparse.report.noise import final_level, noise_levels
from pgfsparse.report.plots import (
    accuracy_vs_flops,
    accuracy_vs_sparsity,
    dodged,
    gradient_noise,
    pareto_front,
    running_mean,
    sparsity_marker,
)
from pgfsparse.report.table import sort_value

PGF_REPORT = Path(sys.executable).parent / "pgf-report"
EPOCHS2 = {"kind": "epochs", "value": 2.0}


# -- building runs by hand -----------------------------------------------------------------------
def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def write_run(root: Path, model="vit", sparsity="1:16", recipe="srste", seed=0, value=60.0, strict=None,
              flops=1e12, budget=EPOCHS2, wall=120.0, extra_eval=None, noise=None, sweep="grid", name=None,
              old_format=False) -> Path:
    """A finished run: summary.json, status.json and a metrics.jsonl with 4 train, 2 eval, 4 diagnostics lines."""
    slug = "dense" if sparsity == "dense" else "n{}m{}".format(*sparsity.split(":"))
    name = name or f"{model}-{slug}-{recipe}-s{seed}"
    run = root / name
    strict = value - 1 if strict is None else strict
    metric = "token_acc" if model == "t5" else "top1"
    evals = {f"eval/{metric}": value, f"eval_strict/{metric}": strict, **(extra_eval or {})}
    summary = {"model": model, "sparsity": sparsity, "recipe": recipe, "seed": seed, "steps": 40,
               "train_flops": flops, "inference_flops": flops / 1e4, "eval_metric": metric, "eval_value": value,
               "eval_value_strict": strict, "eval": evals, "wall_seconds": wall, "run_dir": "/elsewhere/" + name}
    if not old_format:
        summary.update(budget=budget, version="0.1.0", git_sha="abc1234", run_name=name, sweep=sweep,
                       status="finished")
    write_json(run / "summary.json", summary)
    if not old_format:
        write_json(run / "status.json", {"status": "finished", "run_name": name, "sweep": sweep,
                                         "overrides": [f"sparsity={sparsity}", f"recipe={recipe}", f"seed={seed}"],
                                         "updated": "2026-01-01T10:00:00"})
    lines = []
    for step in (10, 20, 30, 40):
        lines.append({"event": "train", "step": step, "train_flops": flops * step / 40,
                      "train/loss": 3.0 - step / 20, "train/lr": 1e-3, "train/examples_per_s": 100.0})
        if step in (20, 40):
            lines.append({"event": "eval", "step": step, "train_flops": flops * step / 40,
                          f"eval/{metric}": value * step / 40, f"eval_strict/{metric}": strict * step / 40})
        if noise is not None and sparsity != "dense":
            lines.append({"event": "diagnostics", "step": step, "train_flops": flops * step / 40,
                          "sparsity/ff/grad_abs_var": noise / step, "sparsity/ff/exp_avg_sq_var": noise / step ** 2,
                          "sparsity/blocks.0.mlp.fc1/density": 1 / 16})
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def grid(tmp_path) -> Path:
    """A sweep: 9 finished runs, 2 failed (one known only from sweep_status.json), 2 unfinished, 1 skipped."""
    sweep = tmp_path / "grid"
    write_run(sweep, sparsity="dense", recipe="dense", seed=0, value=70.0, flops=3e12, wall=600)
    write_run(sweep, sparsity="dense", recipe="dense", seed=1, value=72.0, flops=3e12, wall=660)
    for seed, value in enumerate((60.0, 62.0, 64.0)):  # mean 62, std 2; strict 59, 61, 63
        write_run(sweep, sparsity="1:16", recipe="srste", seed=seed, value=value, flops=1e12, noise=8.0)
    write_run(sweep, sparsity="1:16", recipe="mdgf_exp", seed=0, value=66.0, flops=1.5e12, noise=1.0)
    write_run(sweep, sparsity="1:16", recipe="mdgf_exp", seed=1, value=68.0, flops=1.5e12, noise=1.0)
    write_run(sweep, sparsity="2:4", recipe="sdgf_geo", seed=0, value=69.0, flops=2e12)
    write_run(sweep, sparsity="1:32", recipe="mdgf_exp", seed=0, value=63.0, flops=1.4e12)
    failed = sweep / "vit-n1m32-srste-s0"
    write_json(failed / "status.json", {
        "status": "failed", "run_name": failed.name, "sweep": "grid", "error": "loss is NaN at step 12",
        "error_type": "FloatingPointError", "overrides": ["sparsity=1:32", "recipe=srste", "seed=0",
                                                          "budget.steps=50"], "updated": "2026-01-01T10:00:00"})
    (failed / "error.log").write_text("Traceback (most recent call last):\nFloatingPointError: loss is NaN\n")
    stale = sweep / "vit-n1m64-mdgf_exp-s0"  # status says running, but its process is gone
    write_json(stale / "status.json", {"status": "running", "run_name": stale.name, "sweep": "grid",
                                       "overrides": ["sparsity=1:64", "recipe=decay", "seed=0"], "step": 30,
                                       "host": socket.gethostname(), "pid": dead_pid(),
                                       "updated": "2026-01-01T10:00:00"})
    killed = sweep / "vit-n1m128-sdgf_step-s2"  # killed hard: a checkpoint and metrics, nothing else
    killed.mkdir()
    (killed / "checkpoint.pt").write_bytes(b"x")
    (killed / "metrics.jsonl").write_text(json.dumps({"event": "train", "step": 7, "train_flops": 1.0}) + "\n")
    write_json(sweep / "sweep.json", {"name": "grid", "overrides": ["sparsity=dense,1:16"], "varying": []})
    write_json(sweep / "sweep_status.json", {"sweep": "grid", "points": {
        "vit-n1m64-srste-s1": {"status": "failed", "error": "CUDA out of memory", "error_type": "OutOfMemoryError",
                               "overrides": ["sparsity=1:64", "recipe=srste", "seed=1"], "dir": "vit-n1m64-srste-s1",
                               "updated": "2026-01-01T10:00:00"},
        "job-recipe=srste-sparsity=dense": {"status": "skipped", "error": "recipe srste needs a sparse pattern",
                                            "overrides": ["sparsity=dense", "recipe=srste"],
                                            "dir": "job-recipe=srste-sparsity=dense"},
    }})
    return sweep


def read_csv(path: Path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def by_name(rows):
    return {r["run_name"]: r for r in rows}


# -- pure pieces ---------------------------------------------------------------------------------
def test_parse_run_name():
    assert parse_run_name("vit-n1m32-mdgf_exp-s0") == {"model": "vit", "sparsity": "1:32", "recipe": "mdgf_exp",
                                                       "seed": 0, "oneshot": "none", "variant": ""}
    assert parse_run_name("t5_small-dense-dense-s3")["sparsity"] == "dense"
    mixed = parse_run_name("vit-ff-n1m8_qk-n1m4-sdgf_geo-s1-depth=3")
    assert (mixed["sparsity"], mixed["recipe"], mixed["seed"], mixed["variant"]) == ("ff=1:8,qk=1:4", "sdgf_geo",
                                                                                      1, "depth=3")
    assert parse_run_name("vit-ff-n1m8_attn_out-n1m4-ste-s2")["sparsity"] == "ff=1:8,attn_out=1:4"
    assert parse_run_name("swin-n2m4-srste-s11")["sparsity"] == "2:4"
    assert parse_run_name("job-recipe=srste-sparsity=dense") is None
    assert parse_run_name("12-00-00-000000") is None


def test_budget_strings():
    assert format_budget({"kind": "epochs", "value": 24.0}) == "epochs=24"
    assert format_budget({"kind": "steps", "value": 50}) == "steps=50"
    assert format_budget({"kind": "train_flops", "value": 1e15}) == "train_flops=1e+15"
    assert format_budget({"kind": "epochs", "value": 0.5}) == "epochs=0.5"
    assert format_budget(None) == ""


def test_pareto_front_on_hand_worked_points():
    points = [(4, 70.0), (1, 50.0), (2, 60.0), (2, 58.0), (3, 55.0), (5, 70.0), (6, 71.0)]
    # (2, 58) loses to (2, 60); (3, 55) to (2, 60); (5, 70) only ties (4, 70)
    assert pareto_front(points) == [(1, 50.0), (2, 60.0), (4, 70.0), (6, 71.0)]
    assert pareto_front([(1e12, 62.0)]) == [(1e12, 62.0)]
    assert pareto_front([]) == []


def test_running_mean_is_centred_and_keeps_length():
    assert running_mean([1, 2, 3, 4, 5], window=3) == [1.5, 2, 3, 4, 4.5]
    assert running_mean([4.0], window=5) == [4.0]


def test_sparsity_sorts_by_falling_density_and_recipes_in_a_fixed_order():
    patterns = ["1:16", "dense", "ff=1:8,qk=1:4", "2:4", "1:32", "1:8", "1:4"]
    assert sorted(patterns, key=lambda s: sort_value("sparsity", s)) == [
        "dense", "2:4", "1:4", "1:8", "ff=1:8,qk=1:4", "1:16", "1:32"]
    recipes = ["zeta", "sdgf_custom", "alpha", "srste", "dense", "mdgf_exp", "ste", "sdgf_geo"]
    assert sorted(recipes, key=lambda r: sort_value("recipe", r)) == [
        "dense", "ste", "srste", "mdgf_exp", "sdgf_geo", "sdgf_custom", "alpha", "zeta"]


def test_importing_the_package_does_not_import_matplotlib():
    """No module of pgfsparse.report imports matplotlib at its top level (plots.py does it inside functions)."""
    package = Path(__file__).resolve().parents[1] / "src" / "pgfsparse" / "report"
    for module in sorted(package.glob("*.py")):
        for node in ast.parse(module.read_text()).body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "matplotlib" for n in names), module.name


# -- rows ----------------------------------------------------------------------------------------
def test_rows_one_per_run_with_status_and_error(grid):
    rows = by_name(collect_runs([str(grid)]))
    counted = {n: r for n, r in rows.items() if r["status"] != "skipped"}
    assert len(counted) == 13 and sum(r["status"] == "skipped" for r in rows.values()) == 1
    assert sum(r["status"] == "finished" for r in counted.values()) == 9
    failed = rows["vit-n1m32-srste-s0"]
    assert failed["status"] == "failed" and failed["error"] == "FloatingPointError: loss is NaN at step 12"
    assert (failed["model"], failed["sparsity"], failed["recipe"], failed["seed"]) == ("vit", "1:32", "srste", 0)
    assert failed["budget"] == "steps=50"
    only_in_sweep_status = rows["vit-n1m64-srste-s1"]
    assert only_in_sweep_status["status"] == "failed" and "CUDA out of memory" in only_in_sweep_status["error"]
    assert (only_in_sweep_status["sparsity"], only_in_sweep_status["seed"]) == ("1:64", 1)
    stale = rows["vit-n1m64-mdgf_exp-s0"]
    assert stale["status"] == "unfinished" and "step 30" in stale["error"]
    assert stale["recipe"] == "mdgf_exp"  # 'recipe=decay' in the overrides, canonical in the row
    killed = rows["vit-n1m128-sdgf_step-s2"]
    assert (killed["status"], killed["sparsity"], killed["seed"]) == ("unfinished", "1:128", 2)
    assert "step 7" in killed["error"]
    finished = rows["vit-n1m16-srste-s1"]
    assert (finished["budget"], finished["version"], finished["git_sha"], finished["sweep"]) == (
        "epochs=2", "0.1.0", "abc1234", "grid")
    assert finished["run_dir"] == str(grid / "vit-n1m16-srste-s1")  # where it is now, not where it was written


def test_a_live_running_process_is_running_not_unfinished(tmp_path):
    run = tmp_path / "vit-n1m16-srste-s0"
    write_json(run / "status.json", {"status": "running", "run_name": run.name, "host": socket.gethostname(),
                                     "pid": os.getpid(), "overrides": []})
    (row,) = collect_runs([str(run)])
    assert row["status"] == "running"


def test_sweep_status_newer_than_the_run_dirs_status_wins(tmp_path):
    run = tmp_path / "s" / "vit-n1m16-srste-s0"
    write_json(run / "status.json", {"status": "running", "run_name": run.name, "host": "elsewhere", "pid": 1,
                                     "updated": "2026-01-01T10:00:00"})
    write_json(tmp_path / "s" / "sweep_status.json", {"sweep": "s", "points": {run.name: {
        "status": "failed", "error": "killed", "dir": run.name, "updated": "2026-01-01T11:00:00"}}})
    (row,) = collect_runs([str(tmp_path / "s")])
    assert (row["status"], row["error"]) == ("failed", "killed")


def test_older_summaries_without_the_new_keys(tmp_path):
    write_run(tmp_path / "results", name="12-00-00", old_format=True, sparsity="1:8", recipe="ste", seed=4)
    (row,) = collect_runs([str(tmp_path / "results")])
    assert (row["run_name"], row["budget"], row["version"], row["status"]) == ("vit-n1m8-ste-s4", "", None,
                                                                               "finished")


def test_paths_given_twice_globs_and_subfolders_are_deduplicated(grid):
    once = collect_runs([str(grid)])
    twice = collect_runs([str(grid), str(grid) + "/", str(grid / "vit-n1m16-srste-s0"), str(grid.parent)])
    assert len(twice) == len(once)
    globbed = collect_runs([str(grid / "vit-n1m16-*")])  # quoted: the shell left it to us
    assert sorted(r["run_name"] for r in globbed) == ["vit-n1m16-mdgf_exp-s0", "vit-n1m16-mdgf_exp-s1",
                                                       "vit-n1m16-srste-s0", "vit-n1m16-srste-s1",
                                                       "vit-n1m16-srste-s2"]


# -- the table -----------------------------------------------------------------------------------
def test_groups_mean_sample_std_and_seed_count(grid):
    groups = summarize(collect_runs([str(grid)]))
    order = [(g["sparsity"], g["recipe"]) for g in groups]
    assert order == [("dense", "dense"), ("2:4", "sdgf_geo"), ("1:16", "srste"), ("1:16", "mdgf_exp"),
                     ("1:32", "mdgf_exp")]
    srste = groups[2]
    assert (srste["mean"], srste["std"], srste["n"]) == (62.0, 2.0, 3)
    assert (srste["strict_mean"], srste["strict_std"], srste["strict_n"]) == (61.0, 2.0, 3)
    assert srste["budget"] == "epochs=2" and srste["metric"] == "top1"
    dense = groups[0]
    assert (dense["mean"], dense["n"], dense["wall_seconds"]) == (71.0, 2, 630.0)
    assert dense["std"] == pytest.approx(2 ** 0.5)
    single = groups[1]
    assert single["n"] == 1 and single["std"] is None
    markdown = to_markdown(groups)
    assert "| vit | 1:16 | srste | epochs=2 | top1 | 62.00 | 2.00 | 3 | 61.00 | 2.00 | 3 | 1.00e12 |" in markdown
    assert "| 69.00 | - | 1 |" in markdown and "10.5 min" in markdown


def test_other_swept_keys_never_average_together(tmp_path):
    for depth, value in ((3, 60.0), (6, 70.0)):
        write_run(tmp_path, seed=0, value=value, name=f"vit-n1m16-srste-s0-depth={depth}")
    groups = summarize(collect_runs([str(tmp_path)]))
    assert [(g["variant"], g["mean"], g["n"]) for g in groups] == [("depth=3", 60.0, 1), ("depth=6", 70.0, 1)]
    assert to_markdown(groups).startswith("| model | sparsity | recipe | budget | variant | metric |")


def test_cli_writes_runs_csv_table_and_lists_failures(grid, capsys):
    assert main([str(grid), "--no-plots"]) == 0
    stdout = capsys.readouterr().out
    out = grid / "report"
    runs = read_csv(out / "runs.csv")
    assert list(runs[0]) == ["run_name", "model", "sparsity", "recipe", "oneshot", "seed", "budget", "steps",
                             "train_flops",
                             "inference_flops", "eval_metric", "eval_higher_is_better", "eval_value",
                             "eval_value_strict", "wall_seconds",
                             "status", "error", "version", "git_sha", "sweep", "run_dir"]
    assert len(runs) == 13  # the skipped corner is no row
    assert {r["status"] for r in runs} == {"finished", "failed", "unfinished"}
    table = (out / "table.md").read_text()
    assert table.startswith("| model | sparsity | recipe | budget | metric | as trained |")
    failed_part = table[table.index("Failed:"):table.index("Unfinished:")]
    assert "vit-n1m32-srste-s0: FloatingPointError: loss is NaN at step 12" in failed_part
    assert "vit-n1m64-srste-s1: OutOfMemoryError: CUDA out of memory" in failed_part
    unfinished_part = table[table.index("Unfinished:"):]
    assert "vit-n1m64-mdgf_exp-s0" in unfinished_part and "vit-n1m128-sdgf_step-s2" in unfinished_part
    assert "Skipped grid corners: 1" in table
    assert "| vit | 1:16 | srste | epochs=2 | top1 | 62.00 | 2.00 | 3 |" in stdout
    groups = read_csv(out / "table.csv")
    assert [(g["sparsity"], g["recipe"]) for g in groups][2] == ("1:16", "srste")
    assert float(groups[2]["as_trained_mean"]) == 62.0 and groups[1]["as_trained_std"] == ""
    # the report folder sits inside the searched folder: a second run must not read it as runs
    (out / "stray").mkdir()
    (out / "stray" / "summary.json").write_text((grid / "vit-n1m16-srste-s0" / "summary.json").read_text())
    assert main([str(grid), "--no-plots"]) == 0
    assert len(read_csv(out / "runs.csv")) == 13


def test_strict_makes_strict_the_headline(grid, tmp_path):
    assert main([str(grid), "--strict", "--no-plots", "--out", str(tmp_path / "r")]) == 0
    table = (tmp_path / "r" / "table.md").read_text()
    assert table.startswith("| model | sparsity | recipe | budget | metric | strict N:M | ± std | n | as trained |")
    assert "| vit | 1:16 | srste | epochs=2 | top1 | 61.00 | 2.00 | 3 | 62.00 |" in table
    assert list(read_csv(tmp_path / "r" / "table.csv")[0])[5:8] == ["higher_is_better", "headline", "strict_mean"]


def test_group_by_other_keys(grid, tmp_path, capsys):
    assert main([str(grid), "--group-by", "model,recipe", "--no-plots", "--out", str(tmp_path / "r")]) == 0
    groups = {g["recipe"]: g for g in read_csv(tmp_path / "r" / "table.csv")}
    assert list(groups) == ["dense", "srste", "mdgf_exp", "sdgf_geo"]
    # mdgf_exp at 1:16 (66, 68) and 1:32 (63): one group of 3
    assert float(groups["mdgf_exp"]["as_trained_mean"]) == pytest.approx((66 + 68 + 63) / 3)
    assert groups["mdgf_exp"]["as_trained_n"] == "3"
    assert main([str(grid), "--group-by", "model,colour", "--no-plots", "--out", str(tmp_path / "r")]) == 2
    assert "cannot group by colour" in capsys.readouterr().err


def test_metric_picks_another_final_eval_metric(tmp_path, capsys):
    for seed, (acc, bleu) in enumerate(((50.0, 20.0), (52.0, 24.0))):
        write_run(tmp_path / "t5", model="t5", sparsity="1:8", recipe="mdgf_exp", seed=seed, value=acc,
                  extra_eval={"eval/bleu": bleu, "eval_strict/bleu": bleu - 2},
                  budget={"kind": "train_flops", "value": 1e15})
    assert main([str(tmp_path / "t5"), "--metric", "bleu", "--no-plots"]) == 0
    (group,) = read_csv(tmp_path / "t5" / "report" / "table.csv")
    assert (group["metric"], float(group["as_trained_mean"]), float(group["strict_mean"])) == ("bleu", 22.0, 20.0)
    assert group["budget"] == "train_flops=1e+15"
    assert main([str(tmp_path / "t5"), "--metric", "rouge", "--no-plots"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pgf-report: error: no finished run has eval/rouge: choose one of") and "bleu" in err


def test_several_metrics_give_a_row_per_setting_and_metric_in_the_order_asked(tmp_path, capsys):
    for seed, (acc, bleu) in enumerate(((50.0, 20.0), (52.0, 24.0))):
        write_run(tmp_path / "t5", model="t5", sparsity="1:32", recipe="srste", seed=seed, value=acc,
                  extra_eval={"eval/bleu": bleu, "eval_strict/bleu": bleu - 2})
    write_run(tmp_path / "t5", model="t5", sparsity="dense", recipe="dense", seed=0, value=60.0,
              extra_eval={"eval/bleu": 30.0, "eval_strict/bleu": 30.0})
    assert main([str(tmp_path / "t5"), "--metric", "token_acc, eval/bleu", "--no-plots"]) == 0
    rows = [(g["sparsity"], g["metric"], float(g["as_trained_mean"]), g["as_trained_n"])
            for g in read_csv(tmp_path / "t5" / "report" / "table.csv")]
    assert rows == [("dense", "token_acc", 60.0, "1"), ("dense", "bleu", 30.0, "1"),
                    ("1:32", "token_acc", 51.0, "2"), ("1:32", "bleu", 22.0, "2")]
    assert "| t5 | 1:32 | srste | epochs=2 | bleu | 22.00 | 2.83 | 2 | 20.00 | 2.83 | 2 |" in \
        (tmp_path / "t5" / "report" / "table.md").read_text()
    assert main([str(tmp_path / "t5"), "--metric", "token_acc,rouge", "--no-plots"]) == 2
    assert "no finished run has eval/rouge" in capsys.readouterr().err
    groups = summarize(collect_runs([str(tmp_path / "t5")]), metric="token_acc,bleu")
    figure = accuracy_vs_flops(groups)  # a panel per metric, in the order asked
    assert [ax.get_title() for ax in figure.axes if ax.get_visible() and ax.get_title()] == [
        "t5: token accuracy vs training FLOPs", "t5: BLEU vs training FLOPs"]


def test_noise_levels_are_the_mean_of_each_curves_last_values_then_over_seeds(tmp_path):
    # write_run logs grad_abs_var = noise / step and exp_avg_sq_var = noise / step^2 at steps 10, 20, 30, 40
    for seed, noise in enumerate((1.0, 3.0)):
        write_run(tmp_path / "g", sparsity="1:32", recipe="srste", seed=seed, noise=noise)
    write_run(tmp_path / "g", sparsity="dense", recipe="dense", seed=0, noise=5.0)  # dense logs no diagnostics
    rows = collect_runs([str(tmp_path / "g")])
    (group,) = noise_levels(rows, window=2)
    last_two = (1 / 30 + 1 / 40) / 2  # noise 1: the mean of the last two |grad| variances
    assert (group["sparsity"], group["recipe"]) == ("1:32", "srste")
    assert group["sparsity/ff/grad_abs_var"]["mean"] == pytest.approx(2 * last_two)  # seeds: 1x and 3x
    assert group["sparsity/ff/grad_abs_var"]["std"] == pytest.approx(2 ** 0.5 * last_two)
    assert group["sparsity/ff/exp_avg_sq_var"]["mean"] == pytest.approx(2 * (1 / 900 + 1 / 1600) / 2)
    assert group["sparsity/ff/exp_avg_sq_var"]["n"] == 2
    assert final_level([4.0, 1.0, 2.0], window=5) == pytest.approx(7 / 3) and final_level([]) is None


def test_the_noise_plot_draws_a_line_per_budget_as_the_noise_table_does(tmp_path):
    """SR-STE at equal epochs and at equal FLOPs are two settings: averaging them would make one line
    of two runs' lengths (the iso-FLOP curve's tail alone after the shorter runs end)."""
    write_run(tmp_path / "g", sparsity="1:32", recipe="srste", seed=0, noise=1.0)
    write_run(tmp_path / "g", sparsity="1:32", recipe="mdgf_exp", seed=0, noise=1.0)
    iso = write_run(tmp_path / "iso", sparsity="1:32", recipe="srste", seed=0, noise=3.0,
                    budget={"kind": "train_flops", "value": 2e12})
    lines = (iso / "metrics.jsonl").read_text() + json.dumps(
        {"event": "diagnostics", "step": 50, "sparsity/ff/grad_abs_var": 3.0 / 50,
         "sparsity/ff/exp_avg_sq_var": 3.0 / 2500}) + "\n"
    (iso / "metrics.jsonl").write_text(lines)
    figure = gradient_noise(collect_runs([str(tmp_path / "g"), str(tmp_path / "iso")]), window=1)
    panel = figure.axes[1]  # (b) variance of |grad|
    drawn = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in panel.get_lines()}
    assert drawn == {
        "srste epochs=2": ([10, 20, 30, 40], pytest.approx([1 / 10, 1 / 20, 1 / 30, 1 / 40])),
        "srste train_flops=2e+12": ([10, 20, 30, 40, 50], pytest.approx([3 / 10, 3 / 20, 3 / 30, 3 / 40, 3 / 50])),
        "mdgf_exp epochs=2": ([10, 20, 30, 40], pytest.approx([1 / 10, 1 / 20, 1 / 30, 1 / 40])),
    }
    styles = {line.get_label(): line.get_linestyle() for line in panel.get_lines()}
    assert styles["srste epochs=2"] == styles["mdgf_exp epochs=2"] != styles["srste train_flops=2e+12"]


def test_report_writes_the_noise_table_and_none_without_diagnostics(grid, tmp_path, capsys):
    assert main([str(grid), "--out", str(tmp_path / "r"), "--no-plots"]) == 0
    noise = (tmp_path / "r" / "noise.md").read_text()
    assert "| vit | 1:16 | mdgf_exp | epochs=2 |" in noise and "| vit | 1:16 | srste | epochs=2 |" in noise
    assert "dense" not in noise.split("|---")[1] and noise in capsys.readouterr().out
    row = next(line for line in noise.splitlines() if "| srste |" in line).split(" | ")
    assert row[4] == f"{8 * (1 / 100 + 1 / 400 + 1 / 900 + 1 / 1600) / 4:.2e}".replace("e-0", "e-")  # 3 seeds alike
    assert row[5] == "0.00e0" and row[6] == "3"
    plain = tmp_path / "plain"
    write_run(plain, sparsity="1:16", recipe="srste")
    assert main([str(plain), "--out", str(tmp_path / "p"), "--no-plots"]) == 0
    assert not (tmp_path / "p" / "noise.md").exists()


def compare_rows(path: Path):
    """compare.md's table as {(sparsity, recipe, budget, baseline budget): (difference, spread, n, ratio, reading)}."""
    lines = [line.strip("| ").split(" | ") for line in path.read_text().splitlines() if line.startswith("| vit")]
    return {(c[1], c[2], c[3], c[5]): tuple(c[6:]) for c in lines}


def test_baseline_compares_each_setting_and_reads_the_difference_against_the_seed_spread(tmp_path, capsys):
    g, iso = tmp_path / "g", {"kind": "train_flops", "value": 1.5e12}
    for seed, value in enumerate((60.0, 62.0, 64.0)):  # SR-STE 1:16: mean 62, std 2
        write_run(g, sparsity="1:16", recipe="srste", seed=seed, value=value, flops=1e12)
    for seed, value in enumerate((66.0, 68.0)):  # MDGF-Exp 1:16: mean 67, std 1.41 -> +5 > 2: better
        write_run(g, sparsity="1:16", recipe="mdgf_exp", seed=seed, value=value, flops=1.5e12)
    for seed, value in enumerate((61.0, 65.0)):  # SDGF-Step 1:16: mean 63, std 2.83 -> +1 < 2.83: no difference
        write_run(g, sparsity="1:16", recipe="sdgf_step", seed=seed, value=value, flops=1.2e12)
    for seed, value in enumerate((66.5, 67.5)):  # SR-STE given 1.5e12 FLOPs: mean 67, std 0.71
        write_run(g / "iso", sparsity="1:16", recipe="srste", seed=seed, value=value, flops=1.5e12, budget=iso)
    write_run(g, sparsity="1:32", recipe="srste", value=55.0)  # one seed each: unknown
    write_run(g, sparsity="1:32", recipe="mdgf_exp", value=58.0)
    write_run(g, sparsity="dense", recipe="dense", value=70.0)  # no SR-STE at dense: no row
    assert main([str(g), "--baseline", "recipe=srste", "--no-plots", "--out", str(tmp_path / "r")]) == 0
    rows = compare_rows(tmp_path / "r" / "compare.md")
    iso_budget = "train_flops=1.5e+12"
    assert rows == {
        ("1:16", "mdgf_exp", "epochs=2", "epochs=2"): ("+5.00", "2.00", "2 vs 3", "1.50x", "better"),
        ("1:16", "mdgf_exp", "epochs=2", iso_budget): ("+0.00", "1.41", "2 vs 2", "1.00x", "no difference"),
        ("1:16", "sdgf_step", "epochs=2", "epochs=2"): ("+1.00", "2.83", "2 vs 3", "1.20x", "no difference"),
        ("1:16", "sdgf_step", "epochs=2", iso_budget): ("-4.00", "2.83", "2 vs 2", "0.80x", "worse"),
        ("1:32", "mdgf_exp", "epochs=2", "epochs=2"): ("+3.00", "-", "1 vs 1", "1.00x", "unknown (1 seed)"),
    }
    assert (tmp_path / "r" / "compare.md").read_text() in capsys.readouterr().out
    assert main([str(g), "--baseline", "recipe=ste", "--no-plots", "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "compare.md").read_text() == "_No setting has a recipe=ste baseline to compare with._\n"
    for bad, message in (("recipe", "is not KEY=VALUE"), ("colour=red", "colour is not a table column")):
        assert main([str(g), "--baseline", bad, "--no-plots", "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err


def test_a_regenerated_svg_is_byte_identical(grid, tmp_path):
    """Committed plots must not churn: no dates, no random element ids."""
    assert main([str(grid), "--out", str(tmp_path / "a")]) == 0
    assert main([str(grid), "--out", str(tmp_path / "b")]) == 0
    for name in ("accuracy_vs_flops", "gradient_noise"):
        assert (tmp_path / "a" / f"{name}.svg").read_bytes() == (tmp_path / "b" / f"{name}.svg").read_bytes()


def test_plots_are_written_as_png_and_svg(grid, tmp_path, capsys):
    out = tmp_path / "r"
    assert main([str(grid), "--out", str(out)]) == 0
    for name in ("accuracy_vs_flops", "accuracy_vs_sparsity", "training_curves", "gradient_noise"):
        png, svg = out / f"{name}.png", out / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name
        assert "<svg" in svg.read_text()[:2000], name
    assert "plot skipped" not in capsys.readouterr().out


def test_degenerate_input_skips_figures_in_one_line(tmp_path, capsys):
    write_json(tmp_path / "only" / "vit-n1m16-srste-s0" / "status.json",
               {"status": "failed", "error": "boom", "run_name": "vit-n1m16-srste-s0"})
    assert main([str(tmp_path / "only")]) == 0
    stdout = capsys.readouterr().out
    assert "_No finished runs._" in stdout and "vit-n1m16-srste-s0: boom" in stdout
    assert stdout.count("plot skipped:") == 4
    write_run(tmp_path / "one", sparsity="dense", recipe="dense")  # one dense run: no diagnostics, no N:M
    assert main([str(tmp_path / "one")]) == 0
    stdout = capsys.readouterr().out
    assert (tmp_path / "one" / "report" / "accuracy_vs_flops.png").exists()
    assert "plot skipped: accuracy_vs_sparsity" in stdout and "plot skipped: gradient_noise" in stdout


def test_installed_command_says_no_runs_in_one_line(tmp_path):
    if not PGF_REPORT.exists():
        pytest.skip("pgf-report is not installed next to this Python (pip install -e .)")
    (tmp_path / "empty").mkdir()
    done = subprocess.run([str(PGF_REPORT), str(tmp_path / "empty")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"pgf-report: error: no runs under {tmp_path / 'empty'} (no summary.json or "
                                  f"status.json found): pass a run dir")


def test_usage_mistakes_and_missing_paths_are_one_line_errors(tmp_path, capsys):
    assert main([str(tmp_path), "--strict", "--as-trained"]) == 2
    assert main([str(tmp_path / "nope")]) == 2
    assert main([str(tmp_path / "nope*")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("pgf-report: error: ") for line in err)
    assert "not allowed with argument" in err[0] and "no such file or directory" in err[1]
    assert err[2].startswith("pgf-report: error: no match for")


def test_points_at_equal_flops_are_drawn_side_by_side_and_others_where_they_are():
    # 1e14 and 1.001e14 coincide (iso-FLOP pair); 2e14 stands alone. log span 0.301 decades,
    # step 0.02 of it: the pair moves by -/+ 0.01 * 0.301 decades around its own values
    shown = dodged([2e14, 1e14, 1.001e14])
    assert shown[0] == 2e14
    assert shown[1] == pytest.approx(1e14 * 10 ** (-0.01 * math.log10(2)))
    assert shown[2] == pytest.approx(1.001e14 * 10 ** (0.01 * math.log10(2)))
    assert dodged([5e13]) == [5e13]


def test_an_iso_flop_marker_does_not_hide_under_the_run_it_matches():
    groups = [{"model": "vit", "metric": "top1", "headline": "as_trained", "sparsity": "1:32", "recipe": recipe,
               "train_flops": 1.5e14, "mean": mean, "std": 0.3} for recipe, mean in (("srste", 63.4), ("mdgf_exp", 63.5))]
    figure = accuracy_vs_flops(groups)
    markers = [line for line in figure.axes[0].lines if line.get_marker() == sparsity_marker("1:32")]
    xs = sorted(float(line.get_xdata()[0]) for line in markers)
    assert len(xs) == 2 and xs[0] < 1.5e14 < xs[1]


def test_lines_at_one_pattern_stand_apart_and_a_lone_iso_flop_point_has_its_own_marker():
    def setting(sparsity, recipe, budget, mean):
        return {"model": "vit", "metric": "top1", "headline": "as_trained", "sparsity": sparsity, "recipe": recipe,
                "budget": budget, "train_flops": 1e14, "mean": mean, "std": 0.3}

    groups = [setting(s, r, "epochs=24", m) for s, r, m in (("2:4", "srste", 68.7), ("1:32", "srste", 58.3),
                                                              ("2:4", "mdgf_exp", 68.9), ("1:32", "mdgf_exp", 63.4))]
    groups += [setting("1:32", "srste", "train_flops=1.6e14", 63.4), setting("dense", "dense", "epochs=24", 69.3)]
    figure = accuracy_vs_sparsity(groups)
    panel = figure.axes[0]
    drawn = [line for line in panel.get_lines() if line.get_marker() not in ("_", "None")]  # not caps, not dense
    points = {(float(y), line.get_marker()): float(x) for line in drawn for x, y in zip(line.get_xdata(), line.get_ydata())}
    # three lines, 0.05 log2 apart around each pattern's tick (M/N = 2 and 32): srste, iso-FLOP srste, mdgf_exp
    assert points[(68.7, "o")] == pytest.approx(2 * 2 ** -0.05) and points[(68.9, "o")] == pytest.approx(2 * 2 ** 0.05)
    assert points[(63.4, "s")] == pytest.approx(32) and points[(63.4, "o")] == pytest.approx(32 * 2 ** 0.05)
    assert list(panel.get_xticks()) == [2, 32]
    handles = {t.get_text(): h for t, h in zip(figure.legends[0].get_texts(), figure.legends[0].legend_handles)}
    assert (handles["epochs=24"].get_marker(), handles["train_flops=1.6e14"].get_marker()) == ("o", "s")
    (label,) = panel.texts
    assert label.get_text() == "dense epochs=24" and label.get_ha() == "right"  # the end furthest from the points
