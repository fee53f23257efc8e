"""pgf-report ranks by each metric's direction: lower perplexity (and loss) is better, higher accuracy is.

Made-up summaries of causal-LM runs (eval_metric perplexity, eval_higher_is_better false) whose
best setting, Pareto front and readings are worked out by hand from the numbers written here:

    gpt2 1:4     perplexity per seed    mean  std    loss per seed     token_acc per seed   train FLOPs
    srste        10, 12, 14             12    2      2.3, 2.5, 2.7     40, 42, 44           1.0e12
    mdgf_exp     6, 8                   7     1.41   1.9, 2.1          50, 52               1.5e12
    sdgf_step    15, 19                 17    2.83   2.8, 3.2          30, 34               1.2e12
    ste          11, 13                 12    1.41   2.4, 2.6          41, 43               0.8e12
    gpt2 dense   5 (one seed)                                                               3.0e12

Against SR-STE: MDGF-Exp -5 (beyond the spread 2: better), SDGF-Step +5 (beyond 2.83: worse),
STE 0 (no difference). The best 1:4 perplexity is MDGF-Exp's 7. Walking up the FLOPs with lower
as better, the front is STE (0.8e12, 12), MDGF-Exp (1.5e12, 7), dense (3e12, 5); read as
higher-is-better it would be STE then SDGF-Step instead.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Optional

import pytest

from pgfsparse.cli.pgf_report import main
from pgfsparse.report import best_groups, collect_runs, summarize
from pgfsparse.report.compare import reading
from pgfsparse.report.plots import accuracy_vs_flops, metric_label, pareto_front, training_curves
from pgfsparse.rundir.records import RunSummary, metric_higher_is_better

STEPS = {"kind": "steps", "value": 2000.0}
PERPLEXITY = {"srste": (10.0, 12.0, 14.0), "mdgf_exp": (6.0, 8.0), "sdgf_step": (15.0, 19.0), "ste": (11.0, 13.0)}
LOSS = {"srste": (2.3, 2.5, 2.7), "mdgf_exp": (1.9, 2.1), "sdgf_step": (2.8, 3.2), "ste": (2.4, 2.6)}
TOKEN_ACC = {"srste": (40.0, 42.0, 44.0), "mdgf_exp": (50.0, 52.0), "sdgf_step": (30.0, 34.0), "ste": (41.0, 43.0)}
FLOPS = {"srste": 1.0e12, "mdgf_exp": 1.5e12, "sdgf_step": 1.2e12, "ste": 0.8e12}


def write_summary(
    root: Path,
    name: str,
    metric: str,
    value: float,
    higher: Optional[bool],
    model="gpt2",
    sparsity="1:4",
    recipe="srste",
    seed=0,
    flops=1e12,
    extra_eval=None,
    curve=False,
) -> Path:
    """A finished run's summary.json (`higher` None: a summary older than eval_higher_is_better)."""
    run = root / name
    run.mkdir(parents=True)
    summary = {
        "run_name": name,
        "model": model,
        "sparsity": sparsity,
        "recipe": recipe,
        "seed": seed,
        "steps": 2000,
        "train_flops": flops,
        "inference_flops": flops / 1e4,
        "eval_metric": metric,
        "eval_value": value,
        "eval_value_strict": value + 1.0,
        "wall_seconds": 60.0,
        "budget": STEPS,
        "eval": {f"eval/{metric}": value, f"eval_strict/{metric}": value + 1.0, **(extra_eval or {})},
        "status": "finished",
        "schema": 2,
    }
    if higher is not None:
        summary["eval_higher_is_better"] = higher
    (run / "summary.json").write_text(json.dumps(summary))
    if curve:  # two eval lines and a train line: training_curves draws its eval panel
        events = [{"event": "train", "step": 1000, "train_flops": flops / 2, "train/loss": 2.0}]
        events += [
            {"event": "eval", "step": s, "train_flops": flops * s / 2000, f"eval/{metric}": value * 2000 / s}
            for s in (1000, 2000)
        ]
        (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return run


@pytest.fixture
def lm_runs(tmp_path) -> Path:
    root = tmp_path / "lm"
    for recipe, values in PERPLEXITY.items():
        for seed, ppl in enumerate(values):
            extra = {"eval/loss": LOSS[recipe][seed], "eval/token_acc": TOKEN_ACC[recipe][seed]}
            write_summary(
                root,
                f"gpt2-n1m4-{recipe}-s{seed}",
                "perplexity",
                ppl,
                False,
                recipe=recipe,
                seed=seed,
                flops=FLOPS[recipe],
                extra_eval=extra,
                curve=True,
            )
    write_summary(
        root,
        "gpt2-dense-dense-s0",
        "perplexity",
        5.0,
        False,
        sparsity="dense",
        recipe="dense",
        flops=3e12,
        extra_eval={"eval/loss": 1.6, "eval/token_acc": 60.0},
    )
    return root


def compare_readings(path: Path) -> dict:
    """compare.md's table as {(recipe, metric, baseline budget): (difference, spread, reading)}."""
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in path.read_text().splitlines()
        if line.startswith("| gpt2") or line.startswith("| vit")
    ]
    return {(r[2], r[4], r[5]): (r[6], r[7], r[10]) for r in rows}


# -- the rule --------------------------------------------------------------------------------------
def test_a_metrics_name_says_its_direction_when_nothing_else_does():
    for lower in (
        "perplexity",
        "eval/perplexity",
        "eval_strict/loss",
        "loss",
        "word_perplexity",
        "ppl",
        "lm_eval/wikitext/bits_per_byte,none",
        "val-loss",
    ):
        assert metric_higher_is_better(lower) is False, lower
    for higher in ("top1", "accuracy", "token_acc", "bleu", "f1", "eval/mcc", "glossary_acc", None):
        assert metric_higher_is_better(higher) is True, higher


def test_an_old_summary_without_the_field_reads_its_direction_from_the_metric(tmp_path):
    write_summary(tmp_path, "old-ppl", "perplexity", 20.0, None)
    write_summary(tmp_path, "old-acc", "accuracy", 80.0, None)
    write_summary(tmp_path, "new-score", "score", 3.0, False)  # recorded: wins over the name
    assert RunSummary.read(tmp_path / "old-ppl").eval_higher_is_better is None  # read as written
    rows = {r["run_name"]: r["eval_higher_is_better"] for r in collect_runs([str(tmp_path)])}
    assert rows == {"old-ppl": False, "old-acc": True, "new-score": False}


def test_a_reading_follows_the_direction():
    assert reading(-5.0, 2.0, 2, 3, higher_is_better=False) == "better"
    assert reading(+5.0, 2.0, 2, 3, higher_is_better=False) == "worse"
    assert reading(+5.0, 2.0, 2, 3) == "better" and reading(-5.0, 2.0, 2, 3) == "worse"
    assert reading(-1.5, 2.0, 2, 3, higher_is_better=False) == "no difference"
    assert reading(-5.0, None, 1, 3, higher_is_better=False) == "unknown (1 seed)"


def test_the_pareto_front_of_a_lower_is_better_metric_keeps_the_lowest():
    points = [(0.8e12, 12.0), (1.0e12, 12.0), (1.2e12, 17.0), (1.5e12, 7.0), (3e12, 5.0)]
    assert pareto_front(points, higher_is_better=False) == [(0.8e12, 12.0), (1.5e12, 7.0), (3e12, 5.0)]
    assert pareto_front(points) == [(0.8e12, 12.0), (1.2e12, 17.0)]  # the same points, higher is better
    assert pareto_front([(1.0, 9.0), (1.0, 4.0)], higher_is_better=False) == [(1.0, 4.0)]  # equal FLOPs: the lower


# -- the report ------------------------------------------------------------------------------------
def test_a_report_of_causal_lm_runs_ranks_lower_perplexity_as_better(lm_runs, tmp_path, capsys):
    out = tmp_path / "r"
    assert main([str(lm_runs), "--baseline", "recipe=srste", "--no-plots", "--out", str(out)]) == 0
    capsys.readouterr()
    with open(out / "runs.csv") as f:
        runs = list(csv.DictReader(f))
    assert len(runs) == 10 and {r["eval_higher_is_better"] for r in runs} == {"False"}

    table = (out / "table.md").read_text()
    assert "| gpt2 | 1:4 | mdgf_exp | steps=2000 | perplexity | 7.00 | 1.41 | 2 |" in table
    assert "- gpt2 1:4 perplexity (lower is better): mdgf_exp steps=2000, 7.00 ± 1.41 (2 seeds)\n" in table
    assert "gpt2 dense" not in table.split("Best mean")[1]  # a single setting has nothing to beat

    assert compare_readings(out / "compare.md") == {
        ("mdgf_exp", "perplexity", "steps=2000"): ("-5.00", "2.00", "better"),
        ("sdgf_step", "perplexity", "steps=2000"): ("+5.00", "2.83", "worse"),
        ("ste", "perplexity", "steps=2000"): ("+0.00", "2.00", "no difference"),
    }
    assert "perplexity: lower is better" in (out / "compare.md").read_text()


def test_every_metric_gets_better_or_worse_by_its_own_direction(lm_runs, tmp_path, capsys):
    """--metric loss,token_acc: neither is the headline; loss is lower-is-better by name, token_acc higher."""
    out = tmp_path / "r"
    assert (
        main(
            [str(lm_runs), "--metric", "loss,token_acc", "--baseline", "recipe=srste", "--no-plots", "--out", str(out)]
        )
        == 0
    )
    capsys.readouterr()
    readings = {k: v[2] for k, v in compare_readings(out / "compare.md").items()}
    assert readings == {
        ("mdgf_exp", "loss", "steps=2000"): "better",  # 2.0 vs 2.5, spread 0.2
        ("mdgf_exp", "token_acc", "steps=2000"): "better",  # 51 vs 42, spread 2
        ("sdgf_step", "loss", "steps=2000"): "worse",  # 3.0 vs 2.5, spread 0.28
        ("sdgf_step", "token_acc", "steps=2000"): "worse",  # 32 vs 42, spread 2.83
        ("ste", "loss", "steps=2000"): "no difference",
        ("ste", "token_acc", "steps=2000"): "no difference",
    }
    differences = {k: v[:2] for k, v in compare_readings(out / "compare.md").items()}
    assert differences[("mdgf_exp", "loss", "steps=2000")] == ("-0.500", "0.200")  # a loss: 3 decimals, as its table
    assert differences[("mdgf_exp", "token_acc", "steps=2000")] == ("+9.00", "2.00")
    best = {(g["metric"], g["recipe"]) for g in best_groups(summarize(collect_runs([str(lm_runs)]), "loss,token_acc"))}
    assert best == {("loss", "mdgf_exp"), ("token_acc", "mdgf_exp")}
    assert best_groups(summarize(collect_runs([str(lm_runs)]), "perplexity"))[0]["recipe"] == "mdgf_exp"


def test_vision_and_language_runs_in_one_report_keep_their_own_directions(lm_runs, tmp_path, capsys):
    for seed, (srste, mdgf) in enumerate(((60.0, 66.0), (62.0, 68.0), (64.0, 70.0))):  # top-1: MDGF higher
        write_summary(lm_runs, f"vit-n1m4-srste-s{seed}", "top1", srste, True, model="vit", seed=seed)
        write_summary(
            lm_runs,
            f"vit-n1m4-mdgf_exp-s{seed}",
            "top1",
            mdgf,
            True,
            model="vit",
            recipe="mdgf_exp",
            seed=seed,
            flops=1.5e12,
        )
    out = tmp_path / "r"
    assert main([str(lm_runs), "--baseline", "recipe=srste", "--no-plots", "--out", str(out)]) == 0
    capsys.readouterr()
    readings = compare_readings(out / "compare.md")
    assert readings[("mdgf_exp", "top1", "steps=2000")] == ("+6.00", "2.00", "better")
    assert readings[("mdgf_exp", "perplexity", "steps=2000")] == ("-5.00", "2.00", "better")
    best = (out / "table.md").read_text()
    assert "- vit 1:4 top1 (higher is better): mdgf_exp steps=2000, 68.00 ± 2.00 (3 seeds)" in best
    assert "- gpt2 1:4 perplexity (lower is better): mdgf_exp steps=2000, 7.00 ± 1.41 (2 seeds)" in best


def test_the_figures_draw_the_lower_front_and_say_lower_is_better(lm_runs):
    rows = collect_runs([str(lm_runs)])
    fig = accuracy_vs_flops(summarize(rows))
    ax = fig.axes[0]
    assert ax.get_ylabel() == "perplexity, as trained (lower is better)"
    (front,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert list(front.get_xdata()) == [0.8e12, 1.5e12, 3e12, 3e12]  # stepped out to the largest FLOPs
    assert list(front.get_ydata()) == [12.0, 7.0, 5.0, 5.0]
    curves = training_curves(rows)
    assert curves.axes[0].get_ylabel() == "perplexity, as trained (lower is better)"
    assert metric_label("top1") == "top-1 (%), as trained"  # higher is better: the label says nothing more


def test_a_reading_whose_difference_rounds_to_zero_prints_the_digits_that_make_it():
    """Two seeds that agree to 1e-4 make a 0.0004 loss gap `worse`; compare.md shows +0.0004, not +0.000,
    and a gap just over its spread prints larger than it."""
    from pgfsparse.report.compare import compare, compare_markdown

    def setting(recipe, mean, std, metric="loss"):
        return {"keys": ["sparsity", "recipe"], "sparsity": "2:4", "recipe": recipe, "metric": metric, "mean": mean,
                "std": std, "n": 2, "train_flops": 1.0, "headline": "as_trained", "higher_is_better": False}

    groups = [setting("srste", 1.5550, 0.0001), setting("sdgf_step", 1.5554, 0.0001),
              setting("mdgf_exp", 1.5552, 0.0003), setting("fixed_mask", 1.5650, 0.0001),
              setting("ste", 1.56534, 0.00996)]
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[5:7] + line.split("|")[-2:-1]]
            for line in compare_markdown(compare(groups, "recipe", "srste"), "recipe", "srste").splitlines()
            if line.startswith("| 2:4")}
    assert rows["sdgf_step"] == ["+0.0004", "0.0001", "worse"]  # one more decimal than the loss's 3
    assert rows["mdgf_exp"] == ["+0.000", "0.000", "no difference"]  # no reading to show: the table's decimals
    assert rows["fixed_mask"] == ["+0.010", "0.000", "worse"]  # already visible: the table's decimals
    assert rows["ste"] == ["+0.0103", "0.0100", "worse"]  # +0.010 against 0.010 would not show why
