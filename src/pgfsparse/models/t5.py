"""Hugging Face T5 (v1.0 or gated v1.1 FF) from a config or from pretrained weights."""

from __future__ import annotations

from torch import nn

from pgfsparse.config.schema import ModelConfig
from pgfsparse.errors import ConfigError, first_line
from pgfsparse.models.hugging_face import config_from_kwargs, pretrained_source, unloadable

__all__ = ["build_t5", "pretrained_source"]


def build_t5(cfg: ModelConfig, tokenizer) -> nn.Module:
    """A `T5ForConditionalGeneration` whose ids follow `tokenizer` (pad = decoder start, eos).

    From scratch: `T5Config(**model.kwargs)` with the tokenizer's vocabulary size.
    Pretrained: `from_pretrained(hub id or directory)`; its embeddings grow if the
    tokenizer has more tokens. Attention runs the eager path, whose matmuls the FLOP
    counter sees. `model.checkpoint` (a pgf-train run's weights) is loaded later, by
    the run (`models.start_weights`), as for every family.
    """
    from transformers import T5Config, T5ForConditionalGeneration

    source = pretrained_source(cfg)
    if source is None:
        fixed = {
            "vocab_size": len(tokenizer),
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "decoder_start_token_id": tokenizer.pad_token_id,
        }
        config = config_from_kwargs(T5Config, cfg.kwargs, fixed)
        try:
            model = T5ForConditionalGeneration(config)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ConfigError(f"model.kwargs={dict(cfg.kwargs)} is not a valid T5Config: {first_line(error)}") from None
    else:
        try:
            model = T5ForConditionalGeneration.from_pretrained(source)
        except (OSError, ValueError) as error:
            raise unloadable(source, error) from None
        if len(tokenizer) > model.config.vocab_size:
            model.resize_token_embeddings(len(tokenizer))
    model.config.use_cache = False  # training never reuses keys/values; generation turns it back on
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    return model
