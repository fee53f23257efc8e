"""SparseGPT (Frantar & Alistarh, 2023) at N:M: prune in one shot and update the kept weights to compensate.

For a linear layer with calibration inputs X, pruning weights of row w changes the output by (w - w') X^T; its
squared norm is (w - w') H (w - w')^T with H = X^T X, the same H for every row. Optimal Brain Surgeon removes weights
one column at a time: zeroing w_j (for the rows that prune it) and moving the rest of the row by
-(w_j / [H_F^-1]_jj) [H_F^-1]_{j,:} is the least-squares best correction, where H_F is H restricted to the columns
not yet processed (F, "free"). Processing columns left to right, the needed rows of all the H_F^-1 are rows of one
matrix: U, the upper Cholesky factor of H^-1 (H^-1 = U^T U), gives [H_F^-1]_{j,:} / [H_F^-1]_jj = U_{j,:} / U_jj
for F = {j, j+1, ...}. So the update of column j is ``W[:, j:] -= ((w_j - q_j) / U_jj) * U[j, j:]``, with q_j the
column after pruning (w_j where kept, 0 where pruned).

N:M masks: when the first column of a group of M is reached, each row keeps the N columns of the group with the
highest OBS saliency w^2 / U_jj^2 (= w^2 / [H_F^-1]_jj at the time that column is reached), computed from the
current weights, i.e. after all updates from the columns before; ties go to the lowest index, as in `nm_mask`.

Lazy blocks: the updates of the columns of one block of `blocksize` columns are applied inside the block at once,
and to the columns after it in one matrix product when the block is done. The result is the same as column by
column; the work becomes a few large products instead of a rank-1 update of the whole weight per column. A group
must not straddle two blocks (its mask would see weights lacking the previous block's update), so M must divide
`blocksize`.

Dampening adds damp * mean(diag H) to the diagonal so that H is positive definite even for few or collinear
calibration rows. Dead inputs (H_jj = 0: the feature was 0 on every calibration row) get H_jj = 1 and their weights
set to 0 first, as SparseGPT does: nothing in the calibration data can tell what they are worth.

Working precision: the promotion of H's, the weight's and float32's dtypes (float64 with the default
`LayerStatistics`); the result is cast back to the weight's dtype, in which pruned entries stay exactly 0.
"""

from __future__ import annotations

from typing import Tuple

import torch

from pgfsparse.oneshot.validation import check_weight
from pgfsparse.sparsity.masks import nm_mask


def _check_solver_arguments(weight: torch.Tensor, hessian: torch.Tensor, m: int, blocksize: int, damp: float) -> None:
    """Refuse a Hessian of the wrong shape, a block size M does not divide, or a dampening that is not >= 0."""
    in_features = weight.shape[1]
    if not isinstance(hessian, torch.Tensor) or tuple(hessian.shape) != (in_features, in_features):
        shape = tuple(hessian.shape) if isinstance(hessian, torch.Tensor) else type(hessian).__name__
        raise ValueError(
            f"H has shape {shape} but the weight has in_features={in_features}: pass the ({in_features}, "
            f"{in_features}) X^T X of this layer's inputs (a Conv1D weight is (in, out): transpose it first)"
        )
    if not hessian.is_floating_point() or not bool(torch.isfinite(hessian).all()):
        raise ValueError("H must be a finite float matrix: accumulate it with LayerStatistics from finite inputs")
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize < 1:
        raise ValueError(f"blocksize must be a positive integer, got {blocksize!r}: e.g. 128")
    if blocksize % m:
        raise ValueError(f"blocksize {blocksize} is not a multiple of M={m}: use a multiple of M, e.g. {m * 32}")
    if not isinstance(damp, (int, float)) or isinstance(damp, bool) or not 0 <= damp < float("inf"):
        raise ValueError(f"damp must be a finite number >= 0, got {damp!r}: e.g. 0.01")


def inverse_hessian_factor(hessian: torch.Tensor, damp: float) -> torch.Tensor:
    """U, the upper Cholesky factor of (H + damp * mean(diag H) * I)^-1, after the dead inputs' H_jj are set to 1.

    The dead inputs' H_jj are set to 1 on a copy (the caller's H is not changed); the caller must also zero those
    columns of the weight, as `sparsegpt_nm` does. The dampening is taken after that, as in SparseGPT.
    """
    h = hessian.clone()
    diagonal = h.diagonal()
    diagonal[diagonal == 0] = 1
    diagonal += damp * diagonal.mean()
    factor, info = torch.linalg.cholesky_ex(h)
    if int(info) == 0:
        inverse = torch.cholesky_inverse(factor)
        factor, info = torch.linalg.cholesky_ex(inverse, upper=True)
    if int(info) != 0:
        raise ValueError(
            f"the dampened Hessian is not positive definite (damp={damp}): raise damp (e.g. 0.1) or calibrate on "
            f"more inputs"
        )
    return factor


@torch.no_grad()
def sparsegpt_nm(
    weight: torch.Tensor, hessian: torch.Tensor, n: int, m: int, blocksize: int = 128, damp: float = 0.01
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Prune the (out, in) `weight` to N:M with SparseGPT: (new weight, boolean keep-mask), both (out, in).

    `hessian` is X^T X of the layer's calibration inputs (`LayerStatistics.hessian`; any positive scale of it gives
    the same result). The new weight has the input's dtype and device, exactly 0 where the mask is False, and the
    mask keeps exactly N of every M consecutive inputs of every row (a kept weight that the update happens to
    bring to 0 still counts as kept). Any N:M with M dividing `blocksize` and in_features.
    """
    check_weight(weight, n, m)
    _check_solver_arguments(weight, hessian, m, blocksize, damp)
    rows, columns = weight.shape
    dtype = torch.promote_types(torch.promote_types(hessian.dtype, weight.dtype), torch.float32)
    h = hessian.detach().to(device=weight.device, dtype=dtype)
    work = weight.detach().to(dtype).clone()
    work[:, h.diagonal() == 0] = 0  # dead inputs: no calibration evidence, so no weight
    factor = inverse_hessian_factor(h, float(damp))
    mask = torch.zeros(rows, columns, dtype=torch.bool, device=weight.device)

    for start in range(0, columns, blocksize):
        end = min(start + blocksize, columns)
        block = work[:, start:end].clone()  # updated in place, column by column
        block_factor = factor[start:end, start:end]
        scales = block_factor.diagonal()
        errors = torch.zeros_like(block)  # (w_j - q_j) / U_jj: what the columns after the block still owe
        for j in range(end - start):
            if j % m == 0:  # a group starts: choose its mask from the weights as they are now
                saliency = block[:, j : j + m].square() / scales[j : j + m].square()
                mask[:, start + j : start + j + m] = nm_mask(saliency, n, m, "row")
            keep = mask[:, start + j]
            column = block[:, j].clone()
            errors[:, j] = column.masked_fill(keep, 0) / scales[j]  # w_j - q_j is w_j where pruned, 0 where kept
            block[:, j:].sub_(errors[:, j : j + 1] * block_factor[j : j + 1, j:])
            block[:, j] = column.masked_fill(~keep, 0)  # q_j: set, not left to rounding, so pruned is exactly 0
        work[:, start:end] = block
        if end < columns:
            work[:, end:].sub_(errors @ factor[start:end, end:])
    return work.to(weight.dtype), mask
