"""The one-shot prune of a run's starting weights (oneshot=magnitude | wanda | sparsegpt), before the sparsifier.

    samples:  oneshot.samples training examples drawn with the run's seed (`Task.calibration_batches`), under a
              forked RNG: a run's own random stream is the same with or without a one-shot start
    prune:    `pgfsparse.oneshot.prune_model` with the run's patterns, layer map and allow_skip, block by block in
              forward order; each calibration forward is the task's training loss (T5 needs its decoder inputs)
    charge:   the calibration forwards, in full-forward equivalents, x examples per forward x the dense forward's
              FLOPs per example, added to train_flops before step 0 (`FlopCounter.before_training`). SparseGPT's
              solver (a Cholesky factor and the column updates, about in^3 + 2 out in^2 per layer) is not charged:
              it is not a model forward or backward, and it is small: for experiment=shakespeare_gpt_recover about
              4.5e9 FLOPs, 1.3% of the calibration forwards (3.56e11), themselves 1.4% of a 600-step recovery.

The record (method, samples, forwards, FLOPs, seconds) goes into every checkpoint, so a resumed run never calibrates
again, and into summary.json (`oneshot_calibration`).
"""

from __future__ import annotations

import time
from typing import Any, Dict

import torch

from pgfsparse.config.schema import TrainConfig
from pgfsparse.config.spec import RunSpec
from pgfsparse.errors import ConfigError


def prune_start(
    model: torch.nn.Module, cfg: TrainConfig, spec: RunSpec, task, data, device, progress: bool = True
) -> Dict[str, Any]:
    """Prune `model` (plain, on `device`) in place with the run's one-shot method; returns the calibration record.

    The record's `flops` is filled in by `charge` once the FLOP counter exists.
    """
    from pgfsparse.oneshot import prune_model

    method, settings = spec.oneshot, cfg.oneshot
    began = time.perf_counter()
    batches = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if method != "magnitude":  # magnitude needs no data
            batches = [task.to_device(b, device) for b in task.calibration_batches(data, settings.samples, cfg.seed)]
    try:
        report = prune_model(
            model,
            dict(spec.patterns),
            method,
            batches,
            forward=task.loss,
            layer_map=cfg.model.layer_patterns or cfg.model.layer_map,
            blocksize=settings.blocksize,
            damp=settings.damp,
            allow_skip=cfg.sparsity.allow_skip,
            progress=progress,
        )
    except ValueError as error:  # a layer or pattern the method refuses: before any step
        raise ConfigError(f"oneshot={method}: {error}") from None
    examples = sum(task.batch_size(b) for b in batches)
    return {
        "method": method,
        "samples": examples,
        "forwards": report.forwards,
        "forward_equivalents": report.forward_equivalents,
        "examples_per_forward": examples / len(batches) if batches else 0.0,
        "pruned_layers": sum(len(block) for block in report.blocks),
        "skipped_layers": list(report.skipped),
        "seconds": time.perf_counter() - began,
        "flops": None,
    }


def charge(record: Dict[str, Any], flops) -> float:
    """The calibration's training FLOPs: its forwards at the dense model's forward FLOPs per example."""
    return float(record["forward_equivalents"] * record["examples_per_forward"] * flops.forward.total)
