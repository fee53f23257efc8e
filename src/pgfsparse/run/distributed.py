"""One CPU process, one GPU, or many under torchrun / accelerate launch / srun: the same code.

torchrun and `accelerate launch` both set RANK, WORLD_SIZE and LOCAL_RANK; with
WORLD_SIZE > 1 a process group is started (NCCL on GPUs, gloo on CPUs) and the
model is wrapped in DistributedDataParallel. Only rank 0 logs and writes.

SLURM tasks (Hydra's submitit launcher with tasks_per_node > 1, or
`srun --ntasks=K pgf-train ...`) get none of these variables: `slurm_env`
derives them from the job step's SLURM_* variables, as torchrun would set them.

distributed.strategy=fsdp shards the model with FSDP2 instead (`shard`): `fully_shard` on each
transformer block (`blocks`), then on the whole model, so that parameters, gradients and
optimizer state are split along dim 0 across the processes. With one process it is a no-op,
as DDP is. Checkpoints stay one full (unsharded) file written by rank 0, in the layout of a
one-process run: `full_model_state` and `full_optimizer_state` gather it (every rank takes
part), `shard_optimizer_state` cuts a loaded one back to this process's shards.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, cast

import torch
from torch import nn

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


def wrap(model: torch.nn.Module, process: Process, device: torch.device, strategy: str = "ddp") -> torch.nn.Module:
    """The module the loop calls: `model` in DDP, or `model` itself sharded in place (fsdp); `model` alone."""
    if not process.distributed:
        return model
    if strategy == "fsdp":
        return shard(model, device)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


# -- FSDP2 ------------------------------------------------------------------------------------------
def blocks(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """FSDP2's sharding units: the repeated blocks of `model`, (name, module) in module order.

    A block is an element of an nn.ModuleList or nn.Sequential whose elements all share one class,
    a class with child modules of its own (a list of bare layers is no list of blocks); where blocks
    nest, the innermost win. That finds timm ViT's `blocks.N`, Swin's `layers.S.blocks.N`, T5's
    `encoder.block.N` and `decoder.block.N`, GPT-2's `transformer.h.N` and Llama's `model.layers.N`,
    and the transformer blocks of most other models, with no table of names.
    """
    found: List[Tuple[str, nn.Module]] = []
    for name, container in model.named_modules():
        if not isinstance(container, (nn.ModuleList, nn.Sequential)) or len(container) == 0:
            continue
        elements = list(container.named_children())
        kinds = {type(element) for _, element in elements}
        if len(kinds) == 1 and all(next(element.children(), None) is not None for _, element in elements):
            found += [(f"{name}.{index}" if name else index, element) for index, element in elements]
    # innermost: drop a block that holds another (a Swin stage holding its blocks)
    return [(name, block) for name, block in found if not any(other.startswith(name + ".") for other, _ in found)]


def shard(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` under FSDP2, in place: every rank starts from rank 0's weights (as under DDP), then
    `fully_shard` shards each block (`blocks`) and the rest of the model (the root: embeddings, head).

    Buffers (the sparsity masks among them) are not sharded: every process keeps them whole.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            torch.distributed.broadcast(tensor, src=0)
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    for _, block in blocks(model):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    if callable(getattr(model, "generate", None)):  # Hugging Face generate() calls the encoder outside forward()
        register_fsdp_forward_method(model, "generate")
        # and runs every rank's decoding loop to the longest one (synced_gpus), or a rank done first stalls the rest
        cast(Any, model)._is_fsdp_managed_module = True
    return model


def set_gradient_sync(model: nn.Module, sync: bool) -> None:
    """FSDP2: whether the next backward reduce-scatters the gradients (False: accumulate them unsharded)."""
    cast(Any, model).set_requires_gradient_sync(sync)


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (an all-gather: every rank must call it alike); any other tensor as it is."""
    return cast(Any, tensor).full_tensor() if hasattr(tensor, "full_tensor") else tensor


@torch.no_grad()
def full_model_state(model: nn.Module, keep: bool) -> Dict[str, Any]:
    """The sharded `model`'s state_dict with whole tensors on the CPU: every rank gathers, a rank with `keep`
    keeps them (the others get {}). Keys are the plain model's; a tensor under two keys (tied embeddings)
    is gathered once and stored once, as torch.save stores a one-process run's."""
    out: Dict[str, Any] = {}
    done: Dict[int, Any] = {}  # id of a parameter or buffer -> its whole value (None where not kept)
    for key, value in model.state_dict(keep_vars=True).items():
        if id(value) not in done:
            full = whole(value.detach()) if torch.is_tensor(value) else value
            done[id(value)] = (full.cpu() if torch.is_tensor(full) else full) if keep else None
        if keep:
            out[key] = done[id(value)]
    return out


@torch.no_grad()
def full_optimizer_state(optimizer: torch.optim.Optimizer, keep: bool) -> Dict[str, Any]:
    """`optimizer.state_dict()` with whole tensors on the CPU: a one-process run's layout (params numbered in
    param_groups order), so it loads on any number of processes. Every rank gathers; `keep`: this one keeps it."""
    state = optimizer.state_dict()
    gathered: Dict[Any, Dict[str, Any]] = {}
    for index in sorted(state["state"]):  # the same order on every rank
        values = state["state"][index]
        full = {key: whole(value) if torch.is_tensor(value) else value for key, value in sorted(values.items())}
        if keep:  # in the optimizer's own key order
            gathered[index] = {key: full[key].cpu() if torch.is_tensor(full[key]) else full[key] for key in values}
    return {"state": gathered, "param_groups": state["param_groups"]} if keep else {}


def shard_optimizer_state(state: Dict[str, Any], optimizer: torch.optim.Optimizer) -> Dict[str, Any]:
    """A full optimizer state (`full_optimizer_state`'s, or a one-process run's) cut to this process's shards of
    `optimizer`'s parameters, for `optimizer.load_state_dict`. No communication: every rank holds the whole file."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    saved_ids = [index for group in state["param_groups"] for index in group["params"]]
    params = [param for group in optimizer.param_groups for param in group["params"]]
    by_index = dict(zip(saved_ids, params))
    out: Dict[Any, Dict[str, Any]] = {}
    for index, values in state["state"].items():
        param = by_index.get(index)
        out[index] = {}
        for key, value in values.items():
            if isinstance(param, DTensor) and torch.is_tensor(value) and value.shape == param.shape:
                # this rank's rows, as FSDP2 cut the parameter (src_data_rank=None: from the local copy)
                value = distribute_tensor(
                    value.to(param.device), param.device_mesh, param.placements, src_data_rank=None
                )
            out[index][key] = value
    return {"state": out, "param_groups": state["param_groups"]}


def stop(process: Process) -> None:
    if process.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
