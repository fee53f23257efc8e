#!/usr/bin/env bash
# launch/sweep_parallel.sh 2 sweep=digits-grid data=digits budget.steps=200 sparsity=1:4,1:8 recipe=srste,decay
#
# The same grid, N_JOBS points at a time on this machine (conf/hydra/launcher/parallel.yaml,
# Hydra's joblib launcher). The cores are split: each point runs cores / N_JOBS torch
# threads (threads= overrides). More jobs than cores is much slower, not faster.
# The other arguments go to `pgf-train -m`; re-running the same command resumes the sweep.
set -euo pipefail

usage="usage: launch/sweep_parallel.sh N_JOBS OVERRIDES..."
n_jobs=${1:?$usage}
shift
[[ $n_jobs =~ ^[1-9][0-9]*$ ]] || { echo "$usage (N_JOBS: a positive integer, got '$n_jobs')" >&2; exit 2; }

exec pgf-train -m hydra/launcher=parallel hydra.launcher.n_jobs="$n_jobs" "$@"
