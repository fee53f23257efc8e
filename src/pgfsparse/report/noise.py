"""The gradient-noise table: where each setting's FF noise curves end (the paper's Figure 3 in numbers).

For every finished run with diagnostics, the level a curve settles at is the
mean of its last `window` logged values (the same window the plot smooths
with); a setting's row gives the mean, sample std and n of that level over
seeds, for the variance of AdamW's second moment and the variance of |grad|
over the FF weights. Dense runs log no diagnostics and have no row. A setting
is NOISE_GROUP_BY, plus the one-shot start when any run had one (as the table).
"""

from __future__ import annotations

import statistics
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from pgfsparse.report.collect import read_events
from pgfsparse.report.table import format_flops, key_cells, markdown_table, one_shot_start, sort_rows

# (diagnostics key, plot panel title, table column: no "|", it would split a Markdown cell)
NOISE_KEYS = (
    ("sparsity/ff/exp_avg_sq_var", "(a) variance of AdamW's second moment, FF weights", "Var(AdamW v)"),
    ("sparsity/ff/grad_abs_var", "(b) variance of |gradient|, FF weights", "Var(abs(grad))"),
)
NOISE_COLUMNS = {key: column for key, _, column in NOISE_KEYS}
NOISE_GROUP_BY = ("model", "sparsity", "recipe", "budget")


def noise_group_by(rows: Iterable[Dict[str, Any]]) -> Tuple[str, ...]:
    """NOISE_GROUP_BY, and `oneshot` when a finished run started from a one-shot prune."""
    starts = any(one_shot_start(r) for r in rows if r.get("status") == "finished")
    return NOISE_GROUP_BY + (("oneshot",) if starts else ())


def final_level(values: Sequence[float], window: int = 5) -> Optional[float]:
    """Mean of the last `window` values (fewer when fewer were logged); None for an empty curve."""
    tail = list(values)[-window:]
    return statistics.mean(tail) if tail else None


def noise_levels(rows: Iterable[Dict[str, Any]], window: int = 5) -> List[Dict[str, Any]]:
    """One dict per setting with diagnostics: per noise key its final level's mean, std and n over seeds;
    `keys` names the setting's columns (noise_group_by)."""
    rows = list(rows)
    keys = noise_group_by(rows)
    buckets: Dict[tuple, Dict[str, List[float]]] = {}
    for row in rows:
        if row.get("status") != "finished":
            continue
        events = read_events(row.get("path"), "diagnostics")
        for key in NOISE_COLUMNS:
            level = final_level([float(e[key]) for e in events if e.get(key) is not None], window)
            if level is not None:
                setting = tuple(row.get(k) for k in keys)
                buckets.setdefault(setting, {}).setdefault(key, []).append(level)
    groups = []
    for setting, levels in buckets.items():
        group: Dict[str, Any] = dict(zip(keys, setting), keys=keys)
        for key, values in levels.items():
            group[key] = {
                "mean": statistics.mean(values),
                "n": len(values),
                "std": statistics.stdev(values) if len(values) > 1 else None,
            }
        groups.append(group)
    return sort_rows(groups, keys)


def noise_markdown(groups: List[Dict[str, Any]], window: int = 5) -> str:
    """The levels as a Markdown table, with a line saying how they were taken; '' when no run logged any."""
    if not groups:
        return ""
    keys = groups[0]["keys"]
    header = [*keys]
    for column in NOISE_COLUMNS.values():
        header += [column, "± std", "n"]
    intro = (
        f"Gradient noise at the end of training (mean of the last {window} logged values per run; "
        "mean ± std over seeds):"
    )
    rows = []
    for group in groups:
        cells = key_cells(group, keys)
        for key in NOISE_COLUMNS:
            stats = group.get(key) or {"mean": None, "std": None, "n": 0}
            cells += [format_flops(stats["mean"]), format_flops(stats["std"]), str(stats["n"])]
        rows.append(cells)
    return markdown_table(header, rows, intro)
