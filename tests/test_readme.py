"""The README stays a short front door whose set-up commands are the ones CI runs.

Its Python blocks run and its commands compose in tests/test_docs.py, with every page of docs/.
"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SET_UP = ['pip install -e ".[dev]"', "pytest"]  # .ci/run runs these two, in this order


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else len(README)]


def test_the_readme_is_short():
    assert README.count("\n") <= 200


def test_set_up_opens_with_the_install_and_test_commands():
    block = re.search(r"```bash\n(.*?)```", section("Set up"), re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands[:2] == SET_UP


def test_ci_runs_the_readmes_install_and_test_commands():
    ci = [line.split("#")[0].strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    positions = [ci.index(command) for command in SET_UP]
    assert positions == sorted(positions)


def test_the_readme_has_a_python_example_and_a_dated_headline_result():
    assert re.search(r"```python\n", README)
    assert re.search(r"As of\s+\d{4}-\d{2}-\d{2}", section("Headline result"))


def test_every_relative_link_of_the_readme_names_a_file_of_the_repository():
    targets = {t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", README) if "://" not in t}
    missing = sorted(t for t in targets if t and not (ROOT / t).exists())
    assert not missing
