"""The one forward rule and its gradients, attached to a layer's weight.

Forward:  W~ = W * (mask + D * (1 - mask))     (precomputed once per step as a multiplier)
Backward: dL/dW = dL/dW~                        (straight-through: STE, MDGF, SDGF)
          dL/dW = dL/dW~ + lambda (1 - mask) W  (SR-STE; added inside backward, so it
                                                 passes through clipping and the optimizer)
The dense phase returns W itself: no autograd node, no cost.

`MaskedWeight` is a `torch.nn.utils.parametrize` parametrization: the model's
code is untouched and `module.weight` simply reads the masked value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, cast

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
    """A block of rows of one weight with its own pattern (Q, K or V of a fused qkv; or all rows)."""

    location: str  # ff | q | k | v | attn_out | a user's name
    rows: slice  # rows of the weight this segment covers
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

    def __init__(self, weight: torch.Tensor, segments: List[Segment], layout: str = "row"):
        super().__init__()
        self.segments = segments
        self.layout = layout
        self.active = False  # False: dense phase, W~ = W
        self.decay = 1.0
        self.srste_lambda = 0.0
        # Buffers are not persistent: the model's state_dict keeps plain timm/HF keys;
        # the sparsifier saves what matters for resuming in its own state_dict.
        self.register_buffer("mask", torch.ones(weight.shape, dtype=torch.bool, device=weight.device), persistent=False)
        self.register_buffer("multiplier", torch.ones((), dtype=weight.dtype, device=weight.device), persistent=False)
        self.register_buffer("penalty", None, persistent=False)
        self.override: Optional[torch.Tensor] = None  # a temporary multiplier (strict eval view)

    # -- the parametrization -------------------------------------------------
    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.override is not None:
            return straight_through_mask(weight, self.override)
        if not self.active:
            return weight
        return straight_through_mask(weight, self.multiplier, self.penalty)

    # -- driven by the sparsifier ----------------------------------------------
    @torch.no_grad()
    def refresh_masks(self, weight: torch.Tensor, patterns: List[Optional[NM]]) -> None:
        """Recompute the mask of every segment whose pattern is given (None = keep as is)."""
        for segment, pattern in zip(self.segments, patterns):
            if pattern is None:
                continue
            rows = weight[segment.rows]
            self.mask[segment.rows] = nm_mask(rows, pattern.n, pattern.m, self.layout)
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
        """Binary multiplier of the target patterns (the deployable N:M model)."""
        mask = torch.ones(weight.shape, dtype=torch.bool, device=weight.device)
        for segment in self.segments:
            t = segment.target
            mask[segment.rows] = nm_mask(weight[segment.rows], t.n, t.m, self.layout)
        return mask.to(weight.dtype)

    def extra_repr(self) -> str:
        parts = [f"{s.location}[{s.rows.start}:{s.rows.stop}]={s.target}" for s in self.segments]
        return f"{', '.join(parts)}, layout={self.layout}, D={self.decay:g}, active={self.active}"


def weight_of(module: nn.Module) -> torch.Tensor:
    """`module.weight` (W~ once attached), typed: torch types a module's attributes as Tensor | Module."""
    return cast(torch.Tensor, module.weight)  # only layers with a weight tensor are ever matched or attached


def latent_weight(module: nn.Module) -> torch.Tensor:
    """The dense trainable W behind a parametrized weight."""
    parametrized: Any = module  # `parametrizations.weight.original` exists only at run time, untyped
    return parametrized.parametrizations.weight.original
