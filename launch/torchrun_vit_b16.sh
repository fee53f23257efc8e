#!/usr/bin/env bash
# launch/torchrun_vit_b16.sh outputs/vit_b16-n1m16-mdgf_exp sparsity=1:16 recipe=mdgf_exp
#
# One ViT-B/16 ImageNet-1k run (conf/experiment/vit_b16_imagenet.yaml) data-parallel with
# torchrun: one process (rank) per GPU, gradients all-reduced by DDP.
#   launch/torchrun_vit_b16.sh RUN_DIR [OVERRIDES...]                              this node's 8 GPUs
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node01 launch/torchrun_vit_b16.sh RUN_DIR ...  on node01, and
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=node01 launch/torchrun_vit_b16.sh RUN_DIR ...  on the second node
# All ranks share RUN_DIR (on a filesystem every node sees); only rank 0 logs and writes there.
# The same command again resumes the run from RUN_DIR/checkpoint.pt.
# data.batch_size (256) is per process: the global batch is batch_size x processes x
# optim.accumulate, kept at the paper's 4096 (8 GPUs: accumulate 2; 16 GPUs: 1).
set -euo pipefail

run_dir=${1:?usage: launch/torchrun_vit_b16.sh RUN_DIR [OVERRIDES...]}
shift
pgf_train=$(command -v pgf-train) || { echo "pgf-train is not on PATH: activate its environment" >&2; exit 2; }
gpus=${GPUS_PER_NODE:-8} nnodes=${NNODES:-1}
per_gpu=256 global_batch=4096
accumulate=$(( global_batch / (per_gpu * gpus * nnodes) ))
(( accumulate >= 1 && accumulate * per_gpu * gpus * nnodes == global_batch )) \
  || { echo "$((gpus * nnodes)) GPUs x $per_gpu images do not divide $global_batch" >&2; exit 2; }

if (( nnodes > 1 )); then  # static rendezvous: global rank 0 runs on NODE_RANK=0
  nodes=(--nnodes="$nnodes" --node_rank="${NODE_RANK:?set NODE_RANK (0..NNODES-1)}"
         --master_addr="${MASTER_ADDR:?set MASTER_ADDR (the NODE_RANK=0 host)}" --master_port="${MASTER_PORT:-29500}")
else
  nodes=(--standalone)
fi

exec torchrun --nproc_per_node="$gpus" "${nodes[@]}" "$pgf_train" \
  experiment=vit_b16_imagenet optim.accumulate="$accumulate" sparsity=1:16 recipe=mdgf_exp \
  hydra.run.dir="$run_dir" "$@"
