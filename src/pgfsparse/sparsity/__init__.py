"""The N:M sparsity engine: masks, recipes, schedules, the weight parametrization, the Sparsifier."""

from pgfsparse.sparsity.masks import nm_mask
from pgfsparse.sparsity.pattern import NM, parse_pattern
from pgfsparse.sparsity.recipes import (
    ALIASES,
    RECIPES,
    Recipe,
    canonical_recipe_name,
    geometric_ladder,
    load_recipe_class,
    make_recipe,
    register,
    stepwise_ladder,
)
from pgfsparse.sparsity.schedule import Schedule, StepState
from pgfsparse.sparsity.sparsifier import Sparsifier, sparsify
from pgfsparse.sparsity.targets import LAYER_MAPS, LOCATIONS, Rule

__all__ = [
    "ALIASES",
    "LAYER_MAPS",
    "LOCATIONS",
    "NM",
    "RECIPES",
    "Recipe",
    "Rule",
    "Schedule",
    "Sparsifier",
    "StepState",
    "canonical_recipe_name",
    "geometric_ladder",
    "load_recipe_class",
    "make_recipe",
    "nm_mask",
    "parse_pattern",
    "register",
    "sparsify",
    "stepwise_ladder",
]
