"""timm vision models (ViT, Swin-V2, any timm id) sized by the data."""
from __future__ import annotations

from torch import nn

from pgfsparse.config.schema import ModelConfig
from pgfsparse.errors import ConfigError, first_line


def build_vision_model(cfg: ModelConfig, *, image_size: int, channels: int, num_classes: int) -> nn.Module:
    """timm.create_model(cfg.name, ...) with the data's image size, channels and class count.

    `cfg.checkpoint` (a local .safetensors/.pth file) loads weights without the hub; a head
    whose shape differs from the data's class count is re-initialised by timm.
    """
    import timm

    if cfg.family not in ("vit", "swin", "timm"):
        raise ConfigError(f"model.family={cfg.family!r} is not a vision model: choose vit, swin or timm")
    if not timm.is_model(cfg.name):
        close = timm.list_models(f"*{cfg.name.split('_')[0]}*")[:5]
        raise ConfigError(f"model.name={cfg.name!r} is not a timm model (close: {', '.join(close) or 'none'})")
    kwargs = dict(cfg.kwargs, in_chans=channels, num_classes=num_classes)
    if cfg.checkpoint is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": cfg.checkpoint}
    pretrained = cfg.pretrained or cfg.checkpoint is not None
    try:
        try:
            return timm.create_model(cfg.name, pretrained=pretrained, img_size=image_size, **kwargs)
        except TypeError as error:
            if "img_size" not in str(error):
                raise
            return timm.create_model(cfg.name, pretrained=pretrained, **kwargs)  # CNNs take any size
    except (TypeError, ValueError, AssertionError, RuntimeError) as error:
        raise ConfigError(
            f"model {cfg.name} cannot be built for {image_size}x{image_size}x{channels} images "
            f"with model.kwargs={dict(cfg.kwargs)}: {first_line(error)}"
        ) from None
