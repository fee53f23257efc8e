"""One sparse weight <-> its kept values and in-group indices, segment by segment.

A segment is a block of rows with its own N:M pattern (Q, K and V of a fused
timm `qkv` weight may differ; other layers have one segment of all rows). Inside
a segment the weight is viewed as groups of M along the mask layout's group
dimension (row: inputs of a row; col: outputs of a column; conv: (kh, kw, in)
channels-last), exactly as `pgfsparse.nm_mask` groups it. Each group keeps N
values, stored in ascending in-group index order with their indices. Rows that
no pattern covers (K and V when only Q is sparse) are a dense segment (n = m = None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch


@dataclass(frozen=True)
class SegmentSpec:
    """Rows [start, stop) of a weight, compressed at n:m."""

    location: str
    start: int
    stop: int
    n: Optional[int]  # None: a dense block, stored as it is
    m: Optional[int]

    @property
    def dense(self) -> bool:
        return self.m is None

    @property
    def nm(self) -> Tuple[int, int]:
        """(n, m) of a sparse segment; a dense one has none."""
        if self.n is None or self.m is None:
            raise ValueError(f"rows {self.start}:{self.stop} ({self.location}) are a dense segment: they have no n:m")
        return self.n, self.m

    def to_json(self) -> dict:
        return {"location": self.location, "rows": [self.start, self.stop], "n": self.n, "m": self.m}

    @classmethod
    def from_json(cls, value: dict) -> "SegmentSpec":
        n, m = value["n"], value["m"]
        return cls(
            str(value["location"]),
            int(value["rows"][0]),
            int(value["rows"][1]),
            None if n is None else int(n),
            None if m is None else int(m),
        )


def grouped(block: torch.Tensor, layout: str) -> torch.Tensor:
    """A segment's rows as a 2-D view whose last dimension is cut into groups (a copy for col/conv)."""
    if layout == "row":
        return block.reshape(block.shape[0], -1) if block.dim() != 2 else block
    if layout == "col":
        return block.t()
    if layout == "conv":
        return block.movedim(1, -1).reshape(block.shape[0], -1)
    raise ValueError(f"unknown mask layout {layout!r} in the export: expected row, col or conv")


def ungrouped(flat: torch.Tensor, shape: Tuple[int, ...], layout: str) -> torch.Tensor:
    """Inverse of `grouped` for a segment of `shape`."""
    if layout == "row":
        return flat.reshape(shape)
    if layout == "col":
        return flat.t()
    channels_last = (shape[0], *shape[2:], shape[1])
    return flat.reshape(channels_last).movedim(-1, 1)


def compress(weight: torch.Tensor, mask: torch.Tensor, seg: SegmentSpec, layout: str):
    """(values (P, G, n), indices (P, G, n) int64) of the segment's rows of a masked weight.

    The mask must keep exactly n of every m: that is what makes the indices a complete description.
    """
    w = grouped(weight[seg.start : seg.stop], layout)
    keep = grouped(mask[seg.start : seg.stop], layout)
    n, m = seg.nm
    rows, length = w.shape
    keep = keep.reshape(rows, length // m, m)
    counts = keep.sum(dim=-1)
    if not bool((counts == n).all()):
        raise ValueError(
            f"mask rows {seg.start}:{seg.stop} do not keep exactly {n} of every {m}: export the strict N:M view"
        )
    # nonzero() lists positions in row-major order: per group, ascending in-group indices.
    indices = keep.nonzero()[:, -1].reshape(rows, length // m, n)
    values = w.reshape(rows, length // m, m).gather(-1, indices)
    return values.contiguous(), indices


def decompress(
    values: torch.Tensor, indices: torch.Tensor, seg: SegmentSpec, shape: Tuple[int, ...], layout: str
) -> torch.Tensor:
    """The dense rows of one segment (zeros where pruned), in the weight's own shape."""
    _, m = seg.nm
    rows, groups, _ = values.shape
    dense = torch.zeros(rows, groups, m, dtype=values.dtype).scatter_(-1, indices, values)
    block_shape = (seg.stop - seg.start, *shape[1:])
    return ungrouped(dense.reshape(rows, groups * m), block_shape, layout)


def with_dense_gaps(segments: List[SegmentSpec], rows: int) -> List[SegmentSpec]:
    """The sparse segments plus dense ones for the rows they leave uncovered, in row order."""
    out, at = [], 0
    for seg in sorted(segments, key=lambda s: s.start):
        if seg.start > at:
            out.append(SegmentSpec("dense", at, seg.start, None, None))
        out.append(seg)
        at = seg.stop
    if at < rows:
        out.append(SegmentSpec("dense", at, rows, None, None))
    return out
