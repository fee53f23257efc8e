"""Attaching the sparsifier: which layers, which row blocks, errors, conv layers,
checkpoints (plain keys, export, remove) and a light `import pgfsparse`.

Expected layer sets are counted by hand from the tiny models' structure (see
conftest.py for their shapes).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import pgfsparse


# -- independent references ------------------------------------------------------------
def ref_row_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the n largest |w| of each group of m consecutive entries of each row (topk; no ties in random data)."""
    rows, cols = weight.shape
    groups = weight.detach().abs().reshape(rows, cols // m, m)
    index = groups.topk(n, dim=-1).indices
    return torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, index, True).reshape(rows, cols)


def kept_per_group(mask_rows: torch.Tensor, m: int) -> torch.Tensor:
    return mask_rows.reshape(mask_rows.shape[0], -1, m).sum(-1)


def parametrized_names(model: nn.Module):
    return {name for name, module in model.named_modules() if parametrize.is_parametrized(module, "weight")}


def pw(model, name):
    """The MaskedWeight parametrization of a layer."""
    return model.get_submodule(name).parametrizations.weight[0]


def latent(model, name):
    return model.get_submodule(name).parametrizations.weight.original


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and text
    return text


# -- timm ViT ---------------------------------------------------------------------------
VIT_FF = {f"blocks.{i}.mlp.{fc}" for i in range(2) for fc in ("fc1", "fc2")}
VIT_QKV = {f"blocks.{i}.attn.qkv" for i in range(2)}


def test_vit_ff_and_qk_touch_exactly_the_expected_layers(tiny_vit):
    model = tiny_vit
    sp = pgfsparse.sparsify(model, pattern={"ff": "1:4", "qk": "1:8"}, recipe="ste", total_steps=10, dense_fraction=0.0)
    assert parametrized_names(model) == VIT_FF | VIT_QKV
    assert set(sp.layers) == VIT_FF | VIT_QKV
    assert sp.count() == {"ff": 4, "q": 2, "k": 2}
    for untouched in ("patch_embed.proj", "head", "blocks.0.attn.proj", "blocks.1.attn.proj", "blocks.0.norm1", "norm"):
        module = model.get_submodule(untouched)
        assert not parametrize.is_parametrized(module)
        assert isinstance(module.weight, nn.Parameter)
    sp.step(0)
    for name in VIT_FF:
        mask = pw(model, name).mask
        assert torch.equal(kept_per_group(mask, 4), torch.ones_like(kept_per_group(mask, 4)))
        assert torch.equal(mask, ref_row_mask(latent(model, name), 1, 4))
    for name in VIT_QKV:
        mask, w = pw(model, name).mask, latent(model, name)
        assert mask.shape == (96, 32)
        # q rows 0:32 and k rows 32:64 each have their own 1:8 mask; v rows 64:96 stay dense
        for rows in (slice(0, 32), slice(32, 64)):
            assert torch.equal(kept_per_group(mask[rows], 8), torch.ones(32, 4, dtype=torch.long))
            assert torch.equal(mask[rows], ref_row_mask(w[rows], 1, 8))
        assert mask[64:].all()
        effective = model.get_submodule(name).weight
        assert torch.equal(effective[64:], w[64:])
        assert torch.equal(effective[:64], w[:64] * mask[:64])
    segments = {s["location"]: (s["rows"], s["target"]) for s in sp.summary()["layers"][0]["segments"]}
    assert sp.summary()["layers"][0]["name"] == "blocks.0.attn.qkv"
    assert segments == {"q": ([0, 32], "1:8"), "k": ([32, 64], "1:8")}
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_vit_default_targets_ff_only(tiny_vit):
    sp = pgfsparse.sparsify(tiny_vit, pattern="2:4", recipe="srste", total_steps=10)
    assert parametrized_names(tiny_vit) == VIT_FF
    assert sp.count() == {"ff": 4}


def test_pattern_specificity_v_beats_qkv(tiny_vit):
    model = tiny_vit
    sp = pgfsparse.sparsify(model, pattern={"qkv": "1:4", "v": "1:8"}, recipe="ste", total_steps=10, dense_fraction=0.0)
    assert parametrized_names(model) == VIT_QKV  # no FF entry: FF stays dense
    assert sp.count() == {"q": 2, "k": 2, "v": 2}
    sp.step(0)
    for name in VIT_QKV:
        mask, w = pw(model, name).mask, latent(model, name)
        assert torch.equal(mask[:32], ref_row_mask(w[:32], 1, 4))
        assert torch.equal(mask[32:64], ref_row_mask(w[32:64], 1, 4))
        assert torch.equal(mask[64:], ref_row_mask(w[64:], 1, 8))
        assert mask[64:].sum() == 32 * 32 // 8
    targets = {s["location"]: s["target"] for s in sp.summary()["layers"][0]["segments"]}
    assert targets == {"q": "1:4", "k": "1:4", "v": "1:8"}


def test_pattern_specificity_dense_q_beats_qk(tiny_vit):
    model = tiny_vit
    sp = pgfsparse.sparsify(model, pattern={"qk": "1:4", "q": "dense"}, recipe="ste", total_steps=10, dense_fraction=0.0)
    assert sp.count() == {"k": 2}
    sp.step(0)
    for name in VIT_QKV:
        mask, w = pw(model, name).mask, latent(model, name)
        assert mask[:32].all() and mask[64:].all()
        assert torch.equal(mask[32:64], ref_row_mask(w[32:64], 1, 4))
        assert torch.equal(model.get_submodule(name).weight[:32], w[:32])


# -- timm Swin-V2 -------------------------------------------------------------------------
SWIN_FF = {f"layers.{i}.blocks.0.mlp.{fc}" for i in range(2) for fc in ("fc1", "fc2")}
SWIN_QKV = {f"layers.{i}.blocks.0.attn.qkv" for i in range(2)}


def test_swin_ff_and_qkv_touch_exactly_the_expected_layers(tiny_swin):
    model = tiny_swin
    sp = pgfsparse.sparsify(model, pattern={"ff": "1:4", "qkv": "1:8"}, recipe="mdgf_exp", total_steps=10,
                            dense_fraction=0.0)
    assert parametrized_names(model) == SWIN_FF | SWIN_QKV
    assert sp.count() == {"ff": 4, "q": 2, "k": 2, "v": 2}
    for untouched in ("layers.0.blocks.0.attn.cpb_mlp.0", "layers.0.blocks.0.attn.cpb_mlp.2",
                      "layers.1.blocks.0.attn.cpb_mlp.0", "layers.1.downsample.reduction", "head.fc",
                      "patch_embed.proj", "layers.0.blocks.0.attn.proj", "layers.1.blocks.0.attn.proj"):
        assert not parametrize.is_parametrized(model.get_submodule(untouched)), untouched
    sp.step(0)
    for name in SWIN_FF:
        mask = pw(model, name).mask
        assert torch.equal(mask, ref_row_mask(latent(model, name), 1, 4))
    for stage, name in enumerate(sorted(SWIN_QKV)):
        dim = 32 * 2 ** stage
        mask, w = pw(model, name).mask, latent(model, name)
        assert mask.shape == (3 * dim, dim)
        for block in range(3):
            rows = slice(block * dim, (block + 1) * dim)
            assert torch.equal(mask[rows], ref_row_mask(w[rows], 1, 8))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# -- Hugging Face T5 ------------------------------------------------------------------------
def t5_layers(gated: bool):
    ff_names = ("wi_0", "wi_1", "wo") if gated else ("wi", "wo")
    ff = {f"encoder.block.{b}.layer.1.DenseReluDense.{n}" for b in range(2) for n in ff_names}
    ff |= {f"decoder.block.{b}.layer.2.DenseReluDense.{n}" for b in range(2) for n in ff_names}
    attn = {f"encoder.block.{b}.layer.0.SelfAttention" for b in range(2)}
    attn |= {f"decoder.block.{b}.layer.0.SelfAttention" for b in range(2)}
    attn |= {f"decoder.block.{b}.layer.1.EncDecAttention" for b in range(2)}
    return ff, attn


@pytest.mark.parametrize("gated", [False, True])
def test_t5_ff_and_qkv_touch_exactly_the_expected_layers(gated, make_t5):
    model = make_t5(gated=gated)
    ff, attn = t5_layers(gated)
    assert len(ff) == (12 if gated else 8) and len(attn) == 6
    qkv = {f"{a}.{p}" for a in attn for p in "qkv"}
    sp = pgfsparse.sparsify(model, pattern={"ff": "1:4", "qkv": "1:8"}, recipe="ste", total_steps=10, dense_fraction=0.0)
    assert parametrized_names(model) == ff | qkv
    assert sp.count() == {"ff": len(ff), "q": 6, "k": 6, "v": 6}
    untouched = {f"{a}.o" for a in attn} | {"shared", "encoder.embed_tokens", "decoder.embed_tokens", "lm_head",
                                              "encoder.block.0.layer.0.SelfAttention.relative_attention_bias"}
    for name in untouched:
        assert not parametrize.is_parametrized(model.get_submodule(name)), name
    sp.step(0)
    for name in ff:
        assert torch.equal(pw(model, name).mask, ref_row_mask(latent(model, name), 1, 4))
    for name in qkv:
        assert torch.equal(pw(model, name).mask, ref_row_mask(latent(model, name), 1, 8))
    out = model(input_ids=torch.randint(0, 64, (2, 5)), decoder_input_ids=torch.randint(0, 64, (2, 3)))
    assert out.logits.shape == (2, 3, 64)


def test_t5_default_is_ff_only(tiny_t5):
    sp = pgfsparse.sparsify(tiny_t5, pattern="1:8", recipe="sdgf_step", total_steps=10)
    assert parametrized_names(tiny_t5) == t5_layers(False)[0]
    assert sp.count() == {"ff": 8}


# -- user layer maps -------------------------------------------------------------------------
def test_user_layer_map_on_a_sequential():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    sp = pgfsparse.sparsify(model, pattern="2:4", recipe="ste", total_steps=4, layer_map={"ff": [r"^0$", r"^2$"]},
                            dense_fraction=0.0)
    assert parametrized_names(model) == {"0", "2"}
    sp.step(0)
    for name in ("0", "2"):
        mask = pw(model, name).mask
        assert torch.equal(mask, ref_row_mask(latent(model, name), 2, 4))
        assert torch.equal(kept_per_group(mask, 4), torch.full_like(kept_per_group(mask, 4), 2))
    assert model(torch.randn(3, 8)).shape == (3, 2)


class Fused(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.qkv = nn.Linear(8, 24)
        self.out = nn.Linear(8, 8)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.out(q * k + v)


def test_user_layer_map_with_row_blocks_and_a_custom_location():
    model = Fused()
    layer_map = {
        "q": [(r"^qkv$", (0, 3))],
        "v": [(r"^qkv$", (2, 3))],
        "proj": r"^out$",  # a user's own location name, given as a bare string
    }
    sp = pgfsparse.sparsify(model, pattern={"q": "1:4", "v": "2:8", "proj": "1:2"}, recipe="ste", total_steps=4,
                            layer_map=layer_map, dense_fraction=0.0)
    assert parametrized_names(model) == {"qkv", "out"}
    sp.step(0)
    mask, w = pw(model, "qkv").mask, latent(model, "qkv")
    assert torch.equal(mask[:8], ref_row_mask(w[:8], 1, 4))
    assert mask[8:16].all()  # k: not asked for
    assert torch.equal(mask[16:], ref_row_mask(w[16:], 2, 8))
    assert torch.equal(pw(model, "out").mask, ref_row_mask(latent(model, "out"), 1, 2))
    assert model(torch.randn(2, 8)).shape == (2, 8)


def test_model_without_built_in_map_needs_a_layer_map():
    model = nn.Sequential(nn.Linear(8, 8))
    with pytest.raises(ValueError) as error:
        pgfsparse.sparsify(model, pattern="1:4", recipe="ste", total_steps=4)
    assert "layer_map" in one_line(error) and "Sequential" in one_line(error)
    assert not parametrized_names(model)


def test_location_matching_nothing_raises():
    model = nn.Sequential(nn.Linear(8, 8))
    with pytest.raises(ValueError) as error:
        pgfsparse.sparsify(model, pattern="1:4", recipe="ste", total_steps=4, layer_map={"ff": [r"^fc\d$"]})
    assert "ff" in one_line(error) and "matches" in one_line(error)
    assert not parametrized_names(model)


def test_location_missing_from_the_map_raises(tiny_vit):
    with pytest.raises(ValueError) as error:
        pgfsparse.sparsify(tiny_vit, pattern={"ff": "1:4", "q": "1:4"}, recipe="ste", total_steps=4,
                           layer_map={"ff": [r"mlp\.fc1$"]})
    assert "q" in one_line(error)
    with pytest.raises(ValueError) as error:
        pgfsparse.sparsify(tiny_vit, pattern="1:4", recipe="ste", total_steps=4, layer_map="resnet")
    one_line(error)
    assert not parametrized_names(tiny_vit)


def test_unmatched_group_location_on_vit_raises_for_a_partial_user_map(tiny_vit):
    # 'qk' expands to q and k; the map only has q -> k is missing
    with pytest.raises(ValueError) as error:
        pgfsparse.sparsify(tiny_vit, pattern={"qk": "1:4"}, recipe="ste", total_steps=4,
                           layer_map={"q": [(r"attn\.qkv$", (0, 3))]})
    assert "k" in one_line(error)


# -- indivisible layers --------------------------------------------------------------------
def two_layers():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 6), nn.Linear(6, 4))  # "2" has 6 inputs


@pytest.mark.parametrize("recipe", ["ste", "sdgf_step"])
def test_indivisible_layer_raises_naming_layer_shape_and_pattern(recipe):
    model = two_layers()
    with pytest.raises(ValueError) as error:
        pgfsparse.sparsify(model, pattern="1:4", recipe=recipe, total_steps=4, layer_map={"ff": [r"^\d$"]})
    text = one_line(error)
    assert "'2'" in text and "(4, 6)" in text and "1:4" in text
    assert "'0'" not in text


def test_indivisible_layer_is_skipped_with_allow_skip():
    model = two_layers()
    with pytest.warns(UserWarning, match=r"'2'.*\(4, 6\).*1:4"):
        sp = pgfsparse.sparsify(model, pattern="1:4", recipe="ste", total_steps=4, layer_map={"ff": [r"^\d$"]},
                                allow_skip=True, dense_fraction=0.0)
    assert parametrized_names(model) == {"0", "1"}
    skipped = sp.summary()["skipped"]
    assert [s["layer"] for s in skipped] == ["2"]
    assert "(4, 6)" in skipped[0]["reason"] and "1:4" in skipped[0]["reason"]
    assert [layer["name"] for layer in sp.summary()["layers"]] == ["0", "1"]
    dense_weight = model[2].weight.detach().clone()
    sp.step(0)
    assert isinstance(model[2].weight, nn.Parameter) and torch.equal(model[2].weight, dense_weight)
    assert torch.equal(pw(model, "0").mask, ref_row_mask(latent(model, "0"), 1, 4))
    assert model(torch.randn(2, 8)).shape == (2, 4)


# -- conv layers -----------------------------------------------------------------------------
def ref_conv_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Groups over (kh, kw, in) in channels-last order, by explicit loops."""
    out, cin, kh, kw = weight.shape
    mask = torch.zeros(weight.shape, dtype=torch.bool)
    for o in range(out):
        order = [(c, i, j) for i in range(kh) for j in range(kw) for c in range(cin)]  # channel fastest
        for g in range(0, len(order), m):
            group = order[g:g + m]
            ranked = sorted(group, key=lambda idx: -abs(weight[o][idx].item()))
            for idx in ranked[:n]:
                mask[o][idx] = True
    return mask


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 2)  # weight (4, 3, 2, 2): group dim 12, groups cross kernel positions
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)  # (8, 4, 3, 3): group dim 36
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        x = self.conv2(torch.relu(self.conv1(x)))
        return self.fc(x.mean(dim=(2, 3)))


def test_conv_layers_via_a_user_map_use_the_conv_layout():
    model = ConvNet()
    sp = pgfsparse.sparsify(model, pattern="1:4", recipe="mdgf_exp", total_steps=10,
                            layer_map={"ff": [r"^conv\d$", r"^fc$"]}, dense_fraction=0.0, finetune_fraction=0.5)
    assert parametrized_names(model) == {"conv1", "conv2", "fc"}
    assert pw(model, "conv1").layout == "conv" and pw(model, "conv2").layout == "conv"
    assert pw(model, "fc").layout == "row"
    sp.step(9)  # fine-tune: binary masks
    for name in ("conv1", "conv2"):
        w = latent(model, name)
        want = ref_conv_mask(w, 1, 4)
        assert torch.equal(pw(model, name).mask, want)
        assert want.sum() == w.numel() // 4
        assert torch.equal(model.get_submodule(name).weight, w * want)
    assert model(torch.randn(2, 3, 6, 6)).shape == (2, 2)


def test_conv_group_dimension_must_divide():
    model = nn.Sequential(nn.Conv2d(3, 4, 1))  # group dim 3
    with pytest.raises(ValueError) as error:
        pgfsparse.sparsify(model, pattern="1:4", recipe="ste", total_steps=4, layer_map={"ff": r"^0$"})
    assert "(4, 3, 1, 1)" in one_line(error)


# -- checkpoints -------------------------------------------------------------------------------
def assert_state_dicts_equal(a, b):
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


VIT_PATTERN = {"ff": "1:4", "qk": "1:8"}


def sparse_vit(make_vit, seed, recipe="mdgf_exp", step=5):
    model = make_vit(seed=seed)
    sp = pgfsparse.sparsify(model, pattern=VIT_PATTERN, recipe=recipe, total_steps=10, dense_fraction=0.2, beta=0.3)
    sp.step(step)
    return model, sp


def test_vit_state_dict_round_trip_with_plain_keys(make_vit):
    plain = make_vit(seed=0)
    plain_state = plain.state_dict()
    model, sp = sparse_vit(make_vit, seed=1)
    sparse_state = model.state_dict()
    assert set(sparse_state) == set(plain_state)
    assert not any("parametrizations" in key for key in sparse_state)
    # plain -> sparsified
    result = model.load_state_dict(plain_state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert_state_dicts_equal(model.state_dict(), plain_state)
    for name in VIT_FF | VIT_QKV:
        assert torch.equal(latent(model, name), plain_state[f"{name}.weight"])
    # sparsified -> plain: the dense latent weights travel
    other, _ = sparse_vit(make_vit, seed=2)
    target = make_vit(seed=3)
    target.load_state_dict(other.state_dict(), strict=True)
    for name in VIT_FF | VIT_QKV:
        assert torch.equal(target.get_submodule(name).weight, latent(other, name))
    assert_state_dicts_equal(target.state_dict(), other.state_dict())


@pytest.mark.parametrize("gated", [False, True])
def test_t5_state_dict_round_trip_with_plain_keys(gated, make_t5):
    plain = make_t5(seed=0, gated=gated)
    model = make_t5(seed=1, gated=gated)
    sp = pgfsparse.sparsify(model, pattern={"ff": "1:4", "qkv": "1:8"}, recipe="ste", total_steps=4, dense_fraction=0.0)
    sp.step(0)
    assert set(model.state_dict()) == set(plain.state_dict())
    model.load_state_dict(plain.state_dict(), strict=True)
    assert_state_dicts_equal(model.state_dict(), plain.state_dict())
    back = make_t5(seed=2, gated=gated)
    back.load_state_dict(model.state_dict(), strict=True)
    assert_state_dicts_equal(back.state_dict(), plain.state_dict())


def expected_strict(model, name):
    """latent * target masks of its row blocks (ViT with VIT_PATTERN), by the reference."""
    w = latent(model, name).detach()
    if name in VIT_FF:
        return w * ref_row_mask(w, 1, 4)
    mask = torch.ones_like(w, dtype=torch.bool)
    mask[:64] = ref_row_mask(w[:64], 1, 8)
    return w * mask


def test_export_state_dict_strict_and_latent(make_vit):
    model, sp = sparse_vit(make_vit, seed=0, step=5)  # D > 0: the as-trained weights are dense
    live = model.state_dict()
    plain_keys = set(make_vit(seed=0).state_dict())
    strict = sp.export_state_dict("strict")
    assert set(strict) == plain_keys
    for key, value in strict.items():
        name = key[: -len(".weight")]
        if name in sp.layers:
            assert torch.equal(value, expected_strict(model, name)), key
            assert value.grad_fn is None and not value.requires_grad
        else:
            assert torch.equal(value, live[key]), key
    for name in VIT_FF:
        nz = (strict[f"{name}.weight"] != 0)
        assert torch.equal(kept_per_group(nz, 4), torch.ones_like(kept_per_group(nz, 4)))
    latent_state = sp.export_state_dict("latent")
    assert_state_dicts_equal(latent_state, live)
    # exporting changes nothing in the model
    assert_state_dicts_equal(model.state_dict(), live)
    loaded = make_vit(seed=5)
    loaded.load_state_dict(strict, strict=True)


def test_remove_strict_leaves_plain_n_m_weights(make_vit):
    model, sp = sparse_vit(make_vit, seed=0, step=5)
    want = {name: expected_strict(model, name) for name in sp.layers}
    returned = sp.remove("strict")
    assert returned is model
    assert parametrized_names(model) == set()
    assert not any(hasattr(model.get_submodule(name), "parametrizations") for name in want)
    for name, value in want.items():
        weight = model.get_submodule(name).weight
        assert type(weight) is nn.Parameter
        assert torch.equal(weight.detach(), value)
    for name in VIT_FF:
        zeros = model.get_submodule(name).weight.detach() == 0
        assert torch.equal(kept_per_group(zeros, 4), torch.full_like(kept_per_group(zeros, 4), 3))
    for name in VIT_QKV:
        zeros = model.get_submodule(name).weight.detach() == 0
        assert torch.equal(kept_per_group(zeros[:64], 8), torch.full_like(kept_per_group(zeros[:64], 8), 7))
        assert not zeros[64:].any()
    plain = make_vit(seed=1)
    plain.load_state_dict(model.state_dict(), strict=True)
    assert set(model.state_dict()) == set(plain.state_dict())
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_remove_latent_restores_dense_weights(make_vit):
    model, sp = sparse_vit(make_vit, seed=0, step=9)  # fine-tune: as trained is strictly sparse
    dense = {name: latent(model, name).detach().clone() for name in sp.layers}
    assert not torch.equal(model.blocks[0].mlp.fc1.weight, dense["blocks.0.mlp.fc1"])
    sp.remove("latent")
    assert parametrized_names(model) == set()
    for name, value in dense.items():
        weight = model.get_submodule(name).weight
        assert type(weight) is nn.Parameter and torch.equal(weight.detach(), value)


# -- import weight -------------------------------------------------------------------------------
def test_import_pgfsparse_imports_only_torch():
    code = textwrap.dedent(
        """
        import sys
        import torch
        before = {name.split('.')[0] for name in sys.modules}
        import pgfsparse
        after = {name.split('.')[0] for name in sys.modules}
        new = sorted(after - before - set(sys.stdlib_module_names))
        print(','.join(new))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    new = result.stdout.strip().split(",")
    assert new == ["pgfsparse"], new
    for heavy in ("timm", "transformers", "hydra", "wandb", "omegaconf", "datasets", "accelerate"):
        assert heavy not in new


# -- more attach rules ------------------------------------------------------------------------------
def test_overlapping_row_blocks_of_one_layer_are_refused():
    # ff claims all 4 rows, q rows 0:2 of the same weight: one of the two patterns would silently lose
    model = nn.Sequential(nn.Linear(8, 4))
    with pytest.raises(ValueError) as error:
        pgfsparse.sparsify(model, pattern={"ff": "1:4", "q": "2:4"}, recipe="ste", total_steps=4,
                           layer_map={"ff": r"^0$", "q": [(r"^0$", (0, 2))]})
    text = one_line(error)
    assert "'0'" in text and "overlap" in text
    assert not parametrized_names(model)


def test_attaching_twice_is_refused():
    model = nn.Sequential(nn.Linear(8, 4))
    pgfsparse.sparsify(model, pattern="1:4", recipe="ste", total_steps=4, layer_map={"ff": r"^0$"})
    with pytest.raises(ValueError) as error:
        pgfsparse.sparsify(model, pattern="1:4", recipe="srste", total_steps=4, layer_map={"ff": r"^0$"})
    assert "'0'" in one_line(error)


def test_col_layout_groups_along_outputs():
    model = nn.Sequential(nn.Linear(4, 4))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([
            [1.0, -5.0, 0.5, 2.0],
            [-3.0, 4.0, 0.25, -1.0],
            [0.1, 0.2, -7.0, 6.0],
            [0.3, -0.4, 8.0, 0.5],
        ]))
    sp = pgfsparse.sparsify(model, pattern="1:2", recipe="ste", total_steps=4, layer_map={"ff": r"^0$"},
                            layout="col", dense_fraction=0.0)
    sp.step(0)
    # 1:2 over row pairs (0, 1) and (2, 3) of each column, worked by hand
    want = torch.tensor([[0, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 1], [1, 1, 1, 0]], dtype=torch.bool)
    assert torch.equal(pw(model, "0").mask, want)
    assert torch.equal(model[0].weight, latent(model, "0") * want)


def test_parameter_objects_survive_attach_and_remove():
    # an optimizer built before sparsify() (or kept after remove()) holds the very same Parameter
    model = nn.Sequential(nn.Linear(8, 4))
    weight = model[0].weight
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sp = pgfsparse.sparsify(model, pattern="1:4", recipe="ste", total_steps=4, layer_map={"ff": r"^0$"},
                            dense_fraction=0.0)
    sp.step(0)
    assert latent(model, "0") is weight
    before = weight.detach().clone()
    model(torch.ones(1, 8)).sum().backward()
    opt.step()
    assert torch.equal(weight.detach(), before - 1.0)  # straight-through: every entry moved by dL/dW~ = 1
    sp.remove("strict")
    assert model[0].weight is weight
    assert torch.equal(weight.detach(), (before - 1.0) * ref_row_mask(before - 1.0, 1, 4))


def test_a_failed_sparsify_leaves_the_model_untouched():
    model = nn.Sequential(nn.Linear(16, 4), nn.Linear(12, 4))  # the second cannot take 1:8
    with pytest.raises(ValueError, match="not a multiple of 8"):
        pgfsparse.sparsify(model, "1:8", "ste", total_steps=4, layer_map={"ff": [r"^\d$"]})
    assert not any(hasattr(layer, "parametrizations") for layer in model)
