"""Hugging Face T5 (v1.0 or gated v1.1 FF) from a config or from pretrained weights."""

from __future__ import annotations

from torch import nn

from pgfsparse.config.schema import ModelConfig
from pgfsparse.errors import ConfigError, first_line


def pretrained_source(cfg: ModelConfig):
    """The hub id or local directory to load, or None to train from scratch (true = model.name)."""
    value = cfg.pretrained
    if value in (None, False, "", "false", "False", "none", "null"):
        return None
    if value is True or value in ("true", "True"):
        return cfg.name
    return str(value)


def build_t5(cfg: ModelConfig, tokenizer) -> nn.Module:
    """A `T5ForConditionalGeneration` whose ids follow `tokenizer` (pad = decoder start, eos).

    From scratch: `T5Config(**model.kwargs)` with the tokenizer's vocabulary size.
    Pretrained: `from_pretrained(hub id or directory)`; its embeddings grow if the
    tokenizer has more tokens. Attention runs the eager path, whose matmuls the FLOP
    counter sees.
    """
    from transformers import T5Config, T5ForConditionalGeneration

    source = pretrained_source(cfg)
    if source is None:
        try:
            config = T5Config(
                **{
                    **cfg.kwargs,
                    "vocab_size": len(tokenizer),
                    "pad_token_id": tokenizer.pad_token_id,
                    "eos_token_id": tokenizer.eos_token_id,
                    "decoder_start_token_id": tokenizer.pad_token_id,
                },
            )
            model = T5ForConditionalGeneration(config)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"model.kwargs={dict(cfg.kwargs)} is not a valid T5Config: {first_line(error)}") from None
    else:
        try:
            model = T5ForConditionalGeneration.from_pretrained(source)
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"model.pretrained={source!r} could not be loaded ({first_line(error)[:200]}): give a local directory "
                "saved with save_pretrained, or a hub id with internet access / a filled HF cache"
            ) from None
        if len(tokenizer) > model.config.vocab_size:
            model.resize_token_embeddings(len(tokenizer))
    model.config.use_cache = False  # training never reuses keys/values; generation turns it back on
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    return model
