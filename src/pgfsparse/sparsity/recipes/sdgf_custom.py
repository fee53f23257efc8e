"""sdgf_custom: structure decay along a ladder you give, e.g. '15:16,8:16,4:16,2:16,1:16'."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from pgfsparse.sparsity.pattern import NM, parse_pattern
from pgfsparse.sparsity.recipes.base import Recipe
from pgfsparse.sparsity.recipes.registry import register


@register
@dataclass(frozen=True)
class SDGFCustom(Recipe):
    name = "sdgf_custom"
    summary = "structure decay along a user-given ladder, e.g. '15:16,8:16,4:16,2:16,1:16'"

    ladder: Optional[Tuple[str, ...]] = None  # "15:16,8:16,4:16,2:16,1:16" or a list; must end on the target

    def __post_init__(self) -> None:
        if self.ladder is not None and not isinstance(self.ladder, tuple):
            rungs = self.ladder.split(",") if isinstance(self.ladder, str) else self.ladder
            object.__setattr__(self, "ladder", tuple(str(p).strip() for p in rungs))
        super().__post_init__()

    def check(self) -> None:
        super().check()
        if not self.ladder:
            self.fail("needs a ladder, e.g. ladder='15:16,8:16,4:16,2:16,1:16' (recipe.ladder=... on the command line)")
        for rung in self.ladder:
            parse_pattern(rung)  # a bad rung fails here, in one line

    def ladder_for(self, target: NM) -> List[NM]:
        assert self.ladder is not None  # check() refused a recipe without one
        rungs = [parse_pattern(p) for p in self.ladder]
        if rungs[-1] != target:
            raise ValueError(f"custom ladder {','.join(map(str, rungs))} must end on the target pattern {target}")
        return rungs
