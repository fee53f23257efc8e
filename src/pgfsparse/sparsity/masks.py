"""N:M keep-masks as pure functions of a weight tensor.

Groups are M consecutive elements along the reduction dimension:

* ``layout="row"``  -- a Linear weight (out, in): M contiguous inputs of one row
  (the hardware N:M layout, and the default);
* ``layout="col"``  -- groups of M consecutive outputs within one input column;
* ``layout="conv"`` -- a conv weight (out, in, kh, kw): groups over (kh, kw, in)
  in channels-last order, i.e. within each output filter.

Inside a group the N largest |w| are kept. Tie rule: among equal magnitudes the
lowest index in the group wins (ties are common in bf16 and after pruning to
zero). No sort is done.

On CPU, float32/bfloat16/float16 weights go to a compiled kernel
(`kernel.py`, `kernels/nm_select.cpp`, built on first use): one parallel pass
over the groups, exact, and no temporary but the mask. Everywhere else (GPU,
float64, no compiler, PGF_MASK_KERNEL=0), the pure-torch paths below give the
same masks.

Both compare magnitudes as integers: the float's bits with the sign cleared
(monotonic in |w|, exact in every float dtype, and much faster than bf16/fp16
float ops on CPU). Which pure-torch path serves which pattern:

* M a power of two up to 32 (2:4, 1:4 .. 1:32, 3:8, 4:8, 8:16, 16:32, 15:16,
  31:32): a pruned Batcher selection network, run column-wise over all groups at
  once (one elementwise min/max per comparator on strided column views), yields
  each group's N-th and (N+1)-th largest; keep ``|w| >= N-th``. Where the two
  differ this is exact; where they are equal (a tie at the threshold) only
  those groups are redone by `top_n_per_group`. Measured 2-5x faster than a
  sort-based selection (benchmarks/mask_speed.py, docs/benchmarks.md).
* N = 1 with other M (1:128): an argmax of the integer magnitudes (exact).
  N = M - 1 with other M: one `amin` reduction and a threshold; one count
  checks that every group kept N, else the groups that did not are redone by
  `top_n_per_group`.
* anything else, and the tie repair: `top_n_per_group`. N = 1 is an argmax.
  Otherwise every |w| becomes a unique integer key (value bits, then index):
  N = M - 1 prunes the argmin, and any other N thresholds each group at a
  partial `topk` of its smaller side (N kept or M - N pruned).
"""

from __future__ import annotations

import functools

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


_MAX_NETWORK_M = 32  # beyond this a network outgrows the sort it replaces (1:128 is an amax)


@functools.lru_cache(maxsize=None)
def _batcher_comparators(m: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort for m = 2**k wires: comparators (i, j), i < j, sorting ascending."""
    pairs = []
    p = 1
    while p < m:
        k = p
        while k >= 1:
            for j in range(k % p, m - k, 2 * k):
                for i in range(min(k, m - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


@functools.lru_cache(maxsize=None)
def _selection_network(m: int, ranks: tuple[int, ...]) -> tuple[tuple[int, int, bool, bool], ...]:
    """The part of Batcher's network for m wires that decides the output wires `ranks` (0 = smallest).

    Entries are (i, j, want_min, want_max): a comparator and which of its two
    outputs is read later. Comparators that cannot reach those wires are dropped,
    and so are outputs that nothing reads.
    """
    needed = set(ranks)
    kept = []
    for i, j in reversed(_batcher_comparators(m)):
        if i in needed or j in needed:
            kept.append((i, j, i in needed, j in needed))
            needed |= {i, j}
    return tuple(reversed(kept))


def _rank_values(keys: torch.Tensor, ranks: tuple[int, ...]) -> list[torch.Tensor]:
    """The `ranks`-th smallest (0-based) of each row of `keys` (G, M), M a power of two: (G,) each.

    The selection network runs column-wise: a wire is one column of `keys` (a
    strided (G,) view, no copy), and a comparator is one torch.minimum and/or
    torch.maximum over all G groups at once, so the Python loop is as long as the
    network, not as the weight.
    """
    wires = list(keys.unbind(-1))
    for i, j, want_min, want_max in _selection_network(keys.shape[-1], ranks):
        low, high = wires[i], wires[j]
        if want_min:
            wires[i] = torch.minimum(low, high)
        if want_max:
            wires[j] = torch.maximum(low, high)
    return [wires[r] for r in ranks]


def _magnitude_keys(weight: torch.Tensor, m: int) -> torch.Tensor:
    """|weight| as integers in (G, M) groups, ordered and tied exactly as the magnitudes.

    The IEEE bits of a float with the sign bit cleared, read as a signed integer
    of the same width, are monotonic in |value| (and -0.0 becomes +0.0). Integer
    min/max/compare are exact and, for bfloat16/float16, much faster on CPU than
    the float ops (which convert). One temporary the size of the weight.
    """
    int_dtype = _INT_OF_FLOAT[weight.dtype]
    return weight.detach().reshape(-1, m).view(int_dtype) & torch.iinfo(int_dtype).max


_INT_OF_FLOAT = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.bfloat16: torch.int16,
    torch.float16: torch.int16,
}


_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _network_mask(keys: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Threshold mask ``keys >= n-th largest`` and the (G,) bool of groups it gets wrong.

    The network yields the n-th and (n+1)-th largest together; where they differ
    the threshold keeps exactly n, the largest ones. Where they are equal (a tie at
    the threshold) the group must be redone with the tie rule.
    """
    m = keys.shape[-1]
    nth, next_ = _rank_values(keys, (m - n, m - n - 1))
    return keys >= nth.unsqueeze(-1), nth == next_


def _extreme_mask(keys: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """For n = 1: the argmax of each group (exact: argmax returns the first maximum, our tie rule).

    For n = M - 1: keep ``keys > min`` (one amin reduction), exact where no other
    element equals the minimum; a single count tells whether any group kept other
    than n (then the (G,) bool of those groups, else None).
    """
    if n == 1:
        index = keys.argmax(dim=-1, keepdim=True)
        return torch.zeros(keys.shape, dtype=torch.bool, device=keys.device).scatter_(-1, index, True), None
    mask = keys > keys.amin(dim=-1, keepdim=True)
    if int(mask.count_nonzero()) == n * keys.shape[0]:
        return mask, None
    return mask, mask.sum(dim=-1, dtype=torch.int32) != n  # an int64 sum would first copy the mask as int64


def _kernel_library():
    """The compiled selection kernel (kernel.py), or None: then the pure-torch paths below serve."""
    from pgfsparse.sparsity import kernel

    return kernel.library()


def _kernel_mask(library, weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The (G, M) keep-mask from the compiled kernel: one parallel pass, no temporaries but a contiguous copy."""
    groups = weight.detach().reshape(-1, m).contiguous()  # a view when the weight is contiguous already
    keep = torch.empty(groups.shape, dtype=torch.bool)
    select = library.pgf_nm_select_u32 if groups.element_size() == 4 else library.pgf_nm_select_u16
    select(groups.data_ptr(), keep.data_ptr(), groups.shape[0], m, n, torch.get_num_threads())
    return keep


def _fast_top_n(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The (G, M) keep-mask of |weight| in groups of m: the compiled kernel on CPU when it is available,
    else a threshold, then the tie rule where needed.

    Groups with a tie at the threshold are few (none in float32 noise, a few per
    thousand in bfloat16) and are redone, alone, by the exact `top_n_per_group`.
    Patterns with neither a network nor an extreme path go to it whole.
    """
    if weight.dtype in _KERNEL_DTYPES and weight.device.type == "cpu" and weight.numel():
        library = _kernel_library()
        if library is not None:
            return _kernel_mask(library, weight, n, m)
    tied: torch.Tensor | None  # the groups to redo with the tie rule (None: none)
    if weight.dtype in _INT_OF_FLOAT and m & (m - 1) == 0 and m <= _MAX_NETWORK_M:
        mask, tied = _network_mask(_magnitude_keys(weight, m), n)
    elif weight.dtype in _INT_OF_FLOAT and n in (1, m - 1):
        mask, tied = _extreme_mask(_magnitude_keys(weight, m), n)
    else:
        return top_n_per_group(weight.detach().reshape(-1, m).abs(), n)
    if tied is not None:
        rows = tied.nonzero().squeeze(-1)
        if rows.numel():
            mask[rows] = top_n_per_group(weight.detach().reshape(-1, m)[rows].abs(), n)
    return mask


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
    return _fast_top_n(weight, n, m).reshape(weight.shape)
