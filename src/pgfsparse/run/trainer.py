"""The one shared training loop. A Task supplies data, model, loss and metrics; the loop
knows nothing about images or text.

    Trainer(...): checks that need no model or data, the task, the checkpoint to resume (if any)
    fit():  join the process group -> build the run's parts (run_parts.py: data -> model
            -> sparsifier -> FLOP counter -> steps -> optimizer + LR schedule -> restore)
            -> the loop; the process group and W&B are released whatever fails
    loop:   per optimizer step: sparsifier.step(step); micro-batch forward/backward;
            clip; optimizer and LR step; FLOPs; periodic log / eval / checkpoint
    end:    final checkpoint; then eval as trained and strict N:M and summary.json (a failure
            there leaves a resumable run: resuming redoes only the end)
    stops:  SIGTERM/SIGINT -> a checkpoint at the next step boundary, then `Stopped` (signals.py);
            a non-finite loss or gradient -> `Divergence`, before any checkpoint of it
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch

from pgfsparse.config.schema import TrainConfig
from pgfsparse.config.validation import check, check_budget
from pgfsparse.errors import Divergence, Stopped
from pgfsparse.run import checkpoint, distributed
from pgfsparse.run.parts import RunParts, build_run_parts
from pgfsparse.run.provenance import git_sha, package_version
from pgfsparse.run.resume import read_checkpoint, recorded_config, resume_settings  # noqa: F401 - cli.py imports resume_settings from here
from pgfsparse.run.signals import stop_on_signals
from pgfsparse.run.wandb_logger import WandbRun
from pgfsparse.rundir.layout import CHECKPOINT, SUMMARY
from pgfsparse.rundir.metrics import MetricsFile, write_summary
from pgfsparse.rundir.naming import describe_sparsity, run_name
from pgfsparse.tasks import build_task


class Trainer:
    parts: RunParts  # what fit() builds
    resumed_from: int = 0  # the step fit() started from
    loop_seconds: Optional[float] = None  # this launch's training loop, first step to last log line

    def __init__(self, cfg: TrainConfig, run_dir: Path, choices: Optional[Dict[str, str]] = None,
                 sweep_name: Optional[str] = None, name: Optional[str] = None):
        self.cfg, self.choices, self.sweep_name, self.name = cfg, choices or {}, sweep_name, name
        self.patterns, self.recipe = check(cfg)  # one-line errors before anything is built
        # A bad task setting or a damaged or mismatched checkpoint fails here, before the caller writes any record.
        self._use_run_dir(Path(run_dir))

    def _use_run_dir(self, run_dir: Path) -> None:
        """The run dir and what is read from it: the task (which keeps its tokenizer there) and the checkpoint."""
        self.run_dir = run_dir
        self.task = build_task(self.cfg, run_dir)
        self.resumed = read_checkpoint(run_dir, self.cfg)

    # -- the run ------------------------------------------------------------------------
    def fit(self, on_start: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
        """Train, or resume, to the end of the budget; returns the summary (a finished run's, if it was).

        `on_start` is called once every part is built and the checkpoint restored, before the first
        step: up to then a bad setting refuses the run, after it the run is under way.
        """
        self.process, self.device = distributed.start(self.cfg.device)
        wandb = None
        try:
            shared = Path(distributed.shared_run_dir(str(self.run_dir), self.process))
            if shared != self.run_dir:  # a rank > 0 was started in a throwaway dir: the run's is rank 0's
                self._use_run_dir(shared)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            parts = self.parts = build_run_parts(self.cfg, self.task, self.patterns, self.recipe, self.process,
                                                 self.device, self.resumed)
            if on_start is not None:
                on_start()
            start = self.resumed_from = parts.start_step
            if 0 < start < parts.total_steps and self.process.is_main:
                print(f"pgf-train: resuming {self.run_dir} from step {start} of {parts.total_steps}", file=sys.stderr)
            finished = self.run_dir / SUMMARY
            if start >= parts.total_steps and finished.exists():  # resuming a finished run: nothing to redo
                return json.loads(finished.read_text())
            metrics = MetricsFile(self.run_dir)
            if self.process.is_main:
                # a resumed run rewrites what came after its checkpoint (after the final one: the final eval)
                metrics.truncate_after(start, final=start >= parts.total_steps)
                wandb = WandbRun(self.cfg.logger, self.run_dir, self.run_name(), self.tags(), self.sweep_name,
                                 self.wandb_config(), parts.run_id)
            summary = self._loop(metrics, wandb)
            if wandb:
                wandb.summary(summary)
            return summary
        finally:
            if wandb:
                wandb.finish()
            distributed.stop(self.process)

    def _loop(self, metrics: MetricsFile, wandb) -> Dict[str, Any]:
        cfg, parts = self.cfg, self.parts
        start, total, accumulate = parts.start_step, parts.total_steps, cfg.optim.accumulate
        batches = self.task.train_batches(parts.data, start_micro_step=start * accumulate,
                                          rank=self.process.rank, world_size=self.process.world_size)
        began = time.perf_counter() - parts.wall_offset
        window_loss, window_steps, window_examples, window_start = 0.0, 0, 0, time.perf_counter()
        progress = _progress(start, total, self.process.is_main)
        parts.model.train()
        with stop_on_signals() as stop:
            try:  # close the bar before any error message
                for step in range(start, total):
                    parts.sparsifier.step(step)
                    loss_sum = torch.zeros((), device=self.device)
                    for micro in range(accumulate):
                        batch = self.task.to_device(next(batches), self.device)
                        sync = micro == accumulate - 1 or not self.process.distributed
                        with (contextlib.nullcontext() if sync else parts.ddp_model.no_sync()), parts.autocast():
                            loss = self.task.loss(parts.ddp_model, batch) / accumulate
                        parts.scaler.scale(loss).backward()
                        loss_sum += loss.detach()
                        window_examples += self.task.batch_size(batch)
                    parts.scaler.unscale_(parts.optimizer)
                    # max_norm=inf multiplies by exactly 1: the norm is measured, the gradient untouched
                    grad_norm = torch.nn.utils.clip_grad_norm_(parts.model.parameters(),
                                                               cfg.optim.grad_clip or math.inf)
                    done = step + 1
                    if parts.sparsifier.layers and cfg.diagnostics_every and done % cfg.diagnostics_every == 0:
                        self._log(metrics, wandb, done, "diagnostics",
                                  {f"sparsity/{k}": v for k, v in parts.sparsifier.diagnostics(parts.optimizer).items()})
                    scale = parts.scaler.get_scale() if parts.scaler.is_enabled() else None
                    parts.scaler.step(parts.optimizer)
                    parts.scaler.update()
                    parts.lr_schedule.step_update(num_updates=done)
                    parts.optimizer.zero_grad(set_to_none=True)
                    step_loss = loss_sum.item()
                    # fp16: an overflow the GradScaler skipped (and lowered its scale for) is not divergence
                    if scale is None or parts.scaler.get_scale() >= scale:
                        _check_finite(step_loss, float(grad_norm), done)
                    window_loss += step_loss
                    window_steps += 1
                    progress.update(1)
                    if done % cfg.log_every == 0 or done == total:
                        seconds = max(time.perf_counter() - window_start, 1e-9)
                        first = done - window_steps  # the window's first step
                        flops_per_s, mfu = _throughput(
                            parts.flops.cumulative_train_flops(done) - parts.flops.cumulative_train_flops(first),
                            seconds, parts.peak_flops, self.process.world_size)
                        event = {"train/loss": window_loss / window_steps,
                                 "train/lr": parts.optimizer.param_groups[0]["lr"],
                                 "train/examples_per_s": window_examples / seconds,
                                 "train/flops_per_s": flops_per_s}
                        if mfu is not None:
                            event["train/mfu"] = mfu
                        if parts.train_examples:
                            event["epoch"] = done * parts.examples_per_step / parts.train_examples
                        if cfg.optim.grad_clip:
                            event["train/grad_norm"] = float(grad_norm)
                        self._log(metrics, wandb, done, "train", event)
                        progress.set_postfix(loss=f"{event['train/loss']:.3f}",
                                             ex_s=f"{event['train/examples_per_s']:.0f}",
                                             **_flops_postfix(flops_per_s, mfu))
                        if done == total:  # the loop's own time in this launch: summary()'s FLOP/s
                            self.loop_seconds = time.perf_counter() - began - parts.wall_offset
                        window_loss, window_steps, window_examples, window_start = 0.0, 0, 0, time.perf_counter()
                    if cfg.eval_every and done % cfg.eval_every == 0 and done != total:
                        self._log(metrics, wandb, done, "eval", self.evaluate())
                    checkpointed = cfg.checkpoint_every and done % cfg.checkpoint_every == 0
                    if checkpointed and done != total:
                        self._save(done, time.perf_counter() - began)
                    if done != total and self._stop_requested(stop):
                        if not checkpointed:
                            self._save(done, time.perf_counter() - began)
                        raise Stopped(f"stopped by {stop.name or 'a signal'} at step {done} of {total}, "
                                      f"checkpoint written: continue with pgf-train resume={self.run_dir}", done)
            finally:
                progress.close()
            # The final checkpoint comes first: a failure in the evaluation or the summary leaves a run that
            # resumes to redo only them.
            wall = time.perf_counter() - began
            self._save(total, wall)
        final = self.evaluate()
        self._log(metrics, wandb, total, "eval", final)
        summary = self.summary(final, time.perf_counter() - began)
        if self.process.is_main:
            write_summary(self.run_dir, summary)
        return summary

    def _stop_requested(self, stop) -> bool:
        """Whether any process got a stop signal: all ranks stop at the same step."""
        if not self.process.distributed:
            return stop.requested
        flag = torch.tensor(float(stop.requested), device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def evaluate(self) -> Dict[str, float]:
        """Eval metrics of the model as trained (eval/*) and strictly N:M (eval_strict/*)."""
        parts = self.parts
        parts.model.eval()
        out = {f"eval/{k}": v for k, v in self._evaluate_once().items()}
        with parts.sparsifier.strict():
            out.update({f"eval_strict/{k}": v for k, v in self._evaluate_once().items()})
        parts.model.train()
        return out

    def _evaluate_once(self) -> Dict[str, float]:
        parts = self.parts
        return self.task.evaluate(parts.model, self.task.eval_batches(parts.data), self.device, parts.autocast)

    def _log(self, metrics: MetricsFile, wandb, step: int, kind: str, values: Dict[str, Any]) -> None:
        if not self.process.is_main:
            return
        event = {"event": kind, "step": step, "train_flops": self.parts.flops.cumulative_train_flops(step), **values}
        metrics.write(event)
        if wandb:
            wandb.log(event)

    def _save(self, step: int, wall: float) -> None:
        if not self.process.is_main:
            return
        parts = self.parts
        checkpoint.save(self.run_dir / CHECKPOINT, {
            "model": parts.model.state_dict(),
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.lr_schedule.state_dict(),
            "sparsifier": parts.sparsifier.state_dict() if parts.sparsifier.layers else None,
            "scaler": parts.scaler.state_dict(),
            "rng": checkpoint.rng_state(),
            "step": step,
            "train_flops": parts.flops.cumulative_train_flops(step),
            "wall_seconds": wall,
            "run_id": parts.run_id,
            "config": recorded_config(self.cfg),
        })

    # -- naming and the summary ---------------------------------------------------------
    def run_name(self) -> str:
        """The W&B run name: the sweep folder's name in a multirun, else model-sparsity-recipe-seed."""
        return self.name or run_name(self.choices.get("model", self.cfg.model.name), self.patterns,
                                     self.recipe.name, self.cfg.seed)

    def wandb_config(self) -> Dict[str, Any]:
        """The config as W&B groups it: canonical recipe names ('decay', 'auto' -> mdgf_exp, dense)."""
        config = asdict(self.cfg)
        config["recipe"] = {**config["recipe"], "name": self.recipe.name, **self.recipe.knobs()}
        config.update(run_name=self.run_name(), sweep=self.sweep_name, git_sha=git_sha(),
                      model_choice=self.choices.get("model", self.cfg.model.family))
        return config

    def tags(self):
        return [f"model:{self.choices.get('model', self.cfg.model.name)}",
                f"sparsity:{describe_sparsity(self.patterns)}", f"recipe:{self.recipe.name}",
                f"seed:{self.cfg.seed}", *self.cfg.logger.tags]

    def _run_throughput(self) -> Dict[str, Any]:
        """summary.json's FLOP/s and MFU: this launch's steps over its loop time (final eval excluded).

        A resumed run counts only the steps since its checkpoint, over its own loop: earlier launches'
        time is not measured the same way (it holds their evaluations and start-up). None when this
        launch trained no step (it resumed a finished run to redo the end).
        """
        parts, flops = self.parts, self.parts.flops
        rate = mfu = None
        if self.loop_seconds and parts.total_steps > self.resumed_from:
            trained = flops.cumulative_train_flops(parts.total_steps) - flops.cumulative_train_flops(self.resumed_from)
            rate, mfu = _throughput(trained, self.loop_seconds, parts.peak_flops, self.process.world_size)
        return {"train_flops_per_s": rate, "mfu": mfu, "peak_flops": parts.peak_flops}

    def summary(self, final: Dict[str, float], wall: float) -> Dict[str, Any]:
        metric, parts = self.task.eval_metric, self.parts
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
            "data_source": getattr(parts.data, "source", None),
            "sparsity": describe_sparsity(self.patterns),
            "patterns": {loc: str(p) for loc, p in self.patterns.items()},
            "recipe": self.recipe.name,
            "recipe_knobs": self.recipe.knobs(),
            "seed": self.cfg.seed,
            "steps": parts.total_steps,
            "examples_per_step": parts.examples_per_step,
            "train_flops": parts.flops.cumulative_train_flops(parts.total_steps),
            "inference_flops": parts.flops.inference_flops(),
            "eval_metric": metric,
            "eval_value": final[f"eval/{metric}"],
            "eval_value_strict": final[f"eval_strict/{metric}"],
            "eval": final,
            "wall_seconds": wall,
            **self._run_throughput(),
            "sparse_layers": len(parts.sparsifier.layers),
            "skipped_layers": parts.sparsifier.skipped,
            "run_dir": str(self.run_dir),
        }


def _throughput(flops: float, seconds: float, peak: Optional[float], processes: int):
    """(FLOP/s, MFU or None): MFU against the peak of every process's device (FLOPs count all of them)."""
    rate = flops / seconds
    return rate, (rate / (peak * processes) if peak else None)


def _flops_postfix(flops_per_s: float, mfu: Optional[float]) -> Dict[str, str]:
    """The progress bar's FLOP/s (tflops=0.17 or gflops=170) and MFU (mfu=12.3%) when known."""
    unit, scale = ("tflops", 1e12) if flops_per_s >= 1e12 else ("gflops", 1e9)
    shown = {unit: f"{flops_per_s / scale:.3g}"}
    if mfu is not None:
        shown["mfu"] = f"{mfu:.1%}"
    return shown


def _check_finite(loss: float, grad_norm: float, step: int) -> None:
    if not math.isfinite(loss):
        raise Divergence(f"the training loss is {loss} at step {step}: lower optim.lr, set optim.grad_clip, "
                         "or check the data (the last checkpoint is kept)")
    if not math.isfinite(grad_norm):
        raise Divergence(f"the gradient norm is {grad_norm} at step {step} (loss {loss:.4g}): lower optim.lr "
                         "or check the model and data for overflow (the last checkpoint is kept)")


def _progress(start: int, total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, desc="train", unit="step",
                dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)
