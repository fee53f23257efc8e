"""ste: a fixed N:M binary mask from the first sparse step, straight-through gradient to every weight."""

from __future__ import annotations

from dataclasses import dataclass

from pgfsparse.sparsity.recipes.base import Recipe
from pgfsparse.sparsity.recipes.registry import register


@register
@dataclass(frozen=True)
class STE(Recipe):
    name = "ste"
    summary = "fixed N:M binary mask, straight-through gradient to all weights"
