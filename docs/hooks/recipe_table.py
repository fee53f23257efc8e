"""mkdocs hook: the recipe table of docs/recipes.md, built from the recipe classes at build time.

docs/recipes.md holds the markers below instead of a table; `on_page_markdown` replaces them:

    <!-- recipe-table -->         one row per recipe of pgfsparse.sparsity.recipes.registered()
                                  (built-ins and installed plug-ins): its name and aliases, its
                                  one-line `summary`, the knobs its class adds (dataclass fields,
                                  with their defaults and the comment written beside each field)
                                  and the file it lives in
    <!-- recipe-common-knobs -->  the knobs every recipe has (the fields of the Recipe base class)

So the table cannot drift from the code: a new recipe, knob or default shows up in the next build.
tests/test_docs.py builds both from this module too.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

TABLE_MARKER = "<!-- recipe-table -->"
COMMON_MARKER = "<!-- recipe-common-knobs -->"
FIELD_LINE = re.compile(r"^\s+(\w+)\s*:[^=#]*=\s*[^#]*?(?:#\s*(.*))?$")


def _escape(text: str) -> str:
    """Text safe inside a Markdown table cell (no emphasis, no cell breaks)."""
    return re.sub(r"([\\`*_|<>\[\]])", r"\\\1", text)


def field_comments(cls: type) -> dict[str, str]:
    """The comment written beside each dataclass field, from the class that declares it."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if "__annotations__" not in klass.__dict__:
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for line in source.splitlines():
            match = FIELD_LINE.match(line)
            if match and match.group(1) in klass.__dict__["__annotations__"] and match.group(2):
                comments[match.group(1)] = match.group(2).strip()
    return comments


def knobs(cls: type, names: list[str]) -> list[str]:
    """'`knob` = `default`: comment' for each named field of a recipe class."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    comments = field_comments(cls)
    shown = []
    for name in names:
        default = fields[name].default
        text = f"`{name}` = `{default!r}`"
        if name in comments:
            text += f": {_escape(comments[name])}"
        shown.append(text)
    return shown


def _where(cls: type) -> str:
    """The recipe's file in the repository (src/pgfsparse/...), or module:Class for a plug-in."""
    path = Path(inspect.getsourcefile(cls) or "")
    if cls.__module__.startswith("pgfsparse.") and "src" in path.parts:
        return f"`{Path(*path.parts[len(path.parts) - 1 - path.parts[::-1].index('src'):]).as_posix()}`"
    return f"`{cls.__module__}:{cls.__qualname__}`"


def recipe_table() -> str:
    from pgfsparse.sparsity.recipes import ALIASES, Recipe, registered

    common = [f.name for f in dataclasses.fields(Recipe)]
    rows = ["| recipe | what it does | its own knobs (default): meaning | defined in |", "|---|---|---|---|"]
    for name, cls in registered().items():
        aliases = [alias for alias, target in ALIASES.items() if target == name]
        shown = f"`{name}`" + "".join(f" (= `{alias}`)" for alias in aliases)
        own = [f.name for f in dataclasses.fields(cls) if f.name not in common]
        cell = "<br>".join(knobs(cls, own)) or "none"
        rows.append(f"| {shown} | {_escape(cls.summary)} | {cell} | {_where(cls)} |")
    return "\n".join(rows) + "\n"


def common_knobs() -> str:
    from pgfsparse.sparsity.recipes import Recipe

    names = [f.name for f in dataclasses.fields(Recipe)]
    return "\n".join(f"- {knob}" for knob in knobs(Recipe, names)) + "\n"


def on_page_markdown(markdown, page, config, files):
    if TABLE_MARKER in markdown:
        markdown = markdown.replace(TABLE_MARKER, recipe_table())
    if COMMON_MARKER in markdown:
        markdown = markdown.replace(COMMON_MARKER, common_knobs())
    return markdown
