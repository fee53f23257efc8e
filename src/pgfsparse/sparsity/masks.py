"""N:M keep-masks as pure functions of a weight tensor.

Groups are M consecutive elements along the reduction dimension:

* ``layout="row"``  -- a Linear weight (out, in): M contiguous inputs of one row
  (the hardware N:M layout, and the default);
* ``layout="col"``  -- groups of M consecutive outputs within one input column;
* ``layout="conv"`` -- a conv weight (out, in, kh, kw): groups over (kh, kw, in)
  in channels-last order, i.e. within each output filter.

Inside a group the N largest |w| are kept. Tie rule: among equal magnitudes the
lowest index in the group wins (ties are common in bf16 and after pruning to
zero). No sort is done. N = 1 is an argmax. Otherwise every |w| becomes a
unique integer key (value bits, then index): N = M - 1 prunes the argmin, and
any other N thresholds each group at a partial `topk` of its smaller side (N
kept or M - N pruned). On this CPU that is faster than a stable sort,
`kthvalue`, or comparing all pairs.
"""
from __future__ import annotations

import torch

LAYOUTS = ("row", "col", "conv")

class IndivisibleError(ValueError):
    """The group dimension of a weight is not a multiple of M."""


def group_dim_size(shape: torch.Size | tuple, layout: str = "row") -> int:
    """Length of the dimension that is cut into groups of M for this layout."""
    if layout == "row":
        return shape[-1]
    if layout == "col":
        return shape[0]
    if layout == "conv":
        size = 1
        for s in shape[1:]:
            size *= s
        return size
    raise ValueError(f"unknown mask layout {layout!r}: choose one of {', '.join(LAYOUTS)}")


def _check_divisible(weight: torch.Tensor, n: int, m: int, layout: str) -> None:
    """Raise IndivisibleError naming the caller's own shape (not a transposed or flattened view)."""
    size = group_dim_size(tuple(weight.shape), layout)
    if size % m:
        raise IndivisibleError(
            f"weight of shape {tuple(weight.shape)} cannot take {n}:{m} (layout {layout!r}): "
            f"its group dimension ({size}) is not a multiple of {m}"
        )


def _unique_keys(scores: torch.Tensor) -> torch.Tensor:
    """Integer sort keys: the value's order, then lower index first, with no two keys equal.

    For non-negative float32 the IEEE bit pattern read as an integer is monotonic
    in the value, so (bits << log2(M)) | (M - 1 - index) orders by value and
    breaks ties towards the lowest index, exactly.
    """
    m = scores.shape[-1]
    bits = scores.float().view(torch.int32).to(torch.int64)
    reversed_index = torch.arange(m - 1, -1, -1, dtype=torch.int64, device=scores.device)
    return (bits << max(1, (m - 1).bit_length())) | reversed_index


def top_n_per_group(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Boolean mask keeping the `n` largest of the non-negative `scores` along the last dim.

    Ties: the lowest index wins.
    """
    m = scores.shape[-1]
    if n == 1:
        # torch.argmax returns the first maximal index: our tie rule.
        index = scores.argmax(dim=-1, keepdim=True)
        return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device).scatter_(-1, index, True)
    if scores.dtype != torch.float64:  # float16/bfloat16 upcast to float32 exactly
        keys = _unique_keys(scores)
        if n == m - 1:  # the first rung of a stepwise ladder: prune the single smallest
            index = keys.argmin(dim=-1, keepdim=True)
            return torch.ones(scores.shape, dtype=torch.bool, device=scores.device).scatter_(-1, index, False)
        # Keys are unique, so one threshold splits each group exactly; select the smaller side.
        if n <= m - n:
            return keys >= keys.topk(n, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)
        return keys > keys.topk(m - n, dim=-1, largest=False, sorted=False).values.amax(dim=-1, keepdim=True)
    # float64 does not fit the key trick: threshold at the n-th largest, then break ties by index.
    threshold = scores.kthvalue(m - n + 1, dim=-1, keepdim=True).values
    above = scores > threshold
    at = scores == threshold
    still_needed = n - above.sum(dim=-1, keepdim=True)
    return above | (at & (at.cumsum(dim=-1) <= still_needed))


def nm_mask(weight: torch.Tensor, n: int, m: int, layout: str = "row") -> torch.Tensor:
    """Return the boolean N:M keep-mask of `weight` (same shape), by magnitude.

    >>> nm_mask(torch.tensor([[0.1, -3.0, 2.0, 0.5]]), 2, 4)
    tensor([[False,  True,  True, False]])
    """
    if not 1 <= n < m:
        raise ValueError(f"impossible N:M pattern {n}:{m}: need 1 <= N < M")
    if layout == "col":
        if weight.dim() != 2:
            raise ValueError(f"layout 'col' needs a 2-D weight, got shape {tuple(weight.shape)}")
        _check_divisible(weight, n, m, layout)
        return nm_mask(weight.t(), n, m, "row").t()
    if layout == "conv":
        if weight.dim() < 3:
            raise ValueError(f"layout 'conv' needs a conv weight (out, in, *kernel), got shape {tuple(weight.shape)}")
        _check_divisible(weight, n, m, layout)
        channels_last = weight.movedim(1, -1)  # (out, kh, kw, in)
        mask = nm_mask(channels_last.reshape(weight.shape[0], -1), n, m, "row")
        return mask.reshape(channels_last.shape).movedim(-1, 1)
    if layout != "row":
        raise ValueError(f"unknown mask layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    if weight.dim() == 0 or weight.shape[-1] % m:
        raise IndivisibleError(
            f"weight of shape {tuple(weight.shape)} cannot take {n}:{m}: "
            f"its group dimension ({weight.shape[-1] if weight.dim() else 0}) is not a multiple of {m}"
        )
    groups = weight.detach().abs().reshape(*weight.shape[:-1], weight.shape[-1] // m, m)
    return top_n_per_group(groups, n).reshape(weight.shape)
