"""pgf-collect: copy a sweep's results into a folder small enough for git (no checkpoints).

    pgf-collect multirun/cifar10_grid results/cifar10/grid
    pgf-report results/cifar10                      # every table and plot, from the copies alone

See pgfsparse.rundir.snapshot for what is kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from pgfsparse.rundir.snapshot import snapshot_sweep


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="pgf-collect", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="a sweep dir (multirun/<sweep>)")
    parser.add_argument("dest", type=Path, help="where to copy (e.g. results/<grid>)")
    args = parser.parse_args(argv)
    if not args.sweep.is_dir():
        sys.exit(f"pgf-collect: error: {args.sweep} is not a folder: pass a sweep dir such as multirun/<sweep>")
    if args.sweep.resolve() == args.dest.resolve():
        sys.exit(f"pgf-collect: error: {args.dest} is the sweep itself: pass another folder, e.g. results/<grid>")
    print(f"pgf-collect: {snapshot_sweep(args.sweep, args.dest)} points from {args.sweep} into {args.dest}")


if __name__ == "__main__":
    main()
