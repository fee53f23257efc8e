"""2:4 layers on NVIDIA GPUs: PyTorch's semi-structured sparse format (prototype, CUDA only).

`torch.sparse.to_sparse_semi_structured` compresses a 2:4 weight for cuSPARSELt / CUTLASS
kernels. A Linear qualifies when its weight keeps at most 2 of every 4 along its
inputs, is fp16 or bf16, and both dimensions are multiples of the kernels' tile
(CUTLASS: 32 rows x 64 columns for fp16/bf16; cuSPARSELt accepts those too).
`plan` decides which layers qualify and why not, on any device; `convert` needs CUDA.
"""

from __future__ import annotations

from typing import Dict, cast

import torch
from torch import nn

DTYPES = (torch.float16, torch.bfloat16)
TILE = (32, 64)  # CUTLASS's (rows, columns) minimum and multiple for fp16/bf16: the stricter backend


class NoCudaError(RuntimeError):
    """The 2:4 semi-structured kernels need a CUDA GPU."""


def is_2_4(weight: torch.Tensor) -> bool:
    """At most 2 non-zeros in every group of 4 consecutive inputs of every row."""
    if weight.dim() != 2 or weight.shape[1] % 4:
        return False
    return bool(((weight.reshape(weight.shape[0], -1, 4) != 0).sum(-1) <= 2).all())


def reason_not(module: nn.Module, dtype: torch.dtype) -> str:
    """Why a module cannot take the 2:4 kernels at `dtype` ('' when it can)."""
    if type(module) is not nn.Linear:
        return "not an nn.Linear"
    rows, cols = module.weight.shape
    if dtype not in DTYPES:
        return f"dtype {str(dtype).replace('torch.', '')} (the kernels take float16 or bfloat16)"
    if rows % TILE[0] or cols % TILE[1] or rows < TILE[0] or cols < TILE[1]:
        return f"shape {rows}x{cols} is not a multiple of the {TILE[0]}x{TILE[1]} tile"
    if not is_2_4(module.weight):
        return "weight is not 2:4"
    return ""


def plan(model: nn.Module, dtype: torch.dtype = torch.float16) -> Dict[str, str]:
    """{Linear name: '' if it converts, else why not} for every Linear of `model`."""
    return {name: reason_not(module, dtype) for name, module in model.named_modules() if isinstance(module, nn.Linear)}


def convert(model: nn.Module, dtype: torch.dtype = torch.float16) -> Dict[str, str]:
    """Move `model` to CUDA at `dtype` and swap every qualifying 2:4 weight for its semi-structured form.

    Returns the plan. Without CUDA it raises NoCudaError (one line) and leaves the model as it was.
    """
    if not torch.cuda.is_available():
        raise NoCudaError(
            "2:4 semi-structured kernels need a CUDA GPU and none is available: "
            "keep kernels='dense' (or 'auto') on this machine"
        )
    from torch.sparse import to_sparse_semi_structured

    model.to("cuda", dtype)
    decided = plan(model, dtype)
    for name, why in decided.items():
        if not why:
            module = cast(nn.Linear, model.get_submodule(name))  # plan() passes nn.Linear layers only
            module.weight = nn.Parameter(to_sparse_semi_structured(module.weight.detach()), requires_grad=False)
    return decided
