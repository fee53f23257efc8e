"""nm_mask against the plain sort-based reference, per pattern, shape, dtype and thread count.

Both are timed interleaved (the order alternates every round) and the medians
are compared, so a shared or throttled machine moves both alike: read the
ratio (reference time / nm_mask time; above 1 means nm_mask is faster).

    python benchmarks/mask_speed.py            # full grid, about 10 rounds each (~10 min)
    python benchmarks/mask_speed.py --quick    # fewer rounds, one shape

Then two checks of nm_mask alone: how its time scales with the number of
weights (4 sizes, time per weight should stay flat), and its peak memory beyond
the weight and the returned mask, in units of the weight's size (each pattern
in a fresh subprocess, from the peak resident set size).

Writes benchmarks/results/mask_speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from pgfsparse.sparsity.masks import nm_mask

PATTERNS = ((2, 4), (1, 4), (1, 8), (1, 16), (1, 32), (1, 128), (3, 8), (4, 8), (8, 16), (16, 32), (15, 16), (31, 32))
SHAPES = ((3072, 768), (768, 3072))
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def reference(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The sort-based reference of issue 9."""
    g = w.abs().reshape(-1, m)
    keep = g.argsort(1, descending=True)[:, :n]
    return torch.zeros_like(g, dtype=torch.bool).scatter_(1, keep, True).reshape(w.shape)


def interleaved(fns, args, rounds: int) -> list[float]:
    """Median seconds of each fn, alternating their order every round (after one warm-up)."""
    for fn in fns:
        fn(*args)
    times = [[] for _ in fns]
    for r in range(rounds):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for k in order:
            start = time.perf_counter()
            fns[k](*args)
            times[k].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


SCALING_SIZES = ((768, 768), (3072, 768), (3072, 3072), (6144, 3072))
SCALING_PATTERNS = ((2, 4), (1, 16), (8, 16), (1, 128))
MEMORY_SHAPE = (8192, 8192)  # 256 MiB in float32: large against the interpreter's own memory


def scaling(rounds: int) -> list:
    """nm_mask's time per weight at 4 sizes, one thread, float32: flat means linear in the number of weights."""
    rows = []
    for n, m in SCALING_PATTERNS:
        per_weight = []
        for shape in SCALING_SIZES:
            w = torch.randn(*shape)
            (t,) = interleaved((nm_mask,), (w, n, m), rounds)
            per_weight.append(t / w.numel() * 1e9)
        rows.append({"pattern": f"{n}:{m}", "sizes": [list(s) for s in SCALING_SIZES], "ns_per_weight": per_weight,
                     "max_over_min": max(per_weight) / min(per_weight)})
        print(f"{n}:{m:<4} ns/weight at " + ", ".join(f"{a}x{b}: {v:.2f}" for (a, b), v in zip(SCALING_SIZES, per_weight))
              + f"  (max/min {rows[-1]['max_over_min']:.2f})", flush=True)
    return rows


def peak_resident_bytes(reset: bool = False) -> int:
    """The process's peak resident set (Linux: VmHWM, which `reset` restarts from now; else ru_maxrss)."""
    try:
        if reset:
            Path("/proc/self/clear_refs").write_text("5")
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_extra_memory(n: int, m: int, dtype: str) -> float:
    """In a fresh process: nm_mask's peak memory beyond the weight and its mask, in weights' sizes."""
    w = torch.empty(*MEMORY_SHAPE, dtype=getattr(torch, dtype)).normal_()
    nm_mask(w[:64], n, m)  # load code paths (and build the kernel) before the baseline
    before = peak_resident_bytes(reset=True)  # the peak from here on, not weight creation's
    mask = nm_mask(w, n, m)
    after = peak_resident_bytes()
    return (after - before - mask.numel() * mask.element_size()) / (w.numel() * w.element_size())


def memory() -> list:
    rows = []
    for dtype in ("float32", "bfloat16"):
        for n, m in PATTERNS:
            code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import mask_speed; "
                    f"print(mask_speed.peak_extra_memory({n}, {m}, {dtype!r}))")
            # Every large block straight from mmap and back: the resident set then follows what is alive.
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
            rows.append({"pattern": f"{n}:{m}", "dtype": dtype, "shape": list(MEMORY_SHAPE),
                         "peak_extra_weights": float(out.stdout.split()[-1])})
            print(f"{n}:{m:<4} {dtype:>9}: peak memory beyond weight and mask = "
                  f"{rows[-1]['peak_extra_weights']:.2f} x the weight", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 rounds, 3072x768 only")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "mask_speed.json"))
    args = parser.parse_args()
    rounds = args.rounds or (5 if args.quick else 11)
    shapes = SHAPES[:1] if args.quick else SHAPES
    all_threads = torch.get_num_threads()
    thread_counts = sorted({1, all_threads})

    torch.manual_seed(0)
    rows = []
    print(f"{'pattern':>7} {'shape':>10} {'dtype':>9} {'thr':>3} {'nm_mask ms':>10} {'ref ms':>8} {'ratio':>6}")
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for shape in shapes:
            for dtype in DTYPES:
                w = torch.randn(*shape).to(dtype)
                for n, m in PATTERNS:
                    t_mask, t_ref = interleaved((nm_mask, reference), (w, n, m), rounds)
                    row = {
                        "pattern": f"{n}:{m}", "shape": list(shape), "dtype": str(dtype).replace("torch.", ""),
                        "threads": threads, "nm_mask_s": t_mask, "reference_s": t_ref, "ratio": t_ref / t_mask,
                    }
                    rows.append(row)
                    print(f"{row['pattern']:>7} {'x'.join(map(str, shape)):>10} {row['dtype']:>9} {threads:>3} "
                          f"{t_mask * 1e3:10.2f} {t_ref * 1e3:8.2f} {row['ratio']:6.2f}", flush=True)
    torch.set_num_threads(1)
    print("\nscaling (float32, one thread):")
    scale_rows = scaling(rounds)
    torch.set_num_threads(all_threads)
    print(f"\nmemory ({MEMORY_SHAPE[0]}x{MEMORY_SHAPE[1]}):")
    memory_rows = memory()
    below = [r for r in rows if r["ratio"] < 2.0]
    print(f"{len(rows) - len(below)}/{len(rows)} cases at least 2x faster than the reference")
    for r in below:
        print(f"  below 2x: {r['pattern']} {r['shape']} {r['dtype']} threads={r['threads']}: {r['ratio']:.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "torch": torch.__version__, "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "rounds": rounds, "quick": args.quick, "load_average": list(os.getloadavg()), "results": rows,
        "scaling": scale_rows, "memory": memory_rows,
    }, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
