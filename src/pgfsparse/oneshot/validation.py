"""The checks the one-shot pruners share, so every method refuses the same bad input with the same one-line message.

The weight is always a Linear weight in (out, in) row layout: groups of M are consecutive inputs of one output row,
as `pgfsparse.sparsity.masks.nm_mask` cuts them. A GPT-2 ``Conv1D`` stores (in, out): its caller transposes first.
"""

from __future__ import annotations

import torch

from pgfsparse.sparsity.masks import IndivisibleError


def check_pattern(n: int, m: int) -> None:
    """Refuse anything but integers with 1 <= N < M (N counts the weights KEPT per group, not pruned)."""
    if isinstance(n, bool) or isinstance(m, bool) or not (isinstance(n, int) and isinstance(m, int)):
        raise ValueError(f"N:M pattern needs integers, got {n!r}:{m!r}: pass e.g. n=2, m=4")
    if not 1 <= n < m:
        raise ValueError(f"impossible N:M pattern {n}:{m}: need 1 <= N < M, N being the weights kept (e.g. 2:4)")


def check_weight(weight: torch.Tensor, n: int, m: int) -> None:
    """Refuse a weight that is not a finite 2-D float (out, in) matrix whose in_features M divides."""
    check_pattern(n, m)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a 2-D (out, in) tensor, got {shape}: flatten or transpose it first")
    if not weight.is_floating_point():
        raise ValueError(f"weight must be a float tensor, got {weight.dtype}: cast it with .float()")
    if weight.shape[1] % m:
        raise IndivisibleError(
            f"weight of shape {tuple(weight.shape)} cannot take {n}:{m}: its in_features ({weight.shape[1]}) "
            f"is not a multiple of M={m}; choose an M that divides it or leave this layer dense"
        )
    if not bool(torch.isfinite(weight).all()):
        raise ValueError(f"weight of shape {tuple(weight.shape)} has NaN or inf entries: prune a finite checkpoint")
