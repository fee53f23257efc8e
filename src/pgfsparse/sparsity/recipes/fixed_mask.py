"""fixed_mask: the N:M mask of the first sparse step kept to the end, and gradient to the kept weights only.

The practitioners' baseline (ModelOpt's sparsity-aware training, fine-tuning after a one-shot prune): the
pruned weights get no gradient at all (dL/dW = mask * dL/dW~, plain autograd of W * mask, unlike STE's
straight-through) and the mask is never recomputed, so what the first sparse step pruned stays pruned.
After a dense warm-up (dense_fraction) the mask is the magnitude N:M mask of the weights at that step.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgfsparse.sparsity.recipes.base import Recipe
from pgfsparse.sparsity.recipes.registry import register


@register
@dataclass(frozen=True)
class FixedMask(Recipe):
    name = "fixed_mask"
    summary = "the first sparse step's N:M mask kept to the end, gradient to kept weights only"
    straight_through = False

    def check(self) -> None:
        super().check()
        if self.mask_interval is not None:
            self.fail(f"mask_interval={self.mask_interval}: a fixed mask is never refreshed, leave it null")

    def refresh_period(self, schedule) -> int:
        return max(schedule.total_steps, 1)  # one mask, computed at the first sparse step
