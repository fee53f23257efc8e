"""How an exported model is rebuilt: the builder's name and arguments, stored as JSON in the file.

timm:         {"library": "timm", "name": <timm id>, "kwargs": {...}}  -> timm.create_model(name, **kwargs)
transformers: {"library": "transformers", "class": "T5ForConditionalGeneration", "config": {...},
               "attn_implementation": "eager"}                          -> class(ConfigClass.from_dict(config))
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import nn


class BuilderError(ValueError):
    """A model the export cannot describe or rebuild, in one line."""


def timm_builder(name: str, **kwargs) -> Dict[str, Any]:
    """The builder of `timm.create_model(name, pretrained=False, **kwargs)`."""
    return {"library": "timm", "name": name, "kwargs": dict(kwargs)}


def builder_for(model: nn.Module, timm_name: Optional[str] = None, **timm_kwargs) -> Dict[str, Any]:
    """A Hugging Face model describes itself (its config); a timm model needs its name and kwargs."""
    if timm_name is not None:
        return timm_builder(timm_name, **timm_kwargs)
    config = getattr(model, "config", None)
    if type(model).__module__.startswith("transformers") and config is not None:
        return {
            "library": "transformers",
            "class": type(model).__name__,
            "config": config.to_dict(),
            "attn_implementation": getattr(config, "_attn_implementation", None),
        }
    raise BuilderError(
        f"cannot tell how to rebuild a {type(model).__name__}: give the timm name and kwargs "
        "(builder=timm_builder('vit_tiny_patch16_224', img_size=32, ...))"
    )


def build(builder: Dict[str, Any]) -> nn.Module:
    """A freshly initialised plain model from a builder description."""
    library = builder.get("library")
    if library == "timm":
        import timm

        return timm.create_model(builder["name"], pretrained=False, **builder["kwargs"])
    if library == "transformers":
        import transformers

        cls = getattr(transformers, builder["class"], None)
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise BuilderError(f"transformers has no model class {builder['class']!r}: upgrade transformers")
        if cls.config_class is None:
            raise BuilderError(
                f"transformers model class {builder['class']!r} has no config class: export a concrete model class"
            )
        config = cls.config_class.from_dict(builder["config"])
        model = cls(config)
        impl = builder.get("attn_implementation")
        if impl and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation(impl)  # outputs equal the trained model's only on the same kernels
        return model
    raise BuilderError(f"unknown model library {library!r} in the export: expected timm or transformers")


def check_rebuilds(builder: Dict[str, Any], model: nn.Module) -> None:
    """Raise if `builder` makes a model with other state_dict keys or shapes than `model` (built on meta: free)."""
    with torch.device("meta"):
        rebuilt = build(builder)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:3]
        raise BuilderError(
            f"the builder {builder.get('name') or builder.get('class')} does not rebuild this model "
            f"(first differences: {diff}): give the kwargs it was built with"
        )
