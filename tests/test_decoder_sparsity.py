"""The sparsity engine on decoder LMs: GPT-2 (Conv1D weights stored (in, out), fused c_attn) and Llama (GQA).

Every expectation is computed here, independently of the engine: keep-masks by
`torch.topk` of |w| over groups of M consecutive inputs of the (out, in) matrix
(the stored GPT-2 weight transposed), densities by counting non-zeros, gradients
from a plain copy of the model holding the as-trained weights.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize

import pgfsparse
from conftest import build_gpt2, build_llama
from pgfsparse.sparsity.targets import detect_family

# Tiny models: hidden 32, 2 blocks. GPT-2: c_attn (32, 96) stored (in, out), attn.c_proj (32, 32),
# mlp.c_fc (32, 128), mlp.c_proj (128, 32). Llama: q_proj (32, 32), k_proj/v_proj (16, 32) (2 KV heads
# of 8 for 4 query heads), o_proj (32, 32), gate/up_proj (64, 32), down_proj (32, 64); all (out, in).
HIDDEN = 32


BUILDERS = {"gpt2": build_gpt2, "llama": build_llama}
TOKENS = torch.tensor([[1, 7, 3, 9, 4, 11, 2, 5, 8, 6, 10, 12], [3, 3, 14, 1, 0, 2, 9, 7, 5, 4, 13, 8]])


def top_n_mask(out_in: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the n largest |w| of every m consecutive inputs of an (out, in) matrix (no ties in random weights)."""
    groups = out_in.detach().abs().reshape(out_in.shape[0], -1, m)
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, groups.topk(n, dim=-1).indices, True)
    return keep.reshape(out_in.shape)


def nonzeros_per_input_group(out_in: torch.Tensor, m: int) -> torch.Tensor:
    """(out, in / m): non-zeros in each group of m consecutive inputs of every output unit."""
    return (out_in != 0).reshape(out_in.shape[0], -1, m).sum(-1)


def as_out_in(family: str, stored: torch.Tensor) -> torch.Tensor:
    """The (out, in) matrix of a stored weight: GPT-2's Conv1D stores (in, out)."""
    return stored.t() if family == "gpt2" else stored


# What {"ff": "2:4", "qkv": "1:4"} must give, per weight key suffix: [(output units, N)] with M = 4.
EXPECTED_BLOCKS = {
    "gpt2": {
        "mlp.c_fc.weight": [(slice(0, 128), 2)],
        "mlp.c_proj.weight": [(slice(0, 32), 2)],
        # Q, K, V: three column blocks of the stored (32, 96) weight
        "attn.c_attn.weight": [(slice(0, 32), 1), (slice(32, 64), 1), (slice(64, 96), 1)],
    },
    "llama": {
        "mlp.gate_proj.weight": [(slice(0, 64), 2)],
        "mlp.up_proj.weight": [(slice(0, 64), 2)],
        "mlp.down_proj.weight": [(slice(0, 32), 2)],
        "self_attn.q_proj.weight": [(slice(0, 32), 1)],
        "self_attn.k_proj.weight": [(slice(0, 16), 1)],  # grouped-query attention: half the outputs of q
        "self_attn.v_proj.weight": [(slice(0, 16), 1)],
    },
}


def expected_blocks(family: str, key: str):
    for suffix, blocks in EXPECTED_BLOCKS[family].items():
        if key.endswith("." + suffix):
            return blocks
    return None


# -- detection ------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_built_in_family_is_detected_from_the_model_class(family):
    model = BUILDERS[family]()
    assert detect_family(model) == family
    assert detect_family(model.base_model) == family  # GPT2Model / LlamaModel without the LM head


@pytest.mark.parametrize(
    "config_name, model_name",
    [("MistralConfig", "MistralForCausalLM"), ("Qwen2Config", "Qwen2ForCausalLM"), ("Qwen3Config", "Qwen3ForCausalLM")],
)
def test_llama_layout_relatives_get_the_llama_map_and_every_projection(config_name, model_name):
    import transformers

    torch.manual_seed(0)
    config = getattr(transformers, config_name)(
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=50,
        head_dim=8,
    )
    model = getattr(transformers, model_name)(config)
    assert detect_family(model) == "llama"
    sp = pgfsparse.sparsify(model, {"ff": "2:4", "qkv": "1:4", "attn_out": "2:4"}, recipe="mdgf_exp", total_steps=4)
    assert sp.count() == {"ff": 3, "q": 1, "k": 1, "v": 1, "attn_out": 1}
    assert all(not name.endswith(("norm", "embed_tokens", "lm_head")) for name in sp.layers)


def test_moe_relatives_are_not_mistaken_for_the_llama_layout():
    # Their experts nest as mlp.experts.N.*: no built-in map fits, so detection must say so.
    # Only the class is inspected, so an uninitialised instance is enough.
    from transformers import Qwen2MoeForCausalLM

    assert detect_family(Qwen2MoeForCausalLM.__new__(Qwen2MoeForCausalLM)) is None


# -- patterns on the right weights ----------------------------------------------------------------
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_ff_2_4_and_qkv_1_4_give_their_densities_on_the_right_weights(family):
    model = BUILDERS[family]()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    sp = pgfsparse.sparsify(model, {"ff": "2:4", "qkv": "1:4"}, recipe="mdgf_exp", total_steps=10)
    strict = sp.export_state_dict("strict")
    assert set(strict) == set(original)
    sparse_keys = []
    for key, stored in strict.items():
        blocks = expected_blocks(family, key)
        if blocks is None:  # o_proj / attn c_proj, embeddings, lm_head, norms, biases: untouched
            assert torch.equal(stored, original[key]), key
            continue
        sparse_keys.append(key)
        out_in, latent = as_out_in(family, stored), as_out_in(family, original[key])
        covered = 0
        for outputs, n in blocks:
            block = out_in[outputs]
            covered += block.shape[0]
            assert (block != 0).float().mean().item() == n / 4, (key, outputs)
            assert torch.equal(nonzeros_per_input_group(block, 4), torch.full((block.shape[0], block.shape[1] // 4), n))
            assert torch.equal(block, latent[outputs] * top_n_mask(latent[outputs], n, 4)), (key, outputs)
        assert covered == out_in.shape[0]
    assert len(sparse_keys) == 2 * len(EXPECTED_BLOCKS[family])


def test_gpt2_groups_run_along_dim_0_of_the_stored_in_out_tensor():
    model = build_gpt2()
    sp = pgfsparse.sparsify(model, {"ff": "2:4", "qkv": "1:4"}, recipe="mdgf_exp", total_steps=10)
    strict = sp.export_state_dict("strict")
    c_fc = strict["transformer.h.0.mlp.c_fc.weight"]  # (in 32, out 128)
    assert c_fc.shape == (32, 128)
    # groups of 4 consecutive inputs (rows of the stored tensor) within every output column
    per_group = (c_fc != 0).reshape(8, 4, 128).sum(1)
    assert torch.equal(per_group, torch.full((8, 128), 2))
    c_attn = strict["transformer.h.1.attn.c_attn.weight"]  # (in 32, out 96)
    assert torch.equal((c_attn != 0).reshape(8, 4, 96).sum(1), torch.ones(8, 96, dtype=torch.long))
    # the same tensor grouped along its outputs would not hold the pattern
    assert not torch.equal((c_fc != 0).reshape(32, 32, 4).sum(-1), torch.full((32, 32), 2))


def test_gpt2_layers_say_their_output_dim_and_storage_layout():
    model = build_gpt2()
    sp = pgfsparse.sparsify(model, {"ff": "2:4", "qkv": "1:4"}, recipe="mdgf_exp", total_steps=10)
    layers = {layer["name"]: layer for layer in sp.summary()["layers"]}
    c_attn = layers["transformer.h.0.attn.c_attn"]
    assert c_attn["out_dim"] == 1 and c_attn["shape"] == [32, 96]
    segments = [(s["location"], s["rows"]) for s in c_attn["segments"]]
    assert segments == [("q", [0, 32]), ("k", [32, 64]), ("v", [64, 96])]  # output units: columns
    assert sp.layers["transformer.h.0.mlp.c_fc"].out_dim == 1
    assert sp.layers["transformer.h.0.mlp.c_fc"].layout == "col"  # groups along dim 0 of (in, out)
    llama = pgfsparse.sparsify(build_llama(), "2:4", recipe="mdgf_exp", total_steps=10)
    assert {(p.out_dim, p.layout) for p in llama.layers.values()} == {(0, "row")}
    assert {layer["out_dim"] for layer in llama.summary()["layers"]} == {0}


def test_gpt2_col_layout_keeps_its_meaning_groups_along_outputs():
    model = build_gpt2()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    sp = pgfsparse.sparsify(model, {"ff": "2:4", "qkv": "1:4"}, recipe="mdgf_exp", total_steps=10, layout="col")
    assert sp.layers["transformer.h.0.mlp.c_fc"].layout == "row"  # outputs are the stored tensor's dim 1
    strict = sp.export_state_dict("strict")
    c_fc = strict["transformer.h.0.mlp.c_fc.weight"]  # (in 32, out 128): 4 consecutive outputs per input
    assert torch.equal((c_fc != 0).reshape(32, 32, 4).sum(-1), torch.full((32, 32), 2))
    key = "transformer.h.0.attn.c_attn.weight"
    for block in range(3):  # Q, K, V column blocks, each grouped along its own 32 outputs
        cols = slice(32 * block, 32 * (block + 1))
        latent = original[key][:, cols]
        assert torch.equal(strict[key][:, cols], latent * top_n_mask(latent, 1, 4))


def test_strict_gpt2_forward_equals_a_plain_model_loaded_with_the_export():
    model = build_gpt2()
    sp = pgfsparse.sparsify(model, {"ff": "2:4", "qkv": "1:4"}, recipe="mdgf_exp", total_steps=10)
    plain = build_gpt2(seed=1)
    plain.load_state_dict(sp.export_state_dict("strict"))
    with torch.no_grad(), sp.strict():
        sparse_logits = model(TOKENS).logits
    with torch.no_grad():
        assert torch.allclose(sparse_logits, plain(TOKENS).logits, atol=1e-6)
        assert not torch.allclose(sparse_logits, model(TOKENS).logits, atol=1e-3)  # dense phase: W itself


# -- hand-worked Conv1D ---------------------------------------------------------------------------
def test_conv1d_column_blocks_take_their_own_patterns_by_hand():
    from transformers.pytorch_utils import Conv1D

    # The layer as an (out, in) matrix, one output unit per row; q = outputs 0-1 at 1:4, k = outputs 2-3 at 2:4.
    out_in = torch.tensor(
        [
            [1.0, -3.0, 2.0, 0.5],  # q: keeps -3
            [0.1, 0.2, -0.4, 0.3],  # q: keeps -0.4
            [4.0, -1.0, 0.5, 2.0],  # k: keeps 4, 2
            [-0.7, 0.6, 0.9, -0.1],  # k: keeps 0.9, -0.7
        ]
    )
    keep = torch.tensor([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1], [1, 0, 1, 0]], dtype=torch.bool)
    layer = torch.nn.Sequential()
    layer.add_module("qk", Conv1D(nf=4, nx=4))
    with torch.no_grad():
        layer.qk.weight.copy_(out_in.t())  # stored (in, out)
        layer.qk.bias.copy_(torch.tensor([0.5, -1.0, 0.0, 2.0]))
    sp = pgfsparse.sparsify(
        layer,
        {"q": "1:4", "k": "2:4"},
        recipe="ste",
        total_steps=4,
        dense_fraction=0.0,
        layer_map={"q": [("^qk$", (0, 2))], "k": [("^qk$", (1, 2))]},
    )
    sp.step(0)
    assert torch.equal(sp.layers["qk"].mask, keep.t())
    x = torch.tensor([[1.0, 2.0, -1.0, 3.0]])
    # by hand: q0 = -3*2 + .5, q1 = -0.4*-1 - 1, k0 = 4*1 + 2*3 + 0, k1 = -0.7*1 + 0.9*-1 + 2
    assert torch.allclose(layer(x), torch.tensor([[-5.5, -0.6, 10.0, 0.4]]))


# -- training ------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("recipe, options", [("mdgf_exp", {}), ("srste", {"srste_lambda": 0.5})])
def test_training_steps_send_gradients_to_the_latent_weights_and_end_strictly_1_4(family, recipe, options):
    model = BUILDERS[family]().train()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    sp = pgfsparse.sparsify(
        model, "1:4", recipe=recipe, total_steps=6, dense_fraction=0.0, finetune_fraction=0.0, **options
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(4):
        sp.step(step)
        model(TOKENS, labels=TOKENS).loss.backward()
        if step == 3:
            check_gradients_against_a_plain_model(family, model, sp, options.get("srste_lambda", 0.0))
        optimizer.step()
        optimizer.zero_grad()
    strict = sp.export_state_dict("strict")
    for name in sp.layers:
        stored = strict[f"{name}.weight"]
        out_in = as_out_in(family, stored)
        assert torch.equal(nonzeros_per_input_group(out_in, 4), torch.ones(out_in.shape[0], out_in.shape[1] // 4))
        assert not torch.equal(stored, initial[f"{name}.weight"])
    assert len(sp.layers) == {"gpt2": 4, "llama": 6}[family]


def check_gradients_against_a_plain_model(family, model, sp, srste_lambda):
    """dL/dW = dL/dW~ (straight-through), + lambda (1 - mask) W for SR-STE; dL/dW~ from a plain copy holding W~."""
    plain = BUILDERS[family](seed=1).train()
    plain.load_state_dict(sp.export_state_dict("as_trained"))
    plain(TOKENS, labels=TOKENS).loss.backward()
    for name in sp.layers:
        module = model.get_submodule(name)
        latent = module.parametrizations.weight.original
        reference = plain.get_submodule(name).weight.grad
        pruned = ~as_out_in(family, top_n_mask(as_out_in(family, latent), 1, 4))  # back to the stored layout
        expected = reference + srste_lambda * pruned * latent.detach()
        assert latent.grad is not None
        assert torch.allclose(latent.grad, expected, atol=1e-6, rtol=1e-4), name
        assert latent.grad[pruned].abs().sum() > 0  # pruned weights still learn


def test_diagnostics_read_gpt2_column_blocks():
    model = build_gpt2().train()
    sp = pgfsparse.sparsify(model, {"ff": "2:4", "qkv": "1:4"}, recipe="ste", total_steps=4, dense_fraction=0.0)
    sp.step(0)
    model(TOKENS, labels=TOKENS).loss.backward()
    values = sp.diagnostics()
    for loc in "qkv":
        assert values[f"transformer.h.0.attn.c_attn[{loc}]/density"] == 0.25
        assert values[f"transformer.h.0.attn.c_attn[{loc}]/nonzero"] == 0.25
    assert values["transformer.h.1.mlp.c_fc/density"] == 0.5
    grad = model.transformer.h[0].attn.c_attn.parametrizations.weight.original.grad
    mask = sp.layers["transformer.h.0.attn.c_attn"].mask
    k_grad, k_kept = grad[:, 32:64], mask[:, 32:64]  # K: columns 32-63 of the stored (in, out) weight
    assert values["transformer.h.0.attn.c_attn[k]/grad_norm_kept"] == pytest.approx(k_grad[k_kept].norm().item())
    assert values["transformer.h.0.attn.c_attn[k]/grad_norm_pruned"] == pytest.approx(k_grad[~k_kept].norm().item())


# -- checkpoints ---------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_state_dict_keeps_plain_hf_keys_and_a_plain_state_dict_loads_back(family):
    model = BUILDERS[family]()
    plain_keys = set(model.state_dict())
    sp = pgfsparse.sparsify(model, {"ff": "2:4", "qkv": "1:4"}, recipe="mdgf_exp", total_steps=10)
    assert set(model.state_dict()) == plain_keys
    other = BUILDERS[family](seed=1).state_dict()
    model.load_state_dict(other)
    for name in sp.layers:
        latent = model.get_submodule(name).parametrizations.weight.original
        assert torch.equal(latent, other[f"{name}.weight"])


def test_gpt2_sparsifier_state_round_trips_with_in_out_masks():
    model = build_gpt2().train()
    sp = pgfsparse.sparsify(model, {"ff": "2:4", "qkv": "1:4"}, recipe="mdgf_exp", total_steps=10, dense_fraction=0.0)
    sp.step(2)
    state = sp.state_dict()
    copy = build_gpt2(seed=1)
    resumed = pgfsparse.sparsify(
        copy, {"ff": "2:4", "qkv": "1:4"}, recipe="mdgf_exp", total_steps=10, dense_fraction=0.0
    )
    copy.load_state_dict(model.state_dict())
    resumed.load_state_dict(state)
    for name, param in sp.layers.items():
        assert param.mask.shape == model.get_submodule(name).parametrizations.weight.original.shape
        assert torch.equal(resumed.layers[name].mask, param.mask)
    with torch.no_grad():
        assert torch.allclose(copy(TOKENS).logits, model(TOKENS).logits, atol=1e-6)


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "family, overrides, layer",
    [
        ("gpt2", {"n_embd": 36}, "transformer.h.0.mlp.c_fc"),
        ("llama", {"intermediate_size": 36}, "model.layers.0.mlp.down_proj"),  # gate/up (36, 32) would fit
    ],
)
def test_an_indivisible_shape_is_a_one_line_error_naming_the_layer(family, overrides, layer):
    model = BUILDERS[family](**overrides)
    with pytest.raises(ValueError) as error:
        pgfsparse.sparsify(model, "1:8", recipe="mdgf_exp", total_steps=10)
    text = str(error.value)
    assert "\n" not in text and repr(layer) in text and "1:8" in text and "36" in text
    assert not any(parametrize.is_parametrized(m, "weight") for m in model.modules())  # nothing attached
