"""A run's parts, built once, in this order (each needs the ones before it):

    data -> model (+ model.checkpoint's weights) -> one-shot prune (oneshot=..., a fresh run only)
         -> sparsifier -> FLOP counter (+ the prune's calibration FLOPs) -> steps from the budget
         -> optimizer + LR schedule (timm) -> state restored from a checkpoint

The order is also the order of random draws after seeding, so it fixes a run's numbers.
compile=true wraps the model the loop calls in torch.compile once the sparsifier is attached.

Across processes the model is wrapped in DDP after the optimizer is built; under
distributed.strategy=fsdp it is sharded (FSDP2) before: the optimizer must hold the sharded
parameters, and a checkpoint's full weights are loaded into the model before it is cut.
"""

from __future__ import annotations

import contextlib
import math
import random
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, cast

import torch

from pgfsparse.config.schema import TrainConfig
from pgfsparse.config.spec import RunSpec
from pgfsparse.errors import ConfigError
from pgfsparse.run import checkpoint, distributed
from pgfsparse.sparsity import Schedule, sparsify


@dataclass
class RunParts:
    data: Any
    model: torch.nn.Module
    ddp_model: torch.nn.Module  # what the loop calls: the model, wrapped in DDP across processes (fsdp: the model)
    sparsifier: Any
    flops: Any  # the FlopCounter
    train_examples: Optional[int]  # None for a streamed dataset
    examples_per_step: int
    total_steps: int
    optimizer: torch.optim.Optimizer
    lr_schedule: Any
    scaler: torch.amp.GradScaler
    autocast: Callable  # () -> the context manager of the configured precision
    # where this launch starts: the checkpoint's, or a fresh run's
    start_step: int
    wall_offset: float  # seconds trained before this launch
    run_id: str  # the W&B run id, kept across resumes
    peak_flops: Optional[float] = None  # one device's peak FLOP/s (peak_flops.py): train/mfu's denominator
    # the one-shot prune's calibration record (oneshot_start.py), this launch's or the checkpoint's; None without
    oneshot: Optional[Dict[str, Any]] = None
    oneshot_ran: bool = False  # the prune ran in this launch (a resumed run never runs it again)
    sharded: bool = False  # FSDP2 across processes: the model's parameters, gradients and optimizer state are DTensors


def build_run_parts(
    cfg: TrainConfig, task, spec: RunSpec, process, device: torch.device, resumed: Optional[Dict[str, Any]] = None
) -> RunParts:
    """Every part of a run, in the module docstring's order; restored from `resumed` (a checkpoint's state)."""
    from timm.optim import create_optimizer_v2

    from pgfsparse.flops.counter import FlopCounter
    from pgfsparse.flops.peak import peak_flops
    from pgfsparse.models.start_weights import is_run_checkpoint, load_start_weights
    from pgfsparse.run.oneshot_start import charge, prune_start

    seed_everything(cfg.seed)
    data = task.build_data()
    _check_batch_fits(cfg, task.train_examples(data), process.world_size)
    model = task.build_model(data)
    if resumed is None and cfg.model.checkpoint is not None and is_run_checkpoint(cfg.model.checkpoint):
        load_start_weights(model, cfg.model.checkpoint)  # a pgf-train run's (strict) weights, any family
    model = model.to(device)
    oneshot = resumed.get("oneshot") if resumed is not None else None  # a resumed run keeps its pruned weights
    oneshot_ran = resumed is None and spec.oneshot != "none"
    if oneshot_ran:
        oneshot = prune_start(model, cfg, spec, task, data, device, progress=process.is_main)
    # The sparsifier needs the run's length, but a FLOP budget's length needs the FLOP counter, which
    # counts the sparse layers: it is built with a placeholder length and given the real one below.
    sparsifier = sparsify_model(model, cfg, spec)
    examples_per_step = cfg.data.batch_size * process.world_size * cfg.optim.accumulate
    args, kwargs = task.example_inputs(data, device)
    flops = FlopCounter(model, args, kwargs, sparsifier=sparsifier, examples_per_step=examples_per_step)
    if oneshot is not None:
        if oneshot["flops"] is None:
            oneshot["flops"] = charge(oneshot, flops)
        flops.before_training = oneshot["flops"]
    train_examples = task.train_examples(data)
    total_steps = steps_from_budget(cfg, spec, flops, train_examples, process.world_size)
    sparsifier.set_total_steps(max(total_steps, 1))  # the FLOP counter reads the new schedule (0: a one-shot eval)
    sharded = cfg.distributed.strategy == "fsdp" and process.distributed
    if sharded:  # FSDP2: the whole weights go in before the model is cut, and the optimizer takes its shards
        if resumed is not None:
            model.load_state_dict(resumed["model"])
        ddp_model = distributed.wrap(model, process, device, "fsdp")
    optimizer = create_optimizer_v2(
        model, opt=cfg.optim.name, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, betas=tuple(cfg.optim.betas)
    )
    lr_schedule = build_lr_schedule(cfg, optimizer, total_steps)
    scaler = torch.amp.GradScaler(enabled=cfg.precision == "fp16" and device.type == "cuda")
    if not sharded:
        ddp_model = distributed.wrap(model, process, device)
    if cfg.compile:  # after the sparsifier: its parametrizations are traced into the graph
        ddp_model = compiled(ddp_model, device)
    start_step, wall_offset, run_id = 0, 0.0, uuid.uuid4().hex[:12]
    if resumed is not None:
        if sharded:  # a checkpoint holds the whole state (any number of processes wrote it)
            optimizer.load_state_dict(distributed.shard_optimizer_state(resumed["optimizer"], optimizer))
        else:
            model.load_state_dict(resumed["model"])
            optimizer.load_state_dict(resumed["optimizer"])
        lr_schedule.load_state_dict(resumed["scheduler"])
        if resumed.get("sparsifier") is not None:
            sparsifier.load_state_dict(resumed["sparsifier"])
        if "scaler" in resumed:
            scaler.load_state_dict(resumed["scaler"])
        checkpoint.set_rng_state(resumed["rng"])
        start_step, wall_offset = int(resumed["step"]), resumed.get("wall_seconds", 0.0)
        run_id = resumed.get("run_id", run_id)
    return RunParts(
        data,
        model,
        ddp_model,
        sparsifier,
        flops,
        train_examples,
        examples_per_step,
        total_steps,
        optimizer,
        lr_schedule,
        scaler,
        autocast_for(cfg.precision, device),
        start_step,
        wall_offset,
        run_id,
        peak_flops(device, cfg.precision, cfg.peak_flops),
        oneshot,
        oneshot_ran,
        sharded,
    )


def _check_batch_fits(cfg: TrainConfig, train_examples: Optional[int], world_size: int) -> None:
    """A step's micro-batches must fit in the training split (a streamed one has no size)."""
    if train_examples is not None and cfg.data.batch_size * world_size > train_examples:
        across = f" x {world_size} processes" if world_size > 1 else ""
        raise ConfigError(
            f"data.batch_size={cfg.data.batch_size}{across} exceeds the {train_examples} examples of "
            f"data={cfg.data.name}'s training split: lower data.batch_size"
        )


def seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def sparsify_model(model, cfg: TrainConfig, spec: RunSpec, total_steps: int = 1):
    """`sparsify` with the run's patterns, recipe, layer map, layout and allow_skip; a bad shape is a ConfigError."""
    try:
        return sparsify(
            model,
            spec.patterns,
            spec.recipe,
            total_steps=total_steps,
            layer_map=cfg.model.layer_patterns or cfg.model.layer_map,
            layout=cfg.sparsity.layout,
            allow_skip=cfg.sparsity.allow_skip,
        )
    except ValueError as error:
        # the engine names its Python argument (allow_skip=True); a config sets sparsity.allow_skip=true
        message = str(error).replace("allow_skip=True", "sparsity.allow_skip=true")
        shape = message != str(error)  # a layer that cannot take the pattern: its layer names are right
        hint = "" if cfg.model.layer_patterns or shape else " (or name the layers with model.layer_patterns)"
        raise ConfigError(f"sparsity: {message}{hint}") from None


def steps_from_budget(cfg: TrainConfig, spec: RunSpec, flops, train_examples: Optional[int], world_size: int) -> int:
    """Optimizer steps of the run: budget.steps, or the steps of budget.epochs or budget.train_flops."""
    kind, value = spec.budget
    if kind == "steps":
        return int(value)  # 0: a one-shot model evaluated untrained
    if kind == "epochs":
        from pgfsparse.data import steps_per_epoch

        if train_examples is None:
            raise ConfigError(
                f"data={cfg.data.name} is streamed and has no epochs: set budget.steps or budget.train_flops"
            )
        per_epoch = steps_per_epoch(
            train_examples, cfg.data.batch_size, world_size=world_size, accumulate=cfg.optim.accumulate
        )
        return max(1, math.ceil(value * per_epoch))
    from pgfsparse.flops.counter import steps_for_flop_budget

    try:
        return steps_for_flop_budget(value, flops, lambda total: Schedule(spec.recipe, total))
    except ValueError as error:
        raise ConfigError(f"budget.train_flops: {error}") from None


def build_lr_schedule(cfg: TrainConfig, optimizer, total_steps: int):
    """timm schedulers stepped per optimizer step (t_in_epochs=False)."""
    from timm.scheduler import CosineLRScheduler, StepLRScheduler

    s = cfg.schedule
    warmup = s.warmup_steps if s.warmup_steps is not None else round(s.warmup_fraction * total_steps)
    warmup = min(warmup, max(total_steps - 1, 0))
    common: Dict[str, Any] = dict(
        warmup_t=warmup, warmup_lr_init=cfg.optim.lr * 1e-3, warmup_prefix=True, t_in_epochs=False
    )
    if s.name == "cosine" and total_steps - warmup > 1:  # over one step or none it is constant (timm warns)
        return CosineLRScheduler(optimizer, t_initial=total_steps - warmup, lr_min=s.min_lr, **common)
    return StepLRScheduler(optimizer, decay_t=total_steps + 1, decay_rate=1.0, **common)  # constant


def compiled(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`model` under torch.compile, or a ConfigError now if this machine cannot build kernels.

    torch.compile is lazy: without a C++ compiler (CPU) or Triton (CUDA) it would fail at the
    first step, so a one-op function is compiled first. Only the loop calls the wrapper: checkpoints
    and evaluation use the plain module (state_dict keys without the `_orig_mod.` prefix).
    """
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(2, device=device))
    except Exception as error:  # noqa: BLE001 - a missing compiler surfaces as any of several errors
        from pgfsparse.errors import first_line

        raise ConfigError(
            f"compile=true: torch.compile cannot build kernels here ({first_line(error)[:200]}): "
            "install a C++ compiler (CPU) or Triton (CUDA), or set compile=false"
        ) from None
    # compiling a Module returns an OptimizedModule (a Module wrapping it); torch types it as a plain callable
    return cast(torch.nn.Module, torch.compile(model))


def autocast_for(precision: str, device: torch.device):
    """A context-manager factory: bf16 autocast on GPU by default, fp32 on CPU."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)
