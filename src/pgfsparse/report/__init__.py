"""pgf-report's library: find runs, aggregate them over seeds, draw the comparisons.

    from pgfsparse.report import collect_runs, summarize, to_markdown, plots
    rows = collect_runs(["multirun/my-sweep"])        # one dict per run (see collect.RUN_COLUMNS)
    groups = summarize(rows, metric=None, strict=False)
    print(to_markdown(groups))
    print(best_markdown(groups))                      # the best setting per model, sparsity and metric
    print(compare_markdown(compare(groups, "recipe", "srste"), "recipe", "srste"))  # each recipe minus SR-STE
    fig = plots.accuracy_vs_flops(groups)             # a matplotlib Figure; out=DIR also saves PNG + SVG

Every view that ranks follows the metric's direction (`group["higher_is_better"]`; lower
perplexity is better): best_markdown, compare's readings, the Pareto front, the axis labels.
`plots` imports matplotlib inside its functions, so importing this package never does.
"""

from __future__ import annotations

from pgfsparse.report import plots
from pgfsparse.report.collect import (
    RUN_COLUMNS,
    ReportError,
    collect_runs,
    format_budget,
    parse_run_name,
)
from pgfsparse.report.compare import compare, compare_markdown
from pgfsparse.report.table import (
    best_groups,
    best_markdown,
    notes_markdown,
    summarize,
    to_markdown,
    write_runs_csv,
    write_table_csv,
)

__all__ = [
    "RUN_COLUMNS",
    "ReportError",
    "best_groups",
    "best_markdown",
    "collect_runs",
    "compare",
    "compare_markdown",
    "format_budget",
    "notes_markdown",
    "parse_run_name",
    "plots",
    "summarize",
    "to_markdown",
    "write_runs_csv",
    "write_table_csv",
]
