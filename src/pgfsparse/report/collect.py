"""Find runs on disk and turn each into one row: finished, failed, unfinished, running or skipped.

A run dir is any folder holding summary.json (finished), status.json (a sweep
point or a crashed run), error.log, metrics.jsonl or checkpoint.pt. A sweep dir
holds sweep.json / sweep_status.json; a failed point may be known only from
sweep_status.json (its folder never got made), and still becomes a row, so a
report never drops a failure silently. Skipped points (a grid's impossible
corner, such as recipe=srste with sparsity=dense) come back with status
"skipped" so a report can count them; runs.csv and the table leave them out.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from pgfsparse.rundir.files import read_json
from pgfsparse.rundir.layout import RUN_MARKERS, SWEEP_MARKERS, RunDir, SweepDir
from pgfsparse.rundir.lock import process_alive, read_holder
from pgfsparse.rundir.naming import base_run_name, parse_run_name
from pgfsparse.rundir.records import RunStatus, RunSummary

# runs.csv, in this order. Rows also carry "eval" (all final metrics), "path" (the
# folder, or None) and "variant" (other swept keys, e.g. "depth=3"), not written to CSV.
RUN_COLUMNS = (
    "run_name",
    "model",
    "sparsity",
    "recipe",
    "oneshot",  # the one-shot method that pruned the start; "none" for a run trained from scratch
    "seed",
    "budget",
    "steps",
    "train_flops",
    "inference_flops",
    "eval_metric",
    "eval_higher_is_better",  # the headline's direction (older summaries: by the metric's name)
    "eval_value",
    "eval_value_strict",
    "wall_seconds",
    "status",
    "error",
    "version",
    "git_sha",
    "sweep",
    "run_dir",
)


class ReportError(ValueError):
    """A problem with the input, said in one line: '<what>: <fix>'."""


# -- budgets ------------------------------------------------------------------------------------
def format_budget(budget: Any) -> str:
    """{'kind': 'epochs', 'value': 24.0} -> 'epochs=24'; train_flops keep exponent form ('1e+15')."""
    if not budget:
        return ""
    if isinstance(budget, str):
        return budget
    kind, value = budget.get("kind"), budget.get("value")
    if kind is None or value is None:
        return ""
    value = float(value)
    if kind != "train_flops" and value.is_integer():
        return f"{kind}={int(value)}"
    return f"{kind}={value:g}"


# -- finding folders -----------------------------------------------------------------------------
def expand_paths(paths: Iterable[str]) -> List[Path]:
    """Existing paths as given; globs (also quoted ones the shell left alone) expanded and sorted."""
    found: List[Path] = []
    for raw in paths:
        raw = str(raw)
        if Path(raw).exists():
            found.append(Path(raw))
        elif glob.has_magic(raw):
            matches = sorted(glob.glob(raw, recursive=True))
            if not matches:
                raise ReportError(f"no match for {raw}: check the pattern (it is expanded relative to {os.getcwd()})")
            found.extend(Path(m) for m in matches)
        else:
            raise ReportError(f"no such file or directory: {raw}: check the path")
    return [p.parent if p.is_file() else p for p in found]


def find_dirs(paths: Iterable[Path], skip: Optional[Path] = None) -> Tuple[List[Path], List[Path]]:
    """(run dirs, sweep dirs) under `paths`, each once; hidden folders, wandb/ and `skip` (the report) unsearched."""
    skip_key = os.path.realpath(skip) if skip else None
    runs: Dict[str, Path] = {}
    sweeps: Dict[str, Path] = {}
    for top in paths:
        for here, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(
                d
                for d in dirnames
                if not d.startswith(".") and d != "wandb" and os.path.realpath(os.path.join(here, d)) != skip_key
            )
            if os.path.realpath(here) == skip_key:
                dirnames[:] = []
                continue
            names = set(filenames)
            if names & set(RUN_MARKERS):
                runs.setdefault(os.path.realpath(here), Path(here))
            if names & set(SWEEP_MARKERS):
                sweeps.setdefault(os.path.realpath(here), Path(here))
    return list(runs.values()), list(sweeps.values())


# -- rows ----------------------------------------------------------------------------------------
def collect_runs(paths: Iterable[str], skip: Optional[Path] = None) -> List[Dict[str, Any]]:
    """One row per run under `paths` (run dirs, sweep dirs, globs or any folder above them)."""
    run_dirs, sweep_dirs = find_dirs(expand_paths(paths), skip)
    known = {os.path.realpath(d) for d in run_dirs}
    points = {}  # real path of a point's folder -> its sweep_status.json entry
    orphans = []  # points whose folder is missing (or holds none of a run's files)
    for sweep_dir in sweep_dirs:
        table = read_json(SweepDir(sweep_dir).status) or {}
        name = table.get("sweep") or (read_json(SweepDir(sweep_dir).record) or {}).get("name") or sweep_dir.name
        for point_name, entry in (table.get("points") or {}).items():
            entry = {"run_name": point_name, "sweep": name, **entry}
            folder = sweep_dir / (entry.get("dir") or point_name)
            if os.path.realpath(folder) in known:
                points[os.path.realpath(folder)] = entry
            else:
                orphans.append((entry, folder if folder.is_dir() else None))
    rows = [run_row(d, points.get(os.path.realpath(d))) for d in run_dirs]
    rows += [point_row(entry, folder) for entry, folder in orphans]
    return rows


def run_row(run_dir: Path, point: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The row of one run dir; `point` is its sweep_status.json entry, used when newer than status.json."""
    summary, status_record = RunSummary.read(run_dir), RunStatus.read(run_dir)
    status = newer(status_record.to_dict() if status_record else None, point) or {}
    sweep = _sweep_name(run_dir)
    if summary:
        return _finished_row(run_dir, summary, status, sweep)
    state, error = _unfinished_state(run_dir, status)
    return point_row({**status, "sweep": status.get("sweep") or sweep}, run_dir, state, error)


def point_row(
    status: Dict[str, Any], run_dir: Optional[Path] = None, state: Optional[str] = None, error: Optional[str] = None
) -> Dict[str, Any]:
    """A row for a run without summary.json, from its status (overrides first, then its run name).

    `state` and `error` default to what the status says: failed or skipped, else unfinished.
    """
    name = status.get("run_name") or (run_dir.name if run_dir else "")
    facts = {
        **(parse_run_name(name) or {}),
        **{k: v for k, v in from_overrides(status.get("overrides")).items() if v is not None},
    }
    if state is None:
        state = status["status"] if status.get("status") in ("failed", "skipped") else "unfinished"
        error = _why_unfinished(status, run_dir) if state == "unfinished" else _error_text(status, run_dir)
    row: Dict[str, Any] = {column: None for column in RUN_COLUMNS}
    row.update(
        run_name=name,
        model=facts.get("model"),
        sparsity=facts.get("sparsity"),
        recipe=facts.get("recipe"),
        oneshot=facts.get("oneshot") or "none",
        seed=facts.get("seed"),
        budget=facts.get("budget", ""),
        status=state,
        error=error,
        version=status.get("version"),
        git_sha=status.get("git_sha"),
        sweep=status.get("sweep"),
        run_dir=str(run_dir) if run_dir else "",
        eval={},
        path=run_dir,
        variant=facts.get("variant", ""),
    )
    return row


def from_overrides(overrides: Optional[Iterable[str]]) -> Dict[str, Any]:
    """model / sparsity / recipe / oneshot / seed / budget from a job's Hydra overrides ('sparsity=1:32', 'seed=0').

    Left out (None) when the overrides cannot say: 'recipe=auto' (resolved at run
    time) and a sparsity with per-location additions ('sparsity.qk=1:4'), which the
    run name spells out instead.
    """
    values = {}
    for override in overrides or []:
        key, _, value = str(override).lstrip("+~").partition("=")
        values[key] = value
    out: Dict[str, Any] = {"model": values.get("model")}
    mixed = any(k.startswith("sparsity.") for k in values)
    out["sparsity"] = None if mixed else values.get("sparsity")
    recipe = values.get("recipe") or values.get("recipe.name")
    out["recipe"] = None if recipe in (None, "auto") else _canonical_recipe(recipe)
    out["oneshot"] = values.get("oneshot") or values.get("oneshot.method") or None
    out["seed"] = int(values["seed"]) if values.get("seed", "").lstrip("-").isdigit() else None
    for kind in ("steps", "epochs", "train_flops"):
        if values.get(f"budget.{kind}") not in (None, "", "null"):
            try:
                out["budget"] = format_budget({"kind": kind, "value": float(values[f"budget.{kind}"])})
            except ValueError:
                out["budget"] = f"{kind}={values[f'budget.{kind}']}"
    return out


def _finished_row(run_dir: Path, record: RunSummary, status: Dict[str, Any], sweep: Optional[str]):
    summary = record.to_dict()
    name = summary.get("run_name") or status.get("run_name") or _default_name(summary) or run_dir.name
    parsed = parse_run_name(run_dir.name) or parse_run_name(name) or {}
    row = {column: summary.get(column) for column in RUN_COLUMNS}
    row.update(
        run_name=name,
        oneshot=summary.get("oneshot") or "none",  # summaries older than one-shot starts have none
        budget=format_budget(summary.get("budget")) or from_overrides(status.get("overrides")).get("budget", ""),
        eval_higher_is_better=record.higher_is_better(),
        status="finished",
        error="",
        version=summary.get("version") or status.get("version"),
        git_sha=summary.get("git_sha") or status.get("git_sha"),
        sweep=summary.get("sweep") or status.get("sweep") or sweep,
        run_dir=str(run_dir),
        eval=dict(summary.get("eval") or {}),
        path=run_dir,
        variant=parsed.get("variant", ""),
    )
    return row


def _default_name(summary: Dict[str, Any]) -> Optional[str]:
    """pgf-train's run name for summaries written before they recorded it."""
    if not all(summary.get(k) is not None for k in ("model", "sparsity", "recipe", "seed")):
        return None
    return base_run_name(summary["model"], str(summary["sparsity"]), summary["recipe"], summary["seed"])


def _unfinished_state(run_dir: Path, status: Dict[str, Any]) -> Tuple[str, str]:
    """No summary.json: failed (status or error.log says so), skipped, running (alive) or unfinished."""
    state = status.get("status")
    if state in ("failed", "skipped"):
        return state, _error_text(status, run_dir)
    if not status and RunDir(run_dir).error_log.exists():
        return "failed", _error_text(status, run_dir)
    if state == "running":
        holder = read_holder(run_dir) or status
        alive = process_alive(holder.get("host"), holder.get("pid"))
        if alive is None:
            return "running", f"on {holder.get('host')}, pid {holder.get('pid')} (cannot check that host from here)"
        if alive:
            return "running", f"pid {holder.get('pid')}, step {status.get('step', _last_step(run_dir))}"
    return "unfinished", _why_unfinished(status, run_dir)


def _why_unfinished(status: Dict[str, Any], run_dir: Optional[Path]) -> str:
    step = status.get("step", _last_step(run_dir) if run_dir else None)
    at = f" at step {step}" if step is not None else ""
    if status.get("collected_while_training"):  # pgf-collect copied it mid-run
        return f"still training{at} when collected, no summary yet"
    if run_dir is None:
        return f"stopped{at} without a summary (no run folder; sweep status {status.get('status') or 'unknown'})"
    if status.get("status") == "running":
        return f"stopped{at} without a summary (process {status.get('pid')} on {status.get('host')} is gone)"
    return f"stopped{at} without a summary"


def _error_text(status: Dict[str, Any], run_dir: Optional[Path]) -> str:
    """'ErrorType: message' from the status, else error.log's last line."""
    error, kind = status.get("error") or "", status.get("error_type") or ""
    if not error and run_dir is not None and RunDir(run_dir).error_log.exists():
        lines = [line for line in RunDir(run_dir).error_log.read_text(errors="replace").splitlines() if line.strip()]
        error = lines[-1].strip() if lines else ""
    if kind and not error.startswith(kind):
        error = f"{kind}: {error}" if error else kind
    return error or "no error recorded"


def _last_step(run_dir: Path) -> Optional[int]:
    path = RunDir(run_dir).metrics
    if not path.exists():
        return None
    lines = path.read_text().strip().splitlines()
    try:
        return int(json.loads(lines[-1])["step"]) if lines else None
    except (ValueError, KeyError):
        return None


def _sweep_name(run_dir: Path) -> Optional[str]:
    parent = run_dir.parent
    if any((parent / m).exists() for m in SWEEP_MARKERS):
        return (read_json(SweepDir(parent).record) or {}).get("name") or parent.name
    return None


def _canonical_recipe(name: str) -> str:
    from pgfsparse.sparsity.recipes import canonical_recipe_name

    try:
        return canonical_recipe_name(name)
    except ValueError:
        return name


# -- small helpers -------------------------------------------------------------------------------
def newer(a: Optional[Dict[str, Any]], b: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """Of two status records, the one updated last (ISO times); either may be None."""
    if not a or not b:
        return a or b
    return b if _when(b.get("updated")) > _when(a.get("updated")) else a


def _when(text: Optional[str]) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(str(text))
    except ValueError:
        return datetime.datetime.min
    return moment.replace(tzinfo=None)


def read_events(run_dir: Optional[Path], kind: str) -> List[Dict[str, Any]]:
    """The run's metrics.jsonl events of one kind, else those of a collected results folder
    (pgf-collect: diagnostics.jsonl, and curves.jsonl for train and eval lines)."""
    if run_dir is None:
        return []
    folder = RunDir(run_dir)
    for path in (folder.metrics, folder.diagnostics if kind == "diagnostics" else folder.curves):
        if not path.exists():
            continue
        events = []
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if isinstance(event, dict) and event.get("event") == kind:
                events.append(event)
        if events:
            return events
    return []
