"""Training-step time of every recipe relative to the same model dense (CPU).

    python benchmarks/step_time.py --steps 60           # the README's figures (~9 min on 2 cores)
    python benchmarks/step_time.py --steps 5 --warmup 1 # a quick look

Setting (issue 2): timm ViT width 192, depth 6, 3 heads, patch 4 on 32x32
images, batch 128, FF at 1:16, AdamW, 2 threads. Every recipe gets its own
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


def build_vit(seed: int) -> torch.nn.Module:
    import timm

    torch.manual_seed(seed)
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=4,
        embed_dim=192, depth=6, num_heads=3, num_classes=10,
    )


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed rounds (one step of every recipe each)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pattern", default="1:16")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    recipes = args.recipes.split(",")
    if recipes[0] != "dense":
        recipes = ["dense"] + [r for r in recipes if r != "dense"]
    total = 100_000  # long run: the timed steps sit early in the sparse phase, D > 0 for MDGF
    runs = {}
    for name in recipes:
        model = build_vit(seed=0)
        sparsifier = pgfsparse.sparsify(model, pattern=args.pattern, recipe=name, total_steps=total, dense_fraction=0.0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        runs[name] = (model, sparsifier, optimizer)

    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, 32, 32, generator=gen)
    labels = torch.randint(0, 10, (args.batch,), generator=gen)
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
        print(f"round {r + 1}/{rounds}: dense step {times['dense'][-1] if times['dense'] else elapsed:.3f}s", flush=True)

    results = {}
    dense = times["dense"]
    print(f"\nViT w192 d6 p4 32x32, batch {args.batch}, FF {args.pattern}, {args.threads} threads, "
          f"{args.steps} timed rounds after {args.warmup} warm-up, torch {torch.__version__}")
    print(f"{'recipe':<12} {'median s':>9} {'ratio':>7} {'p10-p90 ratio':>15} {'step() ms':>10}")
    for name in recipes:
        ratios = [t / d for t, d in zip(times[name], dense)]
        results[name] = {
            "median_s": statistics.median(times[name]),
            "ratio": statistics.median(ratios),
            "ratio_p10": percentile(ratios, 0.1),
            "ratio_p90": percentile(ratios, 0.9),
            "sparsifier_step_ms": 1e3 * statistics.median(engine[name]),
        }
        res = results[name]
        print(f"{name:<12} {res['median_s']:>9.3f} {res['ratio']:>7.3f} {res['ratio_p10']:>7.3f}-{res['ratio_p90']:.3f} {res['sparsifier_step_ms']:>10.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
