"""nm_mask against the plain sort-based reference, per pattern, shape, dtype and thread count.

Both are timed interleaved (the order alternates every round) and the medians
are compared, so a shared or throttled machine moves both alike: read the
ratio (reference time / nm_mask time; above 1 means nm_mask is faster).

    python benchmarks/mask_speed.py            # full grid, about 10 rounds each
    python benchmarks/mask_speed.py --quick    # fewer rounds, one shape

Writes benchmarks/results/mask_speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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
    torch.set_num_threads(all_threads)
    below = [r for r in rows if r["ratio"] < 2.0]
    print(f"{len(rows) - len(below)}/{len(rows)} cases at least 2x faster than the reference")
    for r in below:
        print(f"  below 2x: {r['pattern']} {r['shape']} {r['dtype']} threads={r['threads']}: {r['ratio']:.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "torch": torch.__version__, "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "rounds": rounds, "quick": args.quick, "load_average": list(os.getloadavg()), "results": rows,
    }, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
