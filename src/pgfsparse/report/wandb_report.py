"""pgf-report --wandb: a Weights & Biases Report of a sweep, built from the keys pgf-train logs to W&B.

    pgf-report multirun/<sweep> --wandb my-team/pgfsparse    -> saves the report, prints its URL
    pgf-report results/cifar10 --wandb-dry-run spec.json     -> the report's spec as JSON, no network

A W&B workspace has one run set and its panels take no run filter, so the comparison per
sparsity needs a Report: one panel grid per sparsity, each with its own run set. The run set
picks runs by what every pgf-train run carries in W&B (run/wandb_logger.py, run/recorder.py),
so the report fits any sweep of the tool without per-sweep settings:

- the run's W&B group: `logger.group` when its overrides set one, else the sweep's name;
- the tag `sparsity:<label>` (Recorder.tags): the config spreads a sparsity over its
  locations (sparsity.ff, sparsity.qk, ...), the tag names it whole, as the run name does;
- keys of the canonical config the Recorder logs, to group by: `recipe.name` (canonical), `model_choice`,
  `budget.<kind>` and the other keys the sweep varies;
- metrics as Recorder.log sends them, each beside `train_flops`: eval/<metric>, train/loss,
  and the FF gradient-noise diagnostics (report/noise.py's keys).

Each grid shows the headline metric against training FLOPs (mean and range over seeds per
recipe; the panel title says which direction is better: lower for perplexity), its final
value per run, the training loss, and the gradient-noise curves (against the optimizer step, as
pgf-report's gradient_noise figure); under it, the run set's table
is grouped by setting, each group row counting its runs (the seeds). The library
(`wandb-workspaces`) is imported only here, on use.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from pgfsparse.config.schema import LoggerConfig, TrainConfig
from pgfsparse.errors import first_line
from pgfsparse.network import unreachable
from pgfsparse.report.collect import ReportError
from pgfsparse.report.noise import NOISE_KEYS
from pgfsparse.report.table import direction_words, higher_is_better, sort_value, split_metrics
from pgfsparse.rundir.files import read_json
from pgfsparse.rundir.layout import SweepDir
from pgfsparse.rundir.naming import naming_overrides
from pgfsparse.rundir.records import RunStatus

# Seconds the save may take, start of the W&B client included, before pgf-report gives up (exit 1).
SAVE_TIMEOUT = 60.0
DENSE = "dense"  # the sparsity label of a run without N:M patterns (rundir.naming.describe_sparsity)
EXIT_UNAVAILABLE = 1
INSTALL_HINT = "pip install 'pgfsparse[dashboards]'"


class WandbUnavailable(RuntimeError):
    """W&B could not take the report (no network, no login, a server error), said in one line."""


@dataclass(frozen=True)
class Headline:
    """A metric the report plots against FLOPs: its W&B key and its direction."""

    key: str  # eval/top1, eval_strict/perplexity, ...
    higher_is_better: bool


@dataclass
class Section:
    """One sparsity's panel grid: which runs its run set selects, and what it groups and plots."""

    sparsity: str
    groups: List[str]  # W&B groups of its runs
    names: List[str]  # runs logged without a group (single runs), matched by name
    headlines: List[Headline]
    setting_keys: List[str]  # config keys the runs table groups by (a setting; the group counts its seeds)
    runs: int
    recipes: List[str] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"sparsity:{self.sparsity}"  # Recorder.tags


# -- which runs, which keys --------------------------------------------------------------------
def plan(rows: Iterable[Dict[str, Any]], metric: Optional[str] = None, strict: bool = False) -> List[Section]:
    """One Section per sparsity of the runs that reached W&B (a run folder exists), densest first."""
    by_sparsity: Dict[str, List[Dict[str, Any]]] = {}
    for row in rows:
        if row.get("status") == "skipped" or row.get("path") is None or not row.get("sparsity"):
            continue
        by_sparsity.setdefault(str(row["sparsity"]), []).append(row)
    if not by_sparsity:
        raise ReportError("no run with a known sparsity to report: pass the sweep dir (or run dirs) pgf-train wrote")
    everywhere = _headlines([r for rs in by_sparsity.values() for r in rs], metric, strict)
    sections = []
    for sparsity in sorted(by_sparsity, key=lambda s: sort_value("sparsity", s)):
        runs = by_sparsity[sparsity]
        groups = {r["run_name"]: wandb_group(r) for r in runs}
        sections.append(
            Section(
                sparsity=sparsity,
                groups=sorted({g for g in groups.values() if g}),
                names=sorted(name for name, group in groups.items() if not group),
                headlines=_headlines(runs, metric, strict) or everywhere,
                setting_keys=setting_keys(runs),
                runs=len(runs),
                recipes=sorted({r["recipe"] for r in runs if r.get("recipe")}, key=lambda r: sort_value("recipe", r)),
            )
        )
    return sections


def _headlines(rows: Sequence[Dict[str, Any]], metric: Optional[str], strict: bool) -> List[Headline]:
    """The metrics to plot: --metric's, else each finished run's headline, with their direction."""
    prefix = "eval_strict" if strict else "eval"
    found: Dict[str, Headline] = {}
    for row in rows:
        if row.get("status") != "finished":
            continue
        for name in split_metrics(metric):
            shown = name or row.get("eval_metric")
            if shown:
                key = f"{prefix}/{shown}"
                found.setdefault(key, Headline(key, higher_is_better(row, name)))
    return list(found.values())


def wandb_group(row: Dict[str, Any]) -> Optional[str]:
    """The group W&B files a run under (WandbRun): logger.group when its overrides set one, else its sweep."""
    return _override(row, "logger.group") or row.get("sweep")


def setting_keys(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """Config keys that tell one sparsity's settings apart: recipe.name, then model, start, budget, other swept keys.

    Keys after recipe.name are kept only where the runs differ in them, so the table nests no
    level that has one value. Seeds are what a setting's group row counts.
    """
    keys = ["recipe.name"]
    if len({r.get("model") for r in rows}) > 1:
        keys.append("model_choice")
    if len({r.get("oneshot") or "none" for r in rows}) > 1:  # a one-shot start never averages with a fresh one
        keys.append("oneshot.method")
    if len({r.get("budget") for r in rows}) > 1:  # 'epochs=24', 'train_flops=1.58e+14': config budget.<kind>
        keys += sorted({f"budget.{str(r['budget']).partition('=')[0]}" for r in rows if r.get("budget")})
    if len({r.get("variant") for r in rows}) > 1:
        for row in rows:
            varying = _varying(row)
            keys += [k for k in map(config_key, (key for key, _ in naming_overrides(_overrides(row), varying))) if k]
    return list(dict.fromkeys(keys))


def config_key(override_key: str) -> Optional[str]:
    """The key W&B's config holds for a swept Hydra key: a dotted key is itself; a group choice its node's name.

    'optim.lr' -> 'optim.lr'; 'data' -> 'data.name'; 'model' -> 'model_choice' (the Recorder's config);
    None for a choice whose node has no name (e.g. 'experiment': it sets many keys).
    """
    if override_key in ("recipe", "recipe.name"):
        return "recipe.name"
    if override_key == "model":
        return "model_choice"
    if "." in override_key:
        return override_key
    return f"{override_key}.name" if hasattr(getattr(TrainConfig(), override_key, None), "name") else None


def logged_project(rows: Iterable[Dict[str, Any]]) -> Tuple[str, str]:
    """(entity, project) the runs logged to, by their overrides (logger.entity/project) or the defaults."""
    rows = [r for r in rows if r.get("path") is not None]
    entity = Counter(_override(r, "logger.entity") or "" for r in rows).most_common(1)
    project = Counter(_override(r, "logger.project") or LoggerConfig().project for r in rows).most_common(1)
    return (entity[0][0] if entity else ""), (project[0][0] if project else LoggerConfig().project)


def parse_target(text: str) -> Tuple[str, str]:
    """'my-team/pgfsparse' -> ('my-team', 'pgfsparse')."""
    entity, _, project = text.strip().partition("/")
    if not entity or not project or "/" in project:
        raise ReportError(f"--wandb {text}: give ENTITY/PROJECT, the W&B project the runs were logged to")
    return entity, project


def _overrides(row: Dict[str, Any]) -> List[str]:
    status = RunStatus.read(row["path"]) if row.get("path") is not None else None
    return list(status.overrides) if status else []


def _override(row: Dict[str, Any], key: str) -> Optional[str]:
    value = None
    for override in _overrides(row):
        name, _, given = override.lstrip("+~").partition("=")
        if name == key:
            value = None if given in ("", "null") else given
    return value


def _varying(row: Dict[str, Any]) -> List[str]:
    """The keys the run's sweep varies (sweep.json), [] for a run outside a sweep folder."""
    record = read_json(SweepDir(Path(row["path"]).parent).record)
    return list(record.get("varying") or []) if isinstance(record, dict) else []


# -- the report --------------------------------------------------------------------------------
def build(sections: Sequence[Section], entity: str, project: str, title: str, bind_runsets: bool = True):
    """The wandb_workspaces Report: an introduction, then a heading and a panel grid per Section.

    `bind_runsets` gives each run set the report's project; the library looks the project up on
    the server for that, so a dry run leaves it out (a run set without one reads the report's).
    """
    wr, expr = _library()
    blocks: List[Any] = [wr.H1(title[:128]), wr.P(_introduction(sections))]
    for section in sections:
        blocks += [
            wr.H2(f"Sparsity {section.sparsity}"),
            wr.P(_section_text(section)),
            wr.PanelGrid(
                runsets=[_runset(wr, expr, section, entity, project, bind_runsets)], panels=_panels(wr, section)
            ),
        ]
    return wr.Report(
        project=project, entity=entity, title=title[:128], description=_description(sections), blocks=blocks
    )


def _runset(wr, expr, section: Section, entity: str, project: str, bind: bool):
    selects = []
    if section.groups:
        selects.append(expr.Metric("Group").isin(section.groups))
    if section.names:
        selects.append(expr.Metric("Name").isin(section.names))
    which = selects[0] if len(selects) == 1 else expr.Or(*selects)
    filters = expr.And(which, expr.Tags().isin([section.tag]))
    columns = [f"summary:{h.key}" for h in section.headlines] + ["summary:train_flops", "config:seed.value"]
    runset = wr.Runset(
        entity=entity if bind else "",
        project=project if bind else "",
        name=f"sparsity {section.sparsity}",
        filters=filters,
        groupby=[f"config.{key}" for key in section.setting_keys],
        pinned_columns=columns,
    )
    # The library keeps filters as a display string and parses it back on save, turning every '=' into
    # '==' (and '<' into '<='), also inside values: sweep names ('seed=0,1') and sparsity tags
    # ('sparsity:ff=1:8,q=1:4') would not match. The filter tree built here is handed over as parsed.
    runset._stashed_filters_v2 = expr.filters_tree_to_v2(filters.to_model())
    runset._stashed_filter_string = runset.filters
    return runset


def _panels(wr, section: Section) -> List[Any]:
    panels: List[Any] = []
    for headline in section.headlines:
        better = direction_words(headline.higher_is_better)
        panels.append(
            wr.LinePlot(
                title=f"{headline.key} against training FLOPs, mean and range over seeds per recipe ({better})",
                x="train_flops",
                y=[headline.key],
                groupby=wr.Config("recipe.name"),
                groupby_aggfunc="mean",
                groupby_rangefunc="minmax",
                log_x=True,
                title_x="training FLOPs",
                title_y=f"{headline.key} ({better})",
            )
        )
        panels.append(
            wr.ScatterPlot(
                title=f"final {headline.key} against training FLOPs, a point per run ({better})",
                x=wr.SummaryMetric("train_flops"),
                y=wr.SummaryMetric(headline.key),
                log_x=True,
            )
        )
    panels.append(
        wr.LinePlot(
            title="training loss against training FLOPs, per setting",
            x="train_flops",
            y=["train/loss"],
            title_x="training FLOPs",
            title_y="train/loss",
        )
    )
    if section.sparsity != DENSE:  # a dense run has no sparse layer, so logs no diagnostics
        for key, title, _ in NOISE_KEYS:
            panels.append(
                wr.LinePlot(
                    title=f"gradient noise: {title}",
                    x="step",  # the optimizer step Recorder.log sends (W&B's own _step counts log calls)
                    y=[key],
                    log_y=True,
                    title_x="optimizer step",
                    title_y="variance (log scale)",
                )
            )
    return panels


def _introduction(sections: Sequence[Section]) -> str:
    groups = sorted({g for s in sections for g in s.groups})
    runs = sum(s.runs for s in sections)
    where = f"W&B group {', '.join(groups)}" if groups else "runs matched by name"
    return (
        f"Built by pgf-report from {runs} runs ({where}): a panel grid per sparsity. Each plots the headline "
        f"metric against training FLOPs (mean and range over seeds per recipe, and the final value per run), "
        f"the training loss and the FF gradient-noise curves; the runs table under it is grouped by setting, "
        f"each group row counting its seeds."
    )


def _section_text(section: Section) -> str:
    keys = ", ".join(section.setting_keys)
    return (
        f"{section.runs} runs tagged {section.tag}; recipes {', '.join(section.recipes) or 'unknown'}; "
        f"settings grouped by {keys}."
    )


def _description(sections: Sequence[Section]) -> str:
    return f"pgf-report: {len(sections)} sparsities ({', '.join(s.sparsity for s in sections)})"


def report_title(sections: Sequence[Section]) -> str:
    groups = sorted({g for s in sections for g in s.groups})
    return f"pgfsparse: {', '.join(groups) or 'runs'}"[:128]


def spec(report) -> Dict[str, Any]:
    """The report as the library's model dumps it: what save() sends."""
    return report._to_model().model_dump(by_alias=True, exclude_none=True, mode="json")


def _library():
    try:
        import wandb_workspaces.reports.v2 as wr
        from wandb_workspaces import expr
    except ImportError as error:
        raise ReportError(f"the W&B report needs wandb-workspaces ({first_line(error)}): {INSTALL_HINT}") from None
    return wr, expr


# -- writing and saving ------------------------------------------------------------------------
def write_spec(report, path: Path) -> None:
    """The dry run: the spec as JSON at `path`; nothing else written, nothing sent."""
    text = json.dumps(spec(report), indent=2) + "\n"
    try:
        Path(path).write_text(text)
    except OSError as error:
        raise ReportError(f"cannot write {path} ({error.strerror}): pass --wandb-dry-run a writable file") from None


def publish(report, timeout: Optional[float] = None) -> str:
    """Save the report to W&B and return its URL; WandbUnavailable (one line) within `timeout` seconds
    (default SAVE_TIMEOUT) else.

    The host is tried first (seconds); then the save runs in a daemon thread, because the W&B
    client retries a silent server for minutes and the report must not hang the command.
    """
    base_url = _base_url()
    problem = unreachable(base_url)
    if problem is not None:
        raise WandbUnavailable(
            f"W&B is unreachable ({problem}): check the network, or write the spec offline with --wandb-dry-run FILE"
        )
    outcome: Dict[str, Any] = {}

    def save() -> None:
        try:
            report.save()
            outcome["url"] = report.url
        except BaseException as error:  # noqa: BLE001 - any failure becomes the one line below
            outcome["error"] = error

    worker = threading.Thread(target=save, name="pgf-report-wandb-save", daemon=True)
    worker.start()
    timeout = SAVE_TIMEOUT if timeout is None else timeout
    worker.join(timeout)
    if worker.is_alive():
        raise WandbUnavailable(f"W&B at {base_url} did not answer within {timeout:g} s: try again later")
    if "error" in outcome:
        raise WandbUnavailable(
            f"W&B refused the report ({first_line(outcome['error'])[:200]}): check `wandb login` and that "
            f"the project exists and holds the runs"
        )
    return str(outcome["url"])


def _base_url() -> str:
    """The server wandb itself would use: WANDB_BASE_URL, else `wandb login --host`'s, else its default."""
    if os.environ.get("WANDB_BASE_URL"):
        return os.environ["WANDB_BASE_URL"]
    try:
        from wandb.sdk import wandb_setup

        return str(wandb_setup.singleton().settings.base_url)
    except Exception:  # noqa: BLE001 - an older or broken wandb: its long-standing public server
        return "https://api.wandb.ai"


def wandb_report(
    rows: List[Dict[str, Any]],
    target: Optional[str],
    dry_run: Optional[Path],
    metric: Optional[str] = None,
    strict: bool = False,
) -> int:
    """pgf-report's --wandb / --wandb-dry-run: build the report, then write its spec or save it."""
    entity, project = parse_target(target) if target else logged_project(rows)
    sections = plan(rows, metric, strict)
    report = build(sections, entity, project, report_title(sections), bind_runsets=dry_run is None)
    grids = f"{len(sections)} panel grids ({', '.join(s.sparsity for s in sections)})"
    if dry_run is not None:
        write_spec(report, dry_run)
        print(f"pgf-report: W&B report spec, {grids}, {sum(s.runs for s in sections)} runs -> {dry_run} (not saved)")
        return 0
    url = publish(report)
    print(f"pgf-report: W&B report, {grids} -> {url}")
    return 0
