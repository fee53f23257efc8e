"""Per-example transforms: uint8 pixels or a PIL image -> normalized float32 (C, H, W).

Two equivalent pipelines, picked by where the pixels live:

* in-memory uint8 tensors (small images, e.g. CIFAR-10, digits): torchvision
  transforms.v2 on tensors. Train: random crop with zero padding size//8 (4 px
  at 32 px, the CIFAR recipe) when the output keeps the native size, else a
  random-resized crop (scale 0.08-1, timm's default); then a horizontal flip
  with probability `hflip`; then timm's auto-augment policy on a PIL round trip
  when `auto_augment` is set. `random_crop=False` or eval: resize + center crop
  (nothing at native size).
* PIL images decoded per item (large images, e.g. ImageNet):
  `timm.data.create_transform` (bilinear; eval resizes to size/0.875 and center
  crops). `random_crop=False` turns the train crop into the central square
  (scale = ratio = 1); color jitter is off in both pipelines (no config knob).

Randomness comes only from torch's global RNG (timm's python/numpy draws are
seeded from it per example), so restoring torch's RNG state replays the
augmentation exactly when the loader runs in the main process.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # per-pixel train stats
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # = timm's IMAGENET_DEFAULT_*
GRAY_MEAN, GRAY_STD = (0.5,), (0.5,)  # maps [0, 1] to [-1, 1]; used for every 1-channel dataset


def normalization(name: str, channels: int) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    if channels == 1:
        return GRAY_MEAN, GRAY_STD
    return (CIFAR10_MEAN, CIFAR10_STD) if name == "cifar10" else (IMAGENET_MEAN, IMAGENET_STD)


@contextmanager
def host_rng_from_torch():
    """Seed python's and numpy's global RNGs from one torch draw for the block, then restore them.

    timm's augmentations draw from `random` and `np.random`; routing them through
    torch keeps torch's RNG state the single thing a checkpoint must restore.
    """
    seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    saved = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])


def timm_auto_augment(policy: str, size: int, mean: Sequence[float]):
    """The auto-augment op timm's create_transform builds for this policy string (rand-*, augmix-*, or AutoAugment)."""
    from timm.data.auto_augment import (
        augment_and_mix_transform,
        auto_augment_transform,
        rand_augment_transform,
    )
    from timm.data.transforms import str_to_pil_interp

    params = dict(
        translate_const=int(size * 0.45),
        img_mean=tuple(min(255, round(255 * m)) for m in mean),
        interpolation=str_to_pil_interp("bilinear"),
    )
    if policy.startswith("rand"):
        return allow_zero_bit_posterize(rand_augment_transform(policy, params))
    if policy.startswith("augmix"):
        return allow_zero_bit_posterize(augment_and_mix_transform(policy, dict(params, translate_pct=0.3)))
    return allow_zero_bit_posterize(auto_augment_transform(policy, params))


def _posterize(image, bits_to_keep, **kwargs):
    from PIL import Image
    from timm.data.auto_augment import posterize

    if bits_to_keep <= 0:  # 0 bits kept is a black image; recent Pillow (13) raises instead
        return Image.new(image.mode, image.size)
    return posterize(image, bits_to_keep, **kwargs)


def allow_zero_bit_posterize(transform):
    """Swap timm's posterize for one that accepts 0 bits, in every auto-augment op inside `transform`.

    timm 1.0.x maps low posterize magnitudes to 0 bits; Pillow 13 raises on that,
    so RandAugment crashes at random after a few hundred images.
    """
    from timm.data.auto_augment import AugmentOp, posterize

    if isinstance(transform, AugmentOp):
        if transform.aug_fn is posterize:
            transform.aug_fn = _posterize
    elif isinstance(transform, (list, tuple)):
        for child in transform:
            allow_zero_bit_posterize(child)
    else:  # Compose.transforms, RandAugment.ops, AugMixAugment.ops, AutoAugment.policy
        for name in ("transforms", "ops", "policy"):
            allow_zero_bit_posterize(getattr(transform, name, ()))
    return transform


class TensorTransform:
    """uint8 (C, H, W) tensor -> normalized float32 (C, size, size)."""

    def __init__(self, native: Tuple[int, int], size: int, train: bool, augment, mean, std):
        from torchvision.transforms import v2

        ops = []
        if train and augment.random_crop:
            if tuple(native) == (size, size):
                ops.append(v2.RandomCrop(size, padding=max(1, size // 8)))
            else:
                ops.append(v2.RandomResizedCrop(size, antialias=True))
        elif tuple(native) != (size, size):
            ops += [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
        if train and augment.hflip > 0:
            ops.append(v2.RandomHorizontalFlip(augment.hflip))
        self.geometry = v2.Compose(ops) if ops else None  # None: eval at native size
        policy = augment.auto_augment if train else None
        self.auto_augment = timm_auto_augment(policy, size, mean) if policy else None
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.geometry is not None:
            pixels = self.geometry(pixels)
        if self.auto_augment is not None:
            pixels = self._apply_auto_augment(self.auto_augment, pixels)
        return (pixels.float().div_(255.0) - self.mean) / self.std

    def _apply_auto_augment(self, auto_augment: Callable, pixels: torch.Tensor) -> torch.Tensor:
        from PIL import Image

        array = pixels.permute(1, 2, 0).numpy()
        image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
        with host_rng_from_torch():
            image = auto_augment(image)
        out = torch.from_numpy(np.asarray(image).copy())
        return out.unsqueeze(0) if out.ndim == 2 else out.permute(2, 0, 1)


class PILTransform:
    """PIL image -> normalized float32 (C, size, size) through timm's create_transform."""

    def __init__(self, channels: int, size: int, train: bool, augment, mean, std):
        from timm.data import create_transform

        full_image = None if augment.random_crop else (1.0, 1.0)
        self.train = train
        self.transform = allow_zero_bit_posterize(
            create_transform(
                input_size=(channels, size, size),
                is_training=train,
                scale=full_image,
                ratio=full_image,
                hflip=augment.hflip,
                auto_augment=augment.auto_augment,
                color_jitter=None,  # type: ignore[arg-type]  # timm takes None (no jitter) but does not annotate it
                interpolation="bilinear",
                mean=tuple(mean),
                std=tuple(std),
            )
        )

    def __call__(self, image) -> torch.Tensor:
        if not self.train:
            return self.transform(image)
        with host_rng_from_torch():
            return self.transform(image)


def native_or(size: Optional[int], native: Optional[Tuple[int, int]], default: int) -> int:
    """The output side: the configured size, else a square native size, else `default`."""
    if size:
        return int(size)
    if native and native[0] == native[1]:
        return int(native[0])
    return default
