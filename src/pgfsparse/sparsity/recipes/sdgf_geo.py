"""sdgf_geo: structure decay along kN:kM, (k/2)N:(k/2)M, ..., N:M: constant density, groups shrinking to M."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

from pgfsparse.sparsity.pattern import NM
from pgfsparse.sparsity.recipes.base import Recipe
from pgfsparse.sparsity.recipes.registry import register


def geometric_ladder(target: NM, k: int) -> List[NM]:
    """kN:kM, (k/2)N:(k/2)M, ..., N:M."""
    rungs = []
    while k >= 1:
        rungs.append(NM(k * target.n, k * target.m))
        k //= 2
    return rungs


def fit_rung(rung: NM, target: NM, group_len: int) -> NM:
    """The largest geometric rung (k'N:k'M, k' halving from rung's k) whose group fits `group_len`.

    Hardware N:M is per row, so a rung whose group would cross rows is shrunk
    instead (the public code silently groups across rows).
    """
    if group_len % rung.m == 0:
        return rung
    if rung.m % target.m or rung.n * target.m != target.n * rung.m:
        raise ValueError(f"rung {rung} does not fit a group dimension of {group_len} (pattern {target})")
    k = rung.m // target.m
    while k > 1 and group_len % (k * target.m):
        k //= 2
    return NM(k * target.n, k * target.m)


@register
@dataclass(frozen=True)
class SDGFGeo(Recipe):
    name = "sdgf_geo"
    summary = "structure decay: ladder kN:kM, (k/2)N:(k/2)M, ..., N:M (constant density), binary masks"

    geo_k: int = 8  # first rung kN:kM; 8 (4 rungs) in the public code, 16 in the paper text

    def check(self) -> None:
        super().check()
        if self.geo_k < 1 or self.geo_k & (self.geo_k - 1):
            self.fail(f"geo_k={self.geo_k} must be a power of two (8 in the public code, 16 in the paper)")

    def ladder_for(self, target: NM) -> List[NM]:
        return geometric_ladder(target, self.geo_k)

    def fit_ladder(self, ladder: Sequence[NM], target: NM, group_len: int) -> List[NM]:
        return [fit_rung(rung, target, group_len) for rung in ladder]
