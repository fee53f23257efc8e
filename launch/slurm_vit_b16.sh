#!/usr/bin/env bash
# launch/slurm_vit_b16.sh hydra.launcher.partition=gpu
#
# The paper's ViT-B/16 ImageNet-1k grid (conf/experiment/vit_b16_imagenet.yaml, 350 epochs) on
# SLURM: one job per point, NODES x 8 GPUs each, one rank per GPU (conf/hydra/launcher/slurm.yaml).
# Run it on the login node under tmux or nohup: it returns when every point has finished.
#   NODES=2 launch/slurm_vit_b16.sh hydra.launcher.partition=gpu      16 GPUs, as in the paper
#   launch/slurm_vit_b16.sh hydra.launcher.partition=gpu sparsity=1:8,1:16 recipe=sdgf_geo
# Arguments go to pgf-train after the defaults below, so they win (partition, account, grid, ...).
# data.batch_size (256) is per GPU; optim.accumulate keeps the global batch at the paper's
# 4096 = 256 x GPUs x accumulate (8 GPUs: 2; 16 GPUs: 1).
# A time-out or preemption requeues a job, which resumes its point from checkpoint.pt; running
# this command again skips finished points and resumes the others (multirun/vit_b16_imagenet/).
# Data: PGF_DATA_DIR=/shared/data (a folder holding imagenet/; sbatch passes your environment on),
# else the hub copy (needs network and a token).
set -euo pipefail

nodes=${NODES:-1}
gpus=8 per_gpu=256 global_batch=4096
accumulate=$(( global_batch / (per_gpu * gpus * nodes) ))
(( accumulate >= 1 && accumulate * per_gpu * gpus * nodes == global_batch )) \
  || { echo "NODES=$nodes: $((gpus * nodes)) GPUs x $per_gpu images do not divide $global_batch" >&2; exit 2; }

exec pgf-train -m hydra/launcher=slurm \
  hydra.launcher.nodes="$nodes" hydra.launcher.gpus_per_node=$gpus hydra.launcher.tasks_per_node=$gpus \
  hydra.launcher.cpus_per_task=10 hydra.launcher.mem_gb=480 hydra.launcher.timeout_min=1440 \
  hydra.launcher.max_num_timeout=30 \
  sweep=vit_b16_imagenet experiment=vit_b16_imagenet optim.accumulate="$accumulate" \
  sparsity=1:16,1:32 recipe=srste,mdgf_exp "$@"
