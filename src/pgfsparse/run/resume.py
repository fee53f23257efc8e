"""Which checkpoint a run may resume: the settings it must keep, and the refusal of any other.

A checkpoint records the run's config; resuming with other result-changing
settings (model, sparsity, recipe, budget, data, optimizer, schedule, seed,
precision) is refused in one line listing each differing key with both values,
as is a damaged checkpoint, before anything is written. The other keys
(logging, evaluation and checkpoint intervals, W&B, threads, device) may change
at resume; another device gets a one-line warning (not bit-identical).

`pgf-train resume=DIR` alone re-composes the run's own command: DIR/.hydra/overrides.yaml
comes before the resume command's overrides (see `saved_overrides`).
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from omegaconf import OmegaConf

from pgfsparse.config.schema import TrainConfig
from pgfsparse.config.spec import RunSpec, recipe_class_and_knobs
from pgfsparse.errors import CheckpointError, ConfigError
from pgfsparse.run import checkpoint
from pgfsparse.rundir.layout import CHECKPOINT, RunDir
from pgfsparse.sparsity import make_recipe

# Keys whose change makes a checkpoint unusable for resuming (the rest may differ).
RESUME_KEYS = ("model", "sparsity", "recipe", "oneshot", "budget", "data", "optim", "schedule", "seed", "precision")


def saved_overrides(run_dir: Path) -> List[str]:
    """The task overrides `run_dir` was started with (none if Hydra did not record them), minus resume/sweep."""
    path = RunDir(run_dir).saved_overrides
    if not path.is_file():
        return []
    return [str(o) for o in OmegaConf.load(path) if not str(o).lstrip("+~").startswith(("resume=", "sweep="))]


def recorded_config(cfg: TrainConfig) -> Dict[str, Any]:
    """The config as a checkpoint records it."""
    return _comparable(asdict(cfg))


def resume_settings(cfg: TrainConfig) -> Dict[str, Any]:
    """The settings a run must keep to be resumed (a checkpoint records them)."""
    return {k: v for k, v in recorded_config(cfg).items() if k in RESUME_KEYS}


def read_checkpoint(run_dir: Path, cfg: TrainConfig, spec: RunSpec) -> Optional[Dict[str, Any]]:
    """The state in `run_dir`'s checkpoint (None when there is none), if `cfg` (resolved: `spec`) may resume it."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        if cfg.resume:
            raise CheckpointError(f"resume={cfg.resume} has no {CHECKPOINT}: the run wrote none yet; start it afresh")
        return None
    state = checkpoint.load(path)
    saved = state.get("config", {})
    changed = differences(saved, cfg, spec)
    if changed:
        shown = "; ".join(f"{key} (run: {old}, given: {new})" for key, old, new in changed)
        raise ConfigError(
            f"{run_dir} cannot be resumed with other result-changing settings: {shown}; drop those "
            "overrides (resume=DIR alone uses the run's own), or start a new run dir"
        )
    if saved.get("device", cfg.device) != cfg.device:
        print(
            f"pgf-train: warning: resuming with device={cfg.device}, the run used device={saved['device']}: "
            "the result will not be bit-identical to an uninterrupted run",
            file=sys.stderr,
        )
    return state


def differences(saved: Dict[str, Any], cfg: TrainConfig, spec: RunSpec) -> List[Tuple[str, Any, Any]]:
    """(dotted key, saved value, value now) for each result-changing setting that differs."""
    now, defaults = resume_settings(cfg), resume_settings(TrainConfig())
    changed = []
    for key in RESUME_KEYS:
        if key not in saved:
            continue
        if key == "recipe":
            if not _same_recipe(saved["recipe"], spec):
                changed += _leaf_differences(_comparable(saved[key]), now[key], key) or [
                    (key, saved[key].get("name"), now[key].get("name"))
                ]
            continue
        changed += _leaf_differences(_comparable(saved[key]), now[key], key, defaults.get(key))
    return changed


def _leaf_differences(old: Any, new: Any, key: str, default: Any = None) -> List[Tuple[str, Any, Any]]:
    """The differing leaves; a key the saved config lacks (added by a later version) is the same when
    the run now has that key's default, which is what the older run did."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        defaults = default if isinstance(default, dict) else {}
        for sub in sorted(set(old) | set(new), key=str):
            if sub not in old and sub in defaults and new.get(sub) == defaults[sub]:
                continue
            out += _leaf_differences(old.get(sub), new.get(sub), f"{key}.{sub}", defaults.get(sub))
        return out
    if key == "data.kind" and {old, new} == {"span_corruption", "corpus"}:
        return []  # 0.2.0's name for a corpus
    return [] if old == new else [(key, old, new)]


def _same_recipe(saved: Dict[str, Any], spec: RunSpec) -> bool:
    """Whether the saved recipe settings build the run's recipe (`spec.recipe`).

    Compared as Recipe objects, so defaults and aliases do not matter; and
    0.1.0 checkpoints written before recipes became plug-ins (52ea80b) saved every
    recipe's knobs in one record, of which
    the ones the recipe's class does not have played no part.
    """
    try:
        recipe_class, knobs = recipe_class_and_knobs(saved, spec.patterns)
        known = set(recipe_class.knob_names())
        return make_recipe(recipe_class, **{k: v for k, v in knobs.items() if k in known}) == spec.recipe
    except ValueError:  # the saved recipe no longer builds (e.g. a plug-in that is gone)
        return False


def _comparable(value):
    """Config values as plain, weights_only-safe containers (tuples -> lists)."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k != "num_workers"}
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    return value
