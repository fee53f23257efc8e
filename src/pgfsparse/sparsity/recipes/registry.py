"""Recipes by name: the built-ins, plug-ins from installed packages, and classes given by path.

    make_recipe("srste", srste_lambda=1e-3)           a registered name (aliases: decay = mdgf_exp)
    make_recipe(MyRecipe(...)) / make_recipe(MyRecipe) a class or instance of your own
    load_recipe_class("examples/my_recipe.py:MyRecipe") / ("my_lab.recipes:Cubic") / ("my_name")

Installed packages register recipes under the entry-point group
`pgfsparse.recipes` (name = "module:Class"); they then work everywhere a
built-in name does: `pgf-train recipe=<name>`, --help and one-line errors.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Dict, Type, Union

from pgfsparse.sparsity.recipes.base import Recipe, check_knob_names

ENTRY_POINT_GROUP = "pgfsparse.recipes"
ALIASES = {"decay": "mdgf_exp"}
# name -> one-line summary of the built-ins (and @register-ed classes), in the docs' recipe-table order
RECIPES: Dict[str, str] = {}
_CLASSES: Dict[str, Type[Recipe]] = {}
_TARGETS: Dict[str, Type[Recipe]] = {}  # recipe.target -> its class, imported once per process
_plugins_loaded = False


def register(recipe_class: Type[Recipe]) -> Type[Recipe]:
    """Class decorator: make a recipe known by its `name` (and listed in RECIPES)."""
    _know(recipe_class)
    RECIPES[recipe_class.name] = recipe_class.summary
    return recipe_class


def _know(recipe_class: Type[Recipe]) -> Type[Recipe]:
    """Findable by name (plug-ins and recipe.target classes; RECIPES lists only registered ones)."""
    name = recipe_class.name
    if name in _CLASSES and _CLASSES[name] is not recipe_class:
        raise ValueError(f"two recipes are named {name!r}: {_CLASSES[name].__module__} and {recipe_class.__module__}")
    _CLASSES[name] = recipe_class
    return recipe_class


def registered() -> Dict[str, Type[Recipe]]:
    """Every known recipe class by name, plug-ins included (loaded once, on first use)."""
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        from importlib.metadata import entry_points

        for entry in entry_points(group=ENTRY_POINT_GROUP):
            try:
                _know(_recipe_class_of(entry.load(), entry.value))
            except Exception as error:  # noqa: BLE001 - a broken plug-in must not break the built-ins
                print(f"pgfsparse: recipe plug-in {entry.name} ({entry.value}) not loaded: {error}", file=sys.stderr)
    return dict(_CLASSES)


def canonical_recipe_name(name: str) -> str:
    """Resolve aliases ('decay' -> 'mdgf_exp') and reject unknown names in one line."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    known = registered()
    if key not in known:
        raise ValueError(f"unknown recipe {name!r}: choose one of {', '.join(list(known) + list(ALIASES))}")
    return key


def recipe_class(name: str) -> Type[Recipe]:
    return registered()[canonical_recipe_name(name)]


def make_recipe(recipe: Union[str, Recipe, Type[Recipe]] = "mdgf_exp", **options: Any) -> Recipe:
    """A Recipe from a name (aliases allowed), a Recipe class, or a Recipe (with changed knobs)."""
    if isinstance(recipe, Recipe):
        return recipe.with_options(**options) if options else recipe
    cls = recipe if isinstance(recipe, type) else recipe_class(recipe)
    if not (isinstance(cls, type) and issubclass(cls, Recipe)):
        raise ValueError(f"{recipe!r} is not a Recipe: subclass pgfsparse.Recipe")
    check_knob_names(cls, options)
    try:
        return cls(**options)
    except TypeError as error:  # a knob of the wrong kind, as Python words it
        raise ValueError(f"recipe {cls.name}: {error}") from None


def load_recipe_class(target: str) -> Type[Recipe]:
    """A Recipe class from 'path/file.py:Class', 'package.module:Class' or a registered name."""
    target = str(target).strip()
    if ":" not in target:
        return recipe_class(target)
    where, _, class_name = target.rpartition(":")
    if where.endswith(".py"):  # one file, however it is named (relative or absolute): imported once
        target = f"{Path(where).expanduser().resolve()}:{class_name}"
    if target not in _TARGETS:
        _TARGETS[target] = _know(_import_recipe_class(target))
    return _TARGETS[target]


def _import_recipe_class(target: str) -> Type[Recipe]:
    where, _, class_name = target.rpartition(":")
    fix = "give recipe.target=path/file.py:Class or module:Class"
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser().resolve()
            if not path.is_file():
                raise ValueError(f"no file {where}")
            spec = importlib.util.spec_from_file_location(f"pgfsparse_user_recipe_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise ValueError(f"{where} cannot be loaded as a Python module")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses look their module up while building the class
            spec.loader.exec_module(module)
        else:
            if "" not in sys.path:
                sys.path.insert(0, "")  # modules in the current directory, as `python -m` finds them
            module = importlib.import_module(where)
    except ValueError as error:
        raise ValueError(f"recipe.target={target}: {error}: {fix}") from None
    except Exception as error:  # noqa: BLE001 - the user's file: say what broke, in one line
        raise ValueError(
            f"recipe.target={target} cannot be imported ({type(error).__name__}: {error}): {fix}"
        ) from None
    found = getattr(module, class_name, None)
    if found is None:
        raise ValueError(f"recipe.target={target}: {where} has no {class_name}: {fix}")
    return _recipe_class_of(found, target)


def _recipe_class_of(found: Any, where: str) -> Type[Recipe]:
    if not (isinstance(found, type) and issubclass(found, Recipe)):
        raise ValueError(f"{where} is not a Recipe class: subclass pgfsparse.Recipe (see examples/my_recipe.py)")
    if found.name == Recipe.name:
        raise ValueError(f'{where} has no name: give the class a `name = "..."`')
    return found
