"""A run's resolved settings: `resolve(cfg)` works out, once, what a config means.

    patterns   location -> N:M of `sparsity.*` (dense locations dropped)
    recipe     the Recipe instance (`auto`, `decay` and `custom` settled)
    budget     ('steps' | 'epochs' | 'train_flops', value); ('steps', 0) only with a one-shot prune
    oneshot    the one-shot method pruning the start (oneshot.method): none | magnitude | wanda | sparsegpt
    task       data.kind
    model      the model's label: the Hydra model choice, else model.family
    name       the run name (rundir/naming.py), as the sweep point folders are named

The trainer, resume, the sweep folder names and the export all read these from a
`RunSpec`; `validation.check()` builds it and checks the rest of the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Dict, Mapping, Optional, Sequence, Tuple

from pgfsparse.errors import ConfigError, Contradiction
from pgfsparse.rundir.naming import describe_sparsity, run_name
from pgfsparse.sparsity.pattern import NM
from pgfsparse.sparsity.recipes import Recipe, load_recipe_class, make_recipe, recipe_class
from pgfsparse.sparsity.targets import resolve_patterns

PATTERN_KEYS = ("ff", "q", "k", "v", "qk", "qkv", "attn_out")


@dataclass(frozen=True)
class RunSpec:
    """What a config means for a run, computed once by `resolve`."""

    patterns: Mapping[str, NM]  # read-only
    recipe: Recipe
    budget: Tuple[str, float]
    task: str
    model: str
    name: str
    oneshot: str = "none"

    @property
    def sparsity(self) -> str:
        """The sparsity label: '1:16', 'ff=1:8,q=1:4' or 'dense'."""
        return describe_sparsity(self.patterns)

    @property
    def recipe_label(self) -> str:
        """The recipe a run's records name: 'none' for a one-shot model evaluated untrained (budget.steps=0)."""
        return recipe_label(self.recipe.name, self.budget[1] if self.budget[0] == "steps" else None)


def recipe_label(recipe: str, steps: Optional[float]) -> str:
    """`recipe`, or 'none' for a budget of zero steps (a one-shot model evaluated untrained:
    check_budget refuses it otherwise): no step ran, so no recipe shaped the weights."""
    return "none" if steps == 0 else recipe


def resolve(
    cfg, model: Optional[str] = None, extra: Sequence[Tuple[str, str]] = (), name: Optional[str] = None
) -> RunSpec:
    """The RunSpec of `cfg` (a TrainConfig); a ConfigError names what cannot be resolved.

    `model` is the Hydra model choice (None: model.family), `extra` the (key, value) pairs a
    sweep adds to the name, and `name` a name given instead (a multirun point's folder).
    """
    patterns = sparsity_patterns(cfg)
    recipe = resolve_recipe(cfg, patterns)
    budget = check_budget(cfg)
    model = model or cfg.model.family
    oneshot = oneshot_method(cfg)
    name = name or run_name(model, patterns, recipe_label(recipe.name, cfg.budget.steps), cfg.seed, extra, oneshot)
    return RunSpec(MappingProxyType(patterns), recipe, budget, cfg.data.kind, model, name, oneshot)


def point_name(cfg, model: Optional[str] = None, extra: Sequence[Tuple[str, str]] = ()) -> str:
    """The run name alone, with recipe knobs and contradictions left unchecked (sweep point folders).

    Raises when the patterns or the recipe's name cannot be read; works on a DictConfig too.
    """
    patterns = sparsity_patterns(cfg)
    recipe = recipe_label(recipe_class_and_knobs(cfg.recipe, patterns)[0].name, cfg.budget.steps)
    return run_name(model or cfg.model.family, patterns, recipe, cfg.seed, extra, oneshot_method(cfg))


def oneshot_method(cfg) -> str:
    """oneshot.method, 'none' for a config without the group (one recorded before it existed)."""
    oneshot = getattr(cfg, "oneshot", None)
    return str(getattr(oneshot, "method", None) or "none")


def sparsity_patterns(cfg) -> Dict[str, NM]:
    """The location -> N:M map of `sparsity.*` (dense entries dropped)."""
    given = {key: getattr(cfg.sparsity, key) for key in PATTERN_KEYS if getattr(cfg.sparsity, key) is not None}
    try:
        return resolve_patterns(given)
    except ValueError as error:
        raise ConfigError(f"sparsity: {error}") from None


def resolve_recipe(cfg, patterns: Mapping[str, NM]) -> Recipe:
    """The Recipe to run, with `auto` and contradictions settled.

    Rule: recipe=auto means dense when no location has a pattern and decay
    (mdgf_exp) otherwise. An explicit sparse recipe with no pattern, or
    recipe=dense with a pattern, is refused (in a sweep that job is skipped, so
    the grid never runs the dense baseline twice).
    """
    name = cfg.recipe["name"]
    try:
        chosen, options = recipe_class_and_knobs(cfg.recipe, patterns)
        recipe = make_recipe(chosen, **options)
    except ValueError as error:
        raise ConfigError(f"recipe: {error}") from None
    if recipe.is_sparse and not patterns:
        raise Contradiction(
            f"recipe={name} needs an N:M pattern but sparsity is dense: "
            "add e.g. sparsity=1:16, or use recipe=dense for the baseline"
        )
    if not recipe.is_sparse and patterns:
        shown = ", ".join(f"{k}={v}" for k, v in patterns.items())
        raise Contradiction(
            f"recipe=dense contradicts the pattern {shown}: pick a sparse recipe (e.g. recipe=decay) or sparsity=dense"
        )
    return recipe


def recipe_class_and_knobs(recipe_cfg, patterns: Mapping[str, NM]):
    """(the Recipe class, its knobs) named by the recipe node: a name, `auto`, or `custom` + target.

    `auto` is mdgf_exp with a pattern and dense without one (whose knobs it then drops).
    """
    settings = dict(recipe_cfg)
    name = str(settings.pop("name"))
    if name == "custom":
        target = settings.pop("target", None)
        if target in (None, "", "???"):
            raise ValueError(
                "recipe=custom needs recipe.target=path/file.py:Class or module:Class (see examples/my_recipe.py)"
            )
        return load_recipe_class(target), settings
    if name == "auto":
        name = "mdgf_exp" if patterns else "dense"
        settings = settings if patterns else {}
    return recipe_class(name), settings


def check_budget(cfg) -> Tuple[str, float]:
    """('steps' | 'epochs' | 'train_flops', value) after checking at most one is set."""
    budget = cfg.budget
    given = [(k, getattr(budget, k)) for k in ("steps", "epochs", "train_flops") if getattr(budget, k) is not None]
    if len(given) > 1:
        shown = ", ".join(f"budget.{k}={v}" for k, v in given)
        raise ConfigError(f"set one run length, not {shown}: drop all but one (e.g. '~budget.epochs')")
    default = budget.default_epochs if budget.default_epochs is not None else cfg.data.default_epochs
    kind, value = given[0] if given else ("epochs", default)
    if kind == "steps" and value == 0:
        if oneshot_method(cfg) == "none":
            raise ConfigError(
                "budget.steps=0 trains nothing: it is only for evaluating a one-shot prune untrained "
                "(add oneshot=magnitude, wanda or sparsegpt), else give budget.steps >= 1"
            )
        return kind, 0.0
    if not value or value <= 0:
        raise ConfigError(f"budget.{kind}={value} must be positive")
    return kind, float(value)
