"""Image classification data for the trainer: `build_image_data(cfg)` -> train/eval Datasets + metadata.

Each Dataset yields `(float32 (C, H, W) normalized, int label)`. Small images
(side <= 64 px and < 2 GB decoded, e.g. CIFAR-10 and digits) are decoded once
into one uint8 tensor and augmented with tensor ops; larger ones (ImageNet) are
decoded per item with PIL and transformed by timm (see transforms.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, cast

import torch
from torch.utils.data import Dataset

from pgfsparse.data.images.decode import decode_all, decode_pil, probe
from pgfsparse.data.images.readers import (
    EncodedSplit,
    LazyHFImages,
    image_folder_classes,
    load_digits_pixels,
    read_hub_split,
    read_image_folder_split,
    read_parquet_split,
)
from pgfsparse.data.images.sources import Source, locate
from pgfsparse.data.images.transforms import (
    PILTransform,
    TensorTransform,
    native_or,
    normalization,
)
from pgfsparse.data.loader import eval_sample, eval_sample_note
from pgfsparse.data.lookup import load_hub
from pgfsparse.errors import DataConfigError

log = logging.getLogger(__name__)

EVAL_SPLIT_PREFERENCE = ("validation", "val", "test")
SMALL_IMAGE_SIDE = 64  # at most this many pixels a side -> decode once, keep in memory
IN_MEMORY_BYTES = 2 * 2**30  # ...and at most this many bytes of decoded uint8 pixels
LAZY_DEFAULT_SIZE = 224  # output side for large images of mixed sizes when data.image_size is unset
DIGITS_EVAL_FRACTION = 0.2  # the last 20% of scikit-learn's digits are the eval split


@dataclass
class ImageData:
    train: Optional[Dataset]  # None when built with train=False
    eval: Dataset
    num_classes: int
    image_size: int
    channels: int
    class_names: Optional[List[str]]
    source: str  # where the data came from, for the run summary


class TensorImageDataset(Dataset):
    """Pre-decoded uint8 (N, C, H, W) pixels; the transform runs per item."""

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor, transform: Callable):
        self.pixels, self.labels, self.transform = pixels, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(self.pixels[index]), int(self.labels[index])


class LazyImageDataset(Dataset):
    """Encoded images decoded with PIL on access (ImageNet-size data does not fit in memory decoded)."""

    def __init__(self, images: Sequence, labels: torch.Tensor, channels: int, transform: Callable):
        self.images, self.labels, self.channels, self.transform = images, labels, channels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(decode_pil(self.images[index], self.channels)), int(self.labels[index])


def build_image_data(cfg, *, train: bool = True) -> ImageData:
    """cfg: a `pgfsparse.config.schema.DataConfig`. train=False reads and decodes only the eval split."""
    source = locate(cfg.name, cfg.path, cfg.hub_id)
    if source.kind == "digits":
        return _build_digits(cfg, train)
    read_split, splits = _split_reader(source, cfg)
    train_split, eval_split = _choose_splits(cfg, splits, source.where)
    eval_full = read_split(eval_split)
    eval_encoded = _sample(eval_full, cfg.eval_limit)
    train_encoded = read_split(train_split) if train else None
    reference = train_encoded if train_encoded is not None else eval_encoded  # decides channels and size for both
    channels, native = probe(reference.images)
    mean, std = normalization(cfg.name, channels)
    shared = native if _fits_in_memory(native, channels, len(reference.labels)) else None  # None: decode lazily
    size = native_or(cfg.image_size, native, min(shared) if shared else LAZY_DEFAULT_SIZE)

    def to_dataset(encoded: EncodedSplit, is_train: bool) -> Dataset:
        if shared:
            tensor_transform = TensorTransform(shared, size, is_train, cfg.augment, mean, std)
            return TensorImageDataset(_decode_timed(encoded.images, channels, shared), encoded.labels, tensor_transform)
        pil_transform = PILTransform(channels, size, is_train, cfg.augment, mean, std)
        return LazyImageDataset(encoded.images, encoded.labels, channels, pil_transform)

    names = reference.class_names
    labels = [s.labels for s in (train_encoded, eval_encoded) if s is not None and len(s.labels)]
    return ImageData(
        train=to_dataset(train_encoded, True) if train_encoded is not None else None,
        eval=to_dataset(eval_encoded, False),
        num_classes=len(names) if names else max(int(split_labels.max()) for split_labels in labels) + 1,
        image_size=size,
        channels=channels,
        class_names=names,
        source=source.where + eval_sample_note(len(eval_full.labels), cfg.eval_limit),
    )


def _fits_in_memory(native, channels: int, count: int) -> bool:
    """One shared small size, and the decoded uint8 pixels fit the memory budget."""
    if native is None or max(native) > SMALL_IMAGE_SIDE:
        return False
    return count * channels * native[0] * native[1] <= IN_MEMORY_BYTES


def _decode_timed(images: Sequence, channels: int, native) -> torch.Tensor:
    started = time.perf_counter()
    pixels = decode_all(images, channels, native)
    log.info("decoded %d images in %.1f s", len(pixels), time.perf_counter() - started)
    return pixels


def _split_reader(source: Source, cfg):
    """(split name -> EncodedSplit, available split names) for a located source."""
    if source.kind == "parquet":

        def read(split):
            return read_parquet_split(source.splits[split], cfg.image_column, cfg.label_column)

        return read, list(source.splits)
    if source.kind == "imagefolder":
        classes = image_folder_classes(source.splits["train"][0])
        return (lambda split: read_image_folder_split(source.splits[split][0], classes)), list(source.splits)
    assert source.place is not None  # only digits has no place, and it never gets here
    hub = load_hub(source.place)
    return (lambda split: read_hub_split(hub, split, cfg.image_column, cfg.label_column)), list(hub.keys())


def _choose_splits(cfg, splits: List[str], where: str):
    listing = ", ".join(splits)
    for option, split in (("train_split", cfg.train_split), ("eval_split", cfg.eval_split)):
        if split is not None and split not in splits:
            raise DataConfigError(
                f"no split {split!r} in {where} (splits: {listing}); set data.{option} to one of them"
            )
    if cfg.eval_split is not None:
        return cfg.train_split, cfg.eval_split
    for name in EVAL_SPLIT_PREFERENCE:
        if name in splits:
            return cfg.train_split, name
    preferred = ", ".join(EVAL_SPLIT_PREFERENCE)
    raise DataConfigError(f"no eval split ({preferred}) in {where} (splits: {listing}); set data.eval_split")


def _sample(encoded: EncodedSplit, limit: Optional[int]) -> EncodedSplit:
    """`data.eval_limit` examples, a fixed sample of every class (loader.eval_sample), before anything is decoded."""
    indices = eval_sample(len(encoded.labels), limit)
    if indices is None:
        return encoded
    lazy = encoded.images
    # LazyHFImages works as a Sequence (len and [i]), as readers.py says when it makes one
    images = cast(Sequence, lazy.select(indices)) if isinstance(lazy, LazyHFImages) else [lazy[i] for i in indices]
    return EncodedSplit(images, encoded.labels[indices], encoded.class_names)


def _build_digits(cfg, train: bool) -> ImageData:
    """scikit-learn's 1797 digits: the first 80% train, the last 20% eval (data.*_split do not apply)."""
    pixels, labels = load_digits_pixels()
    n_train = len(labels) - round(DIGITS_EVAL_FRACTION * len(labels))
    native = tuple(pixels.shape[2:])
    size = native_or(cfg.image_size, native, native[0])
    mean, std = normalization("digits", 1)
    eval_pixels, eval_labels = pixels[n_train:], labels[n_train:]
    indices = eval_sample(len(eval_labels), cfg.eval_limit)
    if indices is not None:
        eval_pixels, eval_labels = eval_pixels[indices], eval_labels[indices]
    train_transform = TensorTransform(native, size, True, cfg.augment, mean, std)
    train_set = TensorImageDataset(pixels[:n_train], labels[:n_train], train_transform)
    return ImageData(
        train=train_set if train else None,
        eval=TensorImageDataset(eval_pixels, eval_labels, TensorTransform(native, size, False, cfg.augment, mean, std)),
        num_classes=10,
        image_size=size,
        channels=1,
        class_names=[str(d) for d in range(10)],
        source="scikit-learn load_digits (bundled)" + eval_sample_note(len(labels) - n_train, cfg.eval_limit),
    )
