"""A finished (or checkpointed) run, rebuilt for export from its recorded config with the run's own builders.

The checkpoint is read with `pgfsparse.run.checkpoint.load` (weights_only=True). The model is built as
pgf-train builds it (task.build_data -> task.build_model -> sparsify), then the checkpoint's weights
are loaded; the strict view recomputes the target masks from them, as the trainer's strict eval does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

import torch
from torch import nn

from pgfsparse.config.schema import VISION_FAMILIES
from pgfsparse.errors import CheckpointError
from pgfsparse.export.builders import (
    BuilderError,
    builder_for,
    check_rebuilds,
    timm_builder,
)
from pgfsparse.run import checkpoint
from pgfsparse.rundir.layout import CHECKPOINT, RunDir

FIXED_BATCH = 8  # examples of the first eval batch that --check compares


@dataclass
class Run:
    run_dir: Path
    model: nn.Module
    sparsifier: Any
    builder: Dict[str, Any]
    batch: Any  # the fixed batch --check runs


def load_run(target) -> Run:
    """The run at `target` (a run dir, or a checkpoint file inside one)."""
    from pgfsparse.config.spec import resolve
    from pgfsparse.run.parts import sparsify_model
    from pgfsparse.tasks import build_task
    from pgfsparse.tasks.task import first_examples

    target = Path(target)
    run_dir = target if target.is_dir() else target.parent
    state = checkpoint.load(target / CHECKPOINT if target.is_dir() else target)
    cfg = _config(run_dir, state)
    spec = resolve(cfg)
    task = build_task(cfg, run_dir)
    data = task.build_data()
    model = task.build_model(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # allow_skip's "leaving layer dense" was already said in training
        sparsifier = sparsify_model(model, cfg, spec, total_steps=max(1, int(state.get("step", 1))))
    model.load_state_dict(state["model"])
    model.eval()
    builder = _builder(cfg, data, model)
    batch = first_examples(next(iter(task.eval_batches(data))), FIXED_BATCH)
    return Run(run_dir, model, sparsifier, builder, batch)


def _config(run_dir: Path, state: Dict[str, Any]):
    """The config the checkpoint records (the weights' own), else the run dir's .hydra/config.yaml."""
    from omegaconf import OmegaConf

    from pgfsparse.config.validation import to_train_config

    if "config" in state:
        return to_train_config(OmegaConf.create(state["config"]))
    hydra = RunDir(run_dir).hydra_config
    if not hydra.is_file():
        raise CheckpointError(
            f"{run_dir} has no recorded config (checkpoint or .hydra/config.yaml): "
            "export a run dir written by pgf-train"
        )
    return to_train_config(OmegaConf.load(hydra))


def _builder(cfg, data, model: nn.Module) -> Dict[str, Any]:
    """timm: the name and kwargs build_vision_model used; transformers: the model's config."""
    if cfg.model.family not in VISION_FAMILIES:
        return builder_for(model)
    kwargs = dict(cfg.model.kwargs, in_chans=data.channels, num_classes=data.num_classes, img_size=data.image_size)
    try:
        builder = timm_builder(cfg.model.name, **kwargs)
        check_rebuilds(builder, model)
    except (TypeError, BuilderError):  # CNNs take no img_size (as in build_vision_model)
        kwargs.pop("img_size")
        builder = timm_builder(cfg.model.name, **kwargs)
        check_rebuilds(builder, model)
    return builder


def forward(model: nn.Module, batch, dtype=None) -> torch.Tensor:
    """The model's output tensor on the fixed batch (logits; T5 teacher-forced on the batch's labels).

    A dict batch is the model's keyword arguments (Hugging Face); otherwise its first item is the input.
    Hugging Face outputs give their logits.
    """

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    with torch.no_grad():
        out = model(**{k: cast(v) for k, v in batch.items()}) if isinstance(batch, dict) else model(cast(batch[0]))
    return out if isinstance(out, torch.Tensor) else out.logits
