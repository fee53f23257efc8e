"""In-group indices packed at ceil(log2(M)) bits each: the index part of the theoretical N:M size.

The index of a kept weight inside its group of M is below M, so it fits in
ceil(log2(M)) bits: 2 for M = 4, 3 for M = 8, 5 for M = 32, 7 for M = 128.
Indices are one little-endian bit stream: index i occupies bits
[i * b, (i + 1) * b), least significant bit first; the last byte is zero-padded.
"""

from __future__ import annotations

import math

import torch

_BYTE_BITS = torch.arange(8, dtype=torch.uint8)


def index_bits(m: int) -> int:
    """Bits per in-group index for groups of `m` (ceil(log2(m)), at least 1)."""
    if m < 2:
        raise ValueError(f"group size M={m} has no in-group index to pack: need M >= 2")
    return max(1, math.ceil(math.log2(m)))


def packed_bytes(count: int, bits: int) -> int:
    """Bytes that `count` indices of `bits` bits take once packed."""
    return (count * bits + 7) // 8


def pack_indices(indices: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer tensor with values in [0, 2**bits) -> flat uint8 bit stream of packed_bytes(numel, bits) bytes."""
    flat = indices.reshape(-1).to(torch.int64)
    if flat.numel() and (flat.min() < 0 or flat.max() >= 1 << bits):
        raise ValueError(f"indices outside [0, {1 << bits}) cannot be packed at {bits} bits")
    stream = ((flat.unsqueeze(1) >> torch.arange(bits)) & 1).to(torch.uint8).reshape(-1)
    stream = torch.nn.functional.pad(stream, (0, (-stream.numel()) % 8))
    return (stream.view(-1, 8) << _BYTE_BITS).sum(dim=1, dtype=torch.uint8)


def unpack_indices(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """The first `count` indices of a stream written by `pack_indices`, as int64."""
    if packed.dtype != torch.uint8 or packed.dim() != 1 or packed.numel() != packed_bytes(count, bits):
        raise ValueError(
            f"packed indices hold {packed.numel()} bytes ({packed.dtype}), expected "
            f"{packed_bytes(count, bits)} uint8 for {count} indices of {bits} bits"
        )
    stream = ((packed.unsqueeze(1) >> _BYTE_BITS) & 1).reshape(-1)[: count * bits]
    weights = torch.ones(bits, dtype=torch.int64) << torch.arange(bits)
    return (stream.view(count, bits).to(torch.int64) * weights).sum(dim=1)
