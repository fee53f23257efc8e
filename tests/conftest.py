"""Shared fixtures: tiny, offline, seeded timm / Hugging Face models.

timm and transformers are imported inside the builders, so tests that do not
use these models (masks, schedules, recipes) collect without paying for them.
Every builder seeds torch first, so two calls with the same seed give the
same weights.
"""
from __future__ import annotations

import random

import pytest
import torch

SEED = 0

# The tensors in these tests are tiny: intra-op threads only add synchronisation
# cost (seconds per test on a busy 2-core machine instead of milliseconds).
torch.set_num_threads(1)


def seed_everything(seed: int = SEED) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def build_vit(seed: int = SEED, **overrides):
    """timm ViT: 2 blocks, width 32, 2 heads, 4x4 patches of 8 px on 32 px images, 10 classes.

    Per block: attn.qkv (96, 32), attn.proj (32, 32), mlp.fc1 (128, 32), mlp.fc2 (32, 128).
    """
    import timm

    seed_everything(seed)
    kwargs = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10)
    kwargs.update(overrides)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **kwargs).eval()


def build_swin(seed: int = SEED):
    """timm Swin-V2: 2 stages of 1 block (dims 32, 64), window 2, on 32 px images, 10 classes.

    Stage 0: qkv (96, 32), fc1 (128, 32), fc2 (32, 128); stage 1 opens with
    downsample.reduction (64, 128), then qkv (192, 64), fc1 (256, 64), fc2 (64, 256).
    Each block has a relative-position MLP attn.cpb_mlp.{0,2}; head.fc (10, 64).
    """
    import timm

    seed_everything(seed)
    return timm.create_model(
        "swinv2_tiny_window8_256", pretrained=False, img_size=32, window_size=2, embed_dim=32,
        depths=(1, 1), num_heads=(1, 2), num_classes=10,
    ).eval()


def build_t5(seed: int = SEED, gated: bool = False):
    """HF T5 from a config (no download): d_model 32, d_ff 64, 2 + 2 blocks, 2 heads of 16.

    FF: DenseReluDense.wi (64, 32), wo (32, 64); gated: wi_0, wi_1 (64, 32), wo (32, 64).
    Attention q/k/v/o (32, 32) in encoder self-attention, decoder self- and cross-attention.
    """
    from transformers import T5Config, T5ForConditionalGeneration

    seed_everything(seed)
    config = T5Config(
        d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2, d_kv=16, vocab_size=64,
        feed_forward_proj="gated-gelu" if gated else "relu", dropout_rate=0.0,
    )
    return T5ForConditionalGeneration(config).eval()


def build_gpt2(seed: int = SEED, **overrides):
    """HF GPT-2 from a config: 2 blocks, width 32, 2 heads, 16 positions, 50 tokens, no dropout (eval mode).

    Per block (Conv1D weights, stored (in, out)): attn.c_attn (32, 96), attn.c_proj (32, 32), mlp.c_fc (32, 128),
    mlp.c_proj (128, 32); lm_head Linear (50, 32). `overrides`: any GPT2Config field.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    seed_everything(seed)
    config = dict(n_layer=2, n_head=2, n_embd=32, n_positions=16, vocab_size=50, bos_token_id=0, eos_token_id=0)
    config.update(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(GPT2Config(**{**config, **overrides})).eval()


def build_llama(seed: int = SEED, **overrides):
    """HF Llama from a config: 2 layers, width 32, 4 query heads of 8 sharing 2 K/V heads, 50 tokens (eval mode).

    Per layer (out, in): q_proj (32, 32), k_proj and v_proj (16, 32), o_proj (32, 32), gate_proj and up_proj
    (64, 32), down_proj (32, 64). `overrides`: any LlamaConfig field.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    seed_everything(seed)
    config = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    config.update(num_key_value_heads=2, vocab_size=50, bos_token_id=0, eos_token_id=0)
    return LlamaForCausalLM(LlamaConfig(**{**config, **overrides})).eval()


@pytest.fixture
def tiny_vit():
    return build_vit()


@pytest.fixture
def tiny_swin():
    return build_swin()


@pytest.fixture
def tiny_t5():
    return build_t5()


@pytest.fixture
def tiny_t5_gated():
    return build_t5(gated=True)


@pytest.fixture
def make_vit():
    """Factory: make_vit(seed=0, **timm_kwargs) -> a fresh tiny ViT."""
    return build_vit


@pytest.fixture
def make_t5():
    """Factory: make_t5(seed=0, gated=False) -> a fresh tiny T5."""
    return build_t5


def run_pgf_train(cwd, *overrides: str, monkeypatch) -> int:
    """`pgf-train *overrides` in process, in `cwd`; its exit code (Hydra's global state cleared after)."""
    import sys

    from hydra.core.global_hydra import GlobalHydra

    from pgfsparse.cli import pgf_train as entry

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["pgf-train", *overrides])
    try:
        entry.main()
        return 0
    except SystemExit as done:
        return int(done.code or 0)
    finally:
        GlobalHydra.instance().clear()
