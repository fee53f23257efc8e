"""What every Hugging Face model builder shares: where pretrained weights come from, and checked configs.

A Hugging Face config takes any keyword and keeps it as an attribute, so a misspelt
`model.kwargs` key (`n_layers` for GPT-2's `n_layer`) would silently build the default
model: `config_from_kwargs` refuses it in one line, with the nearest real names.
"""

from __future__ import annotations

import difflib
from typing import Any, Dict, Mapping, Optional

from pgfsparse.config.schema import ModelConfig
from pgfsparse.errors import ConfigError, first_line


def pretrained_source(cfg: ModelConfig) -> Optional[str]:
    """The hub id or local directory to load, or None to train from scratch (true = model.name)."""
    value = cfg.pretrained
    if value in (None, False, "", "false", "False", "none", "null"):
        return None
    if value is True or value in ("true", "True"):
        return cfg.name
    return str(value)


def config_from_kwargs(config_class, kwargs: Mapping[str, Any], fixed: Dict[str, Any]):
    """`config_class(**kwargs, **fixed)` (fixed wins: vocabulary and special ids), or a one-line ConfigError.

    Refused: keys the class does not know (a default config lacks them, and building did not
    consume them as legacy names such as Llama's `rope_theta`), and values the class rejects.
    """
    from huggingface_hub.errors import StrictDataclassError  # transformers' config validation

    name = config_class.__name__
    try:
        config = config_class(**{**kwargs, **fixed})
    except (TypeError, ValueError, StrictDataclassError) as error:
        reason = _reason(error)
        raise ConfigError(f"model.kwargs={dict(kwargs)} is not a valid {name}: {reason}") from None
    known = set(config_class().to_dict())
    unknown = sorted(key for key in set(config.to_dict()) - known if key in kwargs)
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, sorted(known | set(config_class.attribute_map)), n=3)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ConfigError(f"model.kwargs.{key} is not a field of {name}{hint}: fix or remove it")
    return config


def _reason(error: BaseException) -> str:
    """The line that says what is wrong (transformers puts it after a 'Class validation error' header)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    useful = [line for line in lines if not line.lower().startswith("class validation error")]
    return (useful or [first_line(error)])[0]


def unloadable(source: str, error: BaseException) -> ConfigError:
    """The one-line error of a `model.pretrained` that cannot be read."""
    return ConfigError(
        f"model.pretrained={source!r} could not be loaded ({first_line(error)[:200]}): give a local directory "
        "saved with save_pretrained, or a hub id with internet access / a filled HF cache"
    )
