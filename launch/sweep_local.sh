#!/usr/bin/env bash
# launch/sweep_local.sh sweep=digits-grid data=digits budget.steps=200 sparsity=1:4,1:8 recipe=srste,decay
#
# A grid, one point after another, on this machine (conf/hydra/launcher/local.yaml). Every
# argument goes to `pgf-train -m` unchanged; each point gets all the machine's cores.
# Outputs: multirun/<sweep>/<run name>/ (e.g. vit-n1m8-mdgf_exp-s0), plus sweep_status.json.
# Re-running the same command resumes the same sweep: finished points are skipped and an
# interrupted one continues from its last checkpoint. Without sweep=NAME the folder is named
# from the overrides, so the same command still finds it.
set -euo pipefail

exec pgf-train -m hydra/launcher=local "$@"
