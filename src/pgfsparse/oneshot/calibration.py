"""Calibration statistics of one linear layer, streamed over batches of its inputs without keeping them.

Wanda needs each input feature's squared L2 norm over the calibration tokens, SparseGPT the Hessian of the layer's
least-squares reconstruction, H = X^T X (X: all calibration rows, in_features columns). Both are sums over rows, so
they accumulate batch by batch: whatever the batch sizes and leading dims, the result is the one over the
concatenated inputs.

H here is the plain sum X^T X, not the public SparseGPT's running mean 2/rows * X^T X: SparseGPT's update, its mask
scores' order and its dampening (a fraction of mean(diag H)) are all unchanged by a positive scale of H, and a sum
needs no rescaling as batches arrive. `rows` is counted for whoever wants the mean.

The sums are kept in float64 by default. A float32 sum over the 10^5-10^6 rows of a typical calibration set
(128 sequences of 2048 tokens) carries a relative error of order 1e-4 or worse, and SparseGPT then inverts H and takes a
Cholesky factor, which magnifies that error by H's condition number (large for the correlated activations of a
transformer). The cost is one in x in float64 matrix per layer being calibrated (128 MiB at in=4096) and a float64
product per batch; pass ``dtype=torch.float32`` where that matters more.
"""

from __future__ import annotations

from typing import Optional, Union

import torch


class LayerStatistics:
    """Running X^T X (optional), per-feature squared norms and the row count of one layer's inputs.

    `add` takes a batch of the layer's inputs with any leading dims and ``in_features`` last (the tensor a forward
    pre-hook sees). With ``hessian=False`` only the norms are kept (all Wanda needs): no in x in matrix.
    The sums live on `device`, or on the first batch's device when it is None.
    """

    def __init__(
        self,
        in_features: int,
        *,
        hessian: bool = True,
        dtype: torch.dtype = torch.float64,
        device: Optional[Union[str, torch.device]] = None,
    ) -> None:
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ValueError(
                f"in_features must be a positive integer, got {in_features!r}: pass the layer's input size"
            )
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"statistics dtype must be torch.float64 or torch.float32, got {dtype}")
        self.in_features = in_features
        self.track_hessian = hessian
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else None
        self.rows = 0
        self._hessian: Optional[torch.Tensor] = None
        self._squared_norms: Optional[torch.Tensor] = None

    def _allocate(self, device: torch.device) -> None:
        """Create the zero sums on first use, so a caller need not know the activations' device in advance."""
        self.device = device
        self._squared_norms = torch.zeros(self.in_features, dtype=self.dtype, device=device)
        if self.track_hessian:
            self._hessian = torch.zeros(self.in_features, self.in_features, dtype=self.dtype, device=device)

    @torch.no_grad()
    def add(self, inputs: torch.Tensor) -> None:
        """Add one batch of inputs (..., in_features) to the sums; an empty batch adds nothing."""
        if not isinstance(inputs, torch.Tensor) or inputs.dim() == 0 or inputs.shape[-1] != self.in_features:
            shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            raise ValueError(
                f"inputs of shape {shape} do not end in in_features={self.in_features}: pass the layer's inputs "
                f"(..., {self.in_features})"
            )
        if not inputs.is_floating_point():
            raise ValueError(f"inputs must be float activations, got {inputs.dtype}")
        if self._squared_norms is None:
            self._allocate(self.device if self.device is not None else inputs.device)
        assert self._squared_norms is not None  # allocated above (for mypy)
        rows = inputs.detach().reshape(-1, self.in_features).to(device=self.device, dtype=self.dtype)
        self._squared_norms.add_(rows.square().sum(dim=0))
        if self._hessian is not None:
            self._hessian.addmm_(rows.t(), rows)
        self.rows += rows.shape[0]

    def _require_rows(self) -> None:
        if self.rows == 0:
            raise ValueError("no calibration inputs seen yet: call add() with at least one non-empty batch first")

    @property
    def hessian(self) -> torch.Tensor:
        """X^T X over all rows added, (in, in): SparseGPT's H up to a scale that changes nothing."""
        if not self.track_hessian:
            raise ValueError("these statistics were kept with hessian=False: build LayerStatistics(..., hessian=True)")
        self._require_rows()
        assert self._hessian is not None
        return self._hessian

    @property
    def squared_norms(self) -> torch.Tensor:
        """sum over rows of x_j^2, per input feature j, (in,)."""
        self._require_rows()
        assert self._squared_norms is not None
        return self._squared_norms

    def feature_norms(self) -> torch.Tensor:
        """||X_j||_2 over all rows added, per input feature, (in,): Wanda's activation factor."""
        return self.squared_norms.sqrt()
