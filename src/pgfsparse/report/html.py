"""pgf-report --html: the report as one interactive page, report/index.html, that opens from file:// offline.

The page holds the same table and compare tables as table.md and compare.md (their
Markdown, cut into cells, so a number is formatted in one place) and the four figures
as plotly charts: the headline metric vs training FLOPs (a marker per run, a larger one
per setting with its seed spread, the Pareto front of the settings dashed and ringed),
vs N:M sparsity (dense at M/N = 1), the training curves and the gradient noise (a line
per run). Filters by model, sparsity, recipe and budget redraw everything; hovering a
marker or line names the run, its seed, its training FLOPs and the value.

Python decides every fact that ranks (a metric's direction, the best setting, the
compare readings) with the code of table.md and the PNGs; the page's script only
filters, draws and recomputes the Pareto front of what is shown, by the rule of
plots.pareto_front. The data travel as JSON inside the page and plotly.js is inlined
from the plotly Python package, so nothing is fetched.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from pgfsparse.report.collect import ReportError, read_events
from pgfsparse.report.compare import compare, compare_markdown
from pgfsparse.report.html_page import render
from pgfsparse.report.noise import NOISE_KEYS
from pgfsparse.report.plots import (
    FLOPS_AXIS,
    FLOPS_AXIS_WITH_ZERO,
    metric_label,
    metric_name,
    recipe_color,
    running_mean,
    sparsity_marker,
)
from pgfsparse.report.table import (
    LABELS,
    _fmt,
    best_groups,
    density,
    direction_words,
    format_flops,
    higher_is_better,
    metric_values,
    notes_markdown,
    one_shot_start,
    sort_rows,
    sort_value,
    split_metrics,
    to_markdown,
)

PAGE_NAME = "index.html"
RUN_ORDER = ("model", "sparsity", "recipe", "budget", "variant", "seed", "run_name")
# What the page filters by; a key no run has gets no filter, nor does oneshot when every run is from scratch.
FILTER_KEYS = ("model", "sparsity", "recipe", "budget", "oneshot")
# plots.py's matplotlib marker of each sparsity, as plotly spells it.
PLOTLY_SYMBOLS = {
    "*": "star",
    "o": "circle",
    "s": "square",
    "^": "triangle-up",
    "D": "diamond",
    "v": "triangle-down",
    "P": "cross",
    "X": "x",
    "<": "triangle-left",
    ">": "triangle-right",
    "h": "hexagon",
    "p": "pentagon",
    "8": "octagon",
    "d": "diamond-tall",
}


def write_page(
    rows: List[Dict[str, Any]],
    groups: List[Dict[str, Any]],
    out: Path,
    metric: Optional[str] = None,
    strict: bool = False,
    baseline: Optional[Tuple[str, str]] = None,
    title: str = "",
) -> Path:
    """Write <out>/index.html and return its path; plotly (the `report` extra) must be installed."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise ReportError("--html needs plotly: pip install 'pgfsparse[report]' (or pip install plotly)") from None
    data = page_data(rows, groups, metric=metric, strict=strict, baseline=baseline, title=title)
    path = Path(out) / PAGE_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(data, get_plotlyjs()), encoding="utf-8")
    except OSError as error:
        raise ReportError(f"cannot write {path} ({error.strerror}): pass --out DIR with a writable folder") from None
    return path


def page_data(
    rows: List[Dict[str, Any]],
    groups: List[Dict[str, Any]],
    metric: Optional[str] = None,
    strict: bool = False,
    baseline: Optional[Tuple[str, str]] = None,
    title: str = "",
) -> Dict[str, Any]:
    """Everything the page shows, as plain JSON-able values (non-finite numbers become null)."""
    finished = sort_rows([r for r in rows if r.get("status") == "finished"], RUN_ORDER)  # legends in table order
    filters = {  # a run without the key is "-", so it stays selectable
        key: _ordered([_text(r.get(key)) for r in finished], key)
        for key in FILTER_KEYS
        if any(r.get(key) not in (None, "") for r in finished)
        and (key != "oneshot" or any(map(one_shot_start, finished)))
    }
    data = {
        "title": title,
        "headline": LABELS["strict" if strict else "as_trained"],
        "axes": {"flops": FLOPS_AXIS, "flops_with_zero": FLOPS_AXIS_WITH_ZERO},
        "filters": filters,
        "directions": _directions(groups),
        "table": _table(groups, filters),
        "compare": _compare_tables(groups, filters, baseline),
        "settings": _settings(groups, filters),
        "runs": _run_markers(finished, groups, metric, strict, filters),
        "panels": _panels(groups, strict),
        "curves": _curves(finished, metric, strict, filters),
        "noise": _noise(finished, filters),
        "notes": notes_markdown(rows, metric),
        "counts": {
            "finished": len(finished),
            "other": sum(r.get("status") not in ("finished", "skipped") for r in rows),
        },
    }
    return _finite(data)


# -- tables: table.md and compare.md, cut into cells ---------------------------------------------
def markdown_cells(text: str) -> Tuple[str, List[str], List[List[str]]]:
    """(the text above the table, header cells, body rows of cells) of one Markdown table."""
    lines = text.strip().splitlines()
    table = [line for line in lines if line.startswith("|")]
    intro = "\n".join(line for line in lines if not line.startswith("|")).strip()
    cells = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table]
    if len(cells) < 2:
        return intro, [], []
    return intro, cells[0], cells[2:]


def _table(groups: List[Dict[str, Any]], filters: Dict[str, List[str]]) -> Dict[str, Any]:
    intro, header, body = markdown_cells(to_markdown(groups))
    best = {id(g) for g in best_groups(groups)}
    return {
        "empty": intro,
        "header": header,
        "rows": [
            {"cells": cells, "f": _filter_values(g, filters), "best": id(g) in best} for cells, g in zip(body, groups)
        ],
    }


def _compare_tables(
    groups: List[Dict[str, Any]], filters: Dict[str, List[str]], chosen: Optional[Tuple[str, str]]
) -> Dict[str, Any]:
    """compare.md for every baseline KEY=VALUE that has pairs (recipe ones first); the page offers them all and
    opens on --baseline, else the first."""
    keys = list(groups[0]["keys"]) if groups else []
    keys.sort(key=lambda k: k != "recipe")
    options = []
    for key in keys:
        for value in _ordered([_text(g.get(key)) for g in groups if g.get(key) not in (None, "")], key):
            pairs = compare(groups, key, value)
            if not pairs and (key, value) != chosen:
                continue
            intro, header, body = markdown_cells(compare_markdown(pairs, key, value))
            options.append(
                {
                    "baseline": f"{key}={value}",
                    "intro": intro,
                    "header": header,
                    "rows": [
                        {"cells": cells, "f": _filter_values(p["setting"], filters), "reading": p["reading"]}
                        for cells, p in zip(body, pairs)
                    ],
                }
            )
    names = [o["baseline"] for o in options]
    wanted = f"{chosen[0]}={chosen[1]}" if chosen else None
    return {"options": options, "selected": names.index(wanted) if wanted in names else 0}


# -- chart data ----------------------------------------------------------------------------------
def _panels(groups: List[Dict[str, Any]], strict: bool) -> List[Dict[str, Any]]:
    """One accuracy chart per model and metric (as plots.py's panels), with its axis label and direction."""
    panels: Dict[Tuple[Any, Any], Dict[str, Any]] = {}
    for g in groups:
        if g.get("mean") is None:
            continue
        higher = g.get("higher_is_better", True)
        panels.setdefault(
            (g.get("model"), g["metric"]),
            {
                "model": _text(g.get("model")),
                "metric": g["metric"],
                "name": metric_name(g["metric"]),
                "label": metric_label(g["metric"], strict, higher),
                "higher": higher,
            },
        )
    return list(panels.values())


def _settings(groups: List[Dict[str, Any]], filters: Dict[str, List[str]]) -> List[Dict[str, Any]]:
    """The table's settings as chart points: mean ± std at mean FLOPs, with hover text."""
    best = {id(g) for g in best_groups(groups)}
    out = []
    for g in groups:
        if g.get("mean") is None:
            continue
        label = _setting_label(g)
        std = f" ± {_fmt(g['std'], g['metric'])}" if g.get("std") is not None else ""
        out.append(
            {
                "model": _text(g.get("model")),
                "metric": g["metric"],
                "label": label,
                "line": _line_label(g),
                "style": " ".join(_text(g.get(k)) for k in ("budget", "variant") if g.get(k)),
                "sparsity": _text(g.get("sparsity")),
                "flops": g.get("train_flops"),
                "ratio": _ratio(g.get("sparsity")),
                "mean": g["mean"],
                "std": g.get("std"),
                "best": id(g) in best,
                "color": recipe_color(g.get("recipe")),
                "symbol": _symbol(g.get("sparsity")),
                "f": _filter_values(g, filters),
                "hover": "<br>".join(
                    [
                        f"<b>{html.escape(label)}</b> (mean of {g['n']} seed{'s' if g['n'] != 1 else ''})",
                        f"seeds {', '.join(str(s) for s in g.get('seeds') or []) or '-'}",
                        f"train FLOPs {format_flops(g.get('train_flops'))}",
                        f"{html.escape(metric_name(g['metric']))}: {_fmt(g['mean'], g['metric'])}{std}",
                    ]
                ),
            }
        )
    return out


def _run_markers(
    finished: List[Dict[str, Any]],
    groups: List[Dict[str, Any]],
    metric: Optional[str],
    strict: bool,
    filters: Dict[str, List[str]],
) -> List[Dict[str, Any]]:
    """A marker per finished run and table metric: the value the table averaged (summarize's rule)."""
    out = []
    for g in groups:
        keys = g["keys"]
        wanted = None if metric is None else g["metric"]  # summarize reads the headline when no --metric
        for row in finished:
            if any(row.get(k) != g.get(k) for k in keys):
                continue
            name, value, strict_value = metric_values(row, wanted)
            value = strict_value if strict else value
            if name != g["metric"] or value is None:
                continue
            out.append(
                {
                    "model": _text(g.get("model")),
                    "metric": g["metric"],
                    "run": row["run_name"],
                    "line": _line_label(g),
                    "setting": _setting_label(g),
                    "seed": row.get("seed"),
                    "sparsity": _text(row.get("sparsity")),
                    "flops": row.get("train_flops"),
                    "ratio": _ratio(row.get("sparsity")),
                    "value": float(value),
                    "color": recipe_color(row.get("recipe")),
                    "symbol": _symbol(row.get("sparsity")),
                    "f": _filter_values(row, filters),
                    "hover": _run_hover(row)
                    + f"<br>train FLOPs {format_flops(row.get('train_flops'))}"
                    + f"<br>{html.escape(metric_name(g['metric']))}: {_fmt(float(value), g['metric'])}",
                }
            )
    return out


def _curves(
    finished: List[Dict[str, Any]], metric: Optional[str], strict: bool, filters: Dict[str, List[str]]
) -> List[Dict[str, Any]]:
    """Per run: the eval metric and the train loss against training FLOPs (the events plots.training_curves reads)."""
    out = []
    for row in finished:
        name = split_metrics(metric)[0] or row.get("eval_metric")
        key = f"{'eval_strict' if strict else 'eval'}/{name}"
        loss = [
            [e["train_flops"], e["train/loss"]]
            for e in read_events(row.get("path"), "train")
            if e.get("train/loss") is not None and e.get("train_flops") is not None
        ]
        evals = [
            [e["train_flops"], e[key]]
            for e in read_events(row.get("path"), "eval")
            if e.get(key) is not None and e.get("train_flops") is not None
        ]
        if not loss and len(evals) < 2:
            continue
        higher = higher_is_better(row, name)
        out.append(
            {
                "model": _text(row.get("model")),
                "run": row["run_name"],
                "setting": _setting_label(row),
                "metric": name,
                "name": metric_name(name),
                "label": metric_label(name, strict, higher),
                "color": recipe_color(row.get("recipe")),
                "sparsity": _text(row.get("sparsity")),
                "f": _filter_values(row, filters),
                "hover": _run_hover(row),
                "eval": evals if len(evals) > 1 else [],
                "loss": loss,
            }
        )
    return out


def _noise(finished: List[Dict[str, Any]], filters: Dict[str, List[str]], window: int = 5) -> Dict[str, Any]:
    """Per run and noise key: (step, FLOPs, value) smoothed as in plots.gradient_noise, positive values only."""
    runs = []
    for row in finished:
        events = read_events(row.get("path"), "diagnostics")
        curves = {}
        for key, _, _ in NOISE_KEYS:
            points = [(e["step"], e.get("train_flops"), float(e[key])) for e in events if e.get(key) is not None]
            smooth = running_mean([v for _, _, v in points], window)
            kept = [[s, f, v] for (s, f, _), v in zip(points, smooth) if v > 0]
            if kept:
                curves[key] = kept
        if curves:
            runs.append(
                {
                    "run": row["run_name"],
                    "setting": _setting_label(row),
                    "color": recipe_color(row.get("recipe")),
                    "sparsity": _text(row.get("sparsity")),
                    "f": _filter_values(row, filters),
                    "hover": _run_hover(row),
                    "curves": curves,
                }
            )
    return {
        "panels": [{"key": key, "title": title} for key, title, _ in NOISE_KEYS],
        "window": window,
        "runs": runs,
    }


# -- small helpers -------------------------------------------------------------------------------
def _directions(groups: Iterable[Dict[str, Any]]) -> List[str]:
    """'top1: higher is better', one per metric in table order."""
    seen: Dict[str, bool] = {}
    for g in groups:
        seen.setdefault(g["metric"], g.get("higher_is_better", True))
    return [f"{metric_name(m)}: {direction_words(h)}" for m, h in seen.items()]


def _run_hover(row: Dict[str, Any]) -> str:
    sweep = f" ({html.escape(str(row['sweep']))})" if row.get("sweep") else ""
    return f"<b>{html.escape(str(row['run_name']))}</b>{sweep}<br>seed {row.get('seed')}"


def _setting_label(item: Dict[str, Any]) -> str:
    """'srste 1:16 epochs=24' (+ the variant): what the legend and hover call a setting."""
    return " ".join(_text(item.get(k)) for k in ("recipe", "sparsity", "budget", "variant") if item.get(k))


def _line_label(item: Dict[str, Any]) -> str:
    """The sparsity chart's lines: a recipe at one budget (and variant) across patterns."""
    return " ".join(_text(item.get(k)) for k in ("recipe", "budget", "variant") if item.get(k))


def _ratio(sparsity: Optional[str]) -> Optional[float]:
    """M/N on the sparsity chart: dense 1, '1:16' 16; None for mixed patterns (left to the table)."""
    if sparsity is None or "," in str(sparsity) or "=" in str(sparsity):
        return None
    d = density(sparsity)
    return 1 / d if d else None


def _symbol(sparsity: Optional[str]) -> str:
    return PLOTLY_SYMBOLS.get(sparsity_marker(sparsity), "circle")


def _filter_values(item: Dict[str, Any], filters: Dict[str, List[str]]) -> Dict[str, str]:
    """The item's value of each filter; a setting only of the keys it is grouped by (the page lets the others pass)."""
    keys = item.get("keys") or filters
    return {key: _text(item.get(key)) for key in filters if key in keys}


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _ordered(values: Sequence[str], key: str) -> List[str]:
    return sorted(set(values), key=lambda v: sort_value(key, v))


def _finite(value: Any) -> Any:
    """The data with NaN and infinities as None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
