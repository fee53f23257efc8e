"""The N:M sparsity engine: masks, recipes, schedules, the weight parametrization, the Sparsifier."""
from .masks import nm_mask
from .pattern import NM, parse_pattern
from .recipes import (ALIASES, RECIPES, Recipe, canonical_recipe_name, geometric_ladder, load_recipe_class, make_recipe,
                      register, stepwise_ladder)
from .schedule import Schedule, StepState
from .sparsifier import Sparsifier, sparsify
from .targets import LAYER_MAPS, LOCATIONS, Rule

__all__ = [
    "ALIASES", "LAYER_MAPS", "LOCATIONS", "NM", "RECIPES", "Recipe", "Rule", "Schedule", "Sparsifier",
    "StepState", "canonical_recipe_name", "geometric_ladder", "load_recipe_class", "make_recipe", "nm_mask",
    "parse_pattern", "register", "sparsify", "stepwise_ladder",
]
