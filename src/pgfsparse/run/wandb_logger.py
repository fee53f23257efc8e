"""Weights & Biases: one run per pgf-train run, training FLOPs as the x-axis; offline when no server answers."""

from __future__ import annotations

import os
from typing import Any, Dict

from pgfsparse.network import unreachable
from pgfsparse.run.tracker import TrackedRun

# Seconds an online W&B run may take to start before the run falls back to offline logging.
WANDB_INIT_TIMEOUT = 20.0


class WandbRun:
    """The W&B tracker (run/tracker.py): training FLOPs as the x-axis of eval charts.

    `online` with no reachable server (or no login) falls back to an offline run, in one line,
    within WANDB_INIT_TIMEOUT seconds; `wandb sync` (or launch/sync_wandb.sh) uploads it later.
    """

    def __init__(self, cfg, run: TrackedRun):
        import wandb

        mode = cfg.mode or os.environ.get("WANDB_MODE") or "offline"
        options = dict(
            project=cfg.project,
            entity=cfg.entity,
            name=run.name,
            group=cfg.group or run.group,
            tags=list(run.tags),
            config=run.config,
            dir=str(run.run_dir),
            id=run.run_id,  # a resumed launch continues the same W&B run
            resume="allow",
        )
        self.run = _init_online(wandb, options) if mode == "online" else None
        if self.run is None:
            fallback = "offline" if mode == "online" else mode  # validation allows online, offline, disabled
            self.run = wandb.init(
                mode=fallback,  # type: ignore[arg-type]
                settings=wandb.Settings(silent=True, console="off"),
                **options,
            )
        self.run.define_metric("train_flops")
        for prefix in ("eval/*", "eval_strict/*", "train/*"):
            self.run.define_metric(prefix, step_metric="train_flops")

    def log(self, event: Dict[str, Any]) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in event.items() if isinstance(v, (int, float))})

    def summary(self, summary: Dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def _init_online(wandb, options: Dict[str, Any]):
    """An online W&B run, or None (after one line saying why) when the server cannot be reached in time."""
    import sys

    base_url = os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai"
    problem = unreachable(base_url)
    if problem is None:
        try:
            return wandb.init(
                mode="online",
                settings=wandb.Settings(
                    silent=True, console="off", init_timeout=WANDB_INIT_TIMEOUT, login_timeout=WANDB_INIT_TIMEOUT
                ),
                **options,
            )
        except Exception as error:  # noqa: BLE001 - no login, a timeout, a server error: log offline instead
            from pgfsparse.errors import first_line

            problem = first_line(error)[:160]
            try:
                wandb.finish()
            except Exception:  # noqa: BLE001 - nothing to finish
                pass
    print(
        f"pgf-train: W&B online is unavailable ({problem}): logging offline instead; upload later with "
        f"wandb sync {options['dir']}/wandb",
        file=sys.stderr,
    )
    return None
