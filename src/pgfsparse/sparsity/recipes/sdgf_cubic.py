"""sdgf_cubic: gradual magnitude pruning in N:M form, on Zhu and Gupta's cubic schedule.

At sparse step j of S, N_j = min(M - 1, ceil(N + (M - N)(1 - j/S)^3)): many kept
weights early, tightening fast, then slowly near the target; the target N during
the fine-tune. Binary masks, straight-through gradient. Written with the recipe
API as its proof: the whole recipe is the two methods below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import List

from pgfsparse.sparsity.pattern import NM
from pgfsparse.sparsity.recipes.base import Recipe
from pgfsparse.sparsity.recipes.registry import register


@register
@dataclass(frozen=True)
class SDGFCubic(Recipe):
    name = "sdgf_cubic"
    summary = "gradual pruning in N:M form: N_j = min(M-1, ceil(N + (M-N)(1-j/S)^3)), binary masks"

    def ladder_for(self, target: NM) -> List[NM]:
        """Every N from M-1 down to the target's: (M-1):M, (M-2):M, ..., N:M."""
        return [NM(n, target.m) for n in range(max(target.m - 1, target.n), target.n - 1, -1)]

    def rung(self, j: int, n_rungs: int, schedule) -> int:
        """Rung r holds N = M-1-r, and M-1-N = n_rungs-1: so r = n_rungs-1 - min(n_rungs-1, ceil((M-N)(1-j/S)^3))."""
        remaining = Fraction(schedule.sparse_steps - j, schedule.sparse_steps) ** 3  # exact: no float ceil surprises
        above_target = min(n_rungs - 1, math.ceil(n_rungs * remaining))
        return n_rungs - 1 - above_target
