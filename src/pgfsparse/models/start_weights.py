"""`model.checkpoint`: start a new run, of any family, from the weights of a pgf-train run.

The source is a run dir or its checkpoint.pt. A sparse run gives its strict N:M weights (the
target masks of its latent weights, what `pgf-export` writes), a dense run its weights, so a
dense run can be sparsified later and a sparse one fine-tuned under another recipe. The source
run is rebuilt as `pgf-export` rebuilds it (`export.run.load_run`: the run's own config, data
and tokenizer), with the random state put back afterwards so the new run draws the same numbers
as without a start. The weights are loaded before the new model is sparsified; a model of
another size, class count or vocabulary is refused in one line naming the first differing key.

Vision models also take a timm weights file (.safetensors/.pth that is not a pgf-train
checkpoint): timm loads it while building the model (`models/vision.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping, Union

import torch
from torch import nn

from pgfsparse.errors import ConfigError
from pgfsparse.rundir.layout import CHECKPOINT

RUN_KEYS = ("model", "optimizer", "step")  # what marks a pgf-train checkpoint among weights files


def is_run_checkpoint(path: Union[str, Path]) -> bool:
    """A pgf-train run dir (holding checkpoint.pt) or checkpoint file, rather than a plain weights file."""
    path = Path(path).expanduser()
    if path.is_dir():
        return (path / CHECKPOINT).is_file()
    if path.suffix == ".safetensors" or not path.is_file():
        return False
    try:  # memory-mapped: only the pickled index is read, not the tensors
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - unreadable or unsafe: not a checkpoint (check_weights_file says why)
        return False
    return isinstance(payload, dict) and all(key in payload for key in RUN_KEYS)


def run_weights(target: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """The plain-key state dict a run ends with: strict N:M weights for its sparse layers, all others as trained."""
    from pgfsparse.export.run import load_run
    from pgfsparse.run.checkpoint import rng_state, set_rng_state

    saved = rng_state()  # rebuilding the source model draws its initial weights: the new run's draws stay the same
    try:
        run = load_run(Path(target).expanduser())
    finally:
        set_rng_state(saved)
    return run.sparsifier.export_state_dict("strict")


def load_start_weights(model: nn.Module, target: Union[str, Path]) -> None:
    """Copy the run at `target`'s weights (see `run_weights`) into `model`, which must have the same shapes."""
    weights = run_weights(target)
    check_same_shapes(model.state_dict(), weights, f"model.checkpoint={target}")
    model.load_state_dict(weights)


def check_same_shapes(own: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], what: str) -> None:
    """`given` holds exactly `own`'s keys, each with the same shape, else a one-line ConfigError on the first miss."""
    for key, value in own.items():
        if key not in given:
            raise ConfigError(
                f"{what} has no {key} (this model's first key it lacks): start from a run of the same model"
            )
        if tuple(given[key].shape) != tuple(value.shape):
            raise ConfigError(
                f"{what} does not fit this model: {key} is {_shape(given[key])} there and {_shape(value)} here "
                "(another model size, class count or vocabulary): start from a run of the same model and data"
            )
    extra = next((key for key in given if key not in own), None)
    if extra is not None:
        raise ConfigError(f"{what} holds {extra}, which this model lacks: start from a run of the same model")


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "a scalar"
