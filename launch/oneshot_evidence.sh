#!/usr/bin/env bash
# EVIDENCE_UNTIL="<date time>" bash launch/oneshot_evidence.sh start     (then: bash launch/oneshot_evidence.sh collect)
#
# The prune-then-recover comparison of docs/one-shot.md (issue 24), point by point, resumable, like
# launch/evidence.sh: one thread per training, lowest priority, two workers sharing the list through
# pgf-train's run lock, finished points skipped, a cut-off point resumed from its last checkpoint.
#
#   EVIDENCE_UNTIL="<date time>" bash launch/oneshot_evidence.sh start   (from the main checkout)
#
# makes the worktree ../evidence-lm at the pin and its venv when missing and starts two workers there
# (logs ../evidence-lm/worker1.log, worker2.log); no new point starts after EVIDENCE_UNTIL.
#
#   bash launch/oneshot_evidence.sh collect
#
# copies the finished points into results/shakespeare_oneshot/ (pgf-collect: no checkpoints),
# regenerates its report (validation loss, lower is better) and refreshes the tables docs/results.md quotes.
#
# The points, in order:
#   1. the dense start: experiment=shakespeare_gpt, seed 0 (about an hour on a core)
#   2. one-shot rows: magnitude, Wanda, SparseGPT at FF 2:4, 1:8, 1:16, evaluated untrained (budget.steps=0)
#   3. recovery: {magnitude, SparseGPT} x {2:4, 1:8} x {fixed_mask, srste, mdgf_exp, sdgf_step}, seeds 0 and 1,
#      600 steps each (experiment=shakespeare_gpt_recover: 20% of the dense run's steps)
#   4. SR-STE from SparseGPT at 1:8 given MDGF-Exp's training FLOPs there, seeds 0 and 1
#   5. the control: the dense start trained on for the same 600 steps (no prune), seeds 0 and 1: what the
#      recovery steps alone give, so a recovered loss is read against it rather than against the start
set -uo pipefail
export PGF_DATA_DIR="${PGF_DATA_DIR:-../shared/data}" HF_HUB_OFFLINE=1
PIN=${PIN:-93c83e8}
WORKTREE=../evidence-lm
# sweep -> its folder under results/shakespeare_oneshot/
declare -A FOLDER=([shakespeare_gpt]=dense [shakespeare_oneshot]=oneshot [shakespeare_recover]=recover
                   [shakespeare_recover_isoflop]=isoflop)

if [[ ${1:-} == start ]]; then
  [[ -d $WORKTREE ]] || git worktree add "$WORKTREE" "$PIN" || exit 1
  [[ $(git -C "$WORKTREE" rev-parse --short=7 HEAD) == "${PIN:0:7}" ]] \
    || { echo "oneshot_evidence.sh: $WORKTREE is not at $PIN: git -C $WORKTREE checkout $PIN" >&2; exit 1; }
  if [[ ! -x $WORKTREE/.venv/bin/pgf-train ]]; then
    echo "oneshot_evidence.sh: installing the pinned code into $WORKTREE/.venv (a few minutes)"
    (cd "$WORKTREE" && python3 -m venv .venv && .venv/bin/pip install -q -e .) || exit 1
  fi
  cp "$0" "$WORKTREE/worker.sh"  # the workers run a copy: editing this file must not change them
  script=$(realpath "$WORKTREE/worker.sh") data=$(realpath "$PGF_DATA_DIR")
  for worker in 1 2; do
    (cd "$WORKTREE" && PATH="$PWD/.venv/bin:$PATH" PGF_DATA_DIR=$data nohup bash "$script" > "worker$worker.log" 2>&1 &)
    sleep 5  # the first worker locks its point; the second takes the next one
  done
  echo "oneshot_evidence.sh: 2 workers started in $WORKTREE (worker1.log, worker2.log), until ${EVIDENCE_UNTIL:-no limit}"
  exit 0
fi

if [[ ${1:-} == collect ]]; then
  for sweep in "${!FOLDER[@]}"; do
    [[ -d $WORKTREE/multirun/$sweep ]] && pgf-collect "$WORKTREE/multirun/$sweep" "results/shakespeare_oneshot/${FOLDER[$sweep]}"
  done
  pgf-report results/shakespeare_oneshot --metric loss,perplexity --baseline recipe=srste --baseline oneshot=magnitude
  python launch/quote_reports.py docs/results.md  # the page's quoted tables follow the reports
  exit 0
fi

point() {  # point SWEEP OVERRIDES...: one point, resumed or skipped when already finished
  if [[ -n ${EVIDENCE_UNTIL:-} ]] && (( $(date +%s) >= $(date -d "$EVIDENCE_UNTIL" +%s) )); then
    echo "oneshot_evidence.sh: EVIDENCE_UNTIL=$EVIDENCE_UNTIL has passed: no new point started"; exit 0
  fi
  local sweep=$1; shift
  nice -n 19 pgf-train -m threads=1 "sweep=$sweep" "$@"
}

point shakespeare_gpt experiment=shakespeare_gpt seed=0
dense=multirun/shakespeare_gpt/gpt2-dense-dense-s0
[[ -f $dense/summary.json ]] || { echo "oneshot_evidence.sh: the dense start is not finished (another worker trains it)"; exit 0; }
for pattern in 2:4 1:8 1:16; do
  for method in magnitude wanda sparsegpt; do
    point shakespeare_oneshot experiment=shakespeare_gpt_recover "oneshot=$method" "sparsity=$pattern" budget.steps=0
  done
done
for seed in 0 1; do
  for pattern in 2:4 1:8; do
    for start in magnitude sparsegpt; do
      for recipe in fixed_mask srste mdgf_exp sdgf_step; do
        point shakespeare_recover experiment=shakespeare_gpt_recover "oneshot=$start" "sparsity=$pattern" \
          "recipe=$recipe" "seed=$seed"
      done
    done
  done
  # SR-STE given exactly the training FLOPs MDGF-Exp used from the same start (one-shot calibration included)
  summary=multirun/shakespeare_recover/gpt2-n1m8-mdgf_exp-s$seed-oneshot=sparsegpt/summary.json
  if [[ -f $summary ]]; then
    flops=$(python -c "import json; print(json.load(open('$summary'))['train_flops'])")
    point shakespeare_recover_isoflop experiment=shakespeare_gpt_recover oneshot=sparsegpt sparsity=1:8 \
      recipe=srste "seed=$seed" budget.steps=null "budget.train_flops=$flops"
  fi
done
for seed in 0 1; do  # the control: the dense start, trained on for the recovery's 600 steps
  point shakespeare_recover experiment=shakespeare_gpt_recover "seed=$seed"
done
