"""resolve(cfg) -> RunSpec: patterns, recipe, budget, task and run name, worked out once."""
from __future__ import annotations

import dataclasses
import json

import pytest

pytest.importorskip("hydra")

from hydra import compose, initialize_config_module  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from pgfsparse.config import spec as spec_module  # noqa: E402
from pgfsparse.config.spec import RunSpec, point_name, resolve  # noqa: E402
from pgfsparse.config.validation import check, to_train_config  # noqa: E402
from pgfsparse.errors import ConfigError, Contradiction  # noqa: E402
from pgfsparse.rundir.layout import SWEEP_FILE  # noqa: E402
from pgfsparse.sparsity.pattern import NM  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def hydra_conf():
    with initialize_config_module(config_module="pgfsparse.conf", version_base="1.3"):
        yield


def composed(*overrides, hydra=False):
    return compose(config_name="train", overrides=list(overrides), return_hydra_config=hydra)


def spec_of(*overrides, **naming) -> RunSpec:
    return resolve(to_train_config(composed(*overrides)), **naming)


def test_auto_with_a_pattern_is_mdgf_exp_and_without_one_dense():
    sparse = spec_of("sparsity=1:16", "recipe=auto")
    assert sparse.recipe.name == "mdgf_exp" and dict(sparse.patterns) == {"ff": NM(1, 16)}
    dense = spec_of("recipe=auto")
    assert dense.recipe.name == "dense" and dict(dense.patterns) == {} and dense.sparsity == "dense"


def test_locations_budget_and_task_kind():
    spec = spec_of("sparsity.ff=1:8", "sparsity.qk=1:4", "recipe=srste", "budget.steps=40")
    assert {k: str(v) for k, v in spec.patterns.items()} == {"ff": "1:8", "q": "1:4", "k": "1:4"}
    assert spec.sparsity == "ff=1:8,q=1:4,k=1:4"
    assert spec.budget == ("steps", 40.0)
    assert spec.task == "image"
    assert spec_of("model=t5").task == "translation"
    assert spec_of("budget.default_epochs=0.5").budget == ("epochs", 0.5)


def test_the_budget_is_checked_once(monkeypatch):
    from pgfsparse.run.parts import steps_from_budget

    calls = []
    real = spec_module.check_budget
    monkeypatch.setattr(spec_module, "check_budget", lambda cfg: calls.append(1) or real(cfg))
    cfg = to_train_config(composed("budget.epochs=2", "data.batch_size=10"))
    spec = check(cfg)
    assert steps_from_budget(cfg, spec, flops=None, train_examples=95, world_size=1) == 18  # 2 x 9 full batches
    assert len(calls) == 1


def test_a_spec_is_frozen():
    spec = spec_of("sparsity=1:16")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.patterns["ff"] = NM(2, 4)  # type: ignore[index]


def test_the_run_name_is_the_sweep_point_folder_name(tmp_path):
    from pgfsparse.sweeps.resolvers import _point_dir_name

    overrides = ["sparsity=1:32", "recipe=decay", "seed=3", "model.kwargs.depth=3"]
    (tmp_path / SWEEP_FILE).write_text(json.dumps({"varying": ["sparsity", "model.kwargs.depth"]}))
    root = composed(*overrides, hydra=True)
    with open_dict(root):
        root.hydra.sweep.dir = str(tmp_path)
    folder = _point_dir_name(_root_=root)
    assert folder == "vit-n1m32-mdgf_exp-s3-depth=3"
    assert spec_of(*overrides, model="vit", extra=[("model.kwargs.depth", "3")]).name == folder
    assert spec_of(*overrides, model="vit").name == "vit-n1m32-mdgf_exp-s3"
    assert spec_of(*overrides).name == "vit-n1m32-mdgf_exp-s3"  # no Hydra choice: model.family
    assert spec_of(*overrides, name="given").name == "given"  # a multirun point's folder name


def test_point_names_do_not_check_what_the_job_refuses():
    cfg = to_train_config(composed("recipe=srste"))
    assert point_name(cfg, "vit") == "vit-dense-srste-s0"  # the skipped corner still gets its folder
    with pytest.raises(Contradiction):
        resolve(cfg)
    with pytest.raises(ConfigError, match="impossible N:M pattern"):
        point_name(to_train_config(composed("sparsity.ff=1:1")))
