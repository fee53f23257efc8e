"""The committed results reproduce: the documented `pgf-report results/...` commands regenerate every table.

A results folder (launch/evidence.sh collect, pgf-collect) holds
each run's summary.json, status.json, curves and diagnostics; its report/ tables
(table.md, noise.md, compare.md) are what docs/results.md quotes, each under a
`<!-- quote FILE -->` marker that launch/quote_reports.py refreshes. Running the
command the docs show on the summaries alone must give the same text, and the
page must quote the tables verbatim, so no number there is typed by hand.
"""
from __future__ import annotations

import csv
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from pgfsparse.cli.pgf_report import main

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
RESULTS_DOC = ROOT / "docs" / "results.md"
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md")))  # every page that may show a command
COMMANDS = sorted({command.strip() for doc in DOCS
                   for command in re.findall(r"^pgf-report (results/[^#\n]+)", doc.read_text(), re.M)})
REPORTS = sorted(p.parent for p in RESULTS.glob("**/report/table.md"))
REPORT_FILES = ("table.md", "noise.md", "compare.md")  # the tables pgf-report writes; a page may quote any


def load_launch_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "launch" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report_dir(command: str) -> Path:
    """Where a documented command writes: --out, else PATH/report."""
    args = shlex.split(command)
    return ROOT / (args[args.index("--out") + 1] if "--out" in args else Path(args[0]) / "report")


@pytest.mark.parametrize("command", COMMANDS)
def test_documented_commands_regenerate_the_committed_tables_exactly(command, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the documented commands run from the repository root
    args = shlex.split(command)
    if "--out" in args:
        del args[args.index("--out"):args.index("--out") + 2]
    assert main(args + ["--out", str(tmp_path), "--no-plots"]) == 0
    for name in REPORT_FILES:
        committed = report_dir(command) / name
        assert (tmp_path / name).exists() == committed.exists(), name
        if committed.exists():
            assert (tmp_path / name).read_text() == committed.read_text(), name


def test_every_committed_report_has_its_command_in_the_docs():
    assert REPORTS, "results/<grid>/report/table.md: the docs' tables come from here"
    assert sorted({report_dir(c) for c in COMMANDS}) == REPORTS  # a report may have several commands (--html)


def test_the_results_page_quotes_its_tables_verbatim():
    page = RESULTS_DOC.read_text()
    shown = [c for c in COMMANDS if re.search(rf"^pgf-report {re.escape(c)}\s*(#|$)", page, re.M)]
    assert shown, "docs/results.md shows the pgf-report commands that make its tables"
    quote_reports = load_launch_script("quote_reports")
    blocks = dict(quote_reports.quoted(page))
    for command in shown:
        for name in REPORT_FILES:
            path = report_dir(command) / name
            if not path.exists():
                continue
            for reference, lines in quote_reports.references(path, str(path.relative_to(ROOT))):
                assert blocks.get(reference) == lines, \
                    f"docs/results.md: quote {reference} under <!-- quote {reference} -->: " \
                    f"python launch/quote_reports.py docs/results.md"


def test_quote_reports_replaces_only_the_table_under_each_marker(tmp_path):
    quote_reports = load_launch_script("quote_reports")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "table.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n\nFailed:\n- x: boom\n")
    page = ("# Results\n\n<!-- quote r/table.md -->\n| a | b |\n|---|---|\n| 0 | 0 |\n| 9 | 9 |\n\n"
            "The table above.\n| kept | as is |\n")
    assert quote_reports.refresh(page, tmp_path) == (
        "# Results\n\n<!-- quote r/table.md -->\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "The table above.\n| kept | as is |\n")
    assert quote_reports.quoted(page) == [("r/table.md", "| a | b |\n|---|---|\n| 0 | 0 |\n| 9 | 9 |\n")]
    with pytest.raises(SystemExit, match="r/gone.md does not exist"):
        quote_reports.refresh("<!-- quote r/gone.md -->\n", tmp_path)


def test_quote_reports_quotes_the_nth_table_of_a_file_with_several(tmp_path):
    """compare.md of two --baseline options holds two tables: FILE is the first, FILE#2 the second."""
    quote_reports = load_launch_script("quote_reports")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "compare.md").write_text("First:\n\n| a |\n|---|\n| 1 |\n\nSecond:\n\n| b |\n|---|\n| 2 |")
    assert quote_reports.references(tmp_path / "r" / "compare.md", "r/compare.md") == [
        ("r/compare.md", "| a |\n|---|\n| 1 |\n"),
        ("r/compare.md#2", "| b |\n|---|\n| 2 |\n"),
    ]
    page = "<!-- quote r/compare.md -->\n| old |\n\ntext\n\n<!-- quote r/compare.md#2 -->\n| old |\n"
    assert quote_reports.refresh(page, tmp_path) == (
        "<!-- quote r/compare.md -->\n| a |\n|---|\n| 1 |\n\ntext\n\n<!-- quote r/compare.md#2 -->\n| b |\n|---|\n| 2 |\n"
    )
    with pytest.raises(SystemExit, match="r/compare.md has 2 table\\(s\\), not 3"):
        quote_reports.refresh("<!-- quote r/compare.md#3 -->\n", tmp_path)


def test_collecting_keeps_the_curves_of_a_point_restored_without_metrics(tmp_path):
    """launch/evidence.sh restores finished points as summary + status only: their curves must survive."""
    import json

    from pgfsparse.rundir.snapshot import snapshot_sweep

    sweep, dest = tmp_path / "multirun" / "grid", tmp_path / "results" / "grid"
    point = sweep / "vit-n1m32-srste-s0"
    point.mkdir(parents=True)
    (point / "status.json").write_text(json.dumps({"status": "finished", "exit_code": 0}))
    (point / "summary.json").write_text(json.dumps({"eval_value": 58.46}))
    lines = [{"event": "train", "step": 20, "train/loss": 2.0}, {"event": "diagnostics", "step": 100, "x": 1.0},
             {"event": "eval", "step": 9360, "eval/top1": 58.46}]
    (point / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    assert snapshot_sweep(sweep, dest) == 1
    curves = (dest / point.name / "curves.jsonl").read_text()
    diagnostics = (dest / point.name / "diagnostics.jsonl").read_text()
    assert [json.loads(x)["step"] for x in curves.splitlines()] == [20, 9360]
    assert [json.loads(x)["step"] for x in diagnostics.splitlines()] == [100]

    (point / "metrics.jsonl").unlink()  # a new session: the point restored from results/ holds no metrics
    assert snapshot_sweep(sweep, dest) == 1
    assert (dest / point.name / "curves.jsonl").read_text() == curves
    assert (dest / point.name / "diagnostics.jsonl").read_text() == diagnostics
    assert json.loads((dest / point.name / "summary.json").read_text()) == {"eval_value": 58.46}


def test_a_point_collected_while_training_is_reported_as_such_not_as_stopped(tmp_path):
    import json
    import os

    from pgfsparse.report.collect import collect_runs

    from pgfsparse.rundir.snapshot import snapshot_sweep

    sweep, dest = tmp_path / "multirun" / "grid", tmp_path / "results" / "grid"
    point = sweep / "t5-n1m32-srste-s1"
    point.mkdir(parents=True)
    (point / "status.json").write_text(json.dumps({"status": "running", "pid": os.getpid(), "host": "vm",
                                                   "overrides": ["sparsity=1:32", "recipe=srste", "seed=1"]}))
    lines = [{"event": "train", "step": 20, "train/loss": 8.0}, {"event": "train", "step": 620, "train/loss": 5.0}]
    (point / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    snapshot_sweep(sweep, dest)
    copied = json.loads((dest / point.name / "status.json").read_text())
    assert copied["status"] == "unfinished" and copied["step"] == 620 and "pid" not in copied
    [row] = collect_runs([str(dest)])
    assert (row["status"], row["error"]) == ("unfinished", "still training at step 620 when collected, no summary yet")


# Every measured figure the pages write in prose is one the committed reports print (tables,
# per-seed values of runs.csv), or the difference of two as-trained means the tables print, or,
# where the prose says "N times", the ratio of two noise levels; the paper's figures are those of
# the page's claim paragraph. The derived forms are kept this narrow so that a stale figure
# rarely passes by coincidence.
DECIMAL = re.compile(r"(?<![\w.])(\d*\.\d+(?:e[-+]?\d+)?)(?![\w.])")


def prose_sections():
    page, readme = RESULTS_DOC.read_text(), (ROOT / "README.md").read_text()
    between = lambda text, start, end: text[text.index(start):text.index(end, text.index(start))]
    return {"docs/results.md status": between(page, "**Status", "## Setting"),
            "docs/results.md prune, then recover": between(page, "## Prune, then recover", "## Reading"),
            "docs/results.md reading": between(page, "## Reading", "## Still to run"),
            "README.md headline result": between(readme, "## Headline result", "\n## ")}


def table_columns(path: Path, names: tuple[str, ...]) -> list[float]:
    """The numbers of the named columns of a markdown table (its first table only)."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in path.read_text().splitlines()
            if line.startswith("|") and not line.startswith("|---")]
    if not rows:
        return []
    keep = [i for i, name in enumerate(rows[0]) if name in names]
    return [float(row[i]) for row in rows[1:] for i in keep if DECIMAL.fullmatch(row[i])]


def traceable(figure: str, sources: set[str], means: list[float], noise: list[float],
              ratio: bool = False) -> bool:
    """Is `figure` printed by a report, or (as written, at its precision) a difference of two
    means, or, where the prose calls it "N times", a ratio of two noise levels?"""
    if "e" in figure:  # scientific notation is quoted as the tables print it
        return figure in sources
    decimals, value = len(figure.split(".")[1]), float(figure)
    close = lambda x: abs(round(x, decimals) - value) < 1e-9
    if ratio:
        return any(close(a / b) for a in noise for b in noise)
    return (any(close(float(s)) for s in sources if "e" not in s)
            or any(close(abs(a - b)) for a in means for b in means))


def test_every_figure_in_the_prose_comes_from_the_committed_reports():
    reports = sorted(RESULTS.glob("**/report/*.md"))
    claim = RESULTS_DOC.read_text().split("**Claim under test**")[1].split("\n\n")[0]
    per_seed = [row[key] for path in RESULTS.glob("**/report/runs.csv")
                for row in csv.DictReader(path.open()) for key in ("eval_value", "eval_value_strict")]
    sources = {f for text in [p.read_text() for p in reports] + [claim] for f in DECIMAL.findall(text)}
    sources |= {f for f in per_seed if DECIMAL.fullmatch(f)}
    means = [float(f) for f in DECIMAL.findall(claim)] + [
        v for p in reports if p.name == "table.md" for v in table_columns(p, ("as trained",))]
    noise = [v for p in reports if p.name == "noise.md"
             for v in table_columns(p, ("Var(AdamW v)", "Var(abs(grad))"))]
    untraced = {name: [m[1] for m in DECIMAL.finditer(text)
                       if not traceable(m[1], sources, means, noise, ratio=text.startswith(" times", m.end()))]
                for name, text in prose_sections().items()}
    assert not any(untraced.values()), \
        f"figures in prose that no committed report gives (stale? run launch/evidence.sh collect): {untraced}"


def test_the_figure_check_catches_a_stale_figure():
    sources = {"58.28", "63.45", "4.45e-12", "1.47e-11", "64.6"}
    means, noise = [58.28, 63.45], [4.45e-12, 1.47e-11]
    assert traceable("63.45", sources, means, noise) and traceable("64.60", sources, means, noise)
    assert traceable("5.17", sources, means, noise)  # a difference of two means
    assert traceable("3.3", sources, means, noise, ratio=True)  # "3.3 times": a ratio of two noise levels
    assert not traceable("3.3", sources, means, noise)
    assert not traceable("63.59", sources, means, noise)  # last session's mean
    assert not traceable("5.09", sources, means, noise) and not traceable("4.46e-12", sources, means, noise)


def test_pgf_collect_copies_a_sweep_and_refuses_a_missing_one_in_one_line(tmp_path, capsys):
    import json

    from pgfsparse.cli.pgf_collect import main

    sweep = tmp_path / "multirun" / "grid"
    (sweep / "vit-dense-dense-s0").mkdir(parents=True)
    (sweep / "vit-dense-dense-s0" / "status.json").write_text(json.dumps({"status": "finished"}))
    (sweep / "vit-dense-dense-s0" / "checkpoint.pt").write_bytes(b"weights")
    main([str(sweep), str(tmp_path / "results")])
    assert sorted(p.name for p in (tmp_path / "results" / "vit-dense-dense-s0").iterdir()) == [
        "curves.jsonl", "diagnostics.jsonl", "status.json"]  # no checkpoint
    with pytest.raises(SystemExit, match="is not a folder: pass a sweep dir"):
        main([str(tmp_path / "nowhere"), str(tmp_path / "results")])
