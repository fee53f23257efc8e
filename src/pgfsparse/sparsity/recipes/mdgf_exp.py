"""mdgf_exp (alias decay): mask decay, D = exp(-beta j): the paper's pick (Bambhaniya et al., 2024).

Exponential decay never reaches 0 by itself: D is exactly 0 from the fine-tune phase on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pgfsparse.sparsity.recipes.mask_decay import RateDecay, exp_rate
from pgfsparse.sparsity.recipes.registry import register


@register
@dataclass(frozen=True)
class MDGFExp(RateDecay):
    name = "mdgf_exp"
    summary = "mask decay: pruned weights scaled by D = exp(-beta*j), straight-through (the paper's pick)"

    def rate_for(self, decay_steps: float) -> float:
        return exp_rate(self.decay_epsilon, decay_steps)

    def decay(self, j: int, schedule) -> float:
        return math.exp(-schedule.beta * j)
