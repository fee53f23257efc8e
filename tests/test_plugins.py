"""Recipes of your own: examples/my_recipe.py through `sparsify`, the real CLI, resume, and as an entry point.

The example is SR-STE whose lambda falls linearly over the sparse phase: its
gradient is checked against a hand computation, its knobs against bad values,
and a run with it against the same run stopped and resumed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import pgfsparse
from pgfsparse.sparsity.recipes import load_recipe_class

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "my_recipe.py"
TARGET = f"{EXAMPLE}:DecayingSRSTE"
PGF_TRAIN = Path(sys.executable).parent / "pgf-train"


def example_command() -> list:
    """The first line of the example that names pgf-train: the command it documents."""
    line = next(line for line in EXAMPLE.read_text().splitlines() if "pgf-train" in line)
    return line.lstrip("# ").split()


def test_the_example_is_short_and_opens_with_a_plain_single_run_command():
    assert len(EXAMPLE.read_text().splitlines()) <= 30
    command = example_command()
    assert command[0] == "pgf-train" and "-m" not in command and "#" not in command
    assert not any(arg.lstrip("+").startswith("budget") for arg in command[1:])
    assert "recipe.target=examples/my_recipe.py:DecayingSRSTE" in command


# -- in Python ----------------------------------------------------------------------------------
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[4.0, -3.0, 2.0, 1.0], [0.5, -0.25, 8.0, -6.0]]))

    def forward(self, x):
        return self.lin(x)


def test_a_user_recipe_drives_sparsify_with_its_own_gradient_term():
    recipe = load_recipe_class(TARGET)(srste_lambda=0.5, final_fraction=0.2, dense_fraction=0.0,
                                       finetune_fraction=0.0)
    model = Net()
    w = model.lin.weight.detach().clone()
    sp = pgfsparse.sparsify(model, "2:4", recipe=recipe, total_steps=10, layer_map={"ff": [r"^lin$"]})
    assert sp.recipe.name == "decaying_srste"
    for step, lam in [(0, 0.5), (5, 0.5 * (1 - 0.8 * 0.5)), (9, 0.5 * (1 - 0.8 * 0.9))]:
        sp.step(step)
        model.zero_grad()
        model(torch.ones(1, 4)).sum().backward()  # dL/dW~ = 1 everywhere
        latent = model.lin.parametrizations.weight.original
        pruned = torch.tensor([[False, False, True, True], [True, True, False, False]])  # 2:4 by |W|
        expected = torch.ones_like(w) + lam * pruned * w  # straight-through + lambda (1 - mask) W
        assert torch.allclose(latent.grad, expected, rtol=1e-6), step


@pytest.mark.parametrize("knobs, phrase", [({"final_fraction": 2.0}, "final_fraction in [0, 1]"),
                                           ({"bogus": 1}, "has no knob(s) bogus")])
def test_a_user_recipe_refuses_bad_knobs_in_one_line(knobs, phrase):
    with pytest.raises(ValueError) as info:
        pgfsparse.make_recipe(load_recipe_class(TARGET), **knobs)
    assert phrase in str(info.value) and "\n" not in str(info.value)


def test_targets_that_cannot_load_say_so_in_one_line(tmp_path):
    (tmp_path / "broken.py").write_text("import not_a_module\n")
    (tmp_path / "plain.py").write_text("class Thing:\n    pass\n")
    for target, phrase in [(f"{tmp_path}/missing.py:X", "no file"), (f"{tmp_path}/broken.py:X", "cannot be imported"),
                           (f"{tmp_path}/plain.py:Nope", "has no Nope"), (f"{tmp_path}/plain.py:Thing", "not a Recipe")]:
        with pytest.raises(ValueError, match=phrase):
            load_recipe_class(target)


# -- through the CLI --------------------------------------------------------------------------
def run(*args: str, env=None) -> subprocess.CompletedProcess:
    if not PGF_TRAIN.exists():
        pytest.skip("pgf-train is not installed next to this Python")
    return subprocess.run([str(PGF_TRAIN), *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "WANDB_MODE": "disabled", **(env or {})})


def test_the_example_command_runs_from_the_repository_root(tmp_path):
    done = run(*example_command()[1:], "logger=local", "threads=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["recipe"] == "decaying_srste" and summary["run_name"] == "vit-n1m4-decaying_srste-s0"
    assert summary["recipe_knobs"]["final_fraction"] == 0.1 and summary["recipe_knobs"]["srste_lambda"] == 2e-4
    bad = run(*example_command()[1:], "+recipe.nope=1", f"hydra.run.dir={tmp_path / 'bad'}")
    assert bad.returncode == 2 and "has no knob(s) nope" in bad.stderr and bad.stderr.strip().count("\n") == 0


def test_a_user_recipe_resumes_exactly(tmp_path):
    from test_cli import TINY_VIT, assert_resume_equals_uninterrupted

    common = ["data=digits", "sparsity=1:4", "recipe=custom", f"recipe.target={TARGET}", "+recipe.final_fraction=0.3",
              "budget.steps=8", *TINY_VIT]
    assert_resume_equals_uninterrupted(tmp_path, common, at=4)


def test_an_installed_plugin_is_a_recipe_name_everywhere(tmp_path):
    """A package registering `pgfsparse.recipes` entry points: --help lists it, recipe=<name> runs it."""
    dist = tmp_path / "my_lab_recipes-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-lab-recipes\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pgfsparse.recipes]\ndecaying_srste = my_recipe:DecayingSRSTE\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(EXAMPLE.parent)])}
    help_text = run("--help", env=env).stdout
    assert "decaying_srste" in help_text
    done = run("data=digits", "sparsity=1:4", "recipe=decaying_srste", "recipe.final_fraction=0.5",
               "budget.steps=2", "logger=local", f"hydra.run.dir={tmp_path / 'run'}", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["recipe"] == "decaying_srste" and summary["recipe_knobs"]["final_fraction"] == 0.5
