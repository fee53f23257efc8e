"""Decoder language models: Hugging Face GPT-2 and Llama-layout causal LMs, from a config or pretrained.

`model=gpt2` is a `GPT2LMHeadModel`; `model=llama` a `LlamaForCausalLM` from a config, or
any checkpoint with Llama's module layout (`model.layers.N.self_attn.{q,k,v,o}_proj`,
`mlp.{gate,up,down}_proj`): Llama, Mistral, Qwen2, Qwen3. The built-in layer maps name
those modules, so a checkpoint of another layout is refused before its weights are read.

Attention runs PyTorch's scaled_dot_product_attention (`sdpa`): on a CPU it is faster than
the eager matmuls and takes less memory, and pgfsparse's FLOP counter charges QK^T and AV
from the attention module's shapes, so the count is the same under either implementation
(torch's own FlopCounterMode sees no FLOPs in CPU SDPA: compare against it with
`attn_implementation="eager"`).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from torch import nn

from pgfsparse.config.schema import DECODER_FAMILIES, ModelConfig
from pgfsparse.errors import ConfigError, first_line
from pgfsparse.models.hugging_face import config_from_kwargs, pretrained_source, unloadable
from pgfsparse.sparsity.targets import LLAMA_LAYOUT

__all__ = ["ATTENTION", "LLAMA_LAYOUT", "build_causal_lm", "check_block_size", "pretrained_source", "scratch_config"]

ATTENTION = "sdpa"  # the attention implementation runs use (see the module docstring)
MODEL_TYPES: Dict[str, Tuple[str, ...]] = {"gpt2": ("gpt2",), "llama": LLAMA_LAYOUT}
CONTEXT_KEY = {"gpt2": "n_positions", "llama": "max_position_embeddings"}  # the context length's config field


def build_causal_lm(
    cfg: ModelConfig,
    vocab_size: int,
    *,
    eos_token_id: Optional[int],
    pad_token_id: Optional[int] = None,
    block_size: Optional[int] = None,
    attn_implementation: str = ATTENTION,
) -> nn.Module:
    """A `GPT2LMHeadModel` / Llama-layout `*ForCausalLM` with `vocab_size` embedding rows, ready to train.

    From scratch: the family's config from `model.kwargs`, with this vocabulary, and BOS = EOS
    (documents are joined with EOS, which so also opens each one, as in GPT-2). Pretrained
    (`model.pretrained` = hub id, local directory, or true for `model.name`): its own weights
    and special ids, in fp32; its embeddings grow if the tokenizer has more tokens.
    `block_size` (data.block_size) is refused when longer than the model's context.
    """
    if cfg.family not in DECODER_FAMILIES:
        raise ConfigError(f"model.family={cfg.family!r} is not a decoder: choose {' or '.join(DECODER_FAMILIES)}")
    source = pretrained_source(cfg)
    model: Any  # a transformers PreTrainedModel (its config and methods are untyped to mypy)
    if source is None:
        config = scratch_config(cfg, vocab_size, eos_token_id=eos_token_id, pad_token_id=pad_token_id)
        if block_size is not None:
            check_block_size(config, block_size, cfg)
        model = _from_config(cfg, config)
    else:
        model = _from_pretrained(cfg, source, block_size, attn_implementation)
        if vocab_size > model.config.vocab_size:
            model.resize_token_embeddings(vocab_size)
        if model.config.pad_token_id is None and pad_token_id is not None:
            model.config.pad_token_id = pad_token_id
    model.config.use_cache = False  # training never reuses keys/values; generation turns it back on
    model.set_attn_implementation(attn_implementation)
    return model


def scratch_config(
    cfg: ModelConfig, vocab_size: int, *, eos_token_id: Optional[int], pad_token_id: Optional[int] = None
):
    """The `GPT2Config` / `LlamaConfig` of `model.kwargs` with this vocabulary and these special ids."""
    from transformers import GPT2Config, LlamaConfig

    fixed = {
        "vocab_size": vocab_size,
        "bos_token_id": eos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
    }
    config_class = GPT2Config if cfg.family == "gpt2" else LlamaConfig
    config = config_from_kwargs(config_class, cfg.kwargs, fixed)
    if cfg.family == "llama" and config.num_attention_heads % config.num_key_value_heads:
        raise ConfigError(
            f"model.kwargs: {config.num_attention_heads} attention heads cannot share "
            f"{config.num_key_value_heads} key/value heads (grouped-query attention needs num_attention_heads "
            "to be a multiple of num_key_value_heads)"
        )
    return config


def check_block_size(config, block_size: int, cfg: ModelConfig) -> None:
    """data.block_size must fit the model's context (learned GPT-2 positions; Llama's trained RoPE range)."""
    context = int(config.max_position_embeddings)  # GPT2Config maps this name to n_positions
    if block_size <= context:
        return
    key = CONTEXT_KEY.get(cfg.family, "max_position_embeddings")
    source = pretrained_source(cfg)
    if source is not None:
        raise ConfigError(
            f"data.block_size={block_size} exceeds the context of model.pretrained={source} "
            f"({key}={context} tokens): set data.block_size <= {context}"
        )
    raise ConfigError(
        f"data.block_size={block_size} exceeds the model's context (model.kwargs.{key}={context} tokens): "
        f"set data.block_size <= {context}, or raise model.kwargs.{key}"
    )


def _from_config(cfg: ModelConfig, config) -> Any:
    from transformers import GPT2LMHeadModel, LlamaForCausalLM

    model_class = GPT2LMHeadModel if cfg.family == "gpt2" else LlamaForCausalLM
    try:
        return model_class(config)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(
            f"model.kwargs={dict(cfg.kwargs)} cannot build {model_class.__name__}: {first_line(error)}"
        ) from None


def _from_pretrained(cfg: ModelConfig, source: str, block_size: Optional[int], attn_implementation: str) -> Any:
    """The checkpoint at `source`, once its config says it fits the family (no weights read before)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise unloadable(source, error) from None
    model_type = getattr(config, "model_type", "?")
    if model_type not in MODEL_TYPES[cfg.family]:
        architecture = ", ".join(getattr(config, "architectures", None) or []) or model_type
        other = next((family for family, types in MODEL_TYPES.items() if model_type in types), None)
        fix = (
            f"use model={other} model.pretrained={source}"
            if other
            else f"model=gpt2 loads GPT-2 checkpoints, model=llama those of {', '.join(LLAMA_LAYOUT)}"
        )
        raise ConfigError(
            f"model.pretrained={source} is a {architecture} checkpoint (model_type {model_type}), "
            f"not a model={cfg.family} one: {fix}"
        )
    if block_size is not None:
        check_block_size(config, block_size, cfg)
    try:
        return AutoModelForCausalLM.from_pretrained(
            source, dtype=torch.float32, attn_implementation=attn_implementation
        )
    except (OSError, ValueError) as error:
        raise unloadable(source, error) from None
