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

from pgfsparse.rundir.layout import RunDir
from pgfsparse.rundir.records import RunSummary


def local_dataset() -> str:
    """cifar10 when PGF_DATA_DIR holds it, else the offline digits."""
    return "cifar10" if Path(os.environ.get("PGF_DATA_DIR", "/nonexistent"), "cifar10").is_dir() else "digits"


def compose(*overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from pgfsparse.config.validation import to_train_config

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


def run_trainer(cfg, data):
    """pgf-train's Trainer over cfg's steps, evaluation excluded: (metrics.jsonl events, summary)."""
    from pgfsparse.run.trainer import Trainer

    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, Path(run_dir), choices={"model": "vit"})
        trainer.task.build_data = lambda: data  # reuse the decoded data: loading is not what is timed
        trainer.evaluate = lambda: {"eval/top1": 0.0, "eval_strict/top1": 0.0}
        trainer.fit()
        events = [json.loads(line) for line in RunDir(run_dir).metrics.read_text().splitlines()]
        return events, RunSummary.read(run_dir).to_dict()


def trainer_loop(cfg, data, steps: int, warmup: int):
    """(examples/s, training FLOPs per example) of the Trainer over the same steps (its own log windows)."""
    events, summary = run_trainer(cfg, data)
    seconds = [cfg.log_every * cfg.data.batch_size / e["train/examples_per_s"]
               for e in events if e["event"] == "train"][warmup // cfg.log_every:]
    flops_per_example = summary["train_flops"] / (summary["steps"] * summary["examples_per_step"])
    return len(seconds) * cfg.log_every * cfg.data.batch_size / sum(seconds), flops_per_example


SETTINGS = {
    "default": (),
    "small-grid": ("model.kwargs.depth=3", "model.kwargs.patch_size=8"),
}


def setting_config(setting: str, dataset: str, args):
    """(config, decoded data) of one setting, dense, warm-up plus timed steps long."""
    from pgfsparse.data import build_image_data

    cfg = compose("model=vit", f"data={dataset}", "logger=local", f"budget.steps={args.warmup + args.steps}",
                  "log_every=5", "checkpoint_every=null", "diagnostics_every=0", *SETTINGS[setting])
    return cfg, build_image_data(cfg.data)


def measure(setting: str, dataset: str, args) -> dict:
    """Alternating repeats of the two loops on one setting: their medians, and the ratio's median and range."""
    cfg, data = setting_config(setting, dataset, args)
    hand, ours = [], []
    for repeat in range(args.repeats):
        for side in (("hand", "trainer") if repeat % 2 == 0 else ("trainer", "hand")):
            if side == "hand":
                hand.append(hand_written_loop(cfg, data, args.steps, args.warmup))
            else:
                examples_per_s, flops_per_example = trainer_loop(cfg, data, args.steps, args.warmup)
                ours.append(examples_per_s)
        print(f"{setting} repeat {repeat + 1}: hand-written {hand[-1]:.1f} ex/s, trainer {ours[-1]:.1f} ex/s, "
              f"ratio {ours[-1] / hand[-1]:.3f}", flush=True)
    ratios = [o / h for o, h in zip(ours, hand)]
    return {"setting": setting, "train_flops_per_example": flops_per_example,
            "trainer_flops_per_s": statistics.median(ours) * flops_per_example,  # dense: the same every step
            "data": dataset, "batch": cfg.data.batch_size, "steps": args.steps,
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

    cfg, data = setting_config(setting, dataset, args)
    total = args.warmup + args.steps
    profiler = cProfile.Profile()
    profiler.runcall(run_trainer, cfg, data)
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
    dataset = local_dataset()
    if args.profile:
        for setting in args.settings.split(","):
            profile(setting, dataset, args)
        return

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
