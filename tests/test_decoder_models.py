"""model=gpt2 / llama / llama_125m: the architectures the YAML promises, pretrained loading, the config checks.

Models are built from the composed defaults (no download); "pretrained" checkpoints are tiny
models this test saves with save_pretrained, so loading runs offline.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("hydra")

from hydra import compose, initialize_config_module  # noqa: E402

from pgfsparse.config.schema import ModelConfig  # noqa: E402
from pgfsparse.config.validation import check, to_train_config  # noqa: E402
from pgfsparse.errors import ConfigError  # noqa: E402
from pgfsparse.models import build_causal_lm  # noqa: E402

VOCAB = 65  # Tiny Shakespeare's characters


@pytest.fixture(scope="module", autouse=True)
def hydra_conf():
    with initialize_config_module(config_module="pgfsparse.conf", version_base="1.3"):
        yield


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def composed(*overrides: str):
    return to_train_config(compose(config_name="train", overrides=list(overrides)))


def built(model: str, vocab: int = VOCAB):
    torch.manual_seed(0)
    return build_causal_lm(composed(f"model={model}").model, vocab, eos_token_id=0)


def test_gpt2_default_is_nanogpts_cpu_model():
    model = built("gpt2")
    blocks = model.transformer.h
    assert type(model).__name__ == "GPT2LMHeadModel" and len(blocks) == 4
    assert blocks[0].attn.num_heads == 4 and blocks[0].attn.head_dim == 32
    assert model.transformer.wte.weight.shape == (VOCAB, 128)  # the vocabulary given, width 128
    assert model.transformer.wpe.weight.shape == (64, 128)  # context 64
    assert model.lm_head.weight.shape == (VOCAB, 128) and model.lm_head.weight is model.transformer.wte.weight
    assert all(m.p == 0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    # exact GELU (nanoGPT's nn.GELU), not Hugging Face's default tanh approximation
    x = torch.linspace(-4, 4, 101)
    act = blocks[0].mlp.act(x)
    assert torch.allclose(act, 0.5 * x * (1 + torch.erf(x / 2**0.5)), atol=1e-6)
    assert (act - torch.nn.functional.gelu(x, approximate="tanh")).abs().max() > 1e-4
    assert model.config.use_cache is False and model.config._attn_implementation == "sdpa"
    # 4 blocks of 12 d^2 + 13 d, d = 128; 64 positions; the tied embedding; the final LayerNorm
    assert sum(p.numel() for p in model.parameters()) == 4 * (12 * 128**2 + 13 * 128) + 64 * 128 + VOCAB * 128 + 256


def test_llama_default_is_a_small_gqa_llama_whose_inputs_fit_1_32():
    model = built("llama")
    layers = model.model.layers
    assert type(model).__name__ == "LlamaForCausalLM" and len(layers) == 4
    attn, mlp = layers[0].self_attn, layers[0].mlp
    # 4 query heads of 32, 2 key/value heads (grouped-query attention)
    assert attn.q_proj.weight.shape == (128, 128) and attn.o_proj.weight.shape == (128, 128)
    assert attn.k_proj.weight.shape == (64, 128) and attn.v_proj.weight.shape == (64, 128)
    assert (attn.head_dim, model.config.num_attention_heads, model.config.num_key_value_heads) == (32, 4, 2)
    assert mlp.gate_proj.weight.shape == (384, 128) and mlp.down_proj.weight.shape == (128, 384)
    assert not [name for name, _ in model.named_parameters() if "bias" in name]
    assert not [
        name
        for name, p in model.named_parameters()
        if p.dim() == 2 and p.shape[0] == model.config.max_position_embeddings
    ]
    assert model.config.max_position_embeddings >= 64 and model.lm_head.weight.shape == (VOCAB, 128)
    norms = [m for m in model.modules() if type(m).__name__ == "LlamaRMSNorm"]
    assert len(norms) == 2 * 4 + 1 and not [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    # gated SiLU feed-forward, by hand
    x = torch.randn(3, 128)
    with torch.no_grad():
        gate, up = x @ mlp.gate_proj.weight.T, x @ mlp.up_proj.weight.T
        expected = (gate * torch.sigmoid(gate) * up) @ mlp.down_proj.weight.T
        assert torch.allclose(mlp(x), expected, atol=1e-5)
    # RMSNorm, by hand (weight 1 at init)
    norm = layers[0].input_layernorm
    assert torch.allclose(norm(x), x / torch.sqrt((x**2).mean(-1, keepdim=True) + norm.variance_epsilon), atol=1e-5)
    inputs = {m.in_features for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not model.lm_head}
    assert inputs == {128, 384} and all(width % 32 == 0 for width in inputs)
    logits = model(torch.randint(0, VOCAB, (2, 64))).logits
    assert logits.shape == (2, 64, VOCAB)


def test_llama_125m_preset_has_the_documented_parameter_count():
    cfg = composed("model=llama_125m")
    assert cfg.model.tokenizer.vocab_size == 32000 and cfg.data.name == "wikitext"
    with torch.device("meta"):
        model = build_causal_lm(cfg.model, 32000, eos_token_id=0)
    d, layers, kv, ff, vocab = 768, 12, 4 * 64, 2048, 32000
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * ff + 2 * d  # q, o; k, v; gate, up, down; two RMSNorms
    assert sum(p.numel() for p in model.parameters()) == layers * per_layer + d + 2 * vocab * d == 124_668_672
    widths = {m.in_features for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not model.lm_head}
    assert widths == {768, 2048} and all(w % 128 == 0 for w in widths)


def test_decoders_default_to_tiny_shakespeare_and_an_explicit_data_wins():
    assert composed("model=gpt2").data.name == "tiny_shakespeare"
    assert composed("model=llama").data.name == "tiny_shakespeare"
    assert composed("model=gpt2", "data=text", "data.path=x").data.kind == "corpus"
    tokenizer = composed("model=gpt2").model.tokenizer
    assert (tokenizer.kind, tokenizer.vocab_size) == ("auto", 4096)


# -- pretrained checkpoints, saved by the test ------------------------------------------------------
def save_tiny(folder, kind: str, **overrides):
    """A tiny decoder of a Hugging Face class saved with save_pretrained; returns its state dict."""
    import transformers

    configs = {
        "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_layer=1, n_head=2, n_embd=32, n_positions=32)),
        "qwen2": (
            "Qwen2Config",
            "Qwen2ForCausalLM",
            dict(
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=64,
                max_position_embeddings=128,
            ),
        ),
        "mistral": (
            "MistralConfig",
            "MistralForCausalLM",
            dict(
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=64,
                max_position_embeddings=128,
            ),
        ),
        "t5": ("T5Config", "T5ForConditionalGeneration", dict(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16)),
    }
    config_name, model_name, kwargs = configs[kind]
    torch.manual_seed(1)
    config = getattr(transformers, config_name)(vocab_size=50, **{**kwargs, **overrides})
    model = getattr(transformers, model_name)(config)
    model.save_pretrained(folder)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "family, kind, cls",
    [
        ("gpt2", "gpt2", "GPT2LMHeadModel"),
        ("llama", "qwen2", "Qwen2ForCausalLM"),
        ("llama", "mistral", "MistralForCausalLM"),
    ],
)
def test_a_saved_checkpoint_loads_with_its_weights(tmp_path, family, kind, cls):
    saved = save_tiny(tmp_path / kind, kind)
    model = build_causal_lm(
        ModelConfig(family=family, pretrained=str(tmp_path / kind)), 50, eos_token_id=0, block_size=32
    )
    assert type(model).__name__ == cls and model.config._attn_implementation == "sdpa"
    assert model.config.use_cache is False
    state = model.state_dict()
    assert set(state) == set(saved)
    for key, value in saved.items():
        assert state[key].dtype == torch.float32 and torch.equal(state[key], value), key
    # pretrained=true loads model.name
    again = build_causal_lm(ModelConfig(family=family, name=str(tmp_path / kind), pretrained=True), 50, eos_token_id=0)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in saved.items())


def test_a_larger_tokenizer_grows_the_embeddings_keeping_the_trained_rows(tmp_path):
    saved = save_tiny(tmp_path / "gpt2", "gpt2")
    model = build_causal_lm(ModelConfig(family="gpt2", pretrained=str(tmp_path / "gpt2")), 53, eos_token_id=0)
    rows = model.transformer.wte.weight
    assert rows.shape == (53, 32) and torch.equal(rows[:50], saved["transformer.wte.weight"])
    assert model.lm_head.weight.shape == (53, 32)


@pytest.mark.parametrize(
    "family, kind, phrase",
    [
        ("gpt2", "qwen2", "is a Qwen2ForCausalLM checkpoint (model_type qwen2), not a model=gpt2 one: use model=llama"),
        ("llama", "gpt2", "is a GPT2LMHeadModel checkpoint (model_type gpt2), not a model=llama one: use model=gpt2"),
        ("gpt2", "t5", "not a model=gpt2 one: model=gpt2 loads GPT-2 checkpoints, model=llama those of llama, mistral"),
    ],
)
def test_a_checkpoint_of_another_class_is_refused_in_one_line(tmp_path, family, kind, phrase):
    save_tiny(tmp_path / kind, kind)
    with pytest.raises(ConfigError) as info:
        build_causal_lm(ModelConfig(family=family, pretrained=str(tmp_path / kind)), 50, eos_token_id=0)
    assert phrase in str(info.value) and "\n" not in str(info.value)


def test_a_missing_pretrained_directory_fails_in_one_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        build_causal_lm(ModelConfig(family="llama", pretrained=str(tmp_path / "none")), 50, eos_token_id=0)
    assert str(tmp_path / "none") in str(info.value) and "\n" not in str(info.value)


# -- config checks ------------------------------------------------------------------------------------
def test_a_block_longer_than_the_context_is_refused_naming_both(tmp_path):
    with pytest.raises(ConfigError) as info:  # from scratch: before anything is built
        check(composed("model=gpt2", "data.block_size=65"))
    assert str(info.value) == (
        "data.block_size=65 exceeds the model's context (model.kwargs.n_positions=64 tokens): "
        "set data.block_size <= 64, or raise model.kwargs.n_positions"
    )
    check(composed("model=gpt2", "data.block_size=64"))
    with pytest.raises(ConfigError, match=r"model.kwargs.max_position_embeddings=256"):
        check(composed("model=llama", "data.block_size=257"))
    save_tiny(tmp_path / "qwen2", "qwen2")  # pretrained: its config's context, max_position_embeddings 128
    with pytest.raises(ConfigError) as info:
        build_causal_lm(
            ModelConfig(family="llama", pretrained=str(tmp_path / "qwen2")), 50, eos_token_id=0, block_size=129
        )
    assert f"data.block_size=129 exceeds the context of model.pretrained={tmp_path / 'qwen2'}" in str(info.value)
    assert "(max_position_embeddings=128 tokens)" in str(info.value)


@pytest.mark.parametrize(
    "overrides, phrase",
    [
        (
            ["model=gpt2", "+model.kwargs.n_layers=2"],
            "model.kwargs.n_layers is not a field of GPT2Config (did you mean n_layer",
        ),
        (["model=llama", "model.kwargs.num_key_value_heads=3"], "4 attention heads cannot share 3 key/value heads"),
        (
            ["model=llama", "model.kwargs.hidden_size=130"],
            "hidden size (130) is not a multiple of the number of attention",
        ),
        (
            ["model=gpt2", "data=multi30k"],
            "model=gpt2 is a decoder (causal language model) and trains on plain text, but "
            "data=multi30k is translation data: choose data=tiny_shakespeare, wikitext or text",
        ),
        (["model=llama", "data=glue", "data.glue_task=sst2"], "data=glue is glue data: choose data=tiny_shakespeare"),
        (["model=gpt2", "data=cifar10"], "is image data: choose data=tiny_shakespeare, wikitext or text"),
        (["model=t5", "data=cifar10"], "choose data=multi30k, wmt16, glue, c4, tiny_shakespeare, wikitext or text"),
        (["model=vit", "data=tiny_shakespeare"], "choose a text model (model=t5, gpt2 or llama)"),
    ],
)
def test_bad_decoder_configs_fail_in_one_line(overrides, phrase):
    with pytest.raises(ConfigError) as info:
        check(composed(*overrides))
    assert phrase in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=gpt2"],
        ["model=llama", "data=text", "data.path=."],
        ["model=gpt2", "data.kind=span_corruption"],
        ["model=t5", "data=tiny_shakespeare"],
        ["model=t5", "data=glue", "data.glue_task=rte"],
        ["model=t5"],
    ],
)
def test_decoders_take_corpora_and_t5_takes_every_text_kind(overrides):
    check(composed(*overrides))
