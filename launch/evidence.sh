#!/usr/bin/env bash
# bash launch/evidence.sh        (from a worktree pinned to one commit, with its venv active)
#
# The small-scale comparison of the README's results section, point by point in priority order:
# the 1:32 recipes of seed 0 first, then dense and 1:16, the iso-FLOP SR-STE runs, the other
# seeds, then the Multi30k T5 grid. Every command is resumable: finished points are skipped and a
# cut-off point resumes from its last checkpoint, so the script is simply started again after an
# interruption. One training at a time, one thread, lowest priority: two 2-thread trainings on
# 2 cores run 10-20x slower than one.
#
# The grid is pinned to commit 397e64c (the SHA in every collected summary): a later session
# makes the same worktree (git worktree add ../evidence 397e64c, a venv, pip install -e .) and
# starts this script again. Points already collected in results/ (launch/collect_results.py)
# are copied back first, so they are skipped rather than trained again.
set -uo pipefail
export PGF_DATA_DIR="${PGF_DATA_DIR:-../shared/data}" HF_HUB_OFFLINE=1
RESULTS="${RESULTS:-../main/results}"
restore() {  # restore GRID: finished points of results/GRID become finished points of multirun/GRID
  local point
  for point in "$RESULTS/$1"/*/summary.json; do
    [[ -f $point ]] || continue
    point=$(dirname "$point")
    mkdir -p "multirun/$1/${point##*/}"
    cp -n "$point/summary.json" "$point/status.json" "multirun/$1/${point##*/}/"
  done
}
restore cifar10_grid; restore cifar10_isoflop; restore multi30k_grid
train() { nice -n 19 pgf-train -m threads=1 logger=local "$@"; }
vision() { train experiment=cifar10_grid sweep=cifar10_grid "$@"; }
isoflop() {  # SR-STE at 1:32 given exactly the training FLOPs of MDGF-Exp at 1:32 (same seed)
  local summary="multirun/cifar10_grid/vit-n1m32-mdgf_exp-s$1/summary.json"
  [[ -f $summary ]] || return 0
  local flops; flops=$(python -c "import json; print(json.load(open('$summary'))['train_flops'])")
  train experiment=cifar10_grid sweep=cifar10_isoflop budget.epochs=null "budget.train_flops=$flops" \
    sparsity=1:32 recipe=srste "seed=$1"
}

vision sparsity=1:32 recipe=srste,mdgf_exp,sdgf_step seed=0
vision sparsity=dense recipe=dense seed=0
vision sparsity=1:16 recipe=srste,mdgf_exp seed=0
isoflop 0
for seed in 1 2; do
  vision sparsity=1:32 recipe=srste,mdgf_exp,sdgf_step "seed=$seed"
  vision sparsity=1:16 recipe=srste,mdgf_exp "seed=$seed"
  isoflop "$seed"
done
vision sparsity=dense recipe=dense seed=1
train experiment=multi30k_grid sweep=multi30k_grid sparsity=dense recipe=dense seed=0
train experiment=multi30k_grid sweep=multi30k_grid
# more of the grid, as time allows
vision sparsity=1:32 recipe=mdgf_linear,mdgf_step,sdgf_geo seed=0
vision sparsity=2:4,1:8 recipe=srste,mdgf_exp seed=0
