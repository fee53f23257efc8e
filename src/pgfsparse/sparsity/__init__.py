"""The N:M sparsity engine: masks, recipes, schedules, the weight parametrization, the Sparsifier."""
from .masks import nm_mask
from .pattern import NM, parse_pattern
from .recipes import ALIASES, RECIPES, Recipe, canonical_recipe_name, make_recipe
from .schedule import Schedule, StepState, geometric_ladder, stepwise_ladder
from .sparsifier import Sparsifier, sparsify
from .targets import LAYER_MAPS, LOCATIONS, Rule

__all__ = [
    "ALIASES", "LAYER_MAPS", "LOCATIONS", "NM", "RECIPES", "Recipe", "Rule", "Schedule", "Sparsifier",
    "StepState", "canonical_recipe_name", "geometric_ladder", "make_recipe", "nm_mask", "parse_pattern",
    "sparsify", "stepwise_ladder",
]
