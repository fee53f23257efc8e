"""Which checkpoint a run may resume: the settings it must keep, and the refusal of any other.

A checkpoint records the run's config; resuming with other result-changing
settings (model, sparsity, recipe, budget, data, optimizer, schedule, seed) is
refused in one line, as is a damaged checkpoint, before anything is written.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional

from . import checkpoint
from .config import TrainConfig
from .sparsity import make_recipe
from .validation import ConfigError, recipe_class_and_knobs, resolve_recipe, sparsity_patterns

# Keys whose change makes a checkpoint unusable for resuming (the rest may differ).
RESUME_KEYS = ("model", "sparsity", "recipe", "budget", "data", "optim", "schedule", "seed")


def recorded_config(cfg: TrainConfig) -> Dict[str, Any]:
    """The config as a checkpoint records it."""
    return _comparable(asdict(cfg))


def resume_settings(cfg: TrainConfig) -> Dict[str, Any]:
    """The settings a run must keep to be resumed (a checkpoint records them)."""
    return {k: v for k, v in recorded_config(cfg).items() if k in RESUME_KEYS}


def read_checkpoint(run_dir: Path, cfg: TrainConfig) -> Optional[Dict[str, Any]]:
    """The state in `run_dir`'s checkpoint (None when there is none), if `cfg` may resume it."""
    path = Path(run_dir) / checkpoint.CHECKPOINT
    if not path.exists():
        if cfg.resume:
            raise checkpoint.CheckpointError(
                f"resume={cfg.resume} has no {checkpoint.CHECKPOINT}: the run wrote none yet; start it afresh"
            )
        return None
    state = checkpoint.load(path)
    saved, now = state.get("config", {}), resume_settings(cfg)
    changed = [k for k in RESUME_KEYS if k in saved and k != "recipe" and _comparable(saved[k]) != now[k]]
    if "recipe" in saved and not _same_recipe(saved["recipe"], cfg):
        changed.insert(2, "recipe")
    if changed:
        raise ConfigError(
            f"{path} was written with other {', '.join(changed)} settings: resume with the same config, "
            "or use a new run dir"
        )
    return state


def _same_recipe(saved: Dict[str, Any], cfg: TrainConfig) -> bool:
    """Whether the saved recipe settings build the recipe `cfg` builds.

    Compared as Recipe objects, so defaults and aliases do not matter; and
    checkpoints before 0.2 saved every recipe's knobs in one record, of which
    the ones the recipe's class does not have played no part.
    """
    patterns = sparsity_patterns(cfg)
    try:
        recipe_class, knobs = recipe_class_and_knobs(saved, patterns)
        known = set(recipe_class.knob_names())
        return make_recipe(recipe_class, **{k: v for k, v in knobs.items() if k in known}) == resolve_recipe(cfg, patterns)
    except ValueError:  # the saved recipe no longer builds (e.g. a plug-in that is gone)
        return False


def _comparable(value):
    """Config values as plain, weights_only-safe containers (tuples -> lists)."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k != "num_workers"}
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    return value
