"""pgf-report with one-shot starts: a run pruned by Wanda before training is its own setting.

Made-up gpt2 2:4 runs (perplexity: lower is better), written through RunSummary and
RunStatus; every expectation below is worked out by hand from these numbers:

    recipe     start      budget      perplexity per seed   mean  std    train FLOPs
    srste      scratch    steps=2000  30, 32, 34            32    2      1.00e12
    srste      wanda      steps=2000  20, 22                21    1.41   1.02e12 (+ 2e10 calibration)
    srste      sparsegpt  steps=2000  19                    19    -      1.02e12
    mdgf_exp   scratch    steps=2000  26, 28                27    1.41   1.00e12
    mdgf_exp   wanda      steps=2000  18, 24                21    4.24   1.02e12
    none       wanda      steps=0     40, 44                42    2.83   2.00e10 (the calibration alone)

Averaged together, SR-STE's five runs would read 27.6; kept apart they are 32, 21 and 19.
Against SR-STE of the same start: MDGF-Exp from scratch -5 (beyond 2: better), MDGF-Exp
from Wanda 0 (within 4.24: no difference), the untrained prune +21 (beyond 2.83: worse).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Optional

import pytest

from pgfsparse.cli.pgf_report import main
from pgfsparse.report import best_markdown, collect_runs, summarize, to_markdown
from pgfsparse.report.noise import NOISE_GROUP_BY, noise_levels, noise_markdown
from pgfsparse.report.plots import (
    accuracy_vs_flops,
    accuracy_vs_sparsity,
    dodged,
    gradient_noise,
    needs_zoom,
    sparsity_marker,
    training_curves,
)
from pgfsparse.report.table import GROUP_KEYS
from pgfsparse.rundir.records import RunStatus, RunSummary

CALIBRATION_FLOPS = 2e10
PERPLEXITY = {  # (recipe, start): perplexity per seed
    ("srste", None): (30.0, 32.0, 34.0),
    ("srste", "wanda"): (20.0, 22.0),
    ("srste", "sparsegpt"): (19.0,),
    ("mdgf_exp", None): (26.0, 28.0),
    ("mdgf_exp", "wanda"): (18.0, 24.0),
    ("none", "wanda"): (40.0, 44.0),
}


def write_finished(
    root: Path, recipe: str, seed: int, ppl: float, oneshot: Optional[str] = None, noise: Optional[float] = None
) -> Path:
    """A finished run; a one-shot start pays its calibration in train_flops, recipe none trains no step."""
    name = f"gpt2-n2m4-{recipe}-s{seed}" + (f"-oneshot={oneshot}" if oneshot else "")
    steps = 0 if recipe == "none" else 2000
    flops = (1e12 if steps else 0.0) + (CALIBRATION_FLOPS if oneshot else 0.0)
    run = root / name
    run.mkdir(parents=True)
    RunSummary(
        run_name=name,
        model="gpt2",
        sparsity="2:4",
        recipe=recipe,
        seed=seed,
        steps=steps,
        train_flops=flops,
        inference_flops=1e8,
        eval_metric="perplexity",
        eval_value=ppl,
        eval_value_strict=ppl,
        eval_higher_is_better=False,
        eval={"eval/perplexity": ppl, "eval_strict/perplexity": ppl},
        wall_seconds=60.0,
        budget={"kind": "steps", "value": float(steps)},
        oneshot=oneshot,
        oneshot_calibration={"samples": 128, "flops": CALIBRATION_FLOPS} if oneshot else None,
    ).write(run)
    overrides = ["model=gpt2", "sparsity=2:4", f"recipe={recipe}", f"seed={seed}", f"budget.steps={steps}"]
    RunStatus(status="finished", run_name=name, overrides=overrides + [f"oneshot={oneshot or 'none'}"]).write(run)
    if noise is not None:  # train loss and diagnostics at steps 10 and 20: |grad| variance noise / step
        events = [{"event": "diagnostics", "step": s, "sparsity/ff/grad_abs_var": noise / s} for s in (10, 20)]
        events += [{"event": "train", "step": s, "train_flops": s * 1e10, "train/loss": ppl / s} for s in (10, 20)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return run


@pytest.fixture
def starts(tmp_path) -> Path:
    root = tmp_path / "lm"
    for (recipe, oneshot), values in PERPLEXITY.items():
        for seed, ppl in enumerate(values):
            write_finished(root, recipe, seed, ppl, oneshot)
    return root


def read_csv(path: Path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def settings(groups):
    return [(g["recipe"], g["budget"], g.get("oneshot"), g["mean"], g["n"]) for g in groups]


# -- runs.csv ------------------------------------------------------------------------------------
def test_runs_csv_has_the_start_of_every_run_right_after_its_recipe(starts, tmp_path):
    old = write_finished(starts, "ste", 0, 50.0)  # a summary written before one-shot starts: no field
    summary = json.loads((old / "summary.json").read_text())
    del summary["oneshot"], summary["oneshot_calibration"]
    (old / "summary.json").write_text(json.dumps(summary))
    failed = starts / "point-7"  # a name that says nothing: the overrides tell (oneshot.method=...)
    failed.mkdir()
    RunStatus(
        status="failed",
        run_name="point-7",
        error="boom",
        overrides=["model=gpt2", "sparsity=2:4", "recipe=srste", "seed=7", "oneshot.method=magnitude"],
    ).write(failed)
    renamed = starts / "gpt2-n2m4-srste-s8"  # the overrides win over the name
    renamed.mkdir()
    RunStatus(status="failed", run_name=renamed.name, overrides=["oneshot=sparsegpt"]).write(renamed)
    for name in ("gpt2-n2m4-srste-s9-oneshot=wanda", "gpt2-n2m4-srste-s10"):  # killed: only the name tells
        (starts / name).mkdir()
        (starts / name / "checkpoint.pt").write_bytes(b"x")

    assert main([str(starts), "--no-plots", "--out", str(tmp_path / "r")]) == 0
    rows = read_csv(tmp_path / "r" / "runs.csv")
    assert list(rows[0])[3:6] == ["recipe", "oneshot", "seed"]
    found = {r["run_name"]: (r["status"], r["recipe"], r["oneshot"]) for r in rows}
    assert found["gpt2-n2m4-srste-s0"] == ("finished", "srste", "none")
    assert found["gpt2-n2m4-srste-s1-oneshot=wanda"] == ("finished", "srste", "wanda")
    assert found["gpt2-n2m4-none-s0-oneshot=wanda"] == ("finished", "none", "wanda")
    assert found["gpt2-n2m4-ste-s0"] == ("finished", "ste", "none")
    assert found["point-7"] == ("failed", "srste", "magnitude")
    assert found["gpt2-n2m4-srste-s8"] == ("failed", "srste", "sparsegpt")
    assert found["gpt2-n2m4-srste-s9-oneshot=wanda"] == ("unfinished", "srste", "wanda")
    assert found["gpt2-n2m4-srste-s10"] == ("unfinished", "srste", "none")
    assert len(rows) == 12 + 1 + 4  # the fixture's 12, the old summary, 4 that did not finish
    zero = next(r for r in rows if r["recipe"] == "none" and r["seed"] == "1")
    assert (zero["steps"], zero["budget"], float(zero["train_flops"])) == ("0", "steps=0", CALIBRATION_FLOPS)
    unfinished = next(r for r in collect_runs([str(starts)]) if r["run_name"] == "gpt2-n2m4-srste-s9-oneshot=wanda")
    assert unfinished["variant"] == ""  # the start is no swept key


# -- grouping ------------------------------------------------------------------------------------
def test_one_shot_and_from_scratch_runs_never_average(starts):
    groups = summarize(collect_runs([str(starts)]))
    assert groups[0]["keys"] == ["model", "sparsity", "recipe", "budget", "oneshot"]
    assert settings(groups) == [
        ("none", "steps=0", "wanda", 42.0, 2),  # the untrained prune first: where the recipes start
        ("srste", "steps=2000", "none", 32.0, 3),
        ("srste", "steps=2000", "wanda", 21.0, 2),
        ("srste", "steps=2000", "sparsegpt", 19.0, 1),
        ("mdgf_exp", "steps=2000", "none", 27.0, 2),
        ("mdgf_exp", "steps=2000", "wanda", 21.0, 2),
    ]
    assert groups[1]["std"] == pytest.approx(2.0) and groups[2]["std"] == pytest.approx(2**0.5)
    assert groups[0]["train_flops"] == CALIBRATION_FLOPS and groups[2]["train_flops"] == pytest.approx(1.02e12)
    table = to_markdown(groups)
    assert table.startswith("| model | sparsity | recipe | budget | oneshot | metric | as trained |")
    assert "| gpt2 | 2:4 | srste | steps=2000 | wanda | perplexity | 21.00 | 1.41 | 2 |" in table
    assert "| gpt2 | 2:4 | none | steps=0 | wanda | perplexity | 42.00 | 2.83 | 2 |" in table
    assert "srste steps=2000 from sparsegpt, 19.00 (1 seed)" in best_markdown(groups)


def test_a_coarser_group_by_still_keeps_the_starts_apart(starts, tmp_path):
    groups = summarize(collect_runs([str(starts)]), group_by=("model", "recipe"))
    srste = [(g["oneshot"], g["mean"], g["n"]) for g in groups if g["recipe"] == "srste"]
    assert srste == [("none", 32.0, 3), ("wanda", 21.0, 2), ("sparsegpt", 19.0, 1)]  # not 27.6 over 5 runs
    assert "oneshot" in GROUP_KEYS
    asked = summarize(collect_runs([str(starts)]), group_by=("model", "oneshot"))
    assert asked[0]["keys"] == ["model", "oneshot"]  # asked for: not added twice
    # from scratch: srste 30, 32, 34 and mdgf_exp 26, 28 -> 150 / 5
    assert [(g["oneshot"], g["mean"], g["n"]) for g in asked][0] == ("none", 30.0, 5)


def test_without_one_shot_runs_the_table_is_as_before(tmp_path):
    root = tmp_path / "scratch"
    write_finished(root, "srste", 0, 30.0)
    write_finished(root, "srste", 1, 34.0)
    old = write_finished(root, "mdgf_exp", 0, 26.0)  # older summary: no oneshot field at all
    summary = json.loads((old / "summary.json").read_text())
    del summary["oneshot"], summary["oneshot_calibration"]
    (old / "summary.json").write_text(json.dumps(summary))
    groups = summarize(collect_runs([str(root)]))
    assert groups[0]["keys"] == ["model", "sparsity", "recipe", "budget"]
    assert all("oneshot" not in g for g in groups)
    assert to_markdown(groups) == (
        "| model | sparsity | recipe | budget | metric | as trained | ± std | n | strict N:M | ± std | n "
        "| train FLOPs | inference FLOPs | wall |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        "| gpt2 | 2:4 | srste | steps=2000 | perplexity | 32.00 | 2.83 | 2 | 32.00 | 2.83 | 2 "
        "| 1.00e12 | 1.00e8 | 1.0 min |\n"
        "| gpt2 | 2:4 | mdgf_exp | steps=2000 | perplexity | 26.00 | - | 1 | 26.00 | - | 1 "
        "| 1.00e12 | 1.00e8 | 1.0 min |\n"
    )


# -- compare -------------------------------------------------------------------------------------
def compare_rows(path: Path) -> dict:
    """compare.md as {(recipe, budget, oneshot): (baseline budget, difference, spread, n, ratio, reading)}."""
    lines = [line.strip("| ").split(" | ") for line in path.read_text().splitlines() if line.startswith("| gpt2")]
    return {(c[2], c[3], c[4]): tuple(c[6:]) for c in lines}


def test_baseline_meets_the_setting_of_the_same_start(starts, tmp_path):
    out = tmp_path / "r"
    assert main([str(starts), "--baseline", "recipe=srste", "--no-plots", "--out", str(out)]) == 0
    assert compare_rows(out / "compare.md") == {
        ("none", "steps=0", "wanda"): ("steps=2000", "+21.00", "2.83", "2 vs 2", "0.02x", "worse"),
        ("mdgf_exp", "steps=2000", "none"): ("steps=2000", "-5.00", "2.00", "2 vs 3", "1.00x", "better"),
        ("mdgf_exp", "steps=2000", "wanda"): ("steps=2000", "+0.00", "4.24", "2 vs 2", "1.00x", "no difference"),
    }
    assert main([str(starts), "--baseline", "oneshot=none", "--no-plots", "--out", str(out)]) == 0
    assert compare_rows(out / "compare.md") == {  # each start against training from scratch
        ("srste", "steps=2000", "wanda"): ("steps=2000", "-11.00", "2.00", "2 vs 3", "1.02x", "better"),
        ("srste", "steps=2000", "sparsegpt"): ("steps=2000", "-13.00", "-", "1 vs 3", "1.02x", "unknown (1 seed)"),
        ("mdgf_exp", "steps=2000", "wanda"): ("steps=2000", "-6.00", "4.24", "2 vs 2", "1.02x", "better"),
    }


def test_two_baselines_write_one_compare_table_each(starts, tmp_path, capsys):
    out = tmp_path / "r"
    assert (
        main([str(starts), "--baseline", "recipe=srste", "--baseline", "oneshot=none", "--no-plots", "--out", str(out)])
        == 0
    )
    text = (out / "compare.md").read_text()
    by_recipe, by_start = text.split("\n\n" + "Each setting minus each oneshot=none")
    assert by_recipe.startswith("Each setting minus each recipe=srste setting")
    (out / "recipe.md").write_text(by_recipe)
    (out / "start.md").write_text("Each setting minus each oneshot=none" + by_start)
    assert compare_rows(out / "recipe.md")[("mdgf_exp", "steps=2000", "none")] == (
        "steps=2000",
        "-5.00",
        "2.00",
        "2 vs 3",
        "1.00x",
        "better",
    )
    assert compare_rows(out / "start.md")[("srste", "steps=2000", "wanda")] == (
        "steps=2000",
        "-11.00",
        "2.00",
        "2 vs 3",
        "1.02x",
        "better",
    )
    assert len(compare_rows(out / "recipe.md")) == len(compare_rows(out / "start.md")) == 3
    assert text in capsys.readouterr().out  # and on stdout, as one baseline's table is


# -- noise and figures ---------------------------------------------------------------------------
def test_noise_settings_and_lines_keep_the_starts_apart(tmp_path):
    root = tmp_path / "noise"
    write_finished(root, "srste", 0, 30.0, noise=1.0)
    write_finished(root, "srste", 0, 20.0, "wanda", noise=4.0)
    rows = collect_runs([str(root)])
    levels = noise_levels(rows, window=2)  # mean of 1/10 and 1/20 per unit of noise: 0.075
    assert [(g["oneshot"], g["sparsity/ff/grad_abs_var"]["mean"]) for g in levels] == [
        ("none", pytest.approx(0.075)),
        ("wanda", pytest.approx(0.3)),
    ]
    assert noise_markdown(levels).splitlines()[2].startswith("| model | sparsity | recipe | budget | oneshot |")
    panel = gradient_noise(rows, window=1).axes[1]
    styles = {line.get_label(): line.get_linestyle() for line in panel.get_lines()}
    assert set(styles) == {"srste from scratch", "srste from wanda"}
    assert styles["srste from scratch"] != styles["srste from wanda"]
    curves = training_curves(rows)
    keys = [t.get_text() for t in curves.legends[0].get_texts()]
    assert keys == ["srste", "sparsity 2:4 from scratch", "sparsity 2:4 from wanda"]
    plain = [r for r in rows if r["oneshot"] == "none"]
    assert noise_levels(plain)[0]["keys"] == NOISE_GROUP_BY  # no start: noise.md as before


def test_a_setting_that_trained_nothing_is_drawn_at_zero_flops():
    """A magnitude prune evaluated untrained costs 0 FLOPs: drawn at the left end of a symlog axis, not dropped."""
    def setting(recipe, oneshot, flops, loss):
        return {"model": "gpt2", "metric": "loss", "headline": "as_trained", "sparsity": "1:8", "recipe": recipe,
                "oneshot": oneshot, "train_flops": flops, "mean": loss, "std": None, "higher_is_better": False}

    groups = [setting("none", "magnitude", 0.0, 5.1), setting("none", "sparsegpt", 3.6e11, 2.6),
              setting("srste", "magnitude", 2.6e13, 1.7)]
    panel, zoom = [ax for ax in accuracy_vs_flops(groups).axes if ax.get_visible()]  # untrained rows: a zoom row
    markers = [line for line in panel.get_lines() if line.get_marker() == sparsity_marker("1:8")]
    assert sorted((float(m.get_xdata()[0]), float(m.get_ydata()[0])) for m in markers) == [
        (0.0, 5.1), (3.6e11, 2.6), (2.6e13, 1.7)]
    assert panel.get_xscale() == "symlog" and "0 at the left" in panel.get_xlabel()
    assert [t for t in panel.get_xticks() if t <= 1e11] == [0.0, 1e11]  # 0, then the smallest decade
    assert dodged([0.0, 0.0, 5e13]) == [0.0, 0.0, 5e13]  # zeros are not spread on a log scale
    trained = [g for g in groups if g["train_flops"] > 0]
    assert accuracy_vs_flops(trained).axes[0].get_xscale() == "log"  # as before without such a setting


def test_untrained_rows_that_dwarf_the_trained_ones_get_a_zoom_row():
    """Recovered losses 0.01 apart under untrained prunes 3.4 nats above: a second row shows only the trained."""
    def setting(recipe, oneshot, sparsity, budget, loss):
        return {"model": "gpt2", "metric": "loss", "headline": "as_trained", "sparsity": sparsity, "recipe": recipe,
                "oneshot": oneshot, "budget": budget, "train_flops": 0.0 if recipe == "none" else 2e13,
                "mean": loss, "std": None, "higher_is_better": False}

    trained = [setting("srste", "magnitude", "2:4", "steps=600", 1.556), setting("srste", "magnitude", "1:8", "steps=600", 1.676),
               setting("srste", "sparsegpt", "1:8", "train_flops=3e13", 1.645)]
    groups = [setting("none", "magnitude", "2:4", "steps=0", 1.619), setting("none", "magnitude", "1:8", "steps=0", 5.146),
              *trained]
    assert needs_zoom(groups) and not needs_zoom(trained)  # span 3.59 > 4 x 0.12; no untrained row: no zoom
    assert not needs_zoom([*trained, setting("none", "sparsegpt", "2:4", "steps=0", 1.579)])  # inside 4 x the span
    figure = accuracy_vs_sparsity(groups)
    panel, zoom = [ax for ax in figure.axes if ax.get_visible()]
    ys = lambda ax: sorted(float(y) for line in ax.get_lines() for y in line.get_ydata() if line.get_marker() != "_")
    assert 5.146 in ys(panel) and 5.146 not in ys(zoom) and ys(zoom) == [1.556, 1.645, 1.676]
    assert "zoom" in zoom.get_title() and zoom.get_ylim()[1] < 2
    # one look per kind: line style = start, marker = budget, so the two "srste" lines are told apart
    handles = {t.get_text(): h for t, h in zip(figure.legends[0].get_texts(), figure.legends[0].legend_handles)}
    assert handles["from magnitude"].get_linestyle() != handles["from sparsegpt"].get_linestyle()
    markers = [handles[b].get_marker() for b in ("steps=0", "steps=600", "train_flops=3e13")]
    assert len(set(markers)) == 3
    assert len([ax for ax in accuracy_vs_sparsity(trained).axes if ax.get_visible()]) == 1


def test_figures_draw_zero_step_rows_and_label_the_starts(starts, tmp_path):
    groups = summarize(collect_runs([str(starts)]))
    figure = accuracy_vs_flops(groups, out=tmp_path / "figs")
    assert (tmp_path / "figs" / "accuracy_vs_flops.png").stat().st_size > 0
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert labels[:3] == ["none (untrained)", "srste", "mdgf_exp"]
    assert ["from scratch", "from wanda", "from sparsegpt"] == [x for x in labels if x.startswith("from")]
    (panel,) = [ax for ax in figure.axes if ax.get_visible()]
    markers = [line for line in panel.get_lines() if line.get_marker() == "o"]  # 2:4's marker; caps are "_"
    xs = sorted(float(line.get_xdata()[0]) for line in markers)
    assert xs[0] == CALIBRATION_FLOPS  # the untrained prune: its calibration's FLOPs, far left
    assert {line.get_fillstyle() for line in markers} == {"full", "none", "bottom"}  # scratch, wanda, sparsegpt
    lines = [t.get_text() for t in accuracy_vs_sparsity(groups).legends[0].get_texts()]
    assert {"from scratch", "from wanda", "from sparsegpt", "steps=0"} <= set(lines)
    with pytest.raises(ValueError, match="no finished run has train loss"):
        training_curves(collect_runs([str(starts)]))  # no curves logged: one line, not a crash
