"""mdgf_linear: mask decay, D = max(1 - beta j, 0) (Bambhaniya et al., 2024)."""

from __future__ import annotations

from dataclasses import dataclass

from pgfsparse.sparsity.recipes.mask_decay import RateDecay
from pgfsparse.sparsity.recipes.registry import register


@register
@dataclass(frozen=True)
class MDGFLinear(RateDecay):
    name = "mdgf_linear"
    summary = "mask decay: pruned weights scaled by D = max(1 - beta*j, 0), straight-through"

    def rate_for(self, decay_steps: float) -> float:
        return (1.0 - self.decay_epsilon) / decay_steps

    def decay(self, j: int, schedule) -> float:
        return max(1.0 - schedule.beta * j, 0.0)
