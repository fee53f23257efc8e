"""Training-step time of every recipe relative to the same model dense (CPU).

    python benchmarks/step_time.py --steps 60                  # small ViT, FF 1:16 (~9 min on 2 cores)
    python benchmarks/step_time.py --setting vit_b16 --pattern 1:16,2:4   # ViT-B/16 widths (~40 min)
    python benchmarks/step_time.py --steps 5 --warmup 1        # a quick look

Settings: `small` is a timm ViT of width 192, depth 6, 3 heads, patch 4 on
32x32 images, batch 128; `vit_b16` is two blocks of ViT-B/16 (width 768, FF
3072, 12 heads, patch 16) on 224x224 images, batch 32, so the FF weights have
the real 3072x768 and 768x3072 shapes. AdamW, 2 threads. Every recipe gets its own
copy of the same initial model. Recipes are interleaved step by step (the order
rotates every round), so drifts of the machine hit all of them alike; each
reported ratio is the median over rounds of (recipe step time / dense step time
in the same round), with the spread as the 10th-90th percentile of those ratios.
Timed steps lie in the sparse phase (no dense warm-up, mask refreshed every step).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import pgfsparse

RECIPES = ["dense", "ste", "srste", "mdgf_linear", "mdgf_exp", "mdgf_step", "sdgf_step", "sdgf_geo"]


# setting -> (timm.create_model arguments, image size, default batch)
SETTINGS = {
    "small": (dict(img_size=32, patch_size=4, embed_dim=192, depth=6, num_heads=3, num_classes=10), 32, 128),
    "vit_b16": (dict(img_size=224, patch_size=16, embed_dim=768, depth=2, num_heads=12, num_classes=1000), 224, 32),
}


def build_vit(setting: str, seed: int) -> torch.nn.Module:
    import timm

    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **SETTINGS[setting][0])


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def time_pattern(args, pattern: str, recipes) -> dict:
    """Interleaved rounds of one training step per recipe at one FF pattern: per-recipe ratios to dense."""
    total = 100_000  # long run: the timed steps sit early in the sparse phase, D > 0 for MDGF
    runs = {}
    for name in recipes:
        model = build_vit(args.setting, seed=0)
        sparsifier = pgfsparse.sparsify(model, pattern=pattern, recipe=name, total_steps=total, dense_fraction=0.0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        runs[name] = (model, sparsifier, optimizer)

    _, image_size, _ = SETTINGS[args.setting]
    num_classes = SETTINGS[args.setting][0]["num_classes"]
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, image_size, image_size, generator=gen)
    labels = torch.randint(0, num_classes, (args.batch,), generator=gen)
    times = {name: [] for name in recipes}
    engine = {name: [] for name in recipes}  # the sparsifier's own share of each step
    rounds = args.warmup + args.steps
    for r in range(rounds):
        order = recipes[r % len(recipes):] + recipes[: r % len(recipes)]
        for name in order:
            model, sparsifier, optimizer = runs[name]
            start = time.perf_counter()
            sparsifier.step(r)
            stepped = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            elapsed = time.perf_counter() - start
            if r >= args.warmup:
                times[name].append(elapsed)
                engine[name].append(stepped - start)
        print(f"{pattern} round {r + 1}/{rounds}: dense step {times['dense'][-1] if times['dense'] else elapsed:.3f}s",
              flush=True)

    results = {}
    dense = times["dense"]
    for name in recipes:
        ratios = [t / d for t, d in zip(times[name], dense)]
        layers = max(1, len(runs[name][1].layers))
        results[name] = {
            "median_s": statistics.median(times[name]),
            "ratio": statistics.median(ratios),
            "ratio_p10": percentile(ratios, 0.1),
            "ratio_p90": percentile(ratios, 0.9),
            "sparsifier_step_ms": 1e3 * statistics.median(engine[name]),
            "sparse_weights": len(runs[name][1].layers),
            "sparsifier_step_ms_per_weight": 1e3 * statistics.median(engine[name]) / layers,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="small")
    parser.add_argument("--batch", type=int, default=None, help="default: 128 (small), 32 (vit_b16)")
    parser.add_argument("--steps", type=int, default=20, help="timed rounds (one step of every recipe each)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pattern", default="1:16", help="FF pattern(s), comma-separated")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    args.batch = args.batch or SETTINGS[args.setting][2]

    torch.set_num_threads(args.threads)
    recipes = args.recipes.split(",")
    if recipes[0] != "dense":
        recipes = ["dense"] + [r for r in recipes if r != "dense"]
    by_pattern = {pattern: time_pattern(args, pattern, recipes) for pattern in args.pattern.split(",")}

    model_args = SETTINGS[args.setting][0]
    print(f"\nViT width {model_args['embed_dim']} depth {model_args['depth']} patch {model_args['patch_size']} "
          f"{model_args['img_size']}x{model_args['img_size']}, batch {args.batch}, {args.threads} threads, "
          f"{args.steps} timed rounds after {args.warmup} warm-up, torch {torch.__version__}")
    for pattern, results in by_pattern.items():
        print(f"FF {pattern}")
        print(f"{'recipe':<12} {'median s':>9} {'ratio':>7} {'p10-p90 ratio':>15} {'step() ms':>10} {'ms/weight':>10}")
        for name, res in results.items():
            print(f"{name:<12} {res['median_s']:>9.3f} {res['ratio']:>7.3f} {res['ratio_p10']:>7.3f}-"
                  f"{res['ratio_p90']:.3f} {res['sparsifier_step_ms']:>10.1f} {res['sparsifier_step_ms_per_weight']:>10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": vars(args), "torch": torch.__version__,
                       "results": by_pattern if len(by_pattern) > 1 else next(iter(by_pattern.values())),
                       "by_pattern": by_pattern}, f, indent=2)


if __name__ == "__main__":
    main()
