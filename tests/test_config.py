"""Every model x sparsity x recipe combination composes and validates, without training.

Shapes are checked on meta-device models (no memory, no init cost); the
combinations that cannot work are named exactly, with their one-line errors.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
from pathlib import Path

import pytest
import torch

pytest.importorskip("hydra")
pytest.importorskip("timm")

from hydra import compose, initialize_config_module  # noqa: E402
from hydra.core.config_store import ConfigStore  # noqa: E402
from hydra.errors import ConfigCompositionException  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

import pgfsparse  # noqa: E402
from pgfsparse.config.validation import check, to_train_config  # noqa: E402
from pgfsparse.errors import ConfigError, Contradiction  # noqa: E402
from pgfsparse.models import build_t5, build_vision_model  # noqa: E402

CONF = Path(pgfsparse.__file__).parent.parent.parent / "conf"
MODELS = ["vit", "vit_b16", "swin", "t5", "t5_small", "t5_base"]
TEXT_MODELS = {"t5", "t5_small", "t5_base"}
DECODER_MODELS = ["gpt2", "llama", "llama_125m"]  # built and checked in test_decoder_models.py
SPARSITIES = ["dense", "2:4", "1:4", "1:8", "1:16", "1:32", "1:64", "1:128"]
RECIPES = ["auto", "dense", "ste", "srste", "fixed_mask", "mdgf_linear", "mdgf_exp", "decay", "mdgf_step",
           "sdgf_step", "sdgf_geo", "sdgf_custom", "sdgf_cubic"]
CIFAR = dict(image_size=32, channels=3, num_classes=10)


@pytest.fixture(scope="module", autouse=True)
def hydra_conf():
    with initialize_config_module(config_module="pgfsparse.conf", version_base="1.3"):
        yield


def compose_cfg(*overrides):
    return compose(config_name="train", overrides=list(overrides))


def test_option_files_match_the_documented_grid():
    names = lambda group: sorted(p.stem for p in (CONF / group).glob("*.yaml"))  # noqa: E731
    assert names("sparsity") == sorted(SPARSITIES)
    compose_cfg()  # loading the config package registers the recipe options
    recipe_options = {name.removesuffix(".yaml") for name in ConfigStore.instance().list("recipe")}
    assert names("recipe") == []  # built from the recipe classes, not YAML (conf/recipe/README.md)
    assert set(RECIPES) <= recipe_options
    assert recipe_options == set(pgfsparse.RECIPES) | {"auto", "decay", "custom"}
    assert set(MODELS) | set(DECODER_MODELS) | {"timm"} == set(names("model"))
    assert {"cifar10", "imagenet", "imagefolder", "digits", "multi30k", "wmt16", "c4", "text", "glue",
            "tiny_shakespeare", "wikitext"} == set(
        names("data"))


@pytest.mark.parametrize("option", RECIPES)
def test_a_composed_recipe_holds_its_class_knobs_and_defaults(option):
    """recipe=<option> in Hydra == the recipe class's own fields and defaults (one place for a default)."""
    from pgfsparse.sparsity.recipes import recipe_class

    name = {"auto": "mdgf_exp"}.get(option, option)
    composed = OmegaConf.to_container(compose_cfg(f"recipe={option}").recipe)
    assert composed.pop("name") == option
    defaults = {f.name: f.default for f in dataclasses.fields(recipe_class(name))}
    assert composed == defaults


def test_a_recipe_knob_is_typed_at_composition():
    assert compose_cfg("recipe=srste", "recipe.srste_lambda=1e-3").recipe.srste_lambda == 1e-3
    with pytest.raises(Exception, match="srste_lambda"):
        compose_cfg("recipe=srste", "recipe.srste_lambda=abc")


@pytest.fixture(scope="module")
def meta_models():
    models = {}
    for name in MODELS:
        cfg = to_train_config(compose_cfg(f"model={name}"))
        with torch.device("meta"):
            if name in TEXT_MODELS:
                models[name] = build_t5(cfg.model, FakeTokenizer())
            else:
                models[name] = build_vision_model(cfg.model, **CIFAR)
    return models


class FakeTokenizer:
    """What build_t5 reads from a tokenizer: its size and the pad / eos ids."""

    pad_token_id, eos_token_id = 0, 1

    def __len__(self):
        return 8000


def expected_failure(model, sparsity, recipe):
    """Which combinations cannot work, worked out from the layer shapes by hand."""
    if recipe == "sdgf_custom":
        return "ladder"  # recipe.ladder is mandatory, checked before anything else
    if recipe != "auto" and (sparsity == "dense") != (recipe == "dense"):
        return "contradiction"
    if sparsity == "dense" or recipe == "dense":
        return None
    m = int(sparsity.split(":")[1])
    # FF input dims: vit 192 (fc1) and 768 (fc2); vit_b16 768 and 3072; swin 48/192 and 96/384;
    # T5 wi/wo: t5 256/1024, t5_small 512/2048, t5_base 768/3072 (all multiples of 128).
    ff_inputs = {"vit": [192, 768], "vit_b16": [768, 3072], "swin": [48, 192, 96, 384], "t5": [256, 1024],
                 "t5_small": [512, 2048], "t5_base": [768, 3072]}[model]
    return "shape" if any(d % m for d in ff_inputs) else None


def validate_combination(cfg, meta_model):
    """(kind, message) of the one-line failure of a composed config, or None if it can run."""
    try:
        return validate_typed(to_train_config(cfg), meta_model)
    except ConfigError as error:
        assert "ladder" in str(error)
        return "ladder", str(error)


def validate_typed(cfg, meta_model):
    """validate_combination of a config already merged onto the typed schema (a TrainConfig)."""
    try:
        spec = check(cfg)
        patterns, recipe = spec.patterns, spec.recipe
        # a failed sparsify leaves the model untouched, a successful one is removed again
        pgfsparse.sparsify(meta_model, patterns, recipe, total_steps=100).remove("latent")
    except Contradiction as error:
        return "contradiction", str(error)
    except ConfigError as error:
        assert "ladder" in str(error)
        return "ladder", str(error)
    except ValueError as error:
        assert "is not a multiple of" in str(error)
        return "shape", str(error)
    return None


def check_failures(failures):
    for (model, sparsity, recipe), (kind, message) in failures.items():
        assert "\n" not in message, message
        assert kind == expected_failure(model, sparsity, recipe), (model, sparsity, recipe, message)
    expected = {c for c in itertools.product(MODELS, SPARSITIES, RECIPES) if expected_failure(*c)}
    assert set(failures) == expected
    # the impossible shapes, named literally
    shape = sorted({(m, s) for (m, s, r), (k, _) in failures.items() if k == "shape"})
    assert shape == [("swin", "1:128"), ("swin", "1:32"), ("swin", "1:64"), ("vit", "1:128")]


def test_every_combination_composes_and_validates(meta_models):
    """Each group option is composed by Hydra and merged onto the typed schema once; a combination
    puts the typed groups together (groups are independent nodes, so this equals composing and
    typing the combination, which the slow test below does literally, in about a minute)."""
    base = to_train_config(compose_cfg())
    models = {m: to_train_config(compose_cfg(f"model={m}")) for m in MODELS}  # a text model brings its data
    sparsities = {s: to_train_config(compose_cfg(f"sparsity={s}")).sparsity for s in SPARSITIES}
    recipes = {r: to_train_config(compose_cfg(f"recipe={r}")).recipe for r in RECIPES}
    failures = {}
    for model, sparsity, recipe in itertools.product(MODELS, SPARSITIES, RECIPES):
        nodes = dict(model=models[model].model, data=models[model].data, sparsity=sparsities[sparsity],
                     recipe=recipes[recipe])
        cfg = dataclasses.replace(base, **copy.deepcopy(nodes))  # checks may fill in fields: fresh nodes each
        failure = validate_typed(cfg, meta_models[model])
        if failure:
            failures[(model, sparsity, recipe)] = failure
    check_failures(failures)


@pytest.mark.slow
def test_every_combination_composes_with_hydra_literally(meta_models):
    failures = {}
    for model, sparsity, recipe in itertools.product(MODELS, SPARSITIES, RECIPES):
        cfg = compose_cfg(f"model={model}", f"sparsity={sparsity}", f"recipe={recipe}")
        failure = validate_combination(cfg, meta_models[model])
        if failure:
            failures[(model, sparsity, recipe)] = failure
    check_failures(failures)


def test_auto_recipe_is_dense_without_pattern_and_decay_with_one():
    dense = check(to_train_config(compose_cfg())).recipe
    assert dense.name == "dense"
    decay = check(to_train_config(compose_cfg("sparsity=1:16"))).recipe
    assert decay.name == "mdgf_exp"


def test_location_overrides_from_the_command_line():
    cfg = to_train_config(compose_cfg("sparsity=1:8", "sparsity.qk=1:4", "recipe=srste"))
    spec = check(cfg)
    patterns, recipe = spec.patterns, spec.recipe
    assert {k: str(v) for k, v in patterns.items()} == {"ff": "1:8", "q": "1:4", "k": "1:4"}
    cfg = to_train_config(compose_cfg("sparsity.ff=3:8", "sparsity.qkv=1:4", "sparsity.v=1:8"))
    spec = check(cfg)
    patterns, recipe = spec.patterns, spec.recipe
    assert {k: str(v) for k, v in patterns.items()} == {"ff": "3:8", "q": "1:4", "k": "1:4", "v": "1:8"}
    assert recipe.name == "mdgf_exp"


@pytest.mark.parametrize("overrides, phrase", [
    (["sparsity.ff=1:1"], "impossible N:M pattern 1:1"),
    (["sparsity.ff=one"], "cannot read N:M pattern"),
    (["recipe=srste"], "needs an N:M pattern"),
    (["sparsity=1:16", "recipe=dense"], "contradicts the pattern"),
    (["sparsity=1:16", "recipe.name=nope"], "unknown recipe 'nope'"),
    (["budget.steps=10", "budget.epochs=2"], "set one run length"),
    (["sparsity=1:16", "recipe.dense_fraction=2"], "dense_fraction=2"),
    (["+model.colour=red"], "colour"),
])
def test_bad_configs_fail_in_one_line(overrides, phrase):
    with pytest.raises(ConfigError) as info:
        check(to_train_config(compose_cfg(*overrides)))
    assert phrase in str(info.value)
    assert "\n" not in str(info.value)


def test_a_text_model_defaults_to_multi30k_and_explicit_data_wins():
    assert compose_cfg("model=t5").data.name == "multi30k"
    assert compose_cfg("model=t5_base").data.name == "multi30k"
    assert compose_cfg("model=t5", "data=glue").data.name == "glue"
    assert compose_cfg("data=text", "model=t5", "data.path=x").data.kind == "corpus"
    assert compose_cfg("model=vit").data.name == "cifar10"
    assert compose_cfg().data.name == "cifar10"


@pytest.mark.parametrize("overrides, phrase", [
    (["model=t5", "data=cifar10"], "model=t5 is a text model but data=cifar10 is image data"),
    (["model=vit", "data=multi30k"], "model=vit is an image model but data=multi30k is translation text data"),
    (["model=t5", "data=glue", "data.glue_task=null"], "needs data.glue_task"),
    (["model=t5", "data.source_lang=de"], "both 'de'"),
    (["model=t5", "data.kind=poetry"], "data.kind='poetry' is unknown"),
    (["model=t5", "model.family=rnn"], "model.family='rnn' is unknown"),
])
def test_model_and_data_of_different_kinds_fail_in_one_line(overrides, phrase):
    with pytest.raises(ConfigError) as info:
        check(to_train_config(compose_cfg(*overrides)))
    assert phrase in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("override", ["model.colour=red", "seed=abc", "sparsity=1:3", "recipe=nope"])
def test_unknown_keys_types_and_options_fail_at_composition(override):
    with pytest.raises(ConfigCompositionException):
        compose_cfg(override)


def test_every_config_file_opens_with_the_command_that_uses_it():
    for path in CONF.rglob("*.yaml"):
        lines = [line for line in path.read_text().splitlines() if not line.startswith("# @package")]
        assert lines[0].startswith("# ") and ("pgf-train" in lines[0] or "torchrun" in lines[0]), path


@pytest.mark.parametrize("preset, grid_preset, run, flops, seeds", [
    ("cifar10_isoflop", "cifar10_grid", "vit-n1m32-mdgf_exp", 158350643822592, "0,1,2"),
    ("cifar10_isoflop_sdgf_step", "cifar10_grid", "vit-n1m32-sdgf_step", 119307881152512, "0,1"),
    ("multi30k_isoflop", "multi30k_grid", "t5-n1m32-mdgf_exp", 159307113431040, "0,1"),
])
def test_an_isoflop_preset_is_the_grid_setting_with_a_recipes_measured_flops(preset, grid_preset, run, flops,
                                                                              seeds):
    """experiment=*_isoflop* reruns the results' iso-FLOP SR-STE points: only the budget differs from
    the grid, and it is the training FLOPs that the committed 1:32 summary of `run` records."""
    import json

    grid = OmegaConf.to_container(compose_cfg(f"experiment={grid_preset}", "sparsity=1:32", "recipe=srste"))
    iso = OmegaConf.to_container(compose_cfg(f"experiment={preset}", "sparsity=1:32", "recipe=srste"))
    assert iso.pop("budget") == {**grid.pop("budget"), "epochs": None, "train_flops": flops}
    assert iso == grid
    results = CONF.parent / "results" / grid_preset.split("_")[0] / "grid"
    for seed in (0, 1):
        assert json.loads((results / f"{run}-s{seed}" / "summary.json").read_text())["train_flops"] == flops
    sweep = compose(config_name="train", overrides=[f"experiment={preset}"], return_hydra_config=True)
    assert dict(sweep.hydra.sweeper.params) == {"sparsity": "1:32", "recipe": "srste", "seed": seeds}
