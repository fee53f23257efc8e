#!/usr/bin/env bash
# launch/sync_wandb.sh multirun/vit_b16_imagenet
#
# Uploads every offline W&B run under a sweep (or any folder of runs) with `wandb sync`: for
# runs trained where W&B could not reach its server (logger.mode=offline, the default without
# WANDB_MODE). Runs live in <run dir>/wandb/offline-run-*; a resumed run has one per attempt,
# all with the run's id, passed oldest first. wandb sync skips runs it already synced, so
# re-running is safe. Needs `wandb login` (or WANDB_API_KEY) on this machine; extra arguments go to
# `wandb sync` (e.g. --project NAME, --dry-run).
set -euo pipefail

sweep=${1:?usage: launch/sync_wandb.sh SWEEP_DIR [wandb sync options]}
shift
[[ -d $sweep ]] || { echo "no such folder: $sweep" >&2; exit 2; }

runs=()
while IFS= read -r -d '' run; do runs+=("$run"); done \
  < <(find "$sweep" -type d -path '*/wandb/offline-run-*' -prune -print0 | sort -z)
(( ${#runs[@]} )) || { echo "no offline W&B runs under $sweep" >&2; exit 1; }

echo "syncing ${#runs[@]} offline W&B run(s) under $sweep" >&2
exec wandb sync "$@" "${runs[@]}"
