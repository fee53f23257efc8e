"""The one forward rule and its gradients, attached to a layer's weight.

Forward:  W~ = W * (mask + D * (1 - mask))     (precomputed once per step as a multiplier)
Backward: dL/dW = dL/dW~                        (straight-through: STE, MDGF, SDGF)
          dL/dW = dL/dW~ + lambda (1 - mask) W  (SR-STE; added inside backward, so it
                                                 passes through clipping and the optimizer)
The dense phase returns W itself: no autograd node, no cost.

`MaskedWeight` is a `torch.nn.utils.parametrize` parametrization: the model's
code is untouched and `module.weight` simply reads the masked value.

Output units are rows of an `nn.Linear` weight (out, in) but columns of a
GPT-2 `Conv1D` weight (in, out): `MaskedWeight.out_dim` says which, segments
index output units along it, and `layout` is the storage layout handed to
`nm_mask`, so N:M groups still run along the input (reduction) dimension.

Under FSDP2 (distributed.strategy=fsdp) the latent W is a DTensor sharded along dim 0
between steps: a Conv1D's N:M groups (along dim 0) cross the shards. Masks are therefore
always computed from the whole W (`gathered`: an all-gather every process makes, in the
same order), and the buffers (mask, multiplier, penalty) stay whole on every process; in
the forward FSDP2 hands the parametrization the unsharded W.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple, cast

import torch
from torch import nn

from pgfsparse.sparsity.masks import nm_mask
from pgfsparse.sparsity.pattern import NM


class _StraightThroughMask(torch.autograd.Function):
    """W * multiplier forward; identity (+ optional SR-STE term) backward."""

    @staticmethod
    def forward(ctx, weight, multiplier, penalty):
        ctx.has_penalty = penalty is not None
        if ctx.has_penalty:
            ctx.save_for_backward(weight, penalty)
        return weight * multiplier

    @staticmethod
    def backward(ctx, grad_output):
        if not ctx.has_penalty:
            return grad_output, None, None
        weight, penalty = ctx.saved_tensors
        return torch.addcmul(grad_output, penalty, weight), None, None


def straight_through_mask(weight, multiplier, penalty=None):
    """W * multiplier with the straight-through backward (and SR-STE's term when penalty is given).

    `penalty` is lambda * (1 - mask); None means plain straight-through.
    """
    return _StraightThroughMask.apply(weight, multiplier, penalty)


@dataclass
class Segment:
    """A block of output units of one weight with its own pattern (Q, K or V of a fused qkv; or all of them).

    `rows` keeps its historical name: it indexes output units along the weight's
    `out_dim` (rows of a Linear weight, columns of a GPT-2 Conv1D weight).
    """

    location: str  # ff | q | k | v | attn_out | a user's name
    rows: slice  # output units this segment covers, along the weight's out_dim
    target: NM  # the final pattern
    ladder: List[NM]  # rungs as fitted to this layer (geometric rungs may shrink)
    current: Optional[NM] = None  # the rung whose mask is in `mask` now
    version: Optional[tuple] = None  # (rung, mask_epoch) that mask was computed for


class MaskedWeight(nn.Module):
    """Parametrization holding one layer's mask state. Driven by `Sparsifier.step`."""

    # buffers, registered in __init__ (declared here for the type checker)
    mask: torch.Tensor
    multiplier: torch.Tensor
    penalty: Optional[torch.Tensor]

    def __init__(self, weight: torch.Tensor, segments: List[Segment], layout: str = "row", out_dim: int = 0):
        super().__init__()
        self.segments = segments
        self.layout = layout  # storage layout of the stored tensor, as nm_mask takes it (see storage_layout)
        self.out_dim = out_dim  # 0: output units are rows (Linear, conv); 1: columns (GPT-2 Conv1D)
        self.active = False  # False: dense phase, W~ = W
        self.decay = 1.0
        self.srste_lambda = 0.0
        # Buffers are not persistent: the model's state_dict keeps plain timm/HF keys;
        # the sparsifier saves what matters for resuming in its own state_dict.
        self.register_buffer("mask", torch.ones(weight.shape, dtype=torch.bool, device=weight.device), persistent=False)
        self.register_buffer("multiplier", torch.ones((), dtype=weight.dtype, device=weight.device), persistent=False)
        self.register_buffer("penalty", None, persistent=False)
        self.override: Optional[torch.Tensor] = None  # a temporary multiplier (strict eval view)
        self.straight_through = True  # the recipe's: False blocks the gradient of pruned weights

    # -- the parametrization -------------------------------------------------
    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.override is not None:
            return straight_through_mask(weight, self.override)
        if not self.active:
            return weight
        if not self.straight_through:  # plain autograd of W * mask: no gradient reaches pruned weights
            return weight * self.multiplier
        return straight_through_mask(weight, self.multiplier, self.penalty)

    def index(self, segment: Segment) -> Tuple[slice, ...]:
        """The index of `segment`'s block in the stored weight (and in `mask`): `tensor[param.index(seg)]`."""
        return segment_index(segment.rows, self.out_dim)

    # -- driven by the sparsifier ----------------------------------------------
    @torch.no_grad()
    def refresh_masks(self, weight: torch.Tensor, patterns: List[Optional[NM]]) -> None:
        """Recompute the mask of every segment whose pattern is given (None = keep as is).

        A sharded `weight` is gathered first when any mask is recomputed (every process must call this alike).
        """
        if any(pattern is not None for pattern in patterns):
            weight = gathered(weight)
        for segment, pattern in zip(self.segments, patterns):
            if pattern is None:
                continue
            block = self.index(segment)
            self.mask[block] = nm_mask(weight[block], pattern.n, pattern.m, self.layout)
            segment.current = pattern

    @torch.no_grad()
    def set_decay(self, decay: float, srste_lambda: float, mask_changed: bool) -> None:
        """Rebuild multiplier mask + D (1 - mask), and SR-STE's penalty lambda (1 - mask)."""
        if not mask_changed and decay == self.decay and self.active and srste_lambda == self.srste_lambda:
            return
        dtype = self.multiplier.dtype
        mult = self.mask.to(dtype)
        if decay:
            mult.masked_fill_(~self.mask, decay)
        self.multiplier = mult
        self.penalty = (~self.mask).to(dtype).mul_(srste_lambda) if srste_lambda else None
        self.decay, self.srste_lambda, self.active = decay, srste_lambda, True

    def deactivate(self) -> None:
        self.active, self.decay = False, 1.0

    @torch.no_grad()
    def strict_multiplier(self, weight: torch.Tensor) -> torch.Tensor:
        """Binary multiplier of the target patterns (the deployable N:M model); a sharded `weight` is gathered."""
        weight = gathered(weight)
        mask = torch.ones(weight.shape, dtype=torch.bool, device=weight.device)
        for segment in self.segments:
            t, block = segment.target, self.index(segment)
            mask[block] = nm_mask(weight[block], t.n, t.m, self.layout)
        return mask.to(weight.dtype)

    def extra_repr(self) -> str:
        parts = [f"{s.location}[{s.rows.start}:{s.rows.stop}]={s.target}" for s in self.segments]
        return (
            f"{', '.join(parts)}, layout={self.layout}, out_dim={self.out_dim}, D={self.decay:g}, active={self.active}"
        )


def segment_index(rows: slice, out_dim: int) -> Tuple[slice, ...]:
    """Index selecting output units `rows` along `out_dim` of a weight: `weight[segment_index(rows, 1)]`."""
    return (slice(None),) * out_dim + (rows,)


def output_dim(module: nn.Module) -> int:
    """The dimension of `module.weight` that holds its output units: 1 for a GPT-2 `Conv1D` (in, out), else 0.

    The one place that knows about Conv1D. Checked by class name and package, so
    that vision-only runs never import transformers.
    """
    for cls in type(module).__mro__:
        if cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers"):
            return 1
    return 0


def storage_layout(layout: str, weight: torch.Tensor, out_dim: int) -> str:
    """The `nm_mask` layout of the stored tensor for the user's `layout` ('row' | 'col').

    `layout` is logical: 'row' groups M consecutive inputs of one output unit
    (the hardware layout), 'col' M consecutive outputs of one input. A Linear
    weight (out, in) stores it as given; a Conv1D weight (in, out) is stored
    transposed, so the two swap. Conv weights (out, in, *kernel) always group
    over (kh, kw, in).
    """
    if weight.dim() > 2:
        return "conv"
    if out_dim == 1:
        return {"row": "col", "col": "row"}.get(layout, layout)
    return layout


def weight_of(module: nn.Module) -> torch.Tensor:
    """`module.weight` (W~ once attached), typed: torch types a module's attributes as Tensor | Module."""
    return cast(torch.Tensor, module.weight)  # only layers with a weight tensor are ever matched or attached


def gathered(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` whole: a DTensor (an FSDP2-sharded weight, gradient or optimizer state) all-gathered, detached;
    any other tensor as it is.

    The gather is a collective: every process must call this for the same tensors in the same order.
    """
    if not hasattr(tensor, "full_tensor"):  # a plain tensor (no torch.distributed import needed)
        return tensor
    return cast(Any, tensor).detach().full_tensor()


def latent_weight(module: nn.Module) -> torch.Tensor:
    """The dense trainable W behind a parametrized weight."""
    parametrized: Any = module  # `parametrizations.weight.original` exists only at run time, untyped
    return parametrized.parametrizations.weight.original
