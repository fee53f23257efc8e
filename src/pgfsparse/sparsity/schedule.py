"""What a recipe does at optimizer step `step` of `total`: pure functions, no state.

The phases are common to every recipe: a dense warm-up (the first
floor(dense_fraction T) steps), the sparse phase, and a binary-mask fine-tune
(the last ceil(finetune_fraction T) steps, D = 0 on the final rung). Within
them the recipe decides D, the rung and when masks refresh (recipes/base.py).
Every query takes the step explicitly (as timm's schedulers do), so resuming,
gradient accumulation (call with the optimizer step) and testing need no
bookkeeping. `j` is the sparse-step counter: 0 at the first step after the
dense warm-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import List, Optional, Sequence

from pgfsparse.sparsity.pattern import NM
from pgfsparse.sparsity.recipes import Recipe

DENSE, SPARSE, FINETUNE = "dense", "sparse", "finetune"


def _of(fraction: float, total: int) -> Fraction:
    """fraction * total computed on the fraction as written (0.29 * 100 is 29, not 28.999...)."""
    return Fraction(repr(float(fraction))) * total


@dataclass(frozen=True)
class StepState:
    """The recipe's settings for one layer at one step."""

    phase: str  # dense | sparse | finetune
    decay: float  # D: 1.0 means W~ = W (dense phase), 0.0 a binary mask
    pattern: Optional[NM]  # the rung in force; None in the dense phase
    rung: int  # index into the ladder; -1 in the dense phase
    refresh_index: int  # j // refresh period: masks are recomputed whenever (rung, refresh_index) changes

    @property
    def mask_version(self):
        return (self.rung, self.refresh_index)


class Schedule:
    """A recipe resolved against a total step count. All methods are pure in `step`.

    Values the recipe plans from the run length read as attributes: schedule.beta
    (mdgf_linear, mdgf_exp), schedule.step_weight and .step_interval (mdgf_step).
    """

    def __init__(self, recipe: Recipe, total_steps: int):
        if int(total_steps) < 1:
            raise ValueError(f"total_steps={total_steps} must be >= 1")
        self.recipe = recipe
        self.total_steps = total = int(total_steps)
        self.dense_steps = math.floor(_of(recipe.dense_fraction, total)) if recipe.is_sparse else total
        finetune = math.ceil(_of(recipe.finetune_fraction, total))
        self.finetune_start = max(self.dense_steps, total - finetune)
        self.sparse_steps = self.finetune_start - self.dense_steps
        self.planned = dict(recipe.plan(self))
        self.mask_interval = recipe.refresh_period(self)

    def __getattr__(self, name: str):
        planned = self.__dict__.get("planned", {})
        if name in planned:
            return planned[name]
        raise AttributeError(f"{type(self).__name__} of recipe {self.recipe.name} has no {name!r}")

    # -- phases --------------------------------------------------------------
    def phase(self, step: int) -> str:
        if step < self.dense_steps:
            return DENSE
        return FINETUNE if step >= self.finetune_start else SPARSE

    def sparse_step(self, step: int) -> int:
        """j: 0 at the first step after the dense warm-up (negative before it)."""
        return step - self.dense_steps

    # -- what the recipe decides, within the phases ------------------------------
    def decay(self, step: int) -> float:
        """D at `step`: 1 in the dense phase, 0 for binary masks."""
        phase = self.phase(step)
        if phase == DENSE:
            return 1.0
        if phase == FINETUNE:
            return 0.0
        return self.recipe.decay(self.sparse_step(step), self)

    def ladder(self, target: NM) -> List[NM]:
        return self.recipe.ladder_for(target)

    def rung(self, step: int, n_rungs: int) -> int:
        """Index of the rung in force; the last one from the fine-tune on."""
        if self.phase(step) == DENSE:
            return -1
        if self.phase(step) == FINETUNE or self.sparse_steps == 0:
            return n_rungs - 1
        return self.recipe.rung(self.sparse_step(step), n_rungs, self)

    def charged_density(self, step: int, ladder: Sequence[NM]) -> float:
        """The density the FLOP counter charges a sparse layer at `step` (the recipe says)."""
        return self.recipe.charged_density(step, self, ladder)

    # -- everything for one layer ---------------------------------------------
    def state(self, step: int, target: NM, ladder: Optional[List[NM]] = None) -> StepState:
        ladder = ladder if ladder is not None else self.ladder(target)
        if self.phase(step) == DENSE:
            return StepState(DENSE, 1.0, None, -1, -1)
        rung = self.rung(step, len(ladder))
        refresh_index = self.sparse_step(step) // self.mask_interval
        return StepState(self.phase(step), self.decay(step), ladder[rung], rung, refresh_index)

    def refreshes(self, step: int, target: NM, ladder: Optional[List[NM]] = None) -> bool:
        """Whether masks are recomputed at `step`: its mask version differs from the step before's."""
        ladder = ladder if ladder is not None else self.ladder(target)
        version = self.state(step, target, ladder).mask_version
        return version != (-1, -1) and (step == 0 or version != self.state(step - 1, target, ladder).mask_version)
