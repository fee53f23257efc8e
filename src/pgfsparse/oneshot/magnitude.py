"""One-shot magnitude pruning: the N largest |w| of every group of M consecutive inputs, chosen once.

This is exactly the engine's own mask (`pgfsparse.sparsity.masks.nm_mask`, ties to the lowest index), applied to
the dense weight once; it needs no calibration data and is the baseline the data-aware methods must beat.
"""

from __future__ import annotations

import torch

from pgfsparse.oneshot.validation import check_weight
from pgfsparse.sparsity.masks import nm_mask


def magnitude_nm(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The boolean N:M keep-mask (same shape as the (out, in) `weight`) of the largest magnitudes.

    The weight is not changed: ``weight * mask`` is the pruned layer.
    """
    check_weight(weight, n, m)
    return nm_mask(weight.detach(), n, m, "row")
