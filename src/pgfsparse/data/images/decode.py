"""Encoded image (bytes or a file path) -> pixels.

Small images are decoded all at once into one uint8 tensor with
torchvision.io (libjpeg-turbo / libpng; ~35 us per 32x32 JPEG, PIL ~65 us);
large ones are decoded per item with PIL for timm's transforms.
"""

from __future__ import annotations

import io
import warnings
from typing import Optional, Sequence, Tuple

import torch

GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
PROBE_COUNT = 32  # images whose headers decide channels and native size


def open_pil(item):
    from PIL import Image

    return Image.open(io.BytesIO(item) if isinstance(item, (bytes, bytearray, memoryview)) else item)


def probe(images: Sequence) -> Tuple[int, Optional[Tuple[int, int]]]:
    """(channels, (height, width) shared by the first images or None), from headers only.

    One channel only when every probed image is grayscale; otherwise everything
    is read as RGB (palette, CMYK and RGBA included).
    """
    modes, sizes = set(), set()
    for index in range(min(PROBE_COUNT, len(images))):
        with open_pil(images[index]) as image:
            modes.add(image.mode)
            sizes.add((image.height, image.width))
    channels = 1 if modes and modes <= GRAY_MODES else 3
    return channels, sizes.pop() if len(sizes) == 1 else None


def decode_pil(item, channels: int):
    with open_pil(item) as image:
        return image.convert("L" if channels == 1 else "RGB")


def decode_tensor(item, channels: int) -> torch.Tensor:
    """uint8 (C, H, W) via torchvision.io; PIL for formats it cannot read (TIFF, ...) or once it is gone."""
    try:
        from torchvision.io import ImageReadMode, decode_image, read_file

        data = torch.frombuffer(item, dtype=torch.uint8) if isinstance(item, bytes) else read_file(str(item))
        return decode_image(data, mode=ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB)
    except (ImportError, RuntimeError):
        import numpy as np

        pixels = np.asarray(decode_pil(item, channels))
        return torch.from_numpy(pixels.reshape(pixels.shape[0], pixels.shape[1], channels).copy()).permute(2, 0, 1)


def decode_all(images: Sequence, channels: int, size: Tuple[int, int]) -> torch.Tensor:
    """Every image as one uint8 (N, C, H, W) tensor; an image of another size is resized to `size`.

    Sequential on purpose: torchvision's decoder holds the GIL, and a thread pool
    measured slower (CIFAR-10's 60k JPEGs: ~2.3 s alone, ~3.5 s on 2 threads).
    """
    from torchvision.transforms.v2.functional import resize

    out = torch.empty((len(images), channels, *size), dtype=torch.uint8)
    with warnings.catch_warnings():
        # torch.frombuffer warns that `bytes` are read-only (the decoder only reads them), and
        # torchvision 0.29 warns on every call that its decoders move to torchcodec: silence both here.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        for index in range(len(images)):
            pixels = decode_tensor(images[index], channels)
            if tuple(pixels.shape[1:]) != tuple(size):
                pixels = resize(pixels, list(size), antialias=True)
            out[index] = pixels
    return out
