#!/usr/bin/env bash
# bash launch/evidence.sh        (from a worktree pinned to one commit, with its venv active)
#
# The small-scale comparison of docs/results.md, point by point in priority order: the 1:32
# recipes of seed 0 first, then dense and 1:16, the dense T5 (its budget's check), the iso-FLOP
# SR-STE runs and the other seeds, the sparse T5 pairs of seeds 0 and 1 (before the last iso-FLOP
# seed), dense seed 1, then the extra points. Every command is resumable: finished
# points are skipped and a cut-off point resumes from its last checkpoint, so the script is simply
# started again after an interruption. One thread per training, lowest priority: two 2-thread
# trainings on 2 cores run 10-20x slower than one. On 2 cores, start the script twice (two
# workers, one core each): a point that the other worker is training is skipped (pgf-train's run
# lock), so they share the list.
#
# The grid is pinned to commit 397e64c (PIN below; the SHA in every collected summary). A new
# working session starts it from the main checkout with
#
#   EVIDENCE_UNTIL="<date time>" bash launch/evidence.sh start
#
# which makes the worktree ../evidence at the pin and its venv when missing, then starts two
# workers there in the background (logs: ../evidence/worker1.log, worker2.log). Points already
# collected in results/ are copied back first, so they are skipped rather than trained again.
#
# bash launch/evidence.sh collect   (from the main checkout, whenever points finish)
# copies every point of ../evidence/multirun into results/ (pgf-collect: no
# checkpoints), regenerates the reports and refreshes the tables docs/results.md quotes
# (launch/quote_reports.py); the page's prose is still written by hand.
set -uo pipefail
export PGF_DATA_DIR="${PGF_DATA_DIR:-../shared/data}" HF_HUB_OFFLINE=1
# sweep -> its folder under results/ (pgf-report results/cifar10 reads grid/ and isoflop/ together)
declare -A FOLDER=([cifar10_grid]=cifar10/grid [cifar10_isoflop]=cifar10/isoflop
                   [cifar10_isoflop_sdgf_step]=cifar10/isoflop_sdgf_step [multi30k_grid]=multi30k/grid
                   [multi30k_isoflop]=multi30k/isoflop)

PIN=397e64c
if [[ ${1:-} == start ]]; then
  [[ -d ../evidence ]] || git worktree add ../evidence "$PIN" || exit 1
  [[ $(git -C ../evidence rev-parse --short=7 HEAD) == "$PIN" ]] \
    || { echo "evidence.sh: ../evidence is not at $PIN: git -C ../evidence checkout $PIN" >&2; exit 1; }
  if [[ ! -x ../evidence/.venv/bin/pgf-train ]]; then
    echo "evidence.sh: installing the pinned code into ../evidence/.venv (a few minutes)"
    (cd ../evidence && python3 -m venv .venv && .venv/bin/pip install -q -e .) || exit 1
  fi
  # the workers run a copy: bash reads a script as it goes, so editing launch/evidence.sh in the
  # main checkout while they run would change the commands under them
  cp "$0" ../evidence/worker.sh
  script=$(realpath ../evidence/worker.sh) results=$(realpath results) data=$(realpath "$PGF_DATA_DIR")
  for worker in 1 2; do
    (cd ../evidence && PATH="$PWD/.venv/bin:$PATH" RESULTS=$results PGF_DATA_DIR=$data \
      nohup bash "$script" > "worker$worker.log" 2>&1 &)
    sleep 5  # the first worker locks its point; the second takes the next one
  done
  echo "evidence.sh: 2 workers started in ../evidence (worker1.log, worker2.log), until ${EVIDENCE_UNTIL:-no limit}"
  exit 0
fi

if [[ ${1:-} == collect ]]; then
  RUNS="${RUNS:-../evidence/multirun}"
  for sweep in "${!FOLDER[@]}"; do
    [[ -d $RUNS/$sweep ]] && pgf-collect "$RUNS/$sweep" "results/${FOLDER[$sweep]}"
  done
  pgf-report results/cifar10 --baseline recipe=srste
  [[ -d results/multi30k ]] && pgf-report results/multi30k --metric token_acc,bleu --baseline recipe=srste
  python launch/quote_reports.py docs/results.md  # the page's quoted tables follow the reports
  exit 0
fi

RESULTS="${RESULTS:-../main/results}"
for sweep in "${!FOLDER[@]}"; do  # finished points of results/ become finished points of multirun/
  for point in "$RESULTS/${FOLDER[$sweep]}"/*/summary.json; do
    [[ -f $point ]] || continue
    point=$(dirname "$point")
    mkdir -p "multirun/$sweep/${point##*/}"
    cp -n "$point/summary.json" "$point/status.json" "multirun/$sweep/${point##*/}/"
  done
done
# EVIDENCE_UNTIL="2026-12-04 01:50": start no point after then (a session that ends before the
# point would finish loses it); unset = no limit.
point() {  # point SWEEP OVERRIDES...: one point, resumed or skipped when already finished
  if [[ -n ${EVIDENCE_UNTIL:-} ]] && (( $(date +%s) >= $(date -d "$EVIDENCE_UNTIL" +%s) )); then
    echo "evidence.sh: EVIDENCE_UNTIL=$EVIDENCE_UNTIL has passed: no new point started"; exit 0
  fi
  local sweep=$1; shift
  nice -n 19 pgf-train -m threads=1 logger=local "sweep=$sweep" "$@"
}
grid() {  # grid SWEEP SPARSITY RECIPES SEED: a point per recipe of the preset named as its sweep
  local recipe
  for recipe in ${3//,/ }; do point "$1" "experiment=$1" "sparsity=$2" "recipe=$recipe" "seed=$4"; done
}
vision() { grid cifar10_grid "$@"; }  # vision SPARSITY RECIPES SEED: the 24-epoch CIFAR-10 setting
t5() { grid multi30k_grid "$@"; }     # t5 SPARSITY RECIPES SEED: the 8-epoch Multi30k setting
# isoflop SEED [RECIPE] [GRID]: SR-STE at 1:32 given exactly the training FLOPs that RECIPE (MDGF-Exp)
# used at 1:32 in GRID (cifar10_grid), read from its summary; sweep <dataset>_isoflop[_RECIPE]. The
# budget is passed as overrides, not as the *_isoflop presets: the pinned worktree predates them.
isoflop() {
  local recipe=${2:-mdgf_exp} grid=${3:-cifar10_grid}
  local sweep=${grid%_grid}_isoflop
  [[ $recipe == mdgf_exp ]] || sweep=${sweep}_$recipe
  local summary; summary=$(echo "multirun/$grid/"*"-n1m32-$recipe-s$1/summary.json")  # one model per grid
  [[ -f $summary ]] || return 0
  local flops; flops=$(python -c "import json; print(json.load(open('$summary'))['train_flops'])")
  point "$sweep" "experiment=$grid" budget.epochs=null "budget.train_flops=$flops" \
    sparsity=1:32 recipe=srste "seed=$1"
}

vision 1:32 srste,mdgf_exp,sdgf_step 0
vision dense dense 0
vision 1:16 srste,mdgf_exp 0
t5 dense dense 0   # early: does the 8-epoch budget reach dense BLEU >= 12?
isoflop 0
for seed in 1 2; do
  vision 1:32 srste,mdgf_exp,sdgf_step "$seed"
  vision 1:16 srste,mdgf_exp "$seed"
  (( seed == 1 )) && isoflop 1
done
t5 1:32 srste,mdgf_exp 0  # the language comparison before the last iso-FLOP seed: T5 needs
t5 1:32 srste,mdgf_exp 1  # two seeds for any reading, the iso-FLOP point already has two
isoflop 2
vision dense dense 1
# Evidence II (issue 26), in this order: the T5 SR-STE given MDGF-Exp's training FLOPs (about 70 min
# alone on a core, far longer beside other work: a session starts them first, or they cannot finish
# before it ends; a session's two workers take one each), then the low-sparsity CIFAR-10 points (2:4,
# 1:8) seed by seed, then the two other 1:32 recipes.
for seed in 0 1; do isoflop "$seed" mdgf_exp multi30k_grid; done
for seed in 0 1; do
  vision 2:4 srste,mdgf_exp,sdgf_step "$seed"
  vision 1:8 srste,mdgf_exp,sdgf_step "$seed"
done
for seed in 0 1; do vision 1:32 mdgf_linear,sdgf_geo "$seed"; done
# extras beyond issue 26, as time allows: SR-STE given SDGF-Step's training FLOPs at 1:32
for seed in 0 1; do isoflop "$seed" sdgf_step; done
