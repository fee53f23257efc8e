"""Each setting against a baseline: how far apart they are, and whether that is more than seed noise.

    pgf-report results/cifar10 --baseline recipe=srste   -> compare.md

A setting is compared with every baseline setting that differs from it only in
the baseline key and, possibly, the budget: MDGF-Exp at 1:32 for 24 epochs
meets SR-STE at 1:32 for 24 epochs (equal epochs) and SR-STE at 1:32 given
MDGF-Exp's training FLOPs (equal compute), and the FLOPs ratio column says
which is which. A one-shot start is part of a setting when the table groups by
it (`oneshot`): SR-STE from Wanda's masks meets MDGF-Exp from Wanda's masks,
never from scratch; `--baseline oneshot=none` sets each start against training
from scratch.

The reading follows one rule: a difference no larger than the spread over
seeds (the larger of the two settings' sample standard deviations) is no
difference; a larger one is better or worse by the metric's own direction (a
lower perplexity or loss is better, a higher accuracy or BLEU). With a single
seed on either side the spread is unknown, and so is the reading.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from pgfsparse.report.collect import ReportError
from pgfsparse.report.table import LABELS, decimals, direction_words, key_cells, markdown_table

FREE_KEYS = ("budget",)  # a baseline may differ in these too: equal epochs and equal FLOPs both show


def parse_baseline(text: str, keys: List[str]) -> Tuple[str, str]:
    """'recipe=srste' -> ('recipe', 'srste'); the key must be one the table groups by."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value:
        raise ReportError(f"--baseline {text!r} is not KEY=VALUE: write e.g. --baseline recipe=srste")
    if key not in keys:
        raise ReportError(f"--baseline {key}=...: {key} is not a table column; choose from {', '.join(keys)}")
    return key, value


def compare(groups: List[Dict[str, Any]], key: str, value: str) -> List[Dict[str, Any]]:
    """One dict per (setting, matching baseline setting) pair, in the table's order."""
    baselines = [g for g in groups if str(g.get(key)) == value]
    pairs = []
    for group in groups:
        if str(group.get(key)) == value:
            continue
        same = [k for k in group["keys"] if k != key and k not in FREE_KEYS]
        for base in baselines:
            if base["metric"] == group["metric"] and all(base.get(k) == group.get(k) for k in same):
                pairs.append(_pair(group, base))
    return pairs


def _pair(group: Dict[str, Any], base: Dict[str, Any]) -> Dict[str, Any]:
    difference = group["mean"] - base["mean"] if None not in (group["mean"], base["mean"]) else None
    stds = [s for s in (group["std"], base["std"]) if s is not None]
    spread = max(stds) if len(stds) == 2 else None
    ratio = group["train_flops"] / base["train_flops"] if group.get("train_flops") and base.get("train_flops") else None
    return {
        "setting": group,
        "baseline": base,
        "difference": difference,
        "spread": spread,
        "flops_ratio": ratio,
        "reading": reading(difference, spread, group["n"], base["n"], group.get("higher_is_better", True)),
    }


def reading(
    difference: Optional[float], spread: Optional[float], n: int, n_base: int, higher_is_better: bool = True
) -> str:
    """'better' / 'worse' (by the metric's direction) only when the difference is larger than the spread over seeds."""
    if difference is None:
        return "-"
    if min(n, n_base) < 2 or spread is None:
        return "unknown (1 seed)"
    if abs(difference) <= spread:
        return "no difference"
    return "better" if (difference > 0) == higher_is_better else "worse"


def compare_markdown(pairs: List[Dict[str, Any]], key: str, value: str) -> str:
    """The pairs as a Markdown table with a line saying what is compared and how it is read."""
    if not pairs:
        return f"_No setting has a {key}={value} baseline to compare with._\n"
    keys, headline = pairs[0]["setting"]["keys"], LABELS[pairs[0]["setting"]["headline"]]
    same = [k for k in keys if k != key and k not in FREE_KEYS]
    header = [
        *keys,
        "metric",
        f"vs {value}: budget",
        f"difference ({headline})",
        "spread",
        "n",
        "train FLOPs ratio",
        "reading",
    ]
    intro = (
        f"Each setting minus each {key}={value} setting of the same {', '.join(same)} (any budget: the "
        f"FLOPs ratio tells equal epochs from equal compute); spread = the larger sample std over seeds, "
        f"and a difference within it is no difference; better / worse follow each metric's direction "
        f"({_directions(pairs)}):"
    )
    rows = []
    for pair in pairs:
        group, base = pair["setting"], pair["baseline"]
        places = _places(pair, group["metric"])
        rows.append(
            key_cells(group, keys)
            + [
                group["metric"],
                str(base.get("budget") or "-"),
                "-" if pair["difference"] is None else f"{pair['difference']:+.{places}f}",
                "-" if pair["spread"] is None else f"{pair['spread']:.{places}f}",
                f"{group['n']} vs {base['n']}",
                _ratio(pair["flops_ratio"]),
                pair["reading"],
            ]
        )
    return markdown_table(header, rows, intro)


def _directions(pairs: List[Dict[str, Any]]) -> str:
    """'top1: higher is better; perplexity: lower is better' for the metrics compared, in table order."""
    seen = {p["setting"]["metric"]: p["setting"].get("higher_is_better", True) for p in pairs}
    return "; ".join(f"{metric}: {direction_words(higher)}" for metric, higher in seen.items())


def _places(pair: Dict[str, Any], metric: str, most: int = 3) -> int:
    """The metric's decimals, or up to `most` more where a `better` / `worse` difference would not print
    larger than its spread (+0.000 against 0.000: two seeds that agree to the fourth decimal make a
    0.0004 gap a reading, and the table should show why)."""
    places, difference, spread = decimals(metric), pair["difference"], pair["spread"]
    if pair["reading"] in ("better", "worse"):
        while round(abs(difference), places) <= round(spread, places) and places < decimals(metric) + most:
            places += 1
    return places


def _ratio(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}x"
