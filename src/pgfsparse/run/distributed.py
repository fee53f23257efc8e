"""One CPU process, one GPU, or many under torchrun / accelerate launch / srun: the same code.

torchrun and `accelerate launch` both set RANK, WORLD_SIZE and LOCAL_RANK; with
WORLD_SIZE > 1 a process group is started (NCCL on GPUs, gloo on CPUs) and the
model is wrapped in DistributedDataParallel. Only rank 0 logs and writes.

SLURM tasks (Hydra's submitit launcher with tasks_per_node > 1, or
`srun --ntasks=K pgf-train ...`) get none of these variables: `slurm_env`
derives them from the job step's SLURM_* variables, as torchrun would set them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, Mapping, Optional

import torch

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Process:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def slurm_env(environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """torchrun's variables for one task of a SLURM job step of several tasks; {} anywhere else.

    Only inside an `srun` step (SLURM_STEP_ID set): a batch script also carries
    SLURM_NTASKS and SLURM_PROCID=0, and a pgf-train started there directly is
    one process, not rank 0 of ranks that never start. RANK already set (torchrun
    inside srun) wins. MASTER_ADDR is the step's first node; MASTER_PORT a port
    in 20000-59999 fixed by the job id (every task computes the same one), unless set.
    """
    env = os.environ if environ is None else environ
    if "RANK" in env or "SLURM_STEP_ID" not in env:
        return {}
    world_size = int(env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or 1)
    if world_size <= 1:
        return {}
    nodes = int(env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_JOB_NUM_NODES") or 1)
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or "127.0.0.1"
    return {
        "RANK": env["SLURM_PROCID"],
        "WORLD_SIZE": str(world_size),
        "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
        "LOCAL_WORLD_SIZE": str(max(1, world_size // nodes)),
        "MASTER_ADDR": env.get("MASTER_ADDR") or first_host(nodelist),
        "MASTER_PORT": env.get("MASTER_PORT") or str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 40000),
    }


def export_slurm_env() -> Dict[str, str]:
    """Set `slurm_env()`'s variables in os.environ (missing ones only); returns what it set."""
    added = {k: v for k, v in slurm_env().items() if k not in os.environ}
    os.environ.update(added)
    return added


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: 'gpu[007-009,012],cpu1' -> 'gpu007'."""
    group = re.match(r"(?:[^,\[]|\[[^\]]*\])+", nodelist.strip())
    if group is None:
        raise ValueError(f"cannot read the SLURM node list {nodelist!r}")
    return re.sub(r"\[([^\]]*)\]", lambda m: re.split(r"[,-]", m.group(1))[0], group.group(0))


def start(device_choice: str = "auto") -> "tuple[Process, torch.device]":
    """Join the process group if launched with several processes; pick this process's device."""
    export_slurm_env()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    process = Process(int(os.environ.get("RANK", "0")), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = device_choice == "cuda" or (device_choice == "auto" and torch.cuda.is_available())
    if device_choice == "cuda" and not torch.cuda.is_available():
        from pgfsparse.errors import ConfigError

        raise ConfigError("device=cuda but no CUDA device is visible: use device=auto or device=cpu")
    # srun may bind one GPU to each task (then it is cuda:0 for every local rank)
    index = 0 if use_cuda and torch.cuda.device_count() == 1 else process.local_rank
    device = torch.device("cuda", index) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if process.distributed and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return process, device


def shared_run_dir(run_dir: str, process: Process) -> str:
    """Rank 0's run dir on every rank: Hydra stamps each process's dir with its own clock."""
    if not process.distributed:
        return run_dir
    holder = [run_dir]
    torch.distributed.broadcast_object_list(holder, src=0)
    return holder[0]


def wrap(model: torch.nn.Module, process: Process, device: torch.device) -> torch.nn.Module:
    if not process.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def stop(process: Process) -> None:
    if process.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
