"""sdgf_step: structure decay along (M-1):M, M/2:M, M/4:M, ..., N:M with binary masks (Bambhaniya et al., 2024)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from pgfsparse.sparsity.pattern import NM
from pgfsparse.sparsity.recipes.base import Recipe
from pgfsparse.sparsity.recipes.registry import register


def stepwise_ladder(target: NM) -> List[NM]:
    """(M-1):M, M/2:M, M/4:M, ... halving N but never below the target, always ending on it.

    1:8 -> 7:8, 4:8, 2:8, 1:8;  2:4 -> 3:4, 2:4;  3:8 -> 7:8, 4:8, 3:8. (The public
    formula never reaches targets such as 3:8: this rule always ends on the target.)
    """
    ns = [target.m - 1]
    n = target.m // 2
    while n > target.n:
        if n < ns[-1]:
            ns.append(n)
        n //= 2
    if ns[-1] != target.n:
        ns.append(target.n)
    return [NM(n, target.m) for n in ns]


@register
@dataclass(frozen=True)
class SDGFStep(Recipe):
    name = "sdgf_step"
    summary = "structure decay: ladder (M-1):M, M/2:M, M/4:M, ..., N:M, binary masks"

    def ladder_for(self, target: NM) -> List[NM]:
        return stepwise_ladder(target)
