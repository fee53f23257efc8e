"""The one shared training loop. A Task supplies data, model, loss and metrics; the loop
knows nothing about images or text.

    Trainer(...): checks that need no model or data, the task, the checkpoint to resume (if any)
    fit():  join the process group -> build the run's parts (parts.py: data -> model
            -> sparsifier -> FLOP counter -> steps -> optimizer + LR schedule -> restore)
            -> the loop; the process group and W&B are released whatever fails
    loop:   per optimizer step: sparsifier.step(step); micro-batch forward/backward;
            clip; optimizer and LR step; divergence check; periodic eval / checkpoint.
            The Recorder (recorder.py) writes metrics.jsonl, W&B and summary.json.
            Under FSDP2 (distributed.strategy=fsdp) every rank runs all of it, evaluation,
            diagnostics and checkpoint gathering included (each is a collective); rank 0 writes
    start:  a one-shot prune (oneshot=...) ran in parts.py: a checkpoint at step 0 keeps it
    end:    final checkpoint; then eval as trained and strict N:M, lm-eval-harness tasks on the strict
            model (eval.lm_eval) and summary.json (a failure there leaves a resumable run: resuming
            redoes only the end)
    stops:  SIGTERM/SIGINT -> a checkpoint at the next step boundary, then `Stopped` (signals.py);
            a non-finite loss or gradient -> `Divergence`, before any checkpoint of it
"""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Optional, cast

import torch

from pgfsparse.config.schema import TrainConfig
from pgfsparse.config.validation import check
from pgfsparse.errors import Divergence, Stopped
from pgfsparse.evaluation.harness import run_lm_eval
from pgfsparse.run import checkpoint, distributed
from pgfsparse.run.parts import RunParts, build_run_parts
from pgfsparse.run.recorder import Recorder
from pgfsparse.run.resume import read_checkpoint, recorded_config
from pgfsparse.run.signals import stop_on_signals
from pgfsparse.rundir.layout import CHECKPOINT
from pgfsparse.rundir.records import RunSummary
from pgfsparse.tasks import build_task


class Trainer:
    parts: RunParts  # what fit() builds
    resumed_from: int = 0  # the step fit() started from

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        choices: Optional[Dict[str, str]] = None,
        sweep_name: Optional[str] = None,
        name: Optional[str] = None,
    ):
        """`choices`: Hydra's group choices (`model` labels the run); `name`: a multirun point's folder name."""
        self.cfg, self.choices, self.sweep_name = cfg, choices or {}, sweep_name
        self.spec = check(cfg, self.choices.get("model"), name=name)  # one-line errors before anything is built
        # A bad task setting or a damaged or mismatched checkpoint fails here, before the caller writes any record.
        self._use_run_dir(Path(run_dir))

    def _use_run_dir(self, run_dir: Path) -> None:
        """The run dir and what is read from it: the task (which keeps its tokenizer there) and the checkpoint."""
        self.run_dir = run_dir
        self.task = build_task(self.cfg, run_dir)
        self.resumed = read_checkpoint(run_dir, self.cfg, self.spec)

    # -- the run ------------------------------------------------------------------------
    def fit(self, on_start: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
        """Train, or resume, to the end of the budget; returns the summary (a finished run's, if it was).

        `on_start` is called once every part is built and the checkpoint restored, before the first
        step: up to then a bad setting refuses the run, after it the run is under way.
        """
        self.process, self.device = distributed.start(self.cfg.device)
        recorder = None
        try:
            shared = Path(distributed.shared_run_dir(str(self.run_dir), self.process))
            if shared != self.run_dir:  # a rank > 0 was started in a throwaway dir: the run's is rank 0's
                self._use_run_dir(shared)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            parts = self.parts = build_run_parts(
                self.cfg, self.task, self.spec, self.process, self.device, self.resumed
            )
            if on_start is not None:
                on_start()
            if parts.oneshot_ran and parts.total_steps > 0:  # a kill from here on resumes without recalibrating
                self._save(0, 0.0)
            start = self.resumed_from = parts.start_step
            if 0 < start < parts.total_steps and self.process.is_main:
                print(f"pgf-train: resuming {self.run_dir} from step {start} of {parts.total_steps}", file=sys.stderr)
            finished = RunSummary.read(self.run_dir)
            if start >= parts.total_steps and finished:  # resuming a finished run: nothing to redo
                return finished.to_dict()
            recorder = Recorder(self.cfg, self.spec, self.task, parts, self.process, self.run_dir, self.sweep_name)
            return self._loop(recorder)
        finally:
            if recorder:
                recorder.close()
            distributed.stop(self.process)

    def _loop(self, recorder: Recorder) -> Dict[str, Any]:
        cfg, parts, task, device = self.cfg, self.parts, self.task, self.device
        start, total, accumulate = parts.start_step, parts.total_steps, cfg.optim.accumulate
        batches = task.train_batches(
            parts.data, start_micro_step=start * accumulate, rank=self.process.rank, world_size=self.process.world_size
        )
        parts.model.train()
        with stop_on_signals() as stop:
            with recorder.training():
                for step in range(start, total):
                    parts.sparsifier.step(step)
                    loss_sum, examples = torch.zeros((), device=device), 0
                    for micro in range(accumulate):
                        batch = task.to_device(next(batches), device)
                        sync = micro == accumulate - 1 or not self.process.distributed
                        if parts.sharded and accumulate > 1:  # FSDP2 reads the flag in the backward
                            distributed.set_gradient_sync(parts.model, sync)
                            sync = True
                        with contextlib.nullcontext() if sync else _no_sync(parts.ddp_model), parts.autocast():
                            loss = task.loss(parts.ddp_model, batch) / accumulate
                        parts.scaler.scale(loss).backward()
                        loss_sum += loss.detach()
                        examples += task.batch_size(batch)
                    parts.scaler.unscale_(parts.optimizer)
                    # max_norm=inf multiplies by exactly 1: the norm is measured, the gradient untouched
                    grad_norm = torch.nn.utils.clip_grad_norm_(
                        parts.model.parameters(), cfg.optim.grad_clip or math.inf
                    )
                    if parts.sharded:  # over DTensor gradients: a replicated DTensor, the same on every rank
                        grad_norm = distributed.whole(grad_norm)
                    done = step + 1
                    recorder.diagnostics(done)  # before the optimizer step: they read the gradients
                    scale = parts.scaler.get_scale() if parts.scaler.is_enabled() else None
                    parts.scaler.step(parts.optimizer)
                    parts.scaler.update()
                    parts.lr_schedule.step_update(num_updates=done)
                    parts.optimizer.zero_grad(set_to_none=True)
                    step_loss = loss_sum.item()
                    # fp16: an overflow the GradScaler skipped (and lowered its scale for) is not divergence
                    if scale is None or parts.scaler.get_scale() >= scale:
                        _check_finite(step_loss, float(grad_norm), done)
                    recorder.step_done(done, step_loss, examples, float(grad_norm))
                    if cfg.eval_every and done % cfg.eval_every == 0 and done != total:
                        recorder.eval(done, self.evaluate())
                    checkpointed = cfg.checkpoint_every and done % cfg.checkpoint_every == 0
                    if checkpointed and done != total:
                        self._save(done, recorder.elapsed())
                    if done != total and self._stop_requested(stop):
                        if not checkpointed:
                            self._save(done, recorder.elapsed())
                        raise Stopped(
                            f"stopped by {stop.name or 'a signal'} at step {done} of {total}, "
                            f"checkpoint written: continue with pgf-train resume={self.run_dir}",
                            done,
                        )
            # The final checkpoint comes first: a failure in the evaluation or the summary leaves a run that
            # resumes to redo only them.
            self._save(total, recorder.elapsed())
        final = self.evaluate()
        # lm-eval-harness on the strict N:M model: rank 0's; every rank's forwards under FSDP2 (they gather weights)
        if cfg.eval.lm_eval.tasks and (self.process.is_main or parts.sharded):
            parts.model.eval()
            with parts.sparsifier.strict():
                tokenizer = cast(Any, task).tokenizer  # the causal-LM task's (check_lm_eval: decoders only)
                final.update(run_lm_eval(parts.model, tokenizer, cfg.eval.lm_eval, device, parts.autocast))
        recorder.eval(total, final)
        return recorder.finish(final)

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

    def _save(self, step: int, wall: float) -> None:
        """Rank 0 writes the checkpoint; under FSDP2 every rank first gathers the whole model and optimizer state."""
        parts = self.parts
        if parts.sharded:
            model_state = distributed.full_model_state(parts.model, keep=self.process.is_main)
            optimizer_state = distributed.full_optimizer_state(parts.optimizer, keep=self.process.is_main)
        if not self.process.is_main:
            return
        if not parts.sharded:
            model_state, optimizer_state = parts.model.state_dict(), parts.optimizer.state_dict()
        checkpoint.save(
            self.run_dir / CHECKPOINT,
            {
                "model": model_state,
                "optimizer": optimizer_state,
                "scheduler": parts.lr_schedule.state_dict(),
                "sparsifier": parts.sparsifier.state_dict() if parts.sparsifier.layers else None,
                "scaler": parts.scaler.state_dict(),
                "rng": checkpoint.rng_state(),
                "step": step,
                "train_flops": parts.flops.cumulative_train_flops(step),
                "wall_seconds": wall,
                "run_id": parts.run_id,
                "oneshot": parts.oneshot,
                "config": recorded_config(self.cfg),
            },
        )


def _no_sync(ddp_model: torch.nn.Module) -> ContextManager[Any]:
    """DDP's no_sync(): accumulate gradients without the all-reduce (torch.compile's wrapper forwards it)."""
    # only called across processes, where distributed.wrap made the model a DistributedDataParallel
    return cast(Callable[[], ContextManager[Any]], ddp_model.no_sync)()


def _check_finite(loss: float, grad_norm: float, step: int) -> None:
    if not math.isfinite(loss):
        raise Divergence(
            f"the training loss is {loss} at step {step}: lower optim.lr, set optim.grad_clip, "
            "or check the data (the last checkpoint is kept)"
        )
    if not math.isfinite(grad_norm):
        raise Divergence(
            f"the gradient norm is {grad_norm} at step {step} (loss {loss:.4g}): lower optim.lr "
            "or check the model and data for overflow (the last checkpoint is kept)"
        )
