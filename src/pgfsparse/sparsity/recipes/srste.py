"""srste: STE plus lambda * (1 - mask) * W in the gradient, pulling pruned weights to zero (Zhou et al., 2021)."""

from __future__ import annotations

from dataclasses import dataclass

from pgfsparse.sparsity.recipes.base import Recipe
from pgfsparse.sparsity.recipes.registry import register


@register
@dataclass(frozen=True)
class SRSTE(Recipe):
    name = "srste"
    summary = "STE plus lambda * (1 - mask) * W added to the gradient (Zhou et al., 2021)"

    srste_lambda: float = 2e-4  # both public codes

    def check(self) -> None:
        super().check()
        if self.srste_lambda < 0:
            self.fail(f"srste_lambda={self.srste_lambda} must be >= 0")

    def extra_gradient(self, j: int, schedule) -> float:
        return self.srste_lambda
