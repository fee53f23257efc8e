"""Training recipes: one small class per recipe, one file each, found by name.

    dense  ste  srste                  (dense.py, ste.py, srste.py)
    fixed_mask                         the first mask kept, gradient to kept weights only
    mdgf_linear  mdgf_exp  mdgf_step   mask decay (mask_decay.py holds what they share)
    sdgf_step  sdgf_geo  sdgf_custom   structure decay along a ladder of N:M rungs
    sdgf_cubic                         gradual magnitude pruning in N:M form (Zhu and Gupta)

A recipe states, as pure functions of the step, its decay D, its ladder of N:M
rungs, when masks refresh, any extra gradient term and the density the FLOP
counter charges (base.py). The schedule, the Sparsifier and the FLOP counter ask
the recipe; none of them branches on its name. Bring your own: subclass
`Recipe` (examples/my_recipe.py), then `sparsify(model, recipe=MyRecipe(...))` or
`pgf-train recipe=custom recipe.target=path/file.py:MyRecipe`.
"""

# The built-ins register themselves on import, in the order of the docs' recipe table.
from pgfsparse.sparsity.recipes import dense, ste, srste, fixed_mask  # noqa: F401,I001
from pgfsparse.sparsity.recipes import mdgf_linear, mdgf_exp, mdgf_step  # noqa: F401,I001
from pgfsparse.sparsity.recipes import sdgf_step, sdgf_geo, sdgf_custom, sdgf_cubic  # noqa: F401,I001
from pgfsparse.sparsity.recipes.base import Recipe
from pgfsparse.sparsity.recipes.registry import (
    ALIASES,
    ENTRY_POINT_GROUP,
    RECIPES,
    canonical_recipe_name,
    load_recipe_class,
    make_recipe,
    recipe_class,
    register,
    registered,
)
from pgfsparse.sparsity.recipes.sdgf_geo import fit_rung, geometric_ladder
from pgfsparse.sparsity.recipes.sdgf_step import stepwise_ladder

__all__ = [
    "ALIASES",
    "ENTRY_POINT_GROUP",
    "RECIPES",
    "Recipe",
    "canonical_recipe_name",
    "fit_rung",
    "geometric_ladder",
    "load_recipe_class",
    "make_recipe",
    "recipe_class",
    "register",
    "registered",
    "stepwise_ladder",
]
