"""The shared trainer's training throughput relative to a minimal hand-written timm loop.

    PGF_DATA_DIR=../shared/data python benchmarks/trainer_throughput.py     (~6 min on 2 cores)

Both sides use the same model (model=vit: width 192, depth 6, patch 4), data
(CIFAR-10 when PGF_DATA_DIR has it, else digits), transforms, loader, batch
size, optimizer (timm AdamW) and gradient clipping, dense. The hand-written
loop is what a user would write in a notebook. Evaluation is excluded: each
side's throughput is examples per second over its timed steps after warm-up,
and the sides alternate (hand, trainer, hand, trainer, ...) so machine drift
hits both alike. Target: ratio >= 0.95.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch


def compose(*overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from pgfsparse.validation import to_train_config

    with initialize_config_module(config_module="pgfsparse.conf", version_base="1.3"):
        return to_train_config(hydra_compose(config_name="train", overrides=list(overrides)))


def hand_written_loop(cfg, data, steps: int, warmup: int) -> float:
    """Examples/s of the plainest loop over the same pieces."""
    from timm.optim import create_optimizer_v2

    from pgfsparse.data import make_train_loader
    from pgfsparse.models import build_vision_model

    torch.manual_seed(cfg.seed)
    model = build_vision_model(cfg.model, image_size=data.image_size, channels=data.channels,
                               num_classes=data.num_classes)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    batches = iter(make_train_loader(data.train, cfg.data.batch_size, seed=cfg.seed))
    model.train()
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        images, labels = next(batches)
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * cfg.data.batch_size / (time.perf_counter() - start)


def trainer_loop(cfg, data, steps: int, warmup: int) -> float:
    """Examples/s of pgf-train's Trainer over the same steps (its own log windows, evaluation excluded)."""
    from pgfsparse.trainer import Trainer

    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, Path(run_dir), choices={"model": "vit"})
        trainer.task.build_data = lambda: data  # reuse the decoded data: loading is not what is timed
        trainer.evaluate = lambda: {"eval/top1": 0.0, "eval_strict/top1": 0.0}
        trainer.fit()
        windows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    seconds = [cfg.log_every * cfg.data.batch_size / e["train/examples_per_s"]
               for e in windows if e["event"] == "train"][warmup // cfg.log_every:]
    return len(seconds) * cfg.log_every * cfg.data.batch_size / sum(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per repetition")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    dataset = "cifar10" if Path(os.environ.get("PGF_DATA_DIR", "/nonexistent"), "cifar10").is_dir() else "digits"
    total = args.warmup + args.steps
    cfg = compose("model=vit", f"data={dataset}", "logger=local", f"budget.steps={total}", "log_every=5",
                  "checkpoint_every=null", "diagnostics_every=0")
    from pgfsparse.data import build_image_data

    data = build_image_data(cfg.data)
    hand, ours = [], []
    for repeat in range(args.repeats):
        hand.append(hand_written_loop(cfg, data, args.steps, args.warmup))
        ours.append(trainer_loop(cfg, data, args.steps, args.warmup))
        print(f"repeat {repeat + 1}: hand-written {hand[-1]:.1f} ex/s, trainer {ours[-1]:.1f} ex/s", flush=True)
    ratios = [o / h for o, h in zip(ours, hand)]
    result = {"data": dataset, "batch": cfg.data.batch_size, "steps": args.steps, "repeats": args.repeats,
              "hand_examples_per_s": statistics.median(hand), "trainer_examples_per_s": statistics.median(ours),
              "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}
    print(f"\ntrainer / hand-written throughput on {dataset}, batch {cfg.data.batch_size}, {args.threads} threads: "
          f"{result['ratio']:.3f} (range {result['ratio_min']:.3f}-{result['ratio_max']:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
