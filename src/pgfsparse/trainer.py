"""The one shared training loop. A Task supplies data, model, loss and metrics; the loop
knows nothing about images or text.

    setup:  checks -> data -> model -> sparsifier -> FLOP counter -> steps from the budget
            -> optimizer + LR schedule (timm) -> resume from checkpoint.pt if present
    loop:   per optimizer step: sparsifier.step(step); micro-batch forward/backward;
            clip; optimizer and LR step; FLOPs; periodic log / eval / checkpoint
    end:    eval as trained and strict N:M; summary.json; final checkpoint
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from . import checkpoint, distributed
from .config import TrainConfig
from .logs import MetricsFile, WandbRun, write_summary
from .sparsity import Schedule, sparsify
from .tasks import build_task
from .naming import describe_sparsity, run_name
from .provenance import git_sha, package_version
from .validation import ConfigError, check, check_budget

# Keys whose change makes a checkpoint unusable for resuming (the rest may differ).
_RESUME_KEYS = ("model", "sparsity", "recipe", "budget", "data", "optim", "schedule", "seed")


class Divergence(RuntimeError):
    """The loss became NaN or infinite: the run stops before writing a checkpoint of it."""


def resume_settings(cfg: TrainConfig) -> Dict[str, Any]:
    """The settings a run must keep to be resumed (a checkpoint records them)."""
    return {k: v for k, v in _comparable(asdict(cfg)).items() if k in _RESUME_KEYS}


def seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_lr_schedule(cfg: TrainConfig, optimizer, total_steps: int):
    """timm schedulers stepped per optimizer step (t_in_epochs=False)."""
    from timm.scheduler import CosineLRScheduler, StepLRScheduler

    s = cfg.schedule
    warmup = s.warmup_steps if s.warmup_steps is not None else round(s.warmup_fraction * total_steps)
    warmup = min(warmup, max(total_steps - 1, 0))
    common = dict(warmup_t=warmup, warmup_lr_init=cfg.optim.lr * 1e-3, warmup_prefix=True, t_in_epochs=False)
    if s.name == "cosine":
        return CosineLRScheduler(optimizer, t_initial=max(total_steps - warmup, 1), lr_min=s.min_lr, **common)
    return StepLRScheduler(optimizer, decay_t=total_steps + 1, decay_rate=1.0, **common)  # constant


def autocast_for(precision: str, device: torch.device):
    """A context-manager factory: bf16 autocast on GPU by default, fp32 on CPU."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path, choices: Optional[Dict[str, str]] = None,
                 sweep_name: Optional[str] = None, name: Optional[str] = None):
        self.cfg, self.choices, self.sweep_name, self.name = cfg, choices or {}, sweep_name, name
        self.patterns, self.recipe = check(cfg)  # one-line errors before anything is built
        self.process, self.device = distributed.start(cfg.device)
        self.run_dir = Path(distributed.shared_run_dir(str(run_dir), self.process))
        self.task = build_task(cfg, self.run_dir)
        self.resumed = self._read_checkpoint()  # a damaged checkpoint fails here, before any write

    # -- setup -------------------------------------------------------------------------
    def _read_checkpoint(self) -> Optional[Dict[str, Any]]:
        path = self.run_dir / checkpoint.CHECKPOINT
        if not path.exists():
            if self.cfg.resume:
                raise checkpoint.CheckpointError(
                    f"resume={self.cfg.resume} has no {checkpoint.CHECKPOINT}: the run wrote none yet; start it afresh"
                )
            return None
        state = checkpoint.load(path)
        saved, now = state.get("config", {}), resume_settings(self.cfg)
        changed = [k for k in _RESUME_KEYS if k in saved and _comparable(saved[k]) != now[k]]
        if changed:
            raise ConfigError(
                f"{path} was written with other {', '.join(changed)} settings: resume with the same config, "
                "or use a new run dir"
            )
        return state

    def _setup(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)
        self.data = self.task.build_data()
        model = self.task.build_model(self.data)
        try:
            layer_map = cfg.model.layer_patterns or cfg.model.layer_map
            self.sparsifier = sparsify(
                model, self.patterns, self.recipe, total_steps=1, layer_map=layer_map,
                layout=cfg.sparsity.layout, allow_skip=cfg.sparsity.allow_skip,
            )
        except ValueError as error:
            hint = "" if cfg.model.layer_patterns else " (or name the layers with model.layer_patterns)"
            raise ConfigError(f"sparsity: {error}{hint}") from None
        self.model = model.to(self.device)
        self.examples_per_step = cfg.data.batch_size * self.process.world_size * cfg.optim.accumulate
        self.flops = self._flop_counter()
        self.train_examples = self.task.train_examples(self.data)  # None for a streamed dataset
        self.total_steps = self._steps_from_budget()
        self.sparsifier.set_total_steps(self.total_steps)  # the FLOP counter reads the new schedule
        from timm.optim import create_optimizer_v2

        self.optimizer = create_optimizer_v2(
            self.model, opt=cfg.optim.name, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
            betas=tuple(cfg.optim.betas),
        )
        self.lr_schedule = build_lr_schedule(cfg, self.optimizer, self.total_steps)
        self.autocast = autocast_for(cfg.precision, self.device)
        self.scaler = torch.amp.GradScaler(enabled=cfg.precision == "fp16" and self.device.type == "cuda")
        self.ddp_model = distributed.wrap(self.model, self.process, self.device)

    def _flop_counter(self):
        from .flops import FlopCounter

        args, kwargs = self.task.example_inputs(self.data, self.device)
        return FlopCounter(self.model, args, kwargs, sparsifier=self.sparsifier,
                           examples_per_step=self.examples_per_step)

    def _steps_from_budget(self) -> int:
        kind, value = check_budget(self.cfg)
        if kind == "steps":
            return int(value)
        if kind == "epochs":
            from .data import steps_per_epoch

            examples = self.train_examples
            if examples is None:
                raise ConfigError(f"data={self.cfg.data.name} is streamed and has no epochs: set budget.steps "
                                  "or budget.train_flops")
            per_epoch = steps_per_epoch(examples, self.cfg.data.batch_size,
                                        world_size=self.process.world_size, accumulate=self.cfg.optim.accumulate)
            return max(1, math.ceil(value * per_epoch))
        from .flops import steps_for_flop_budget

        try:
            return steps_for_flop_budget(value, self.flops, lambda total: Schedule(self.recipe, total))
        except ValueError as error:
            raise ConfigError(f"budget.train_flops: {error}") from None

    def _restore(self, state: Dict[str, Any]) -> int:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["scheduler"])
        if state.get("sparsifier") is not None:
            self.sparsifier.load_state_dict(state["sparsifier"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        checkpoint.set_rng_state(state["rng"])
        self.wall_offset = state.get("wall_seconds", 0.0)
        self.run_id = state.get("run_id", self.run_id)
        return int(state["step"])

    def _save(self, step: int, wall: float) -> None:
        if not self.process.is_main:
            return
        checkpoint.save(self.run_dir / checkpoint.CHECKPOINT, {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.lr_schedule.state_dict(),
            "sparsifier": self.sparsifier.state_dict() if self.sparsifier.layers else None,
            "scaler": self.scaler.state_dict(),
            "rng": checkpoint.rng_state(),
            "step": step,
            "train_flops": self.flops.cumulative_train_flops(step),
            "wall_seconds": wall,
            "run_id": self.run_id,
            "config": _comparable(asdict(self.cfg)),
        })

    # -- the loop ---------------------------------------------------------------------
    def fit(self) -> Dict[str, Any]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_id, self.wall_offset = uuid.uuid4().hex[:12], 0.0
        self._setup()
        start = self.resumed_from = self._restore(self.resumed) if self.resumed else 0
        if 0 < start < self.total_steps and self.process.is_main:
            print(f"pgf-train: resuming {self.run_dir} from step {start} of {self.total_steps}", file=sys.stderr)
        finished = self.run_dir / "summary.json"
        if start >= self.total_steps and finished.exists():  # resuming a finished run: nothing to redo
            distributed.stop(self.process)
            return json.loads(finished.read_text())
        metrics = MetricsFile(self.run_dir)
        if self.process.is_main:
            metrics.truncate_after(start)  # a resumed run rewrites what came after its checkpoint
        wandb = WandbRun(self.cfg.logger, self.run_dir, self.run_name(), self.tags(), self.sweep_name,
                         self.wandb_config(), self.run_id) if self.process.is_main else None
        try:
            summary = self._loop(start, metrics, wandb)
            if wandb:
                wandb.summary(summary)
            return summary
        finally:
            if wandb:
                wandb.finish()
            distributed.stop(self.process)

    def _loop(self, start: int, metrics: MetricsFile, wandb) -> Dict[str, Any]:
        cfg, total = self.cfg, self.total_steps
        accumulate = cfg.optim.accumulate
        batches = self.task.train_batches(self.data, start_micro_step=start * accumulate,
                                          rank=self.process.rank, world_size=self.process.world_size)
        began = time.perf_counter() - self.wall_offset
        window_loss, window_steps, window_examples, window_start = 0.0, 0, 0, time.perf_counter()
        progress = _progress(start, total, self.process.is_main)
        self.model.train()
        try:  # close the bar before any error message
            for step in range(start, total):
                self.sparsifier.step(step)
                loss_sum = torch.zeros((), device=self.device)
                for micro in range(accumulate):
                    batch = self.task.to_device(next(batches), self.device)
                    sync = micro == accumulate - 1 or not self.process.distributed
                    with (contextlib.nullcontext() if sync else self.ddp_model.no_sync()), self.autocast():
                        loss = self.task.loss(self.ddp_model, batch) / accumulate
                    self.scaler.scale(loss).backward()
                    loss_sum += loss.detach()
                    window_examples += self.task.batch_size(batch)
                self.scaler.unscale_(self.optimizer)
                grad_norm = (torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
                             if cfg.optim.grad_clip else None)
                done = step + 1
                if self.sparsifier.layers and cfg.diagnostics_every and done % cfg.diagnostics_every == 0:
                    self._log(metrics, wandb, done, "diagnostics",
                              {f"sparsity/{k}": v for k, v in self.sparsifier.diagnostics(self.optimizer).items()})
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.lr_schedule.step_update(num_updates=done)
                self.optimizer.zero_grad(set_to_none=True)
                step_loss = loss_sum.item()
                if not math.isfinite(step_loss):
                    raise Divergence(f"the training loss is {step_loss} at step {done}: lower optim.lr, set "
                                     "optim.grad_clip, or check the data (the last checkpoint is kept)")
                window_loss += step_loss
                window_steps += 1
                progress.update(1)
                if done % cfg.log_every == 0 or done == total:
                    seconds = time.perf_counter() - window_start
                    event = {"train/loss": window_loss / window_steps, "train/lr": self.optimizer.param_groups[0]["lr"],
                             "train/examples_per_s": window_examples / max(seconds, 1e-9)}
                    if self.train_examples:
                        event["epoch"] = done * self.examples_per_step / self.train_examples
                    if grad_norm is not None:
                        event["train/grad_norm"] = float(grad_norm)
                    self._log(metrics, wandb, done, "train", event)
                    progress.set_postfix(loss=f"{event['train/loss']:.3f}", ex_s=f"{event['train/examples_per_s']:.0f}")
                    window_loss, window_steps, window_examples, window_start = 0.0, 0, 0, time.perf_counter()
                if cfg.eval_every and done % cfg.eval_every == 0 and done != total:
                    self._log(metrics, wandb, done, "eval", self.evaluate())
                if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done != total:
                    self._save(done, time.perf_counter() - began)
        finally:
            progress.close()
        final = self.evaluate()
        self._log(metrics, wandb, total, "eval", final)
        wall = time.perf_counter() - began
        self._save(total, wall)
        summary = self.summary(final, wall)
        if self.process.is_main:
            write_summary(self.run_dir, summary)
        return summary

    def evaluate(self) -> Dict[str, float]:
        """Eval metrics of the model as trained (eval/*) and strictly N:M (eval_strict/*)."""
        self.model.eval()
        out = {f"eval/{k}": v for k, v in self._evaluate_once().items()}
        with self.sparsifier.strict():
            out.update({f"eval_strict/{k}": v for k, v in self._evaluate_once().items()})
        self.model.train()
        return out

    def _evaluate_once(self) -> Dict[str, float]:
        return self.task.evaluate(self.model, self.task.eval_batches(self.data), self.device, self.autocast)

    def _log(self, metrics: MetricsFile, wandb, step: int, kind: str, values: Dict[str, Any]) -> None:
        if not self.process.is_main:
            return
        event = {"event": kind, "step": step, "train_flops": self.flops.cumulative_train_flops(step), **values}
        metrics.write(event)
        if wandb:
            wandb.log(event)

    # -- naming and the summary ---------------------------------------------------------
    def run_name(self) -> str:
        """The W&B run name: the sweep folder's name in a multirun, else model-sparsity-recipe-seed."""
        return self.name or run_name(self.choices.get("model", self.cfg.model.name), self.patterns,
                                     self.recipe.name, self.cfg.seed)

    def wandb_config(self) -> Dict[str, Any]:
        """The config as W&B groups it: canonical recipe names ('decay', 'auto' -> mdgf_exp, dense)."""
        config = asdict(self.cfg)
        config["recipe"]["name"] = self.recipe.name
        config.update(run_name=self.run_name(), sweep=self.sweep_name, git_sha=git_sha(),
                      model_choice=self.choices.get("model", self.cfg.model.family))
        return config

    def tags(self):
        return [f"model:{self.choices.get('model', self.cfg.model.name)}",
                f"sparsity:{describe_sparsity(self.patterns)}", f"recipe:{self.recipe.name}",
                f"seed:{self.cfg.seed}", *self.cfg.logger.tags]

    def summary(self, final: Dict[str, float], wall: float) -> Dict[str, Any]:
        metric = self.task.eval_metric
        budget_kind, budget_value = check_budget(self.cfg)
        return {
            "run_name": self.run_name(),
            "sweep": self.sweep_name,
            "status": "finished",
            "budget": {"kind": budget_kind, "value": budget_value},
            "version": package_version(),
            "git_sha": git_sha(),
            "threads": torch.get_num_threads(),
            "model": self.choices.get("model", self.cfg.model.family),
            "model_name": self.cfg.model.name,
            "data": self.cfg.data.name,
            "data_source": getattr(self.data, "source", None),
            "sparsity": describe_sparsity(self.patterns),
            "patterns": {loc: str(p) for loc, p in self.patterns.items()},
            "recipe": self.recipe.name,
            "seed": self.cfg.seed,
            "steps": self.total_steps,
            "examples_per_step": self.examples_per_step,
            "train_flops": self.flops.cumulative_train_flops(self.total_steps),
            "inference_flops": self.flops.inference_flops(),
            "eval_metric": metric,
            "eval_value": final[f"eval/{metric}"],
            "eval_value_strict": final[f"eval_strict/{metric}"],
            "eval": final,
            "wall_seconds": wall,
            "sparse_layers": len(self.sparsifier.layers),
            "skipped_layers": self.sparsifier.skipped,
            "run_dir": str(self.run_dir),
        }


def _progress(start: int, total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, desc="train", unit="step",
                dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)


def _comparable(value):
    """Config values as plain, weights_only-safe containers (tuples -> lists)."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k != "num_workers"}
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    return value
