"""A reference N:M linear for inference that computes from the kept values and their column indices.

y[b, o] = sum over kept (o, c) of value[o, c] * x[b, c] + bias[o], where c = group * M + in-group index.
Two plain-torch ways to run it, both reading only the compressed form (no dense weight is kept):

* "gather": `F.embedding_bag` with per-sample weights: for every output row, gather the input
  columns it keeps, scale by the kept values and sum (one fused CPU kernel, any N:M, any row length);
* "csr":    the same values and column indices as a CSR matrix (`torch.sparse_csr_tensor`) times x.

method="auto" picks per call from the input's row count, by what won in benchmarks/sparse_inference.py
(2-core CPU, 1 thread, 1:16 and 1:32): csr below 16 rows, gather above. Above `max_rows` rows
(None: never) a dense GEMM wins; the layer then decompresses its weight once and keeps it for
such calls (it ties dense there, at dense memory), since decompressing per call lost 3-30%.
"""

from __future__ import annotations

import warnings
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

METHODS = ("auto", "gather", "csr")
SMALL_ROWS = 16  # below this many input rows csr beat gather (batch 1: 1.1-2.3x of dense vs 0.6-1.0x)


class NMLinear(nn.Module):
    """Inference-only Linear stored as kept values + column indices per output row."""

    # buffers, registered in __init__ (declared here for the type checker)
    values: torch.Tensor
    columns: torch.Tensor
    offsets: torch.Tensor
    bias: Optional[torch.Tensor]

    def __init__(
        self,
        in_features: int,
        out_features: int,
        values: torch.Tensor,
        columns: torch.Tensor,
        row_lengths: torch.Tensor,
        bias: Optional[torch.Tensor] = None,
        method: str = "auto",
        max_rows: Optional[int] = 512,
    ):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"unknown NMLinear method {method!r}: choose one of {', '.join(METHODS)}")
        self.in_features, self.out_features, self.method, self.max_rows = in_features, out_features, method, max_rows
        offsets = torch.zeros(out_features + 1, dtype=torch.int64)
        offsets[1:] = row_lengths.cumsum(0)
        self.register_buffer("values", values.reshape(-1).contiguous())
        self.register_buffer("columns", columns.reshape(-1).to(torch.int64).contiguous())
        self.register_buffer("offsets", offsets)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self._csr: Optional[torch.Tensor] = None
        self._dense: Optional[torch.Tensor] = None  # the decompressed weight, made on the first call above max_rows

    @classmethod
    def from_segments(
        cls,
        in_features: int,
        parts: Sequence[Tuple[str, torch.Tensor, Optional[torch.Tensor], int]],
        bias: Optional[torch.Tensor] = None,
        **options,
    ) -> "NMLinear":
        """parts: per row block in order, ("nm", values (P, G, n), in-group indices (P, G, n), m)
        or ("dense", rows (P, in_features), None, 0)."""
        values: List[torch.Tensor] = []
        columns: List[torch.Tensor] = []
        lengths: List[torch.Tensor] = []
        for kind, vals, idx, m in parts:
            rows = vals.shape[0]
            if kind == "dense":
                cols = torch.arange(in_features).expand(rows, in_features)
                vals = vals.reshape(rows, in_features)
            else:
                assert idx is not None  # an "nm" part always carries its in-group indices
                cols = (torch.arange(vals.shape[1]).view(1, -1, 1) * m + idx).reshape(rows, -1)
                vals = vals.reshape(rows, -1)
            values.append(vals.reshape(-1))
            columns.append(cols.reshape(-1))
            lengths.append(torch.full((rows,), cols.shape[1], dtype=torch.int64))
        out = sum(len(length) for length in lengths)
        return cls(in_features, out, torch.cat(values), torch.cat(columns), torch.cat(lengths), bias, **options)

    def dense_weight(self) -> torch.Tensor:
        """The dense (out, in) weight, zeros where pruned."""
        rows = torch.repeat_interleave(torch.arange(self.out_features, device=self.columns.device), self.offsets.diff())
        weight = torch.zeros(self.out_features * self.in_features, dtype=self.values.dtype, device=self.values.device)
        weight[rows * self.in_features + self.columns] = self.values
        return weight.view(self.out_features, self.in_features)

    def _csr_matrix(self) -> torch.Tensor:
        if self._csr is None or self._csr.device != self.values.device:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "CSR support is in beta"
                self._csr = torch.sparse_csr_tensor(
                    self.offsets,
                    self.columns,
                    self.values,
                    (self.out_features, self.in_features),
                    check_invariants=False,
                )
        return self._csr

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if self.max_rows is not None and flat.shape[0] > self.max_rows:
            if self._dense is None or self._dense.device != self.values.device:
                self._dense = self.dense_weight()
            return F.linear(x, self._dense, self.bias)
        method = self.method
        if method == "auto":
            method = "csr" if flat.shape[0] < SMALL_ROWS else "gather"
        if method == "gather":
            # embedding_bag reads "embeddings" by row: the input's columns are the rows of x^T.
            out = F.embedding_bag(
                self.columns, flat.t().contiguous(), self.offsets[:-1], mode="sum", per_sample_weights=self.values
            ).t()
        else:
            out = (self._csr_matrix() @ flat.t()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        kept = self.values.numel() / (self.out_features * self.in_features)
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, density={kept:.4g}, "
            f"method={self.method}, max_rows={self.max_rows}"
        )
