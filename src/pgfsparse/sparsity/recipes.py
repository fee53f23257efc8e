"""Training recipes: their names, knobs and defaults.

A recipe says, for every optimizer step, which phase training is in, the decay
factor D of pruned weights and the N:M rung of the pattern ladder. The rules
themselves are pure functions in `schedule.py`; this file only holds the
validated settings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Optional

# name -> one-line description (the README's recipe table is built from the same facts)
RECIPES = {
    "dense": "no sparsity: W~ = W throughout (the baseline)",
    "ste": "fixed N:M binary mask, straight-through gradient to all weights",
    "srste": "STE plus lambda * (1 - mask) * W added to the gradient (Zhou et al., 2021)",
    "mdgf_linear": "mask decay: pruned weights scaled by D = max(1 - beta*j, 0), straight-through",
    "mdgf_exp": "mask decay: pruned weights scaled by D = exp(-beta*j), straight-through (the paper's pick)",
    "mdgf_step": "Kao et al.'s decaying mask: D = max(1 - k*w, 0) after k interval-wise mask updates",
    "sdgf_step": "structure decay: ladder (M-1):M, M/2:M, M/4:M, ..., N:M, binary masks",
    "sdgf_geo": "structure decay: ladder kN:kM, (k/2)N:(k/2)M, ..., N:M (constant density), binary masks",
    "sdgf_custom": "structure decay along a user-given ladder, e.g. '15:16,8:16,4:16,2:16,1:16'",
}

ALIASES = {"decay": "mdgf_exp"}

DECAYING = ("mdgf_linear", "mdgf_exp", "mdgf_step")
LADDERED = ("sdgf_step", "sdgf_geo", "sdgf_custom")


def canonical_recipe_name(name: str) -> str:
    """Resolve aliases ('decay' -> 'mdgf_exp') and reject unknown names in one line."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in RECIPES:
        known = ", ".join(list(RECIPES) + list(ALIASES))
        raise ValueError(f"unknown recipe {name!r}: choose one of {known}")
    return key


@dataclass(frozen=True)
class Recipe:
    """Settings of one recipe. Fractions are of the total number of optimizer steps.

    Phases: steps [0, dense_steps) are dense, then the sparse/decay phase, then
    the fine-tune phase (binary mask, D = 0) over the last
    ``ceil(finetune_fraction * total)`` steps. ``dense_steps`` rounds down and
    the fine-tune rounds up, so even a 1-step run ends genuinely N:M sparse.
    """

    name: str = "mdgf_exp"
    # -- phases (every recipe but dense) --
    dense_fraction: float = 0.05  # dense warm-up; paper ablations: 1.25-10% all work
    finetune_fraction: float = 0.15  # binary-mask fine-tune; paper ablations: 10-20%
    mask_interval: Optional[int] = None  # optimizer steps between mask refreshes; None = 1 (the paper), mdgf_step: its decay interval
    # -- srste --
    srste_lambda: float = 2e-4  # weight of the (1 - mask) * W gradient term
    # -- mdgf_linear / mdgf_exp --
    beta: Optional[float] = None  # per-step decay rate; None = derived from decay_end_fraction
    decay_end_fraction: float = 0.7  # D reaches decay_epsilon at this fraction of all steps, counted from step 0
    decay_epsilon: float = 1e-3
    # -- mdgf_step (Kao et al.) --
    step_weight: Optional[float] = None  # w: D drops by w per mask update; None = 1 / max_updates
    step_interval: Optional[int] = None  # steps per update; None = D reaches 0 at decay_end_fraction
    max_updates: int = 16  # D is forced to 0 from this update on (as in Kao et al.'s code)
    # -- sdgf_geo --
    geo_k: int = 8  # first rung kN:kM; 8 (4 rungs) in the public code, 16 in the paper text
    # -- sdgf_custom --
    ladder: Optional[tuple] = field(default=None)  # e.g. ("15:16", "8:16", "4:16", "2:16", "1:16")

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", canonical_recipe_name(self.name))
        if self.ladder is not None and not isinstance(self.ladder, tuple):
            ladder = self.ladder.split(",") if isinstance(self.ladder, str) else self.ladder
            object.__setattr__(self, "ladder", tuple(str(p).strip() for p in ladder))
        self._validate()

    def _validate(self) -> None:
        def bad(msg: str) -> None:
            raise ValueError(f"recipe {self.name}: {msg}")

        for name in ("dense_fraction", "finetune_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                bad(f"{name}={getattr(self, name)} must lie in [0, 1]")
        if self.dense_fraction + self.finetune_fraction > 1.0:
            bad(f"dense_fraction + finetune_fraction = {self.dense_fraction + self.finetune_fraction} exceeds 1")
        if self.mask_interval is not None and self.mask_interval < 1:
            bad(f"mask_interval={self.mask_interval} must be >= 1")
        if self.srste_lambda < 0:
            bad(f"srste_lambda={self.srste_lambda} must be >= 0")
        if self.beta is not None and self.beta < 0:
            bad(f"beta={self.beta} must be >= 0")
        if not 0.0 < self.decay_epsilon < 1.0:
            bad(f"decay_epsilon={self.decay_epsilon} must lie in (0, 1)")
        if self.name in DECAYING and self.beta is None and self.decay_end_fraction <= self.dense_fraction:
            bad(
                f"decay_end_fraction={self.decay_end_fraction} must exceed dense_fraction={self.dense_fraction} "
                "(it counts from step 0, not from the end of the dense phase)"
            )
        if self.step_weight is not None and not 0.0 < self.step_weight <= 1.0:
            bad(f"step_weight={self.step_weight} must lie in (0, 1]")
        if self.step_interval is not None and self.step_interval < 1:
            bad(f"step_interval={self.step_interval} must be >= 1")
        if self.max_updates < 1:
            bad(f"max_updates={self.max_updates} must be >= 1")
        if self.geo_k < 1 or self.geo_k & (self.geo_k - 1):
            bad(f"geo_k={self.geo_k} must be a power of two (8 in the public code, 16 in the paper)")
        if self.name == "sdgf_custom" and not self.ladder:
            bad("needs a ladder, e.g. ladder='15:16,8:16,4:16,2:16,1:16' (recipe.ladder=... on the command line)")
        if self.name != "sdgf_custom" and self.ladder:
            bad("ladder=... is only used by recipe sdgf_custom")

    @property
    def is_sparse(self) -> bool:
        return self.name != "dense"

    @property
    def decays(self) -> bool:
        return self.name in DECAYING

    def with_options(self, **options) -> "Recipe":
        _check_option_names(options)
        return replace(self, **options)


def _check_option_names(options: dict) -> None:
    known = {f.name for f in fields(Recipe)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown recipe option(s) {', '.join(unknown)}: known are {', '.join(sorted(known))}")


def make_recipe(recipe: "str | Recipe" = "mdgf_exp", **options) -> Recipe:
    """Build a Recipe from a name (aliases allowed) and keyword options."""
    if isinstance(recipe, Recipe):
        return recipe.with_options(**options) if options else recipe
    # Name and options are validated together: sdgf_custom alone (no ladder) is invalid.
    _check_option_names(options)
    return Recipe(**{"name": recipe, **options})


def decay_rate_for(recipe: Recipe, decay_steps: float) -> float:
    """beta such that D falls to decay_epsilon after `decay_steps` sparse steps."""
    decay_steps = max(decay_steps, 1.0)
    if recipe.name == "mdgf_linear":
        return (1.0 - recipe.decay_epsilon) / decay_steps
    return -math.log(recipe.decay_epsilon) / decay_steps
