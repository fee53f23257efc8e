"""What a run records, and when: metrics.jsonl, the trackers (W&B, MLflow), the progress bar and summary.json.

The loop reports what happened (`step_done`, `diagnostics`, `eval`, `finish`); the Recorder
keeps the throughput window (loss, steps, examples and seconds since the last training log
line) and the loop's own time, and writes. Only the main process writes; every process keeps
the same arithmetic.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

from pgfsparse.run.provenance import git_sha, package_version
from pgfsparse.run.tracker import TrackedRun, Tracker, open_trackers
from pgfsparse.rundir.metrics import MetricsFile
from pgfsparse.rundir.records import RunSummary


class Recorder:
    """A run's records. Opening one cuts metrics.jsonl back to the start step and starts the trackers."""

    loop_seconds: Optional[float] = None  # this launch's training loop, first step to last log line

    def __init__(
        self,
        cfg,
        spec,
        task,
        parts,
        process,
        run_dir: Path,
        sweep_name: Optional[str] = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.cfg, self.spec, self.parts, self.process, self.clock = cfg, spec, parts, process, clock
        self.eval_metric, self.run_dir, self.sweep_name = task.eval_metric, Path(run_dir), sweep_name
        self.higher_is_better = bool(task.higher_is_better)  # the headline's direction, for pgf-report
        self.metrics = MetricsFile(self.run_dir)
        self.trackers: List[Tracker] = []
        if process.is_main:
            start = parts.start_step
            # a resumed run rewrites what came after its checkpoint (after the final one: the final eval)
            self.metrics.truncate_after(start, final=start >= parts.total_steps)
            run = TrackedRun(spec.name, self.tags(), sweep_name, self.tracker_config(), parts.run_id, self.run_dir)
            self.trackers = open_trackers(cfg.logger, run)

    # -- the loop's reports --------------------------------------------------------------
    @contextlib.contextmanager
    def training(self):
        """Around the steps: starts the clocks and the progress bar; closes the bar before any error message."""
        parts = self.parts
        self.began = self.clock() - parts.wall_offset
        self._new_window()
        self.progress = _progress(parts.start_step, parts.total_steps, self.process.is_main)
        try:
            yield
        finally:
            self.progress.close()

    def elapsed(self) -> float:
        """Seconds trained so far, earlier launches included."""
        return self.clock() - self.began

    def diagnostics(self, done: int) -> None:
        """The sparsity diagnostics every `diagnostics_every` steps (called before the optimizer step)."""
        parts, every = self.parts, self.cfg.diagnostics_every
        if parts.sparsifier.layers and every and done % every == 0:
            self.log(
                done,
                "diagnostics",
                {f"sparsity/{k}": v for k, v in parts.sparsifier.diagnostics(parts.optimizer).items()},
            )

    def step_done(self, done: int, loss: float, examples: int, grad_norm: float) -> None:
        """One optimizer step more; a training log line every `log_every` steps and at the last."""
        self.window_loss += loss
        self.window_steps += 1
        self.window_examples += examples
        self.progress.update(1)
        if done % self.cfg.log_every == 0 or done == self.parts.total_steps:
            self._log_window(done, grad_norm)

    def eval(self, step: int, values: Dict[str, float]) -> None:
        self.log(step, "eval", values)

    def finish(self, final: Dict[str, float]) -> Dict[str, Any]:
        """summary.json (and the trackers' summary) after the final evaluation `final`; returns the summary."""
        record = self.summary(final, self.elapsed())
        if self.process.is_main:
            record.write(self.run_dir)
        summary = record.to_dict()
        for tracker in self.trackers:
            tracker.summary(summary)
        return summary

    def close(self) -> None:
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            tracker.finish()

    # -- writing ------------------------------------------------------------------------
    def log(self, step: int, kind: str, values: Dict[str, Any]) -> None:
        """One metrics.jsonl line (and each tracker's log) with the step's cumulative training FLOPs."""
        if not self.process.is_main:
            return
        event = {"event": kind, "step": step, "train_flops": self.parts.flops.cumulative_train_flops(step), **values}
        self.metrics.write(event)
        for tracker in self.trackers:
            tracker.log(event)

    def _new_window(self) -> None:
        self.window_loss, self.window_steps, self.window_examples, self.window_start = 0.0, 0, 0, self.clock()

    def _log_window(self, done: int, grad_norm: float) -> None:
        parts = self.parts
        seconds = max(self.clock() - self.window_start, 1e-9)
        first = done - self.window_steps  # the window's first step
        flops_per_s, mfu = _throughput(
            parts.flops.cumulative_train_flops(done) - parts.flops.cumulative_train_flops(first),
            seconds,
            parts.peak_flops,
            self.process.world_size,
        )
        event = {
            "train/loss": self.window_loss / self.window_steps,
            "train/lr": parts.optimizer.param_groups[0]["lr"],
            "train/examples_per_s": self.window_examples / seconds,
            "train/flops_per_s": flops_per_s,
        }
        if mfu is not None:
            event["train/mfu"] = mfu
        if parts.train_examples:
            event["epoch"] = done * parts.examples_per_step / parts.train_examples
        if self.cfg.optim.grad_clip:
            event["train/grad_norm"] = grad_norm
        self.log(done, "train", event)
        self.progress.set_postfix(
            loss=f"{event['train/loss']:.3f}",
            ex_s=f"{event['train/examples_per_s']:.0f}",
            **_flops_postfix(flops_per_s, mfu),
        )
        if done == parts.total_steps:  # the loop's own time in this launch: the summary's FLOP/s
            self.loop_seconds = self.clock() - self.began - parts.wall_offset
        self._new_window()

    # -- the trackers and the summary -----------------------------------------------------
    def tracker_config(self) -> Dict[str, Any]:
        """The config as trackers group it: canonical recipe names ('decay', 'auto' -> mdgf_exp, dense)."""
        spec = self.spec
        config = asdict(self.cfg)
        config["recipe"] = {**config["recipe"], "name": spec.recipe.name, **spec.recipe.knobs()}
        config.update(run_name=spec.name, sweep=self.sweep_name, git_sha=git_sha(), model_choice=spec.model)
        return config

    def tags(self):
        spec = self.spec
        return [
            f"model:{spec.model}",
            f"sparsity:{spec.sparsity}",
            f"recipe:{spec.recipe_label}",
            *([f"oneshot:{spec.oneshot}"] if spec.oneshot != "none" else []),
            f"seed:{self.cfg.seed}",
            *self.cfg.logger.tags,
        ]

    def _run_throughput(self) -> Dict[str, Any]:
        """summary.json's FLOP/s and MFU: this launch's steps over its loop time (final eval excluded).

        A resumed run counts only the steps since its checkpoint, over its own loop: earlier launches'
        time is not measured the same way (it holds their evaluations and start-up). None when this
        launch trained no step (it resumed a finished run to redo the end).
        """
        parts, flops = self.parts, self.parts.flops
        rate = mfu = None
        if self.loop_seconds and parts.total_steps > parts.start_step:
            trained = flops.cumulative_train_flops(parts.total_steps) - flops.cumulative_train_flops(parts.start_step)
            rate, mfu = _throughput(trained, self.loop_seconds, parts.peak_flops, self.process.world_size)
        return {"train_flops_per_s": rate, "mfu": mfu, "peak_flops": parts.peak_flops}

    def summary(self, final: Dict[str, float], wall: float) -> RunSummary:
        """summary.json's record (rundir/records.py) after the final evaluation `final`."""
        metric, parts, spec, cfg = self.eval_metric, self.parts, self.spec, self.cfg
        budget_kind, budget_value = spec.budget
        return RunSummary(
            run_name=spec.name,
            sweep=self.sweep_name,
            status="finished",
            budget={"kind": budget_kind, "value": budget_value},
            version=package_version(),
            git_sha=git_sha(),
            threads=torch.get_num_threads(),
            model=spec.model,
            model_name=cfg.model.name,
            data=cfg.data.name,
            data_source=getattr(parts.data, "source", None),
            sparsity=spec.sparsity,
            patterns={loc: str(p) for loc, p in spec.patterns.items()},
            recipe=spec.recipe_label,
            recipe_knobs=spec.recipe.knobs(),
            oneshot=spec.oneshot,
            oneshot_calibration=parts.oneshot,
            seed=cfg.seed,
            steps=parts.total_steps,
            examples_per_step=parts.examples_per_step,
            train_flops=parts.flops.cumulative_train_flops(parts.total_steps),
            inference_flops=parts.flops.inference_flops(),
            eval_metric=metric,
            eval_value=final[f"eval/{metric}"],
            eval_value_strict=final[f"eval_strict/{metric}"],
            eval_higher_is_better=self.higher_is_better,
            eval=final,
            wall_seconds=wall,
            **self._run_throughput(),
            sparse_layers=len(parts.sparsifier.layers),
            skipped_layers=parts.sparsifier.skipped,
            run_dir=str(self.run_dir),
        )


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


def _progress(start: int, total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=start,
        disable=not enabled,
        desc="train",
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
    )
