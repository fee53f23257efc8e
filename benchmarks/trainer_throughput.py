"""The shared trainer's training throughput relative to a minimal hand-written timm loop.

    PGF_DATA_DIR=../shared/data python benchmarks/trainer_throughput.py     (~12 min on 2 cores)

Two settings: `default` (model=vit: width 192, depth 6, patch 4) and `small-grid`
(the evidence grid's ViT: width 192, depth 3, patch 8), both on 32x32 images at
batch 128. Both sides use the same model, data
(CIFAR-10 when PGF_DATA_DIR has it, else digits), transforms, loader, batch
size, optimizer (timm AdamW) and gradient clipping, dense. The hand-written
loop is what a user would write in a notebook. Evaluation is excluded: each
side's throughput is examples per second over its timed steps after warm-up,
and the sides alternate (hand, trainer, hand, trainer, ...) so machine drift
hits both alike; the order within a pair alternates too. Target: ratio >= 0.97.
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
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    seconds = [cfg.log_every * cfg.data.batch_size / e["train/examples_per_s"]
               for e in windows if e["event"] == "train"][warmup // cfg.log_every:]
    trainer_loop.flops_per_example = summary["train_flops"] / (summary["steps"] * summary["examples_per_step"])
    return len(seconds) * cfg.log_every * cfg.data.batch_size / sum(seconds)


SETTINGS = {
    "default": (),
    "small-grid": ("model.kwargs.depth=3", "model.kwargs.patch_size=8"),
}


def measure(setting: str, dataset: str, args) -> dict:
    """Alternating repeats of the two loops on one setting: their medians, and the ratio's median and range."""
    from pgfsparse.data import build_image_data

    total = args.warmup + args.steps
    cfg = compose("model=vit", f"data={dataset}", "logger=local", f"budget.steps={total}", "log_every=5",
                  "checkpoint_every=null", "diagnostics_every=0", *SETTINGS[setting])
    data = build_image_data(cfg.data)
    hand, ours = [], []
    for repeat in range(args.repeats):
        sides = [("hand", hand_written_loop, hand), ("trainer", trainer_loop, ours)]
        for _, loop, into in (sides if repeat % 2 == 0 else sides[::-1]):
            into.append(loop(cfg, data, args.steps, args.warmup))
        print(f"{setting} repeat {repeat + 1}: hand-written {hand[-1]:.1f} ex/s, trainer {ours[-1]:.1f} ex/s, "
              f"ratio {ours[-1] / hand[-1]:.3f}", flush=True)
    ratios = [o / h for o, h in zip(ours, hand)]
    flops_per_example = trainer_loop.flops_per_example  # dense: the same every step
    return {"setting": setting, "train_flops_per_example": flops_per_example,
            "trainer_flops_per_s": statistics.median(ours) * flops_per_example, "data": dataset, "batch": cfg.data.batch_size, "steps": args.steps,
            "repeats": args.repeats, "hand_examples_per_s": statistics.median(hand),
            "trainer_examples_per_s": statistics.median(ours), "ratio": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios), "ratios": ratios}


# Where a trainer step's time goes: (label, file path ending, function name) of the profiled calls.
PARTS = (
    ("backward", "~", "<method 'run_backward' of 'torch._C._EngineBase' objects>"),
    ("forward and loss", "tasks/image_classification.py", "loss"),
    ("data (loader, per-example augmentation)", "dataloader.py", "__next__"),
    ("optimizer (AdamW)", "torch/optim/adam.py", "step"),
    ("gradient clipping", "clip_grad.py", "clip_grad_norm_"),
    ("sparsifier.step", "sparsity/sparsifier.py", "step"),
)


def profile(setting: str, dataset: str, args) -> None:
    """Profile the trainer's loop at one setting and print each part's share of a step."""
    import cProfile
    import pstats

    from pgfsparse.data import build_image_data
    from pgfsparse.trainer import Trainer

    total = args.warmup + args.steps
    cfg = compose("model=vit", f"data={dataset}", "logger=local", f"budget.steps={total}", "log_every=5",
                  "checkpoint_every=null", "diagnostics_every=0", *SETTINGS[setting])
    data = build_image_data(cfg.data)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, Path(run_dir), choices={"model": "vit"})
        trainer.task.build_data = lambda: data
        trainer.evaluate = lambda: {"eval/top1": 0.0, "eval_strict/top1": 0.0}
        profiler = cProfile.Profile()
        profiler.enable()
        trainer.fit()
        profiler.disable()
    stats = pstats.Stats(profiler).stats  # (file, line, function) -> (calls, calls, own s, cumulative s, callers)

    def cumulative(path_end: str, function: str) -> float:
        return sum(v[3] for (f, _, fn), v in stats.items() if f.endswith(path_end) and fn == function)

    loop = cumulative("pgfsparse/trainer.py", "_loop")
    print(f"\n{setting}: the trainer's loop, {total} steps under cProfile ({loop / total * 1e3:.1f} ms a step):")
    accounted = 0.0
    for label, path_end, function in PARTS:
        seconds = cumulative(path_end, function)
        accounted += seconds
        print(f"  {label:<42} {seconds / total * 1e3:7.1f} ms  {seconds / loop:6.1%}")
    rest = loop - accounted
    print(f"  {'the rest (LR schedule, logging, bar, .item)':<42} {rest / total * 1e3:7.1f} ms  {rest / loop:6.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per repetition")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated: " + ", ".join(SETTINGS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--profile", action="store_true", help="instead: where a trainer step's time goes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.profile:
        dataset = "cifar10" if Path(os.environ.get("PGF_DATA_DIR", "/nonexistent"), "cifar10").is_dir() else "digits"
        for setting in args.settings.split(","):
            profile(setting, dataset, args)
        return

    dataset = "cifar10" if Path(os.environ.get("PGF_DATA_DIR", "/nonexistent"), "cifar10").is_dir() else "digits"
    results = [measure(setting, dataset, args) for setting in args.settings.split(",")]
    print(f"\ntrainer / hand-written throughput on {dataset}, {args.threads} threads, load {os.getloadavg()[0]:.1f}:")
    for r in results:
        print(f"  {r['setting']:>10}: hand {r['hand_examples_per_s']:.1f} ex/s, trainer {r['trainer_examples_per_s']:.1f}"
              f" ex/s ({r['trainer_flops_per_s'] / 1e9:.0f} GFLOP/s of training FLOPs), ratio {r['ratio']:.3f} "
              f"(median of {r['repeats']}, range {r['ratio_min']:.3f}-{r['ratio_max']:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"torch": torch.__version__, "threads": args.threads,
                                               "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
