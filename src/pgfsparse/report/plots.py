"""Figures that compare recipes: accuracy vs training FLOPs (with its Pareto front), accuracy vs
sparsity, training curves, and the gradient-noise curves of Bambhaniya et al. (2024, Figure 3).
"Accuracy" is any headline metric: where lower is better (perplexity, loss) the front takes the
lowest values and the axis label says "(lower is better)".

matplotlib loads on first use, drawing on the Agg canvas without pyplot, so
`import pgfsparse.report` stays light, no display is needed and no global
backend changes under a notebook. Every function returns a Figure (a notebook
shows it inline) and, given `out`, also writes <out>/<name>.png (dpi 150) and
<name>.svg. A figure with nothing to draw raises NothingToPlot, one line saying why.
Each recipe has one colour in every figure (RECIPE_COLORS), each sparsity one marker.
Runs that started from a one-shot prune are told apart from those trained from scratch
only when there are any: hollow or half-filled markers (ONESHOT_FILLS) and their own line
styles, labelled "from wanda"; recipe "none" is a one-shot prune evaluated untrained. Where
such untrained rows stretch an axis far past the trained settings, a second row of panels
zooms on the trained ones.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, cast

from pgfsparse.report.collect import read_events
from pgfsparse.report.noise import NOISE_KEYS, noise_group_by
from pgfsparse.report.table import (
    density,
    direction_words,
    higher_is_better,
    one_shot_start,
    sort_value,
    split_metrics,
    start_words,
)

RECIPE_COLORS = {
    "dense": "#555555",
    "ste": "#8c564b",
    "srste": "#d62728",
    "mdgf_linear": "#17becf",
    "mdgf_exp": "#1f77b4",
    "mdgf_step": "#9467bd",
    "sdgf_step": "#2ca02c",
    "sdgf_geo": "#ff7f0e",
    "sdgf_custom": "#e377c2",
    "none": "#999999",  # a one-shot prune evaluated untrained (budget.steps=0)
}
RECIPE_LABELS = {"none": "none (untrained)"}
# Marker fill of a one-shot start's method (matplotlib fillstyle); from scratch stays filled.
ONESHOT_FILLS = {"magnitude": "left", "wanda": "none", "sparsegpt": "bottom"}
_MORE_FILLS = ("right", "top")
_MORE_COLORS = ("#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
SPARSITY_MARKERS = {
    "dense": "*",
    "2:4": "o",
    "1:4": "s",
    "1:8": "^",
    "1:16": "D",
    "1:32": "v",
    "1:64": "P",
    "1:128": "X",
}
_MORE_MARKERS = ("<", ">", "h", "p", "8", "d")
_LINESTYLES = ("-", "--", ":", "-.")
# Axis titles the report page (html.py) shows too, so each is written once.
FLOPS_AXIS = "training FLOPs (log scale)"
FLOPS_AXIS_WITH_ZERO = "training FLOPs (log scale; 0 at the left: untrained, no calibration)"
_BUDGET_MARKERS = ("o", "s", "^", "D", "v", "P")
_LINE_DODGE = 0.05  # accuracy_vs_sparsity: log2 units between neighbouring lines (a pattern tick is 1 apart)
PERCENT_METRICS = {
    "top1": "top-1",
    "top5": "top-5",
    "token_acc": "token accuracy",
    "accuracy": "accuracy",
    "acc": "accuracy",
    "f1": "F1",
}


class NothingToPlot(ValueError):
    """This figure cannot be drawn from these runs (the message says why, in one line)."""


# -- pure helpers --------------------------------------------------------------------------------
def pareto_front(points: Iterable[Tuple[float, float]], higher_is_better: bool = True) -> List[Tuple[float, float]]:
    """The points no cheaper-or-equal point beats: the best value reachable for given FLOPs or less.

    Sorted by FLOPs; each kept point is strictly better than every point left of
    it: higher, or lower when lower is better (perplexity). Points with a
    missing value are ignored.
    """
    sign = 1.0 if higher_is_better else -1.0  # compare sign * y: "better" is always "larger"
    best, front = -math.inf, []
    valid = [(x, y) for x, y in points if x is not None and y is not None and not math.isnan(y)]
    for x, y in sorted(valid, key=lambda p: (p[0], -sign * p[1])):
        if sign * y > best:
            front.append((x, y))
            best = sign * y
    return front


def running_mean(values: Sequence[float], window: int = 5) -> List[float]:
    """Centred moving average; the window shrinks at the ends, so the output is as long as the input."""
    half = max(window, 1) // 2
    return [
        sum(values[max(0, i - half) : i + half + 1]) / len(values[max(0, i - half) : i + half + 1])
        for i in range(len(values))
    ]


def recipe_color(recipe: Optional[str]) -> str:
    """The fixed colour of a recipe; unknown recipes get a stable one from their name."""
    name = str(recipe)
    return RECIPE_COLORS.get(name) or _MORE_COLORS[zlib.crc32(name.encode()) % len(_MORE_COLORS)]


def start_fill(oneshot: Optional[str]) -> str:
    """The marker fill of a run's start: 'full' from scratch, else its method's (unknown ones: a stable one)."""
    if oneshot in (None, "", "none"):
        return "full"
    name = str(oneshot)
    return ONESHOT_FILLS.get(name) or _MORE_FILLS[zlib.crc32(name.encode()) % len(_MORE_FILLS)]


def _start_marker(item: Dict[str, Any], color: str) -> Dict[str, Any]:
    """Marker face and edge: filled, white-edged from scratch (as always); a one-shot start in its
    method's fill, edged in `color` so a hollow marker still shows."""
    if not one_shot_start(item):
        return {"mec": "white", "mew": 0.6}
    return {"mec": color, "mew": 1.2, "fillstyle": start_fill(item["oneshot"]), "markerfacecoloralt": "white"}


def _start_keys(starts: Iterable[Optional[str]]):
    """Legend entries for the marker fill of each start ('from scratch', 'from wanda')."""
    from matplotlib.lines import Line2D

    return [
        Line2D(
            [],
            [],
            color="0.35",
            marker="o",
            ls="none",
            ms=7,
            label=start_words(s),
            **_start_marker({"oneshot": s}, "0.35"),
        )
        for s in _ordered(starts, "oneshot")
    ]


def sparsity_marker(sparsity: Optional[str]) -> str:
    name = str(sparsity)
    return SPARSITY_MARKERS.get(name) or _MORE_MARKERS[zlib.crc32(name.encode()) % len(_MORE_MARKERS)]


def metric_name(metric: Optional[str]) -> str:
    """'top1' -> 'top-1', 'bleu' -> 'BLEU', 'token_acc' -> 'token accuracy'; others as they are."""
    name = str(metric)
    return PERCENT_METRICS.get(name) or ("BLEU" if name == "bleu" else name)


def metric_label(metric: Optional[str], strict: bool = False, higher_is_better: bool = True) -> str:
    """An axis label with its unit: 'top-1 (%), as trained'; 'BLEU, strict N:M';
    'perplexity, as trained (lower is better)' (higher-is-better metrics say nothing, as before)."""
    unit = " (%)" if str(metric) in PERCENT_METRICS else ""
    direction = "" if higher_is_better else f" ({direction_words(False)})"
    return f"{metric_name(metric)}{unit}, {'strict N:M' if strict else 'as trained'}{direction}"


def save(fig, out: Optional[Path], name: str) -> List[Path]:
    """Write <out>/<name>.png (dpi 150) and .svg; nothing when `out` is None."""
    if out is None:
        return []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "pgf-report"}):  # fixed ids: a regenerated SVG is byte-identical
        fig.savefig(paths[1], bbox_inches="tight", metadata={"Date": None})
    return paths


# -- figure scaffolding --------------------------------------------------------------------------
def _figure(panels: int, rows: int = 1, width: float = 6.0, height: float = 4.4):
    """A Figure on the Agg canvas (no pyplot) with a grid of axes, constrained ('tight') layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = max(1, math.ceil(panels / rows))
    fig = Figure(figsize=(width * cols + 2.2, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def _by(items: Iterable[Dict[str, Any]], *keys: str) -> Dict[Tuple, List[Dict[str, Any]]]:
    """Items split by the values of `keys`, in sorted key order; metrics in the order first met (as asked)."""
    out: Dict[Tuple, List[Dict[str, Any]]] = {}
    metrics: Dict[Any, int] = {}
    for item in items:
        out.setdefault(tuple(item.get(k) for k in keys), []).append(item)
        metrics.setdefault(item.get("metric"), len(metrics))

    def order(key: str, value: Any) -> Tuple:
        return (0, float(metrics[value]), "") if key == "metric" else sort_value(key, value)

    return dict(sorted(out.items(), key=lambda kv: [order(k, v) for k, v in zip(keys, kv[0])]))


def _legend(
    fig,
    recipes: Iterable[str],
    sparsities: Iterable[str] = (),
    extra: Sequence = (),
    linestyles: Optional[Dict[str, str]] = None,
) -> None:
    """One legend beside the panels: a colour per recipe, a marker (or line style) per sparsity."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=recipe_color(r), lw=2.5, label=RECIPE_LABELS.get(r, r)) for r in recipes]
    for s in sparsities:
        if linestyles is not None:
            handles.append(Line2D([], [], color="0.35", ls=linestyles[s], label=f"sparsity {s}"))
        else:
            handles.append(
                Line2D([], [], color="0.35", marker=sparsity_marker(s), ls="none", ms=7, label=f"sparsity {s}")
            )
    fig.legend(handles=[*handles, *extra], loc="outside right upper", fontsize="small", frameon=False)


def _ordered(values: Iterable[Any], key: str) -> List[Any]:
    return sorted({v for v in values if v is not None}, key=lambda v: sort_value(key, v))


def _style_axes(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)


def _log_flops_axis(ax, flops: List[float]) -> str:
    """A log x axis labelled like 1.4e13: within one decade, about five evenly spaced labels
    (matplotlib would label every minor tick there, and they overlap). With settings that
    trained nothing (0 FLOPs: a magnitude prune evaluated untrained) the axis is symlog, so 0
    sits at its left end, linear up to the smallest decade of the others. Returns the axis label."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    positive = [x for x in flops if x > 0]
    label = FLOPS_AXIS
    if len(positive) < len(flops):
        if not positive:
            ax.xaxis.set_major_locator(FixedLocator([0.0]))
            return "training FLOPs (none: untrained)"
        decade = 10 ** math.floor(math.log10(min(positive)))
        ax.set_xscale("symlog", linthresh=decade, linscale=0.4)
        top = math.ceil(math.log10(max(positive)))
        ax.xaxis.set_major_locator(FixedLocator([0.0] + [10.0**e for e in range(int(math.log10(decade)), top + 1)]))
        ax.xaxis.set_minor_formatter(NullFormatter())
        label = FLOPS_AXIS_WITH_ZERO
    else:
        ax.set_xscale("log")
        if max(flops) < 10 * min(flops):
            # Within 3x, round linear steps read well; wider, they bunch up at the right: 1, 2, 5 per decade.
            narrow = max(flops) < 3 * min(flops)
            ax.xaxis.set_major_locator(MaxNLocator(5) if narrow else LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.margins(x=0.08)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: "0" if x == 0 else f"{x:.2g}"))
    return label


def dodged(xs: Sequence[float], tolerance: float = 0.005, step: float = 0.02) -> List[float]:
    """Positions for points on a log axis, spread sideways where their x values (nearly) coincide.

    An iso-FLOP run sits at exactly the FLOPs of the run it matches, so on a FLOPs axis its
    marker would hide under the other. Points within `tolerance` (relative) of each other are
    spread symmetrically by `step` of the axis' log span (at least a tenth of a decade); the
    Pareto front and every table keep the true values.
    """
    positive = [i for i, x in enumerate(xs) if x > 0]  # 0 (trained nothing) stays where it is
    if not positive:
        return list(xs)
    logs = {i: math.log10(xs[i]) for i in positive}
    span = max(max(logs.values()) - min(logs.values()), 0.1)
    clusters: List[List[int]] = []
    for i in sorted(positive, key=logs.__getitem__):
        if clusters and logs[i] - logs[clusters[-1][0]] <= math.log10(1 + tolerance):
            clusters[-1].append(i)
        else:
            clusters.append([i])
    shown = list(xs)
    for cluster in (c for c in clusters if len(c) > 1):
        for rank, i in enumerate(cluster):
            shown[i] = 10 ** (logs[i] + (rank - (len(cluster) - 1) / 2) * step * span)
    return shown


# -- the figures ---------------------------------------------------------------------------------
def accuracy_vs_flops(groups: List[Dict[str, Any]], out: Optional[Path] = None):
    """Headline metric vs training FLOPs (log x), one point per group with seed std; dashed Pareto front.

    Points at the same FLOPs (an iso-FLOP run and the run it matches) are drawn side by side (`dodged`).
    When untrained one-shot rows stretch a panel's axis far beyond the trained settings, a second row
    zooms on the trained ones (`needs_zoom`).
    """
    from matplotlib.lines import Line2D

    points = [g for g in groups if g.get("train_flops") is not None and g.get("mean") is not None]
    if not points:
        raise NothingToPlot("accuracy_vs_flops: no finished run has both training FLOPs and a metric value")
    panels = _by(points, "model", "metric")
    zooms = {key: needs_zoom(items) for key, items in panels.items()}
    fig, top, bottom = _panel_rows(len(panels), any(zooms.values()))
    for ax, zoom_ax, ((model, metric), items) in zip(top, bottom, panels.items()):
        title = f"{model}: {metric_name(metric)} vs training FLOPs"
        _flops_panel(ax, items, title)
        if zooms[(model, metric)]:
            _flops_panel(zoom_ax, [g for g in items if not _untrained(g)], f"{title}: {_ZOOM_WORDS}")
        elif zoom_ax is not None:
            zoom_ax.set_visible(False)
    front_key = Line2D([], [], ls="--", color="0.25", label="Pareto front (best at ≤ FLOPs)")
    starts = _start_keys(g.get("oneshot") for g in points) if any(one_shot_start(g) for g in points) else []
    _legend(
        fig,
        _ordered((g.get("recipe") for g in points), "recipe"),
        _ordered((g.get("sparsity") for g in points), "sparsity"),
        extra=[*starts, front_key],
    )
    save(fig, out, "accuracy_vs_flops")
    return fig


def _flops_panel(ax, items: List[Dict[str, Any]], title: str) -> None:
    flops = [g["train_flops"] for g in items]
    for g, x in zip(items, dodged(flops)):
        color = recipe_color(g.get("recipe"))
        ax.errorbar(
            x,
            g["mean"],
            yerr=g.get("std") or 0,
            color=color,
            marker=sparsity_marker(g.get("sparsity")),
            ms=8,
            ls="none",
            capsize=3,
            **_start_marker(g, color),
        )
    higher = items[0].get("higher_is_better", True)
    front = pareto_front(((g["train_flops"], g["mean"]) for g in items), higher)
    xs, ys = [x for x, _ in front], [y for _, y in front]
    ax.step(xs + [max(flops)], ys + [ys[-1]], where="post", ls="--", lw=1.2, color="0.25", zorder=0)
    xlabel = _log_flops_axis(ax, flops)
    _style_axes(ax, title, xlabel, metric_label(items[0].get("metric"), items[0]["headline"] == "strict", higher))


def accuracy_vs_sparsity(groups: List[Dict[str, Any]], out: Optional[Path] = None):
    """Headline metric vs M/N (log2 x, ticks named by pattern), a line per recipe; dense as a band.

    Mixed patterns (ff=1:8,qk=1:4) have no single M/N and are left to the table. With one-shot
    starts, a line's style is its start and its marker its budget; without, both are its budget (and
    variant). Lines are drawn a little apart sideways so that points at one pattern (often within
    each other's error bars) do not hide each other; the ticks stay at the patterns. Untrained rows
    that stretch the axis get a zoomed second row, as in accuracy_vs_flops.
    """
    valued = [g for g in groups if g.get("mean") is not None]
    sparse = [g for g in valued if g.get("sparsity") != "dense" and _plain_ratio(g.get("sparsity"))]
    if not sparse:
        raise NothingToPlot(
            "accuracy_vs_sparsity: needs finished runs with a single N:M pattern (found only dense or mixed patterns)"
        )
    dense = [g for g in valued if g.get("sparsity") == "dense"]
    panels = _by(sparse, "model", "metric")
    dense_of = {key: [g for g in dense if (g.get("model"), g.get("metric")) == key] for key in panels}
    zooms = {key: needs_zoom(items + dense_of[key]) for key, items in panels.items()}
    fig, top, bottom = _panel_rows(len(panels), any(zooms.values()))
    starts = any(one_shot_start(g) for g in sparse)
    look = _SparsityLook(sparse, starts, several_budgets=len({g.get("budget") for g in sparse + dense}) > 1)
    for ax, zoom_ax, (key, items) in zip(top, bottom, panels.items()):
        title = f"{key[0]}: {metric_name(key[1])} vs N:M sparsity"
        _sparsity_panel(ax, items, dense_of[key], look, title)
        if zooms[key]:
            trained = [g for g in items if not _untrained(g)]
            _sparsity_panel(zoom_ax, trained, dense_of[key], look, f"{title}: {_ZOOM_WORDS}")
        elif zoom_ax is not None:
            zoom_ax.set_visible(False)
    _legend(fig, _ordered((g.get("recipe") for g in sparse + dense), "recipe"), extra=look.legend_handles())
    save(fig, out, "accuracy_vs_sparsity")
    return fig


class _SparsityLook:
    """How accuracy_vs_sparsity tells its lines apart. From scratch only: a line style and a marker
    per budget and variant (a budget run at one pattern only, like an iso-FLOP point, is a lone
    marker: its style would not show). With one-shot starts: a line style (and marker fill) per
    start, a marker per budget and variant, so no two kinds of line share a look however many
    budgets there are."""

    def __init__(self, groups: List[Dict[str, Any]], starts: bool, several_budgets: bool):
        self.starts, self.several_budgets = starts, several_budgets
        budgets = sorted({self._budget(g) for g in groups}, key=lambda k: (sort_value("budget", k[0]), k[1]))
        self.budget_labels = {k: " ".join(x for x in k if x) for k in budgets}
        self.markers = {k: _BUDGET_MARKERS[i % len(_BUDGET_MARKERS)] for i, k in enumerate(budgets)}
        if starts:
            names = _ordered((g.get("oneshot") or "none" for g in groups), "oneshot")
            self.styles = {s: _LINESTYLES[i % len(_LINESTYLES)] for i, s in enumerate(names)}
        else:
            self.styles = {k: _LINESTYLES[i % len(_LINESTYLES)] for i, k in enumerate(budgets)}

    @staticmethod
    def _budget(group: Dict[str, Any]) -> Tuple[str, str]:
        return (group.get("budget") or "", group.get("variant") or "")

    def style(self, group: Dict[str, Any]) -> str:
        return self.styles[group.get("oneshot") or "none" if self.starts else self._budget(group)]

    def marker(self, group: Dict[str, Any]) -> str:
        return self.markers[self._budget(group)]

    def legend_handles(self) -> List[Any]:
        """Grey legend entries for whatever styles and markers tell apart (nothing for one budget)."""
        from matplotlib.lines import Line2D

        grey: Dict[str, Any] = {"color": "0.35", "ms": 6}
        budgets = [
            Line2D([], [], marker=m, ls="none" if self.starts else self.styles[k], label=self.budget_labels[k], **grey)
            for k, m in self.markers.items()
        ]
        if not self.starts:
            return budgets if len(budgets) > 1 else []
        starts = [Line2D([], [], ls=ls, label=start_words(s), **grey) for s, ls in self.styles.items()]
        return starts + (budgets if len(budgets) > 1 else [])


def _sparsity_panel(ax, items, dense, look: _SparsityLook, title: str) -> None:
    from matplotlib.ticker import NullLocator

    lines = _by(items, "recipe", "budget", "oneshot", "variant")
    for rank, ((recipe, *_), line) in enumerate(lines.items()):
        line = sorted(line, key=_single_ratio)
        color = recipe_color(recipe)
        sideways = 2 ** ((rank - (len(lines) - 1) / 2) * _LINE_DODGE)
        ax.errorbar(
            [_single_ratio(g) * sideways for g in line],
            [g["mean"] for g in line],
            yerr=[g.get("std") or 0 for g in line],
            color=color,
            marker=look.marker(line[0]),
            ms=5,
            capsize=3,
            lw=1.6,
            ls=look.style(line[0]),
            **(_start_marker(line[0], color) if one_shot_start(line[0]) else {}),
        )
    for i, g in enumerate(sorted(dense, key=lambda g: g["mean"])):
        color = recipe_color(g.get("recipe"))
        ax.axhline(g["mean"], color=color, ls=":", lw=1.5)
        if g.get("std"):
            ax.axhspan(g["mean"] - g["std"], g["mean"] + g["std"], color=color, alpha=0.12, lw=0)
        # at the right, where the sparsest points lie furthest from dense; a second dense line's label
        # goes to the left end, so two lines close together do not print their labels on top of each other
        left = i % 2 == 1
        ax.annotate(
            f"dense{' ' + g['budget'] if look.several_budgets and g.get('budget') else ''}",
            (0.01 if left else 0.99, g["mean"]),
            xycoords=("axes fraction", "data"),
            textcoords="offset points",
            xytext=(2 if left else -2, 3),
            ha="left" if left else "right",
            fontsize="small",
            color=color,
        )
    ratios: Dict[float, List[str]] = {}
    for g in items:
        ratios.setdefault(_single_ratio(g), []).append(g["sparsity"])
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(ratios))
    ax.set_xticklabels(["/".join(sorted(set(ratios[r]))) for r in sorted(ratios)])
    ax.xaxis.set_minor_locator(NullLocator())
    if len(ratios) == 1:  # one tick: give the axis some width around it
        only = next(iter(ratios))
        ax.set_xlim(only / 1.5, only * 1.5)
    higher = items[0].get("higher_is_better", True)
    _style_axes(
        ax,
        title,
        "N:M pattern (M/N on a log2 scale; sparser to the right)",
        metric_label(items[0].get("metric"), items[0]["headline"] == "strict", higher),
    )


# -- the zoom on trained settings --------------------------------------------------------------------
_ZOOM_WORDS = "trained settings only (zoom)"


def _untrained(group: Dict[str, Any]) -> bool:
    """A one-shot prune evaluated with no training (budget.steps=0): its recipe reads none."""
    return group.get("recipe") == "none"


def needs_zoom(items: List[Dict[str, Any]], stretch: float = 4.0) -> bool:
    """Do untrained rows stretch this panel's metric range over `stretch` times the trained settings'?

    An untrained 1:16 prune can sit 5 nats above recovered models that differ by 0.01: on a shared
    axis the trained ones collapse into one line, so they get a panel of their own.
    """
    trained = [g["mean"] for g in items if not _untrained(g)]
    if not trained or len(trained) == len(items):
        return False
    every = [g["mean"] for g in items]
    spread = max(trained) - min(trained)
    return max(every) - min(every) > stretch * spread if spread > 0 else max(every) > min(every)


def _panel_rows(panels: int, zoom: bool) -> Tuple[Any, List[Any], List[Any]]:
    """A figure, its row of panels and, with `zoom`, the row of their zooms below it (else None for each)."""
    fig, axes = _figure(2 * panels if zoom else panels, rows=2 if zoom else 1)
    cols = len(axes) // (2 if zoom else 1)
    for ax in axes[panels:cols] + axes[cols + panels :]:
        ax.set_visible(False)
    return fig, axes[:panels], axes[cols : cols + panels] if zoom else [None] * panels


def _plain_ratio(sparsity: Optional[str]) -> Optional[float]:
    """M/N of a single N:M pattern ('1:16' -> 16.0, '2:4' -> 2.0); None for dense or mixes."""
    if not sparsity or "," in str(sparsity) or "=" in str(sparsity) or sparsity == "dense":
        return None
    d = density(sparsity)
    return 1 / d if d else None


def _single_ratio(group: Dict[str, Any]) -> float:
    """M/N of a group with a single N:M pattern."""
    return cast(float, _plain_ratio(group["sparsity"]))  # accuracy_vs_sparsity keeps only those groups


def training_curves(
    rows: List[Dict[str, Any]], metric: Optional[str] = None, strict: bool = False, out: Optional[Path] = None
):
    """Eval metric (when logged more than once) and train loss vs training FLOPs, from each run's metrics.jsonl.

    Each seed is a thin line; the mean over seeds of a setting is a thick one.
    A model per row of panels; colour = recipe, line style = sparsity (and the start, when any
    run started from a one-shot prune).
    """
    from matplotlib.lines import Line2D

    runs = []
    for row in rows:
        if row.get("status") != "finished":
            continue
        name = split_metrics(metric)[0] or row.get("eval_metric")  # curves of the first metric asked for
        key = f"{'eval_strict' if strict else 'eval'}/{name}"
        loss = [
            (e["step"], e["train_flops"], e["train/loss"])
            for e in read_events(row.get("path"), "train")
            if e.get("train/loss") is not None and e.get("train_flops") is not None
        ]
        evals = [
            (e["step"], e["train_flops"], e[key])
            for e in read_events(row.get("path"), "eval")
            if e.get(key) is not None and e.get("train_flops") is not None
        ]
        if loss or len(evals) > 1:
            runs.append({**row, "_loss": loss, "_eval": evals, "_metric": name, "_higher": higher_is_better(row, name)})
    if not runs:
        raise NothingToPlot("training_curves: no finished run has train loss or eval events in metrics.jsonl")
    show_eval = any(len(r["_eval"]) > 1 for r in runs)
    models = _by(runs, "model")
    fig, axes = _figure(len(models) * (2 if show_eval else 1), rows=len(models), height=3.8)
    starts = any(one_shot_start(r) for r in runs)
    styles = _curve_styles(runs, starts)
    cols = 2 if show_eval else 1
    for i, ((model,), items) in enumerate(models.items()):
        panels = [("_eval", axes[i * cols])] if show_eval else []
        panels.append(("_loss", axes[i * cols + cols - 1]))
        for field, ax in panels:
            for setting, seeds in _by(items, "recipe", "sparsity", "budget", "oneshot", "variant").items():
                color, ls = recipe_color(setting[0]), styles.get(_curve_style_key(seeds[0], starts), "-")
                curves = [r[field] for r in seeds if r[field]]
                for curve in curves:
                    ax.plot(
                        [c[1] for c in curve],
                        [c[2] for c in curve],
                        color=color,
                        ls=ls,
                        lw=0.7 if len(curves) > 1 else 1.6,
                        alpha=0.45 if len(curves) > 1 else 0.9,
                    )
                if len(curves) > 1:
                    _, flops, values = _mean_over_seeds(curves)
                    ax.plot(flops, values, color=color, ls=ls, lw=2.0)
            shown = items[0]["_metric"]
            if field == "_eval":
                _style_axes(
                    ax,
                    f"{model}: {metric_name(shown)} during training",
                    "training FLOPs",
                    metric_label(shown, strict, items[0]["_higher"]),
                )
            else:
                _style_axes(ax, f"{model}: training loss", "training FLOPs", "train loss")
    recipes = _ordered((r["recipe"] for r in runs), "recipe")
    if starts:  # a key per (sparsity, start): 'sparsity 2:4 from wanda'
        keys = [
            Line2D([], [], color="0.35", ls=ls, label=f"sparsity {s} {start_words(start)}")
            for (s, start), ls in styles.items()
        ]
        _legend(fig, recipes, extra=keys)
    else:
        _legend(fig, recipes, list(styles) if len(styles) > 1 else (), linestyles=styles)
    save(fig, out, "training_curves")
    return fig


def _curve_style_key(run: Dict[str, Any], starts: bool) -> Any:
    """What a curve's line style tells: its sparsity, and its start when any run had a one-shot one."""
    return (run["sparsity"], run.get("oneshot") or "none") if starts else run["sparsity"]


def _curve_styles(runs: List[Dict[str, Any]], starts: bool) -> Dict[Any, str]:
    """A line style per sparsity, or per sparsity and start when any run started from a one-shot prune."""
    if starts:
        pairs = {_curve_style_key(r, True) for r in runs if r["sparsity"] is not None}
        keys = sorted(pairs, key=lambda k: (sort_value("sparsity", k[0]), sort_value("oneshot", k[1])))
    else:
        keys = _ordered((r["sparsity"] for r in runs), "sparsity")
    return {k: _LINESTYLES[i % len(_LINESTYLES)] for i, k in enumerate(keys)}


def gradient_noise(rows: List[Dict[str, Any]], window: int = 5, out: Optional[Path] = None):
    """The paper's Figure 3: (a) variance of AdamW's second moment, (b) variance of |grad|, over FF weights.

    Per setting (model, sparsity, recipe, budget and, when any run had one, the one-shot
    start: the rows of noise.md) the mean over seeds at each step, smoothed by a running
    mean of `window` points, on a log y axis. Colour = recipe, line style = sparsity and
    budget (and start). MDGF's curves fall during training; SR-STE's stay high.
    """
    keys = noise_group_by(rows)
    starts = "oneshot" in keys
    series: Dict[Tuple, Dict[str, List[List[Tuple[int, float]]]]] = {}
    for row in rows:
        if row.get("status") != "finished":
            continue
        events = read_events(row.get("path"), "diagnostics")
        for key, _, _ in NOISE_KEYS:
            curve = [(e["step"], float(e[key])) for e in events if e.get(key) is not None]
            if curve:
                setting = tuple(row.get(k) for k in keys)
                series.setdefault(setting, {}).setdefault(key, []).append(curve)
    if not series:
        raise NothingToPlot(
            "gradient_noise: no diagnostics (sparsity/ff/... lines in metrics.jsonl or "
            "diagnostics.jsonl); dense runs log none"
        )
    settings = [dict(zip(keys, s)) for s in series]
    several = {k: len({s[k] for s in settings}) > 1 for k in keys}
    # a line style per (sparsity, budget[, start]): SR-STE at equal epochs and at equal FLOPs are two lines,
    # and so are SR-STE from scratch and from a one-shot prune
    variants = sorted(
        {_noise_style_key(s, starts) for s in settings},
        key=lambda v: [sort_value(k, x) for k, x in zip(("sparsity", "budget", "oneshot"), v)],
    )
    styles = {v: _LINESTYLES[i % len(_LINESTYLES)] for i, v in enumerate(variants)}
    fig, axes = _figure(2, height=4.2)
    order = sorted(series, key=lambda s: [sort_value(k, v) for k, v in zip(keys, s)])
    for ax, (key, title, _) in zip(axes, NOISE_KEYS):
        drawn = 0
        for setting in order:
            curves = series[setting].get(key)
            if not curves:
                continue
            steps, _, values = _mean_over_seeds([[(s, s, v) for s, v in c] for c in curves])
            smooth = running_mean(values, window)
            kept = [(s, v) for s, v in zip(steps, smooth) if v > 0]
            if not kept:
                continue
            named = dict(zip(keys, setting))
            model, sparsity, recipe, budget = (named[k] for k in ("model", "sparsity", "recipe", "budget"))
            label = " ".join(
                [recipe]
                + ([start_words(named["oneshot"])] if starts else [])
                + [str(v) for k, v in (("sparsity", sparsity), ("budget", budget)) if several[k] and v]
                + ([f"[{model}]"] if several["model"] else [])
            )
            ax.plot(
                [s for s, _ in kept],
                [v for _, v in kept],
                color=recipe_color(recipe),
                ls=styles[_noise_style_key(named, starts)],
                lw=1.8,
                label=label,
            )
            drawn += 1
        if drawn:
            ax.set_yscale("log")
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "not logged", transform=ax.transAxes, ha="center", color="0.4")
        _style_axes(ax, title, "optimizer step", f"variance (running mean of {window} points, log scale)")
    save(fig, out, "gradient_noise")
    return fig


def _noise_style_key(setting: Dict[str, Any], starts: bool) -> Tuple[Any, ...]:
    """(sparsity, budget), and the start when any run had a one-shot one: what a noise line's style tells."""
    key = (setting["sparsity"], setting["budget"] or "")
    return key + (setting.get("oneshot") or "none",) if starts else key


def _mean_over_seeds(curves: List[List[Tuple[int, float, float]]]) -> Tuple[List[int], List[float], List[float]]:
    """Seeds' (step, flops, value) curves averaged step by step over the seeds that logged that step."""
    at: Dict[int, List[Tuple[float, float]]] = {}
    for curve in curves:
        for step, flops, value in curve:
            at.setdefault(step, []).append((flops, value))
    steps = sorted(at)
    return (
        steps,
        [sum(f for f, _ in at[s]) / len(at[s]) for s in steps],
        [sum(v for _, v in at[s]) / len(at[s]) for s in steps],
    )


FIGURES = ("accuracy_vs_flops", "accuracy_vs_sparsity", "training_curves", "gradient_noise")


def draw_all(
    groups: List[Dict[str, Any]],
    rows: List[Dict[str, Any]],
    out: Path,
    metric: Optional[str] = None,
    strict: bool = False,
) -> List[str]:
    """Every figure into `out`; one line per figure saying what was written or why it was skipped."""
    makers = {
        "accuracy_vs_flops": lambda: accuracy_vs_flops(groups, out),
        "accuracy_vs_sparsity": lambda: accuracy_vs_sparsity(groups, out),
        "training_curves": lambda: training_curves(rows, metric, strict, out),
        "gradient_noise": lambda: gradient_noise(rows, out=out),
    }
    lines = []
    for name in FIGURES:
        try:
            makers[name]()
        except NothingToPlot as why:
            lines.append(f"plot skipped: {why}")
        else:
            lines.append(f"plot: {Path(out) / name}.png and .svg")
    return lines
