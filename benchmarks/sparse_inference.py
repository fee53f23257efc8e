"""N:M inference speed: the reference N:M linear (M > 4) on CPU, and 2:4 semi-structured on a CUDA GPU.

    python benchmarks/sparse_inference.py                 # the figures of docs/benchmarks.md (~1 min on 2 cores)
    python benchmarks/sparse_inference.py --rounds 5      # a quick look

CPU (issue 10, item 4): weights 3072x768 (a ViT-B FF fc1) and 768x3072 (fc2) at
1:8, 1:16, 1:32, fp32, inputs of batch 1, 8 and 64 rows (and 512, to show
where the dense GEMM takes over). Per configuration, dense `F.linear` on the
masked weight and NMLinear's two methods (gather = `F.embedding_bag`, csr =
`torch.sparse_csr_tensor`) run interleaved, the order rotating every round, so
drifts of a shared machine hit all alike. Reported: the median over rounds of
dense time / sparse time in the same round (> 1: the sparse layer is faster).

Whole model (CPU): the CIFAR-10 ViT of `pgf-train model=vit` (width 192, depth 6, patch 4, 65 tokens per
image), FF at 1:16 and 1:32, exported and loaded with kernels="dense" vs kernels="auto", batch 1, 8, 64 images.

GPU (item 3), only when CUDA is present: per linear of ViT-B/16 and T5-base
shapes at 2:4, fp16 and bf16, batch 1 to 256 (tokens = batch x 197), dense vs
`torch.sparse.to_sparse_semi_structured`, and the whole ViT-B/16 forward with its FF
converted, batch 1 to 256; otherwise one line says it skipped.
Results: benchmarks/results/sparse_inference.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from gpu_report import ms_per_call  # this folder is on sys.path when a script here runs

from pgfsparse.export.nm_linear import NMLinear

SHAPES = [(3072, 768), (768, 3072)]  # (out, in)
PATTERNS = [(1, 8), (1, 16), (1, 32)]
BATCHES = [1, 8, 64, 512]
GPU_SHAPES = {"vit_b16": [(2304, 768), (768, 768), (3072, 768), (768, 3072)],
              "t5_base": [(768, 768), (3072, 768), (768, 3072)]}


def random_nm(out: int, inp: int, n: int, m: int, seed: int = 0):
    """A random N:M layer: (dense masked weight, NMLinear pieces)."""
    g = torch.Generator().manual_seed(seed)
    groups = inp // m
    idx = torch.rand(out, groups, m, generator=g).argsort(-1)[..., :n].sort(-1).values
    vals = torch.randn(out, groups, n, generator=g)
    dense = torch.zeros(out, groups, m).scatter_(-1, idx, vals).reshape(out, inp)
    return dense, vals, idx


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_ratios(rounds: int):
    rows = []
    for out, inp in SHAPES:
        for n, m in PATTERNS:
            dense_w, vals, idx = random_nm(out, inp, n, m)
            layers = {method: NMLinear.from_segments(inp, [("nm", vals, idx, m)], method=method, max_rows=None)
                      for method in ("gather", "csr")}
            for batch in BATCHES:
                x = torch.randn(batch, inp)
                ref = F.linear(x, dense_w)
                for layer in layers.values():  # correctness first (and warm-up)
                    err = ((layer(x) - ref).norm() / ref.norm()).item()
                    assert err < 1e-5, f"NMLinear differs from the dense masked layer by {err:.2e}"
                runs = {"dense": lambda: F.linear(x, dense_w),
                        **{k: (lambda lay=lay: lay(x)) for k, lay in layers.items()}}
                names = list(runs)
                ratios = {k: [] for k in names if k != "dense"}
                for r in range(rounds):
                    order = names[r % len(names):] + names[:r % len(names)]
                    times = {k: timed(runs[k]) for k in order}
                    for k in ratios:
                        ratios[k].append(times["dense"] / times[k])
                row = {"shape": f"{out}x{inp}", "pattern": f"{n}:{m}", "batch": batch,
                       **{f"{k}_speedup": statistics.median(v) for k, v in ratios.items()}}
                rows.append(row)
                print(f"{row['shape']:>9} {row['pattern']:>5} batch {batch:>3}: dense/gather "
                      f"{row['gather_speedup']:5.2f}x  dense/csr {row['csr_speedup']:5.2f}x", flush=True)
    return rows


def whole_model_ratios(rounds: int):
    import tempfile

    import timm

    import pgfsparse
    from pgfsparse.export import export_compressed, load_compressed, timm_builder

    kwargs = dict(img_size=32, patch_size=4, embed_dim=192, depth=6, num_heads=3, num_classes=10)
    rows = []
    for pattern in ("1:16", "1:32"):
        torch.manual_seed(0)
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **kwargs)
        sparsifier = pgfsparse.sparsify(model, pattern, recipe="ste")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "vit.safetensors"
            export_compressed(sparsifier, path, timm_builder("vit_tiny_patch16_224", **kwargs))
            dense, auto = load_compressed(path), load_compressed(path, kernels="auto")
        for batch in (1, 8, 64):
            x = torch.randn(batch, 3, 32, 32)
            with torch.no_grad():
                ref, got = dense(x), auto(x)
                assert ((got - ref).norm() / ref.norm()).item() < 1e-5
                ratios = []
                for r in range(max(3, rounds // 3)):
                    first, second = (dense, auto) if r % 2 == 0 else (auto, dense)
                    t = {id(first): timed(lambda: first(x)), id(second): timed(lambda: second(x))}
                    ratios.append(t[id(dense)] / t[id(auto)])
            rows.append({"model": "vit_cifar", "pattern": f"ff {pattern}", "batch": batch,
                         "auto_speedup": statistics.median(ratios)})
            print(f"whole ViT (CIFAR-10 size), FF {pattern}, batch {batch:>2} images: dense/auto "
                  f"{rows[-1]['auto_speedup']:.2f}x", flush=True)
    return rows


def gpu_ratios(rounds: int):
    from torch.sparse import to_sparse_semi_structured

    rows = []
    for model, shapes in GPU_SHAPES.items():
        for dtype in (torch.float16, torch.bfloat16):
            for out, inp in shapes:
                dense_w, _, _ = random_nm(out, inp, 2, 4)
                w = dense_w.to("cuda", dtype)
                sparse_w = to_sparse_semi_structured(w)
                for batch in (1, 8, 32, 64, 128, 256):
                    x = torch.randn(batch * 197, inp, device="cuda", dtype=dtype)
                    dense_t, sparse_t = _cuda_time(lambda: F.linear(x, w), rounds), _cuda_time(
                        lambda: F.linear(x, sparse_w), rounds)
                    rows.append({"model": model, "dtype": str(dtype).replace("torch.", ""), "shape": f"{out}x{inp}",
                                 "batch": batch, "speedup": dense_t / sparse_t})
                    print(f"{model} {rows[-1]['dtype']} {out}x{inp} batch {batch}: dense/2:4 "
                          f"{rows[-1]['speedup']:.2f}x", flush=True)
    return rows


def gpu_whole_model_ratios(rounds: int):
    """ViT-B/16 at 224 px with FF at 2:4: dense vs semi-structured FF, whole forward, batch 1 to 256."""
    import copy

    import timm

    import pgfsparse
    from pgfsparse.export.semi_structured import convert

    rows = []
    for dtype in (torch.float16, torch.bfloat16):
        torch.manual_seed(0)
        model = timm.create_model("vit_base_patch16_224", pretrained=False).eval()
        pgfsparse.sparsify(model, "2:4", recipe="ste").remove("strict")  # plain weights, FF masked 2:4
        dense = copy.deepcopy(model).to("cuda", dtype)
        converted = convert(model, dtype)
        sparse = model
        for batch in (1, 8, 32, 64, 128, 256):
            x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=dtype)
            with torch.no_grad():
                dense_t, sparse_t = _cuda_time(lambda: dense(x), rounds), _cuda_time(lambda: sparse(x), rounds)
            rows.append({"model": "vit_b16", "dtype": str(dtype).replace("torch.", ""), "batch": batch,
                         "converted_layers": sum(not why for why in converted.values()), "speedup": dense_t / sparse_t})
            print(f"whole ViT-B/16 {rows[-1]['dtype']} batch {batch}: dense/2:4 {rows[-1]['speedup']:.2f}x "
                  f"({rows[-1]['converted_layers']} layers converted)", flush=True)
    return rows


def _cuda_time(fn, rounds: int) -> float:
    for _ in range(3):  # warm-up: kernel selection, allocator
        fn()
    torch.cuda.synchronize()
    return ms_per_call(fn, rounds, torch, cuda=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "sparse_inference.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU, {args.threads} thread(s), fp32, {args.rounds} interleaved rounds; speed-up = dense time / sparse time")
    result = {"threads": args.threads, "rounds": args.rounds, "cpu": cpu_ratios(args.rounds),
              "whole_model": whole_model_ratios(args.rounds), "load_average": os.getloadavg()[0]}
    if torch.cuda.is_available():
        result["gpu"] = gpu_ratios(args.rounds)
        result["gpu_whole_model"] = gpu_whole_model_ratios(args.rounds)
    else:
        print("2:4 GPU benchmark skipped: no CUDA device (torch.sparse.to_sparse_semi_structured needs one)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
