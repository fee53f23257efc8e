"""One CPU process, one GPU, or many under torchrun / accelerate launch: the same code.

torchrun and `accelerate launch` both set RANK, WORLD_SIZE and LOCAL_RANK; with
WORLD_SIZE > 1 a process group is started (NCCL on GPUs, gloo on CPUs) and the
model is wrapped in DistributedDataParallel. Only rank 0 logs and writes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


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


def start(device_choice: str = "auto") -> "tuple[Process, torch.device]":
    """Join the process group if launched with several processes; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    process = Process(int(os.environ.get("RANK", "0")), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = device_choice == "cuda" or (device_choice == "auto" and torch.cuda.is_available())
    if device_choice == "cuda" and not torch.cuda.is_available():
        from .validation import ConfigError

        raise ConfigError("device=cuda but no CUDA device is visible: use device=auto or device=cpu")
    device = torch.device("cuda", process.local_rank) if use_cuda else torch.device("cpu")
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
