"""Load a compressed N:M export back into a plain model (timm ViT/Swin, Hugging Face T5, GPT-2, Llama, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, cast

import torch
from torch import nn

from pgfsparse.errors import first_line
from pgfsparse.export import format as fmt
from pgfsparse.export.builders import build
from pgfsparse.export.compress import SegmentSpec
from pgfsparse.export.nm_linear import NMLinear
from pgfsparse.sparsity.masked_weight import output_dim

KERNELS = ("dense", "auto", "nm", "semi_structured")
AUTO_MIN_M = 16  # auto uses NMLinear only where it beat dense at every measured batch: M >= 16 (1:8 lost at batch 1)
# Input rows above which dense won or NMLinear's edge was gone (whole ViT at 64 images: 0.96x), per layer
# shape: fewer outputs than inputs (fc2-like; 768x3072 1:16: 1.01x at 520 rows, 0.77x at 4160) / the others.
AUTO_MAX_ROWS = {"narrowing": 512, "widening": 2048}


def load_compressed(path, kernels: str = "dense", device=None) -> nn.Module:
    """The model of a `pgf-export` file, rebuilt with its builder and the exported weights, in eval mode.

    kernels="dense":  plain layers and plain state_dict keys; weights equal the strict N:M weights and
                      outputs equal the strict model's bit for bit (CPU, same dtype).
    kernels="auto":   Linear layers whose patterns are all M >= 16 compute from the compressed values
                      (NMLinear: csr / gather by input rows, dense above 512 or 2048 rows),
                      the rest stay dense: where the sparse kernels won on CPU (see docs/benchmarks.md).
    kernels="nm":     NMLinear for every sparse Linear (any M), e.g. to measure it.
    kernels="semi_structured": CUDA only; 2:4 Linear layers in PyTorch's semi-structured format (fp16 unless
                      the export is bf16).
    GPT-2's Conv1D layers (y = x W + b, W stored (in, out)) are Linear layers with a transposed weight: the
    file keeps them as (out, in) rows, so "auto" and "nm" swap a sparse Conv1D for an NMLinear as they do an
    nn.Linear (outputs then equal the dense layer's within fp32 rounding: the sums run in another order).
    "semi_structured" leaves Conv1D layers dense.
    """
    if kernels not in KERNELS:
        raise ValueError(f"unknown kernels {kernels!r}: choose one of {', '.join(KERNELS)}")
    meta, state, stored = fmt.read(Path(path))
    model = build(meta["builder"])
    dtype = fmt.DTYPES.get(meta.get("dtype", "float32"), torch.float32)
    if dtype != torch.float32:
        model.to(dtype)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise fmt.ExportFileError(
            f"export file {path} does not fit the model its builder makes "
            f"({first_line(error)[:150]}): export again with this pgfsparse, timm and "
            "transformers"
        ) from None
    model.eval()
    if kernels in ("auto", "nm"):
        swap_nm_linears(model, meta["layers"], stored, min_m=AUTO_MIN_M if kernels == "auto" else 2)
    elif kernels == "semi_structured":
        from pgfsparse.export.semi_structured import convert

        convert(model, dtype if dtype in (torch.float16, torch.bfloat16) else torch.float16)
    if device is not None:
        model.to(device)
    return model


def swap_nm_linears(model: nn.Module, layers: Dict[str, Any], stored: Dict[str, torch.Tensor], min_m: int) -> list:
    """Replace each sparse linear layer (every pattern with M >= min_m) by an NMLinear; returns their names.

    Linear layers are nn.Linear with row-layout groups, and GPT-2 Conv1D layers stored transposed with
    row-layout groups (groups along the inputs); anything else stays as it is.
    """
    swapped = []
    for key, layer in layers.items():
        if not key.endswith(".weight"):
            continue
        name = key[: -len(".weight")]
        module = model.get_submodule(name)
        segments = [SegmentSpec.from_json(s) for s in layer["segments"]]
        sparse = [s for s in segments if not s.dense]
        in_features = _linear_inputs(module, bool(layer.get("transposed", False)))
        if in_features is None or layer["layout"] != "row" or not sparse:
            continue
        if min(s.nm[1] for s in sparse) < min_m:
            continue
        parts: List[Tuple[str, torch.Tensor, Optional[torch.Tensor], int]] = []
        for i, seg in enumerate(segments):
            values, indices = fmt.segment_tensors(stored, key, i, seg)
            parts.append(("dense", values, None, 0) if seg.dense else ("nm", values, indices, seg.nm[1]))
        out_features = int(layer["shape"][0])
        max_rows = AUTO_MAX_ROWS["narrowing" if out_features < in_features else "widening"]
        bias = getattr(module, "bias", None)
        nm = NMLinear.from_segments(
            in_features, parts, bias=bias if isinstance(bias, torch.Tensor) else None, max_rows=max_rows
        )
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, nm)
        swapped.append(name)
    return swapped


def _linear_inputs(module: nn.Module, transposed: bool) -> Optional[int]:
    """in_features of a layer an NMLinear can stand in for, given how the file stores its weight; else None."""
    if type(module) is nn.Linear and not transposed:
        return module.in_features
    # GPT-2's Conv1D itself (output_dim knows it), not a subclass that might compute something else
    if transposed and output_dim(module) == 1 and type(module).__name__ == "Conv1D":
        return int(cast(torch.Tensor, module.weight).shape[0])  # (in, out)
    return None
