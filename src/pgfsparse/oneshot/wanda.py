"""Wanda (Sun et al., 2023): prune by |weight| times the norm of the input feature it multiplies.

A weight's share of the output is |W_ij| * |x_j|, so a small weight on a large-activation feature (the outlier
features of LLMs) can matter more than a large one on a quiet feature; magnitude alone misses that. The score is
|W_ij| * ||X_j||_2, the L2 norm of input feature j over all calibration tokens; in each output row the N highest
scores of every group of M consecutive inputs are kept. There is no weight update.

The public implementation's running mean of ||X_j||^2 differs from this sum by one factor for all features, which
changes no mask. Ties go to the lowest index, as in `nm_mask` (which picks the mask from the score matrix here).
"""

from __future__ import annotations

import torch

from pgfsparse.oneshot.validation import check_weight
from pgfsparse.sparsity.masks import nm_mask


def wanda_scores(weight: torch.Tensor, feature_norms: torch.Tensor) -> torch.Tensor:
    """|W_ij| * ||X_j||_2 in at least float32, so a float16 product cannot overflow or round scores to ties."""
    dtype = torch.promote_types(torch.promote_types(weight.dtype, feature_norms.dtype), torch.float32)
    norms = feature_norms.detach().to(device=weight.device, dtype=dtype)
    return weight.detach().to(dtype).abs() * norms.unsqueeze(0)


def wanda_nm(weight: torch.Tensor, feature_norms: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The boolean N:M keep-mask of the (out, in) `weight` by Wanda's score.

    `feature_norms` is the (in,) vector of ||X_j||_2 over the calibration tokens, e.g.
    `LayerStatistics.feature_norms()`. The weight is not changed: ``weight * mask`` is the pruned layer.
    """
    check_weight(weight, n, m)
    in_features = weight.shape[1]
    if not isinstance(feature_norms, torch.Tensor) or tuple(feature_norms.shape) != (in_features,):
        shape = tuple(feature_norms.shape) if isinstance(feature_norms, torch.Tensor) else type(feature_norms).__name__
        raise ValueError(
            f"feature_norms has shape {shape} but the weight has in_features={in_features}: pass one norm per input "
            f"feature, shape ({in_features},) (a Conv1D weight is (in, out): transpose it first)"
        )
    if not feature_norms.is_floating_point() or not bool((torch.isfinite(feature_norms) & (feature_norms >= 0)).all()):
        raise ValueError("feature_norms must be finite, non-negative floats: pass the L2 norms of the input features")
    return nm_mask(wanda_scores(weight, feature_norms), n, m, "row")
