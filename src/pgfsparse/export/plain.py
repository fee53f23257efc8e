"""Plain-library exports: files that timm or transformers load with no pgfsparse installed.

timm: `<out>.safetensors` (the strict N:M weights, zeros in place, plain timm keys) and `<out>.json`
      beside it ({"library": "timm", "name": ..., "kwargs": ...}):
          model = timm.create_model(spec["name"], **spec["kwargs"])
          model.load_state_dict(safetensors.torch.load_file(path))
hf:   a `save_pretrained` folder (config.json + model.safetensors, and the run's tokenizer when it has one):
          T5ForConditionalGeneration.from_pretrained(folder)   # or GPT2LMHeadModel, LlamaForCausalLM, ...
      Every tensor has the model's own key and shape: GPT-2's Conv1D weights stay (in, out), with their
      N:M groups along the inputs (dim 0) of each output column.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, cast

import torch

from pgfsparse.export.builders import BuilderError, build
from pgfsparse.rundir.files import atomic_path, atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel


def _cast(state: Dict[str, torch.Tensor], dtype: Optional[torch.dtype]) -> Dict[str, torch.Tensor]:
    return {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v) for k, v in state.items()}


def export_timm(
    state: Dict[str, torch.Tensor], builder: Dict[str, Any], path: Path, dtype: Optional[torch.dtype] = None
) -> Path:
    """Write the dense-with-zeros timm checkpoint and its builder JSON; returns the JSON's path."""
    from safetensors.torch import save_file

    if builder.get("library") != "timm":
        raise BuilderError(
            f"--format timm needs a timm model, this one is built by {builder.get('library')}: "
            "use --format hf (transformers) or compressed"
        )
    path = Path(path)
    tensors = {k: v.detach().clone().contiguous().cpu() for k, v in _cast(state, dtype).items()}  # no shared storage
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    spec = path.with_suffix(".json")
    atomic_write_text(
        spec,
        json.dumps(
            {"library": "timm", "name": builder["name"], "kwargs": builder["kwargs"], "weights": path.name}, indent=1
        )
        + "\n",
    )
    return spec


def export_hf(
    state: Dict[str, torch.Tensor],
    builder: Dict[str, Any],
    folder: Path,
    dtype: Optional[torch.dtype] = None,
    tokenizer_dir: Optional[Path] = None,
) -> Path:
    """Write a save_pretrained folder of the strict N:M model (and the tokenizer files, if given)."""
    if builder.get("library") != "transformers":
        raise BuilderError(
            f"--format hf needs a Hugging Face model, this one is built by {builder.get('library')}: "
            "use --format timm or compressed"
        )
    model = build(builder)
    if dtype is not None:
        model.to(dtype)
    model.load_state_dict(_cast(state, dtype), strict=True)
    folder = Path(folder)
    with atomic_path(folder) as tmp:
        cast("PreTrainedModel", model).save_pretrained(str(tmp))  # what a transformers builder builds
        if tokenizer_dir is not None and Path(tokenizer_dir).is_dir():
            for item in Path(tokenizer_dir).iterdir():
                if item.is_file():
                    shutil.copy2(item, tmp / item.name)
        if folder.exists():  # os.replace cannot replace a non-empty folder
            shutil.rmtree(folder)
    return folder
