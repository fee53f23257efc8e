"""Aggregate finished runs over seeds into one row per setting; write it as Markdown and CSV.

A group is model x sparsity x recipe x budget by default (plus `oneshot` when
any run started from a one-shot prune, so SR-STE from Wanda's masks never
averages with SR-STE from scratch, and `variant`, the other keys a sweep varies,
when there are any, so depth=3 never averages with depth=6). Each group gives
mean, sample std and n of the headline metric, as trained and strict N:M, and
mean training FLOPs, inference FLOPs and wall time.
Rows sort by model, sparsity from dense to sparsest, then a fixed recipe order,
so tables from different sweeps line up.

Each group also knows its metric's direction (`higher_is_better`: False for perplexity
and losses), which every view that ranks (best-of, Pareto front, compare readings,
axis labels) follows.
"""

from __future__ import annotations

import csv
import re
import statistics
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from pgfsparse.report.collect import RUN_COLUMNS, ReportError
from pgfsparse.rundir.records import metric_higher_is_better
from pgfsparse.sparsity.recipes import RECIPES

DEFAULT_GROUP_BY = ("model", "sparsity", "recipe", "budget")
GROUP_KEYS = tuple(RUN_COLUMNS) + ("variant",)
RECIPE_ORDER = tuple(RECIPES)  # dense, ste, srste, mdgf_*, sdgf_*: the recipe table's order (docs/recipes.md)
# From scratch first, then pgfsparse.oneshot.METHODS (not imported: it loads torch).
ONESHOT_ORDER = ("none", "magnitude", "wanda", "sparsegpt")
LABELS = {"as_trained": "as trained", "strict": "strict N:M"}


# -- ordering ------------------------------------------------------------------------------------
def density(sparsity: Optional[str]) -> Optional[float]:
    """N/M of the FF pattern: 'dense' -> 1.0, '1:16' -> 0.0625, 'ff=1:8,qk=1:4' -> 0.125; None if unreadable."""
    if sparsity == "dense":
        return 1.0
    found = {}
    for part in str(sparsity or "").split(","):
        location, _, pattern = part.rpartition("=")
        match = re.fullmatch(r"(\d+):(\d+)", pattern.strip())
        if match and int(match[2]):
            found[location or "ff"] = int(match[1]) / int(match[2])
    return found.get("ff", min(found.values()) if found else None)


def sort_value(key: str, value: Any) -> Tuple:
    """A sort key for one column: sparsity dense-first by falling density, recipes in RECIPE_ORDER, numbers by value."""
    if value is None or value == "":
        return (1, 0.0, "")
    if key == "sparsity":
        d = density(value)
        return (0, -d if d is not None else 1.0, ("," in str(value), str(value)))
    if key == "recipe" and value == "none":  # a one-shot prune evaluated untrained: where the recipes start
        return (0, -1.0, "none")
    if key == "recipe":
        rank = RECIPE_ORDER.index(value) if value in RECIPE_ORDER else len(RECIPE_ORDER)
        return (0, float(rank), str(value))
    if key == "oneshot":
        rank = ONESHOT_ORDER.index(value) if value in ONESHOT_ORDER else len(ONESHOT_ORDER)
        return (0, float(rank), str(value))
    if key == "budget":
        kind, _, amount = str(value).partition("=")
        return (0, _number(amount), kind)
    if isinstance(value, (int, float)):
        return (0, float(value), "")
    return (0, 0.0, str(value))


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def one_shot_start(item: Dict[str, Any]) -> bool:
    """Did this run (or group) start from a one-shot prune? Rows before one-shot starts say none."""
    return item.get("oneshot") not in (None, "", "none")


def start_words(oneshot: Optional[str]) -> str:
    """How labels name a start: 'from wanda' after a one-shot prune, else 'from scratch'."""
    return f"from {oneshot}" if oneshot not in (None, "", "none") else "from scratch"


def sort_rows(items: List[Dict[str, Any]], keys: Sequence[str]) -> List[Dict[str, Any]]:
    return sorted(items, key=lambda item: [sort_value(k, item.get(k)) for k in keys])


# -- aggregation ---------------------------------------------------------------------------------
def metric_values(row: Dict[str, Any], metric: Optional[str]) -> Tuple[Optional[str], Any, Any]:
    """(metric name, as-trained value, strict value) of a finished row; `metric` None = the run's headline."""
    if metric is None:
        return row.get("eval_metric"), row.get("eval_value"), row.get("eval_value_strict")
    evals = row.get("eval") or {}
    return metric, evals.get(f"eval/{metric}"), evals.get(f"eval_strict/{metric}")


def higher_is_better(row: Dict[str, Any], metric: Optional[str]) -> bool:
    """The direction of `metric` in a run's row: its recorded headline direction when `metric` is
    the headline (None or its name), else by the metric's name (loss, perplexity: lower is better)."""
    headline = metric is None or metric == row.get("eval_metric")
    if headline and row.get("eval_higher_is_better") is not None:
        return bool(row["eval_higher_is_better"])
    return metric_higher_is_better(metric or row.get("eval_metric"))


def direction_words(higher: bool) -> str:
    return "higher is better" if higher else "lower is better"


def summarize(
    rows: Iterable[Dict[str, Any]],
    metric: Optional[str] = None,
    strict: bool = False,
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
) -> List[Dict[str, Any]]:
    """One dict per group of finished runs and metric, sorted; `mean`, `std`, `n` are the headline's.

    `metric` None = each run's headline; 'token_acc,bleu' = a row per setting for each, in that order.
    """
    metrics = split_metrics(metric)
    unknown = [k for k in group_by if k not in GROUP_KEYS]
    if unknown:
        raise ReportError(f"cannot group by {', '.join(unknown)}: choose from {', '.join(GROUP_KEYS)}")
    finished = [r for r in rows if r.get("status") == "finished"]
    for name in metrics:
        if name and finished and not any(metric_values(r, name)[1] is not None for r in finished):
            raise ReportError(
                f"no finished run has eval/{name}: choose one of {', '.join(available_metrics(finished))}"
            )
    keys = list(group_by) + extra_keys(finished, group_by)
    buckets: Dict[Tuple, List[Dict[str, Any]]] = {}
    for row in finished:
        for wanted in metrics:
            name, value, strict_value = metric_values(row, wanted)
            if name is None or (value is None and strict_value is None):
                continue
            bucket_key = tuple(row.get(k) for k in keys) + (name,)
            buckets.setdefault(bucket_key, []).append(
                {**row, "_value": value, "_strict": strict_value, "_higher": higher_is_better(row, wanted)}
            )
    groups = []
    for bucket_key, members in buckets.items():
        group: Dict[str, Any] = dict(zip(keys, bucket_key))
        group.update(metric=bucket_key[-1], headline="strict" if strict else "as_trained", keys=keys)
        directions = {m["_higher"] for m in members}  # runs that disagree: the metric's name decides
        group["higher_is_better"] = (
            directions.pop() if len(directions) == 1 else metric_higher_is_better(group["metric"])
        )
        group.update(_stats("as_trained", [m["_value"] for m in members]))
        group.update(_stats("strict", [m["_strict"] for m in members]))
        head = group["headline"]
        group.update(mean=group[f"{head}_mean"], std=group[f"{head}_std"], n=group[f"{head}_n"])
        for field in ("train_flops", "inference_flops", "wall_seconds"):
            group[field] = _mean([m.get(field) for m in members])
        group["runs"] = [m["run_name"] for m in members]
        group["seeds"] = sorted(m["seed"] for m in members if m.get("seed") is not None)
        groups.append(group)
    return sort_rows(groups, keys)  # stable: a setting's metrics stay in the order asked for


def extra_keys(finished: List[Dict[str, Any]], group_by: Sequence[str]) -> List[str]:
    """Keys grouped by although not asked for, so unlike runs never average: the one-shot start
    and the other swept keys, each only when some run has one (tables without them stay as they were)."""
    keys = []
    if "oneshot" not in group_by and any(one_shot_start(r) for r in finished):
        keys.append("oneshot")
    if "variant" not in group_by and any(r.get("variant") for r in finished):
        keys.append("variant")
    return keys


def _stats(prefix: str, values: List[Any]) -> Dict[str, Any]:
    values = [float(v) for v in values if v is not None]
    return {
        f"{prefix}_mean": statistics.mean(values) if values else None,
        f"{prefix}_std": statistics.stdev(values) if len(values) > 1 else None,
        f"{prefix}_n": len(values),
    }


def _mean(values: List[Any]) -> Optional[float]:
    values = [float(v) for v in values if v is not None]
    return statistics.mean(values) if values else None


def normalize_metric(metric: Optional[str]) -> Optional[str]:
    """'bleu', 'eval/bleu' and 'eval_strict/bleu' all name the metric 'bleu'."""
    return metric.split("/", 1)[-1] if metric else None


def split_metrics(metric: Optional[str]) -> List[Optional[str]]:
    """--metric 'token_acc, eval/bleu' -> ['token_acc', 'bleu']; None -> [None] (each run's headline)."""
    names = [normalize_metric(m.strip()) for m in (metric or "").split(",") if m.strip()]
    return list(dict.fromkeys(names)) or [None]


def available_metrics(rows: Iterable[Dict[str, Any]]) -> List[str]:
    return sorted({k.split("/", 1)[1] for r in rows for k in (r.get("eval") or {}) if k.startswith("eval/")})


# -- rendering -----------------------------------------------------------------------------------
def format_flops(value: Optional[float]) -> str:
    """3 significant digits, compact exponent: 1.0312e14 -> '1.03e14'."""
    if value is None:
        return "-"
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m[1] == "-" else "") + m[2], f"{value:.2e}")


def format_minutes(seconds: Optional[float]) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def decimals(metric: Optional[str]) -> int:
    """How many decimals a metric's values print with: 2; 3 for a loss (nats: 1.891 vs 1.898 is the difference
    between two seeds)."""
    return 3 if metric and metric.endswith("loss") else 2


def _fmt(value: Optional[float], metric: Optional[str] = None) -> str:
    return "-" if value is None else f"{value:.{decimals(metric)}f}"


def _order(group: Dict[str, Any]) -> Tuple[str, str]:
    """The headline first: ('strict', 'as_trained') under --strict."""
    return ("strict", "as_trained") if group["headline"] == "strict" else ("as_trained", "strict")


def to_markdown(groups: List[Dict[str, Any]]) -> str:
    """The groups as a Markdown table (headline metric first), or a line saying there are none."""
    if not groups:
        return "_No finished runs._\n"
    keys, order = groups[0]["keys"], _order(groups[0])
    header = [*keys, "metric"]
    for part in order:
        header += [LABELS[part], "± std", "n"]
    header += ["train FLOPs", "inference FLOPs", "wall"]
    rows = []
    for g in groups:
        cells = key_cells(g, keys) + [g["metric"]]
        for part in order:
            cells += [_fmt(g[f"{part}_mean"], g["metric"]), _fmt(g[f"{part}_std"], g["metric"]), str(g[f"{part}_n"])]
        cells += [format_flops(g["train_flops"]), format_flops(g["inference_flops"]), format_minutes(g["wall_seconds"])]
        rows.append(cells)
    return markdown_table(header, rows)


def key_cells(group: Dict[str, Any], keys: Sequence[str]) -> List[str]:
    """A group's values of its grouping keys as table cells ('-' where a run has none)."""
    return [str(group.get(k) if group.get(k) not in (None, "") else "-") for k in keys]


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], intro: str = "") -> str:
    """A Markdown table (after `intro` and a blank line, when given), ending in a newline."""
    lines = [intro, ""] if intro else []
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def best_groups(groups: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The best-mean setting of each model, sparsity and metric that has more than one setting, in
    table order; best by the metric's direction (the lowest perplexity), the first in table order on a tie."""
    contests: Dict[Tuple, List[Dict[str, Any]]] = {}
    for group in groups:
        if group.get("mean") is not None:
            contests.setdefault((group.get("model"), group.get("sparsity"), group["metric"]), []).append(group)
    best = []
    for rivals in contests.values():
        if len(rivals) > 1:
            sign = 1.0 if rivals[0].get("higher_is_better", True) else -1.0
            best.append(max(rivals, key=lambda g: sign * g["mean"]))  # max keeps the first of equals
    return best


def best_markdown(groups: List[Dict[str, Any]]) -> str:
    """Below the table: the best setting of each model, sparsity and metric; '' when none has rivals."""
    best = best_groups(groups)
    if not best:
        return ""
    lines = [
        f"Best mean ({LABELS[best[0]['headline']]}) of each model, sparsity and metric with more than one "
        f"setting (whether a gap exceeds the spread over seeds: --baseline, compare.md):"
    ]
    for g in best:
        where = " ".join(str(g.get(k)) for k in ("model", "sparsity", "metric") if g.get(k) not in (None, ""))
        setting = " ".join(
            start_words(g[k]) if k == "oneshot" else str(g[k])
            for k in g["keys"]
            if k not in ("model", "sparsity") and g.get(k) not in (None, "")
        )
        spread = f" ± {_fmt(g['std'], g['metric'])}" if g.get("std") is not None else ""
        seeds = f"{g['n']} seed{'s' if g['n'] != 1 else ''}"
        lines.append(
            f"- {where} ({direction_words(g.get('higher_is_better', True))}): "
            f"{setting or '-'}, {_fmt(g['mean'], g['metric'])}{spread} ({seeds})"
        )
    return "\n".join(lines) + "\n"


def notes_markdown(rows: Iterable[Dict[str, Any]], metric: Optional[str] = None) -> str:
    """Below the table: every failed, unfinished and running run with its reason, and skipped corners counted."""
    rows = list(rows)
    out = []
    for state, title in (("failed", "Failed"), ("unfinished", "Unfinished"), ("running", "Running")):
        named = sort_rows([r for r in rows if r.get("status") == state], ["run_name"])
        if named:
            out.append(
                f"{title}:\n"
                + "".join(f"- {r['run_name']}: {r.get('error') or 'no error recorded'}{_where(r)}\n" for r in named)
            )
    for name in split_metrics(metric):
        if name is None:
            continue
        lacking = [
            r["run_name"]
            for r in rows
            if r.get("status") == "finished" and metric_values(r, name)[1] is None and metric_values(r, name)[2] is None
        ]
        if lacking:
            out.append(f"Without eval/{name} (left out of the table): {', '.join(sorted(lacking))}\n")
    skipped = sum(r.get("status") == "skipped" for r in rows)
    if skipped:
        out.append(
            f"Skipped grid corners: {skipped} (impossible settings, e.g. a sparse recipe with "
            f"sparsity=dense; not failures)\n"
        )
    return "\n".join(out)


def _where(row: Dict[str, Any]) -> str:
    return f" ({row['run_dir']})" if row.get("run_dir") else ""


# -- CSV -----------------------------------------------------------------------------------------
def write_runs_csv(rows: Iterable[Dict[str, Any]], path: Path) -> None:
    """runs.csv: one line per run (skipped grid corners left out), columns as RUN_COLUMNS."""
    kept = sort_rows(
        [r for r in rows if r.get("status") != "skipped"], ["model", "sparsity", "recipe", "seed", "run_name"]
    )
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RUN_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(kept)


def write_table_csv(groups: List[Dict[str, Any]], path: Path) -> None:
    """table.csv: the table's numbers unrounded, headline first, blanks for a missing std."""
    keys = groups[0]["keys"] if groups else list(DEFAULT_GROUP_BY)
    order = _order(groups[0]) if groups else ("as_trained", "strict")
    fields = [*keys, "metric", "higher_is_better", "headline"]
    fields += [f"{part}_{stat}" for part in order for stat in ("mean", "std", "n")]
    fields += ["train_flops", "inference_flops", "wall_seconds", "runs"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for g in groups:
            writer.writerow({**g, "runs": " ".join(g["runs"])})
