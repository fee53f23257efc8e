"""pgf-report: compare finished runs in one table and four figures, and list every run that did not finish.

    pgf-report multirun/<sweep>                         -> multirun/<sweep>/report/
    pgf-report 'multirun/*' results/cifar10 --out report --metric top5 --strict
    pgf-report RUNS... --group-by model,sparsity,recipe --no-plots
    pgf-report results/multi30k --metric token_acc,bleu   -> a row per setting and metric
    pgf-report results/cifar10 --baseline recipe=srste    -> compare.md: each recipe minus SR-STE
    pgf-report RUNS --baseline recipe=srste --baseline oneshot=magnitude   -> compare.md: two tables
    pgf-report results/cifar10 --html                     -> report/index.html: filterable tables and charts
    pgf-report multirun/<sweep> --wandb ENTITY/PROJECT    -> a W&B Report, a panel grid per sparsity
    pgf-report results/cifar10 --wandb-dry-run spec.json  -> that report's spec as JSON, no network

Writes runs.csv (one line per run), table.md / table.csv (one line per setting,
mean ± sample std over seeds, and the best setting of each model, sparsity and
metric; the Markdown also goes to stdout), noise.md (where
each setting's FF gradient-noise curves end, when runs logged diagnostics), with
--baseline compare.md (each setting minus its baseline, read against the spread
over seeds; one table per --baseline) and, unless --no-plots, accuracy_vs_flops, accuracy_vs_sparsity,
training_curves and gradient_noise as PNG and SVG, and with --html index.html: one
self-contained page (plotly.js inlined, no network) with the tables and the four figures
as interactive charts, filtered by model, sparsity, recipe and budget. "Best", the Pareto front and
the readings follow each metric's direction: summary.json's eval_higher_is_better for
a run's headline, else the name (lower perplexity and loss are better). Problems with
the input stop it with one line, `pgf-report: error: <what>: <fix>`, and exit status 2.
With --wandb or --wandb-dry-run it builds only the W&B Report (report/wandb_report.py) and
writes no tables or figures; a W&B that cannot take it is one line and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from pgfsparse.report.collect import ReportError, collect_runs
from pgfsparse.report.compare import compare, compare_markdown, parse_baseline
from pgfsparse.report.noise import noise_levels, noise_markdown
from pgfsparse.report.table import (
    DEFAULT_GROUP_BY,
    best_markdown,
    notes_markdown,
    summarize,
    to_markdown,
    write_runs_csv,
    write_table_csv,
)
from pgfsparse.report.wandb_report import EXIT_UNAVAILABLE, WandbUnavailable, wandb_report

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line like every other error."""

    def error(self, message: str):
        raise ReportError(f"{message}: see pgf-report --help")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pgf-report",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="run dirs, sweep dirs, globs, or folders searched for summary.json / status.json",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: PATH/report for one folder, else ./report)")
    parser.add_argument(
        "--metric",
        help="final eval metrics other than each run's headline, comma-separated: "
        "a table row per setting for each, e.g. bleu or token_acc,bleu",
    )
    headline = parser.add_mutually_exclusive_group()
    headline.add_argument("--strict", action="store_true", help="headline = accuracy with strict N:M masks")
    headline.add_argument(
        "--as-trained",
        dest="strict",
        action="store_false",
        help="headline = accuracy of the model as trained (default)",
    )
    parser.add_argument(
        "--group-by",
        default=",".join(DEFAULT_GROUP_BY),
        metavar="KEYS",
        help=f"comma-separated run columns to group seeds by (default {','.join(DEFAULT_GROUP_BY)})",
    )
    parser.add_argument(
        "--baseline",
        metavar="KEY=VALUE",
        action="append",
        help="compare.md: each setting minus the setting that differs only in KEY (and the "
        "budget), e.g. recipe=srste; within the spread over seeds reads as no difference. "
        "Repeat it for one compare.md table per baseline, e.g. also oneshot=magnitude",
    )
    parser.add_argument("--no-plots", action="store_true", help="write the tables only (matplotlib not needed)")
    parser.add_argument(
        "--html",
        action="store_true",
        help="also write index.html: the tables and figures as one interactive page that opens offline (needs plotly)",
    )
    parser.add_argument(
        "--wandb",
        metavar="ENTITY/PROJECT",
        help="instead of the local report, save a W&B Report of the runs to the project they were logged to: "
        "a panel grid per sparsity (needs wandb-workspaces, `wandb login` and the network)",
    )
    parser.add_argument(
        "--wandb-dry-run",
        metavar="FILE",
        type=Path,
        help="write that W&B Report's spec to FILE as JSON and send nothing (with or without --wandb)",
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    try:
        return report(build_parser().parse_args(argv))
    except ReportError as error:
        print(f"pgf-report: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except WandbUnavailable as error:
        print(f"pgf-report: error: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE


def report(args: argparse.Namespace) -> int:
    out = args.out or default_out(args.paths)
    rows = collect_runs(args.paths, skip=out)
    if not rows:
        raise ReportError(
            f"no runs under {', '.join(args.paths)} (no summary.json or status.json found): "
            f"pass a run dir, a sweep dir or a folder holding them"
        )
    if args.wandb or args.wandb_dry_run:
        return wandb_report(rows, args.wandb, args.wandb_dry_run, metric=args.metric, strict=args.strict)
    group_by = [k.strip() for k in args.group_by.split(",") if k.strip()]
    groups = summarize(rows, metric=args.metric, strict=args.strict, group_by=group_by)
    markdown = to_markdown(groups)
    best = best_markdown(groups)
    notes = notes_markdown(rows, args.metric)
    noise = noise_markdown(noise_levels(rows))
    keys = groups[0]["keys"] if groups else group_by
    baselines = [parse_baseline(text, keys) for text in args.baseline or []]
    comparison = "\n".join(compare_markdown(compare(groups, key, value), key, value) for key, value in baselines)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_runs_csv(rows, out / "runs.csv")
        write_table_csv(groups, out / "table.csv")
        (out / "table.md").write_text("\n".join(part for part in (markdown, best, notes) if part))
        if noise:
            (out / "noise.md").write_text(noise)
        if comparison:
            (out / "compare.md").write_text(comparison)
    except OSError as error:
        raise ReportError(f"cannot write {out} ({error.strerror}): pass --out DIR with a writable folder") from None
    print("\n".join(part for part in (markdown, best, notes, noise, comparison) if part))
    if args.no_plots:
        print("plots: not drawn (--no-plots)")
    else:
        from pgfsparse.report.plots import draw_all

        for line in draw_all(groups, rows, out, metric=args.metric, strict=args.strict):
            print(line)
    if args.html:
        from pgfsparse.report.html import write_page

        title = ", ".join(args.paths)
        page = write_page(rows, groups, out, args.metric, args.strict, baselines[0] if baselines else None, title)
        print(f"page: {page} (opens offline in a browser)")
    counted = sum(r["status"] != "skipped" for r in rows)
    print(f"pgf-report: {counted} runs, {len(groups)} settings -> {out}")
    return 0


def default_out(paths: List[str]) -> Path:
    """<PATH>/report for a single folder, else ./report."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        return Path(paths[0]) / "report"
    return Path("report")


if __name__ == "__main__":
    sys.exit(main())
