"""One-shot N:M pruning of a dense layer: magnitude, Wanda and SparseGPT, and the calibration statistics they use.

These are per-layer algorithms on a Linear weight in (out, in) row layout (groups of M consecutive inputs of one
output row, as `pgfsparse.sparsity.masks.nm_mask`); a GPT-2 ``Conv1D`` weight is (in, out), so its caller
transposes it in and the result back. N is the number of weights KEPT per group of M (the public SparseGPT's
``prunen`` and Wanda's ``prune_n`` count the pruned ones: keeping N of M is their M - N).

Typical use for one layer, its calibration inputs arriving in batches::

    stats = LayerStatistics(layer.in_features)
    for x in batches:  # (..., in_features), e.g. from a forward pre-hook
        stats.add(x)
    mask = magnitude_nm(layer.weight, 2, 4)
    mask = wanda_nm(layer.weight, stats.feature_norms(), 2, 4)
    new_weight, mask = sparsegpt_nm(layer.weight, stats.hessian, 2, 4)

Magnitude and Wanda only choose a mask (``weight * mask`` is the pruned layer); SparseGPT also updates the kept
weights. `prune_model` runs them over a whole model, block by block in forward order (`sequential`).
"""

from pgfsparse.oneshot.calibration import LayerStatistics
from pgfsparse.oneshot.magnitude import magnitude_nm
from pgfsparse.oneshot.sequential import OneShotReport, SegmentResult, block_key, prune_model
from pgfsparse.oneshot.sparsegpt import inverse_hessian_factor, sparsegpt_nm
from pgfsparse.oneshot.wanda import wanda_nm, wanda_scores

__all__ = [
    "LayerStatistics",
    "OneShotReport",
    "SegmentResult",
    "block_key",
    "inverse_hessian_factor",
    "magnitude_nm",
    "prune_model",
    "sparsegpt_nm",
    "wanda_nm",
    "wanda_scores",
]
