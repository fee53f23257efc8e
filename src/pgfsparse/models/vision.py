"""timm vision models (ViT, Swin-V2, any timm id) sized by the data."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from torch import nn

from pgfsparse.config.schema import VISION_FAMILIES, ModelConfig
from pgfsparse.errors import ConfigError, first_line
from pgfsparse.models.start_weights import is_run_checkpoint


def build_vision_model(cfg: ModelConfig, *, image_size: int, channels: int, num_classes: int) -> nn.Module:
    """timm.create_model(cfg.name, ...) with the data's image size, channels and class count.

    `cfg.checkpoint` as a timm weights file (a local .safetensors/.pth that is not a pgf-train
    checkpoint) loads weights without the hub; a head whose shape differs from the data's class
    count is re-initialised by timm. A pgf-train run (its dir or checkpoint.pt) is loaded later, by
    the run, as for every family (`models.start_weights`).
    """
    import timm

    if cfg.family not in VISION_FAMILIES:
        raise ConfigError(f"model.family={cfg.family!r} is not a vision model: choose vit, swin or timm")
    if not timm.is_model(cfg.name):
        close = timm.list_models(f"*{cfg.name.split('_')[0]}*")[:5]
        raise ConfigError(f"model.name={cfg.name!r} is not a timm model (close: {', '.join(close) or 'none'})")
    kwargs = dict(cfg.kwargs, in_chans=channels, num_classes=num_classes)
    weights_file = _timm_weights_file(cfg.checkpoint)
    if weights_file is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": weights_file}
    pretrained = cfg.pretrained or weights_file is not None
    _check_depth(cfg)
    try:
        try:
            model = timm.create_model(cfg.name, pretrained=pretrained, img_size=image_size, **kwargs)
        except TypeError as error:
            if "img_size" not in str(error):
                raise
            model = timm.create_model(cfg.name, pretrained=pretrained, **kwargs)  # CNNs take any size
    except (TypeError, ValueError, AssertionError, RuntimeError) as error:
        raise ConfigError(
            f"model {cfg.name} cannot be built for {image_size}x{image_size}x{channels} images "
            f"with model.kwargs={dict(cfg.kwargs)}: {first_line(error)}"
        ) from None
    _check_built(model, cfg, image_size)
    return model


def _timm_weights_file(checkpoint: Optional[str]) -> Optional[str]:
    """model.checkpoint when timm is to load it: a weights file, not a pgf-train run (the run loads those).

    A file gone since is skipped (pgf-export of a run started from it: the run's own checkpoint is
    loaded next); pgf-train refuses a missing file before building anything.
    """
    if checkpoint is None:
        return None
    path = Path(checkpoint).expanduser()
    return str(path) if path.is_file() and not is_run_checkpoint(path) else None


def _check_depth(cfg: ModelConfig) -> None:
    """A transformer with no blocks would train (a patch embedding and a head): refused before it is built."""
    depth, depths = cfg.kwargs.get("depth"), cfg.kwargs.get("depths")
    if isinstance(depth, int) and depth < 1:
        raise ConfigError(
            f"model.kwargs.depth={depth} leaves {cfg.name} with no transformer blocks to train or "
            "sparsify: set model.kwargs.depth >= 1"
        )
    if isinstance(depths, (list, tuple)) and (not depths or any(isinstance(d, int) and d < 1 for d in depths)):
        raise ConfigError(
            f"model.kwargs.depths={list(depths)} leaves a stage of {cfg.name} with no blocks: "
            "give every stage at least 1 (e.g. model.kwargs.depths=[2,2])"
        )


def _check_built(model: nn.Module, cfg: ModelConfig, image_size: int) -> None:
    """Blocks to train, and patches that tile the image (a ViT silently drops the pixels past the last whole one)."""
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks) == 0:
        raise ConfigError(
            f"model {cfg.name} with model.kwargs={dict(cfg.kwargs)} has no transformer blocks to train "
            "or sparsify: set model.kwargs.depth >= 1"
        )
    embed = getattr(model, "patch_embed", None)
    patch = getattr(embed, "patch_size", None)
    if patch is None or getattr(embed, "dynamic_img_pad", False) or not isinstance(image_size, int):
        return
    side = max(patch) if isinstance(patch, (tuple, list)) else int(patch)
    if any(image_size % int(p) for p in (patch if isinstance(patch, (tuple, list)) else (patch,))):
        given = "model.kwargs.patch_size" if "patch_size" in cfg.kwargs else f"the patch size of {cfg.name}"
        divisors = [d for d in range(2, image_size) if image_size % d == 0] or [1]
        fits = sorted(sorted(divisors, key=lambda d: (abs(d - side), d))[:2])  # the nearest ones
        raise ConfigError(
            f"{given}={side} does not divide the image size {image_size} (the pixels past the last whole patch "
            f"would be dropped): set model.kwargs.patch_size={' or '.join(map(str, fits))}, or data.image_size "
            f"to a multiple of {side}"
        )
