"""Recipe names, options and their one-line errors; N:M pattern parsing."""
from __future__ import annotations

import pytest

from pgfsparse.sparsity import (
    NM,
    RECIPES,
    Recipe,
    canonical_recipe_name,
    make_recipe,
    parse_pattern,
)
from pgfsparse.sparsity.pattern import is_dense
from pgfsparse.sparsity.recipes import recipe_class

ALL_NAMES = ["dense", "ste", "srste", "fixed_mask", "mdgf_linear", "mdgf_exp", "mdgf_step", "sdgf_step", "sdgf_geo", "sdgf_custom",
             "sdgf_cubic"]
CUSTOM_LADDER = "15:16,8:16,4:16,2:16,1:16"


def one_line_error(call, phrase, error=ValueError):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert phrase in message, message
    assert "\n" not in message, message
    return message


# ---------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------
def test_recipe_names_are_the_documented_ones():
    assert sorted(RECIPES) == sorted(ALL_NAMES)
    assert all(isinstance(text, str) and text and "\n" not in text for text in RECIPES.values())


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_recipe_builds(name):
    options = {"ladder": CUSTOM_LADDER} if name == "sdgf_custom" else {}
    recipe = make_recipe(name, **options)
    assert isinstance(recipe, Recipe)
    assert recipe.name == name
    assert recipe.is_sparse == (name != "dense")
    assert recipe.decays == (name in ("mdgf_linear", "mdgf_exp", "mdgf_step"))
    assert recipe_class(name)(**options) == recipe


def test_custom_ladder_is_stored_as_a_tuple_of_patterns():
    expected = ("15:16", "8:16", "4:16", "2:16", "1:16")
    assert make_recipe("sdgf_custom", ladder=CUSTOM_LADDER).ladder == expected
    assert make_recipe("sdgf_custom", ladder=" 15:16, 8:16 ,4:16,2:16, 1:16 ").ladder == expected
    assert make_recipe("sdgf_custom", ladder=list(expected)).ladder == expected


@pytest.mark.parametrize("spelling", ["decay", "Decay", " decay ", "DECAY"])
def test_decay_alias_resolves_to_mdgf_exp(spelling):
    assert canonical_recipe_name(spelling) == "mdgf_exp"
    assert make_recipe(spelling).name == "mdgf_exp"
    assert make_recipe(spelling) == make_recipe("mdgf_exp")


def test_names_are_case_and_space_insensitive():
    assert canonical_recipe_name(" SRSTE ") == "srste"
    assert make_recipe("MDGF_Linear").name == "mdgf_linear"


def test_paper_defaults():
    r = make_recipe()
    assert r.name == "mdgf_exp"  # the paper's pick
    assert make_recipe("srste").srste_lambda == 2e-4  # both public codes
    assert make_recipe("sdgf_geo").geo_k == 8  # 4 rungs in the public code
    assert make_recipe("mdgf_step").max_updates == 16  # Kao et al. force D = 0 from the 16th update
    assert 0.0125 <= r.dense_fraction <= 0.10  # the paper's ablation range
    assert 0.10 <= r.finetune_fraction <= 0.20


def test_make_recipe_from_a_recipe():
    base = make_recipe("srste", srste_lambda=1e-3)
    assert make_recipe(base) is base
    changed = make_recipe(base, dense_fraction=0.1)
    assert (changed.name, changed.srste_lambda, changed.dense_fraction) == ("srste", 1e-3, 0.1)
    assert base.dense_fraction == 0.05  # frozen, not mutated


# ---------------------------------------------------------------------------
# errors: one line, naming the problem
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["foo", "sr_ste", "mdgf", ""])
def test_unknown_recipe_name(name):
    message = one_line_error(lambda: make_recipe(name), "unknown recipe")
    assert repr(name) in message
    assert "mdgf_exp" in message and "decay" in message  # lists the choices, alias included


@pytest.mark.parametrize(
    "options, phrase",
    [
        ({"dense_fraction": -0.1}, "dense_fraction=-0.1"),
        ({"dense_fraction": 1.5}, "dense_fraction=1.5"),
        ({"finetune_fraction": 2.0}, "finetune_fraction=2.0"),
        ({"finetune_fraction": -0.01}, "finetune_fraction=-0.01"),
        ({"dense_fraction": 0.6, "finetune_fraction": 0.5}, "exceeds 1"),
    ],
)
def test_bad_fractions(options, phrase):
    one_line_error(lambda: make_recipe("ste", **options), phrase)


@pytest.mark.parametrize("name", ["mdgf_linear", "mdgf_exp", "mdgf_step"])
@pytest.mark.parametrize("dense, end", [(0.1, 0.1), (0.2, 0.1), (0.05, 0.0)])
def test_decay_end_fraction_must_exceed_dense_fraction(name, dense, end):
    message = one_line_error(
        lambda: make_recipe(name, dense_fraction=dense, decay_end_fraction=end), "must exceed dense_fraction"
    )
    assert f"decay_end_fraction={end}" in message


def test_decay_end_fraction_is_irrelevant_with_beta_and_unknown_without_decay():
    assert make_recipe("mdgf_exp", dense_fraction=0.1, decay_end_fraction=0.1, beta=1e-4).beta == 1e-4
    one_line_error(lambda: make_recipe("ste", dense_fraction=0.1, decay_end_fraction=0.1),
                   "recipe ste has no knob(s) decay_end_fraction")


@pytest.mark.parametrize("k", [0, 3, 6, 12, -4])
def test_geo_k_must_be_a_power_of_two(k):
    one_line_error(lambda: make_recipe("sdgf_geo", geo_k=k), "power of two")


@pytest.mark.parametrize("k", [1, 2, 8, 16, 32])
def test_geo_k_powers_of_two_accepted(k):
    assert make_recipe("sdgf_geo", geo_k=k).geo_k == k


@pytest.mark.parametrize("name", ["sdgf_step", "sdgf_geo", "mdgf_exp", "ste"])
def test_ladder_only_for_custom(name):
    one_line_error(lambda: make_recipe(name, ladder="3:4,2:4"), f"recipe {name} has no knob(s) ladder")


def test_custom_needs_a_ladder():
    one_line_error(lambda: make_recipe("sdgf_custom"), "needs a ladder")


@pytest.mark.parametrize("recipe", ["ste", "mdgf_exp", "sdgf_custom"])
def test_unknown_options(recipe):
    message = one_line_error(lambda: make_recipe(recipe, lamda=2e-4), "has no knob(s) lamda")
    assert "its knobs are dense_fraction, finetune_fraction, mask_interval" in message  # lists the known ones
    one_line_error(lambda: make_recipe(make_recipe("ste"), bogus=1, other=2), "bogus, other")


@pytest.mark.parametrize(
    "name, options, phrase",
    [
        ("mdgf_step", {"mask_interval": 0}, "mask_interval=0"),
        ("srste", {"srste_lambda": -1.0}, "srste_lambda=-1.0"),
        ("mdgf_exp", {"beta": -0.1}, "beta=-0.1"),
        ("mdgf_linear", {"decay_epsilon": 0.0}, "decay_epsilon=0.0"),
        ("mdgf_exp", {"decay_epsilon": 1.0}, "decay_epsilon=1.0"),
        ("mdgf_step", {"step_weight": 0.0}, "step_weight=0.0"),
        ("mdgf_step", {"step_weight": 1.5}, "step_weight=1.5"),
        ("mdgf_step", {"step_interval": 0}, "step_interval=0"),
        ("mdgf_step", {"max_updates": 0}, "max_updates=0"),
    ],
)
def test_other_bad_options(name, options, phrase):
    message = one_line_error(lambda: make_recipe(name, **options), phrase)
    assert message.startswith(f"recipe {name}:")


# ---------------------------------------------------------------------------
# parse_pattern
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, n, m",
    [("1:16", 1, 16), ((1, 16), 1, 16), (" 2:4 ", 2, 4), ([3, 8], 3, 8), ("1 : 128", 1, 128), (NM(2, 4), 2, 4)],
)
def test_parse_pattern(value, n, m):
    pattern = parse_pattern(value)
    assert isinstance(pattern, NM)
    assert (pattern.n, pattern.m) == (n, m)


def test_parse_pattern_passes_nm_through():
    p = NM(1, 8)
    assert parse_pattern(p) is p


def test_nm_value():
    p = parse_pattern("1:16")
    assert p == NM(1, 16)
    assert str(p) == "1:16"
    assert p.slug == "n1m16"
    assert p.density == 1 / 16
    assert hash(p) == hash(NM(1, 16))  # usable as a dict key
    assert NM(1, 16) < NM(2, 4)  # ordered (by n, then m)


@pytest.mark.parametrize("value", ["1:1", "0:4", "5:4"])
def test_parse_pattern_impossible(value):
    one_line_error(lambda: parse_pattern(value), "impossible N:M pattern")


@pytest.mark.parametrize("value", ["a:b", "1:16:2", "", "2/4", "1:", "-1:4", "1.5:4", None, 1.5])
def test_parse_pattern_unreadable(value):
    message = one_line_error(lambda: parse_pattern(value), "cannot read N:M pattern")
    assert "'N:M'" in message


def test_parse_pattern_yaml_base60_integer():
    # YAML 1.1 reads an unquoted 1:16 as 1 * 60 + 16 = 76
    message = one_line_error(lambda: parse_pattern(76), "quote it")
    assert "76" in message and "'1:16'" in message


def test_nm_requires_integers():
    with pytest.raises(TypeError):
        NM(1.0, 4)


@pytest.mark.parametrize("value, dense", [(None, True), ("dense", True), (" None ", True), ("", True), ("1:16", False)])
def test_is_dense(value, dense):
    assert is_dense(value) is dense
