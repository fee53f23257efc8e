"""Every command and Python block of the README and docs/ is run or checked, so the pages stay true.

What each kind of block gets:

- ```python: executed, each block in a fresh namespace, from the repository root.
- ```bash, line by line (backslash continuations joined, comments and leading VAR=value
  assignments dropped), by the command's first word:
    pgf-train     COMPOSED, not run: the overrides are composed with Hydra's compose API
                  against the package config (pgfsparse.conf, config "train"), a multirun grid
                  point by point as Hydra's basic sweeper expands it (a preset's own
                  hydra.sweeper.params included), and each point is merged onto the typed
                  schema (to_train_config). Nothing trains and no data is read. `--help` is
                  executed in-process; `--cfg job` is the composition itself.
    pgf-report,   CHECKED: the console script exists (pyproject.toml), its `--help` runs, and
    pgf-export,   every --option of the line is one that --help lists. The lines need a run
    pgf-collect   or a sweep dir; `pgf-report results/...` lines are also executed, with
                  their tables compared, by tests/test_results.py.
    python FILE   CHECKED: the script exists and names every --option the line uses.
    bash FILE     CHECKED: the script exists (they launch trainings, sweeps or SLURM jobs).
    jupyter execute NOTEBOOK   CHECKED: the notebook exists (tests/test_notebook.py runs it).
    pip install   CHECKED: every extra it names exists in pyproject.toml.
    mkdocs        CHECKED: mkdocs.yml exists and mkdocs imports (.ci/run builds the site).
    anything else must be listed in ALLOWED with the reason it is not checked here.
- Every fenced block names its language: python, bash or text (text is not run).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("**/*.md"))
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.M | re.S)
LANGUAGES = {"python", "bash", "text"}
ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")  # PGF_DATA_DIR=../shared/data pgf-train ...

# Lines that are not checked at all, each with the reason.
ALLOWED = {
    "pytest": "the test runner that runs this file",
}


def rel(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def blocks(language: str) -> list[tuple[str, str]]:
    """(id, source) of every fenced block of that language, page by page."""
    found = []
    for page in PAGES:
        for index, (_lang, source) in enumerate(b for b in FENCE.findall(page.read_text()) if b[0] == language):
            found.append((f"{rel(page)}:{language}{index}", source))
    return found


def command_lines() -> list[tuple[str, str]]:
    """(block id, command) for every command of every bash block: continuations joined, comments
    and leading VAR=value assignments dropped."""
    lines = []
    for block_id, source in blocks("bash"):
        for line in source.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and ENV.match(words[0]):
                words.pop(0)
            if words:
                lines.append((block_id, shlex.join(words)))
    return lines


PYTHON = blocks("python")
COMMANDS = command_lines()


def by_program(*programs: str) -> list:
    return [pytest.param(command, id=f"{block_id} {command[:60]}") for block_id, command in COMMANDS
            if command.split()[0] in programs]


# -- the pages' own shape ------------------------------------------------------------------------
def test_every_fenced_block_names_a_language_that_is_run_or_plain_text():
    unnamed = {rel(page): sorted({lang or "(none)" for lang, _ in FENCE.findall(page.read_text())} - LANGUAGES)
               for page in PAGES}
    assert not {page: langs for page, langs in unnamed.items() if langs}


def test_the_pages_hold_the_blocks_this_file_checks():
    assert sum(block_id.startswith("README.md:") for block_id, _ in PYTHON) >= 1
    assert len(PYTHON) >= 4
    assert len(by_program("pgf-train")) >= 20


def test_every_command_is_checked_by_a_rule_or_listed_with_its_reason():
    ruled = {"pgf-train", "pgf-report", "pgf-export", "pgf-collect", "python", "bash", "jupyter", "pip", "mkdocs"}
    unchecked = sorted({command for _, command in COMMANDS if command.split()[0] not in ruled} - set(ALLOWED))
    assert not unchecked, f"commands in the pages that no rule checks: add a rule, or an ALLOWED entry: {unchecked}"


# -- python blocks: executed -----------------------------------------------------------------------
@pytest.mark.parametrize("source", [pytest.param(s, id=i) for i, s in PYTHON])
def test_python_block_runs(source, monkeypatch):
    pytest.importorskip("timm")
    monkeypatch.chdir(ROOT)  # examples/my_recipe.py and the like are named from the repository root
    exec(compile(source, "docs python block", "exec"), {"__name__": "__docs__"})


# -- pgf-train: composed ----------------------------------------------------------------------------
def _to_train_config():
    """The typed-schema merge (its module moved with the 0.2.0 layout; the function did not)."""
    for module in ("pgfsparse.config.validation", "pgfsparse.config", "pgfsparse.validation"):
        try:
            return importlib.import_module(module).to_train_config
        except (ImportError, AttributeError):
            continue
    raise ImportError("to_train_config: not found in pgfsparse.config")


def split_train_args(args: list[str]) -> tuple[list[str], bool, bool]:
    """(overrides, multirun, help) of a pgf-train command line; --cfg/--info/--help take no part in composing."""
    overrides, multirun, wants_help, skip = [], False, False, False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("-m", "--multirun"):
            multirun = True
        elif arg in ("--help", "-h", "--hydra-help"):
            wants_help = True
        elif arg in ("--cfg", "-c", "--info", "-i", "--package", "-p"):
            skip = arg not in ("--info", "-i")  # --cfg job: what is printed, not what is composed
        elif arg.startswith("-"):
            raise AssertionError(f"pgf-train flag this test does not know: {arg}")
        else:
            overrides.append(arg)
    return overrides, multirun, wants_help


def compose_points(overrides: list[str], multirun: bool) -> int:
    """Compose (and schema-merge) every point the command would run; returns how many."""
    from hydra import compose, initialize_config_module
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # how hydra-core 1.3 expands a grid
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    to_train_config = _to_train_config()
    parser = OverridesParser.create()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="pgfsparse.conf", version_base="1.3"):
        if not multirun:
            points = [overrides]
        else:  # as Hydra's basic sweeper: the config's sweeper params first, the command's win
            fixed = [o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
            base = compose(config_name="train", overrides=fixed, return_hydra_config=True)
            params = base.hydra.sweeper.get("params")
            params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
            lines = [f"{key}={value}" for key, value in params.items()] + overrides
            points = [point for batch in BasicSweeper.split_arguments(parser.parse_overrides(lines), None)
                      for point in batch]
        for point in points:
            cfg = compose(config_name="train", overrides=list(point), return_hydra_config=True)
            to_train_config(cfg)
    return len(points)


@pytest.mark.parametrize("command", by_program("pgf-train"))
def test_pgf_train_line_composes_and_passes_the_schema(command, monkeypatch):
    pytest.importorskip("hydra")
    monkeypatch.chdir(ROOT)
    overrides, multirun, wants_help = split_train_args(shlex.split(command)[1:])
    if wants_help:
        assert "pgf-train" in run_help("pgf-train", monkeypatch)
    if overrides or not wants_help:
        assert compose_points(overrides, multirun) >= 1


def test_a_multirun_line_composes_every_point_of_its_grid():
    pytest.importorskip("hydra")
    from hydra.errors import ConfigCompositionException

    assert compose_points(["sparsity=1:16,1:32", "recipe=srste,decay"], multirun=True) == 4
    assert compose_points(["experiment=cifar10_grid"], multirun=True) == 18  # the preset's own grid
    with pytest.raises(ConfigCompositionException):  # a typo fails, as pgf-train's would
        compose_points(["sparsity.no_such_key=1"], multirun=False)


# -- console scripts: --help, and the options a line uses ------------------------------------------
def console_script(name: str):
    """The function a console script of pyproject.toml runs (the tree's, not a stale install's)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert name in scripts, f"{name} is not a console script of pyproject.toml"
    module, _, attr = scripts[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def run_help(name: str, monkeypatch) -> str:
    """Run `<name> --help` in this process; its printed help."""
    from hydra.core.global_hydra import GlobalHydra

    main = console_script(name)
    out = io.StringIO()
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    GlobalHydra.instance().clear()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        main() if name == "pgf-train" else main(["--help"])
    GlobalHydra.instance().clear()
    assert stop.value.code in (0, None), f"{name} --help exited {stop.value.code}"
    return out.getvalue()


HELP: dict[str, str] = {}


@pytest.mark.parametrize("command", by_program("pgf-report", "pgf-export", "pgf-collect"))
def test_report_export_and_collect_lines_use_options_their_help_lists(command, monkeypatch):
    name = command.split()[0]
    if name not in HELP:
        HELP[name] = run_help(name, monkeypatch)
    unknown = [a.split("=")[0] for a in shlex.split(command)[1:]
               if a.startswith("--") and a.split("=")[0] not in HELP[name]]
    assert not unknown, f"{name} --help does not list {unknown}"


# -- scripts, notebooks, installs, the site ------------------------------------------------------------
@pytest.mark.parametrize("command", by_program("python", "bash", "jupyter"))
def test_script_lines_name_files_that_exist_with_their_options(command):
    args = shlex.split(command)
    target = args[2] if args[:2] == ["jupyter", "execute"] else args[1]
    path = ROOT / target
    assert path.is_file(), f"{target} does not exist"
    options = [a.split("=")[0] for a in args[2:] if a.startswith("--")]
    if args[0] == "python":
        text = path.read_text()
        assert all(option in text for option in options), f"{target} has no {options}"


@pytest.mark.parametrize("command", by_program("pip", "mkdocs"))
def test_install_and_site_lines(command):
    try:
        import tomllib
    except ModuleNotFoundError:
        tomllib = pytest.importorskip("tomli")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    if command.startswith("pip"):
        named = [e for spec in re.findall(r"\[([\w,-]+)\]", command) for e in spec.split(",")]
        assert set(named) <= set(extras), f"{command}: no such extra"
    else:
        pytest.importorskip("mkdocs")
        assert (ROOT / "mkdocs.yml").is_file()
        assert "docs" in extras and any(d.startswith("mkdocs") for d in extras["docs"])


# -- the site: every page in the nav; the recipe table built from the classes ----------------------------
def nav_pages(entries) -> list[str]:
    found = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        found += nav_pages(value) if isinstance(value, list) else [value]
    return found


def test_the_site_nav_lists_every_page_and_only_pages_that_exist():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").glob("**/*.md")}
    assert sorted(nav_pages(config["nav"])) == sorted(pages)


def load_hook(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", ROOT / "docs" / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recipe_page_has_the_markers_and_no_typed_table():
    hook = load_hook("recipe_table")
    page = (ROOT / "docs" / "recipes.md").read_text()
    assert hook.TABLE_MARKER in page and hook.COMMON_MARKER in page
    assert not re.search(r"^\|\s*`(srste|mdgf_exp|sdgf_step)`", page, re.M), "the recipe table is built, not typed"


def test_the_built_recipe_table_has_every_recipe_and_knob_with_its_default():
    import dataclasses

    from pgfsparse.sparsity.recipes import ALIASES, Recipe, registered

    hook = load_hook("recipe_table")
    page = hook.on_page_markdown((ROOT / "docs" / "recipes.md").read_text(), None, None, None)
    rows = {line.split("|")[1].strip().split()[0].strip("`"): line for line in page.splitlines()
            if re.match(r"^\| `\w+`", line)}
    assert list(rows) == list(registered())
    common = {f.name for f in dataclasses.fields(Recipe)}
    for name, cls in registered().items():
        for knob in dataclasses.fields(cls):
            if knob.name not in common:
                assert f"`{knob.name}` = `{knob.default!r}`" in rows[name], (name, knob.name)
    for alias, target in ALIASES.items():
        assert f"(= `{alias}`)" in rows[target]
    for knob in common:
        assert re.search(rf"^- `{knob}` = ", page, re.M)


def test_a_plugin_recipe_gets_a_row_of_its_own(monkeypatch):
    from dataclasses import dataclass

    from pgfsparse.sparsity.recipes import Recipe, registry

    @dataclass(frozen=True)
    class Halved(Recipe):
        """A test recipe."""

        name = "halved_for_docs"
        summary = "a *test* recipe | with a pipe"
        factor: float = 0.5  # how much is kept

    monkeypatch.setitem(registry._CLASSES, Halved.name, Halved)
    table = load_hook("recipe_table").recipe_table()
    row = next(line for line in table.splitlines() if "halved_for_docs" in line)
    assert "a \\*test\\* recipe \\| with a pipe" in row and "`factor` = `0.5`: how much is kept" in row
    assert "test_docs:" in row or "Halved" in row  # a plug-in is named by module:Class


def test_repo_files_hook_finds_links_that_leave_docs():
    hook = load_hook("repo_files")
    page = "![a](../results/x/report/a.png) [b](training.md#flops) [c](https://example.org/x.png) ![d](img/d.png)"
    assert hook.linked_outside(page, "results.md") == ["../results/x/report/a.png"]
