"""dense: the baseline, no sparsity at all (W~ = W throughout)."""

from __future__ import annotations

from dataclasses import dataclass

from pgfsparse.sparsity.recipes.base import Recipe
from pgfsparse.sparsity.recipes.registry import register


@register
@dataclass(frozen=True)
class Dense(Recipe):
    name = "dense"
    summary = "no sparsity: W~ = W throughout (the baseline)"
    sparse = False
