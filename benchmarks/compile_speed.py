"""Training-step time under compile=true relative to eager, dense and sparse (CPU unless a GPU is found).

    PGF_DATA_DIR=../shared/data python benchmarks/compile_speed.py            (~4 min on 2 idle cores)
    ... --threads 1                                                           (a core busy elsewhere)
    python benchmarks/compile_speed.py --rounds 3 --warmup 2 --recipes dense  (a quick look)

Setting: model=vit (width 192, depth 6, patch 4), CIFAR-10 when PGF_DATA_DIR has it, else digits,
batch 128, timm AdamW, gradient clipping, 2 threads; each recipe dense or with FF 1:16 and no dense
phase (the timed steps run the masks). The eager and the compiled side of a recipe are the trainer's
own parts (run_parts.build_run_parts, same seed, compile=false / true) fed the same batches, and a step
is the trainer's: sparsifier.step, forward + backward, clip, optimizer and LR step. Rounds run every
side once, the order rotating each round, so machine drift hits all alike. Warm-up rounds come first:
compilation happens there and is reported apart (first compiled step minus the median compiled step),
from an empty inductor cache unless --warm-cache (later runs of a model reuse cached kernels).
Reported per recipe: the median over timed rounds of compiled / eager step time, with the spread as
the 10th-90th percentile of those ratios, and the largest loss difference between the two sides.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from trainer_throughput import compose, local_dataset  # noqa: E402 - benchmarks/ is the script's own folder

RESULTS = Path(__file__).parent / "results" / "compile_speed.json"


def build_side(cfg, data, compiled: bool, run_dir: Path):
    """(task, parts) of one side: the trainer's parts, built with compile on or off."""
    from pgfsparse.run import distributed
    from pgfsparse.run.parts import build_run_parts
    from pgfsparse.run.trainer import Trainer

    cfg = dataclasses.replace(cfg, compile=compiled)
    trainer = Trainer(cfg, run_dir, choices={"model": "vit"})
    trainer.task.build_data = lambda: data  # decoded once: loading is not what is timed
    process, device = distributed.start(cfg.device)
    return trainer.task, build_run_parts(cfg, trainer.task, trainer.spec, process, device)


def train_step(task, parts, batch, step: int, grad_clip) -> float:
    """One optimizer step as Trainer._loop takes it (one micro-batch, no GradScaler); the loss."""
    parts.sparsifier.step(step)
    with parts.autocast():
        loss = task.loss(parts.ddp_model, batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parts.model.parameters(), grad_clip or math.inf)
    parts.optimizer.step()
    parts.lr_schedule.step_update(num_updates=step + 1)
    parts.optimizer.zero_grad(set_to_none=True)
    return loss.item()  # waits for the device


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds (one step of every side each)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first (compilation happens here)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--pattern", default="1:16", help="FF pattern of the sparse recipes")
    parser.add_argument("--recipes", default="dense,mdgf_exp")
    parser.add_argument("--warm-cache", action="store_true", help="reuse torch's inductor cache (compile s drops)")
    parser.add_argument("--json", default=str(RESULTS), help="where the results go")
    args = parser.parse_args()
    if not args.warm_cache:  # compile time as a first run pays it
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="pgf-inductor-")
    torch.set_num_threads(args.threads)

    dataset = local_dataset()
    total = 100_000  # a long run: the timed steps sit early in it (MDGF's D > 0), as in step_time.py
    base = ["model=vit", f"data={dataset}", "logger=local", f"budget.steps={total}", f"data.batch_size={args.batch}",
            "checkpoint_every=null"]
    from pgfsparse.data import build_image_data

    data = build_image_data(compose(*base).data)
    sides, batches = {}, None
    with tempfile.TemporaryDirectory() as scratch:
        for recipe in args.recipes.split(","):
            sparse = [] if recipe == "dense" else [f"sparsity={args.pattern}", "recipe.dense_fraction=0.0"]
            cfg = compose(*base, f"recipe={recipe}", *sparse)
            for compiled in (False, True):
                task, parts = build_side(cfg, data, compiled, Path(scratch) / f"{recipe}-{compiled}")
                sides[(recipe, compiled)] = (task, parts, cfg.optim.grad_clip)
                if batches is None:  # every side gets the same batches
                    stream = task.train_batches(parts.data, start_micro_step=0, rank=0, world_size=1)
                    device = next(parts.model.parameters()).device
                    batches = [task.to_device(next(stream), device) for _ in range(args.warmup + args.rounds)]
        times = {side: [] for side in sides}
        losses = {side: [] for side in sides}
        order = list(sides)
        for r in range(args.warmup + args.rounds):
            for side in order[r % len(order):] + order[:r % len(order)]:
                task, parts, grad_clip = sides[side]
                start = time.perf_counter()
                losses[side].append(train_step(task, parts, batches[r], r, grad_clip))
                times[side].append(time.perf_counter() - start)
            print(f"round {r + 1}/{args.warmup + args.rounds}: " + ", ".join(
                f"{recipe}{' compiled' if c else ''} {times[(recipe, c)][-1]:.3f}s" for recipe, c in order), flush=True)

    results = {}
    print(f"\nViT w192 d6 p4 on {dataset}, batch {args.batch}, {args.threads} threads, {device}, {args.rounds} timed "
          f"rounds after {args.warmup} warm-up, torch {torch.__version__}")
    print(f"{'recipe':<10} {'eager s':>8} {'compiled s':>11} {'ratio':>6} {'p10-p90 ratio':>14} {'compile s':>10} "
          f"{'max |dloss|':>12}")
    for recipe in args.recipes.split(","):
        eager, comp = times[(recipe, False)], times[(recipe, True)]
        ratios = [c / e for c, e in zip(comp[args.warmup:], eager[args.warmup:])]
        res = results[recipe] = {
            "eager_median_s": statistics.median(eager[args.warmup:]),
            "compiled_median_s": statistics.median(comp[args.warmup:]),
            "ratio": statistics.median(ratios),
            "ratio_p10": percentile(ratios, 0.1),
            "ratio_p90": percentile(ratios, 0.9),
            "compile_s": comp[0] - statistics.median(comp[args.warmup:]),
            "max_loss_difference": max(abs(a - b) for a, b in zip(losses[(recipe, False)], losses[(recipe, True)])),
        }
        print(f"{recipe:<10} {res['eager_median_s']:>8.3f} {res['compiled_median_s']:>11.3f} {res['ratio']:>6.3f} "
              f"{res['ratio_p10']:>6.3f}-{res['ratio_p90']:.3f} {res['compile_s']:>10.1f} "
              f"{res['max_loss_difference']:>12.2e}")
    settings = {**{k: v for k, v in vars(args).items() if k != "json"}, "data": dataset, "device": str(device),
                "torch": torch.__version__}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"settings": settings, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
