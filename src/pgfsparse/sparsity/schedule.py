"""What a recipe does at optimizer step `step` of `total`: pure functions, no state.

Every query takes the step explicitly (as timm's schedulers do), so resuming,
gradient accumulation (call with the optimizer step) and testing need no
bookkeeping. `j` below is the sparse-step counter: 0 at the first step after
the dense warm-up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import List, Optional

from .pattern import NM, parse_pattern
from .recipes import Recipe, decay_rate_for

DENSE, SPARSE, FINETUNE = "dense", "sparse", "finetune"


def _of(fraction: float, total: int) -> Fraction:
    """fraction * total computed on the fraction as written (0.29 * 100 is 29, not 28.999...)."""
    return Fraction(repr(float(fraction))) * total


def stepwise_ladder(target: NM) -> List[NM]:
    """(M-1):M, M/2:M, M/4:M, ... halving N but never below the target, always ending on it.

    1:8 -> 7:8, 4:8, 2:8, 1:8;  2:4 -> 3:4, 2:4;  3:8 -> 7:8, 4:8, 3:8.
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


def geometric_ladder(target: NM, k: int) -> List[NM]:
    """kN:kM, (k/2)N:(k/2)M, ..., N:M: constant density, group size shrinking to M."""
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


@dataclass(frozen=True)
class StepState:
    """The recipe's settings for one layer at one step."""

    phase: str  # dense | sparse | finetune
    decay: float  # D: 1.0 means W~ = W (dense phase), 0.0 a binary mask
    pattern: Optional[NM]  # the rung in force; None in the dense phase
    rung: int  # index into the ladder; -1 in the dense phase
    mask_epoch: int  # j // mask_interval; the mask is recomputed whenever (rung, mask_epoch) changes
    refresh: bool  # True when (rung, mask_epoch) differs from the previous step's

    @property
    def mask_version(self):
        return (self.rung, self.mask_epoch)


class Schedule:
    """A recipe resolved against a total step count. All methods are pure in `step`."""

    def __init__(self, recipe: Recipe, total_steps: int):
        if int(total_steps) < 1:
            raise ValueError(f"total_steps={total_steps} must be >= 1")
        self.recipe = recipe
        self.total_steps = total = int(total_steps)
        self.dense_steps = math.floor(_of(recipe.dense_fraction, total)) if recipe.is_sparse else total
        finetune = math.ceil(_of(recipe.finetune_fraction, total))
        self.finetune_start = max(self.dense_steps, total - finetune)
        self.sparse_steps = self.finetune_start - self.dense_steps
        # D reaches epsilon at decay_end_fraction of all steps (counted from step 0).
        decay_steps = recipe.decay_end_fraction * total - self.dense_steps
        self.beta = recipe.beta if recipe.beta is not None else decay_rate_for(recipe, decay_steps)
        self.step_weight = recipe.step_weight or 1.0 / recipe.max_updates
        updates_to_zero = min(recipe.max_updates, math.ceil(1.0 / self.step_weight))
        self.step_interval = recipe.step_interval or max(1, math.ceil(decay_steps / max(updates_to_zero - 1, 1)))
        if recipe.name == "mdgf_step":
            self.mask_interval = self.step_interval  # Kao et al.: the mask refreshes at each decay update
        else:
            self.mask_interval = recipe.mask_interval or 1

    # -- phases --------------------------------------------------------------
    def phase(self, step: int) -> str:
        if step < self.dense_steps:
            return DENSE
        return FINETUNE if step >= self.finetune_start else SPARSE

    def sparse_step(self, step: int) -> int:
        """j: 0 at the first step after the dense warm-up (negative before it)."""
        return step - self.dense_steps

    # -- mask decay ----------------------------------------------------------
    def decay(self, step: int) -> float:
        """D at `step`: 1 in the dense phase, 0 for binary masks."""
        phase = self.phase(step)
        if phase == DENSE:
            return 1.0
        if phase == FINETUNE or not self.recipe.decays:
            return 0.0
        j = self.sparse_step(step)
        name = self.recipe.name
        if name == "mdgf_linear":
            return max(1.0 - self.beta * j, 0.0)
        if name == "mdgf_exp":
            return math.exp(-self.beta * j)
        updates = j // self.step_interval + 1  # mdgf_step: mask updates so far, this one included
        if updates >= self.recipe.max_updates:
            return 0.0
        return max(1.0 - updates * self.step_weight, 0.0)

    # -- structure ladder ----------------------------------------------------
    def ladder(self, target: NM) -> List[NM]:
        name = self.recipe.name
        if name == "sdgf_step":
            return stepwise_ladder(target)
        if name == "sdgf_geo":
            return geometric_ladder(target, self.recipe.geo_k)
        if name == "sdgf_custom":
            rungs = [parse_pattern(p) for p in self.recipe.ladder]
            if rungs[-1] != target:
                raise ValueError(
                    f"custom ladder {','.join(map(str, rungs))} must end on the target pattern {target}"
                )
            return rungs
        return [target]

    def rung(self, step: int, n_rungs: int) -> int:
        """Index of the rung in force: the sparse phase is split evenly over the rungs."""
        if self.phase(step) == DENSE:
            return -1
        if self.phase(step) == FINETUNE or self.sparse_steps == 0:
            return n_rungs - 1
        return min(n_rungs - 1, self.sparse_step(step) * n_rungs // self.sparse_steps)

    # -- everything for one layer ---------------------------------------------
    def state(self, step: int, target: NM, ladder: Optional[List[NM]] = None) -> StepState:
        ladder = ladder if ladder is not None else self.ladder(target)
        phase = self.phase(step)
        if phase == DENSE:
            return StepState(DENSE, 1.0, None, -1, -1, False)
        rung = self.rung(step, len(ladder))
        epoch = self.sparse_step(step) // self.mask_interval
        previous = (self.rung(step - 1, len(ladder)), (self.sparse_step(step) - 1) // self.mask_interval)
        refresh = (rung, epoch) != previous or self.phase(step - 1) == DENSE
        return StepState(phase, self.decay(step), ladder[rung], rung, epoch, refresh)
