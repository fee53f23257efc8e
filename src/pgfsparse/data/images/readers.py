"""Read one split into encoded images + integer labels, without decoding any image.

Every source ends as an `EncodedSplit`: item i of `images` is the encoded file
(bytes) or a path to it, so one decoder serves Parquet, the hub and image
folders. Parquet is read with pyarrow straight into memory (no cache files are
written, and nothing next to the data); only Parquet or hub splits above
`LARGE_SPLIT_BYTES` stay memory-mapped through `datasets` and are fetched per item.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, cast

import numpy as np
import torch

from pgfsparse.data.images.columns import (
    class_names,
    features_from_metadata,
    pick_column,
)
from pgfsparse.errors import DataConfigError, DataNotFoundError, DataUnreachableError

LARGE_SPLIT_BYTES = 4 * 2**30  # ~ImageNet-size: keep on disk (memory-mapped) instead of in RAM
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass
class EncodedSplit:
    images: Sequence  # item i: encoded image bytes, or a file path (str)
    labels: torch.Tensor  # int64, shape (N,)
    class_names: Optional[List[str]]


# --- Parquet ---------------------------------------------------------------------------------


def read_parquet_split(files: Sequence[Path], image_column: Optional[str], label_column: Optional[str]) -> EncodedSplit:
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = str(files[0]) if len(files) == 1 else f"{files[0].parent}/ ({len(files)} files)"
    schema = pq.read_schema(files[0])
    features = features_from_metadata(schema.metadata)
    image_col = pick_column("image", schema.names, features, image_column, where)
    label_col = pick_column("label", schema.names, features, label_column, where)
    names = class_names(features, label_col)
    if sum(f.stat().st_size for f in files) > LARGE_SPLIT_BYTES:
        return _read_parquet_memory_mapped(files, image_col, label_col, names)
    table = pa.concat_tables([pq.read_table(f, columns=[image_col, label_col]) for f in files])
    images = _encoded_images(table.column(image_col), image_col, where)
    return EncodedSplit(images, _labels(table.column(label_col)), names)


def _read_parquet_memory_mapped(files, image_col, label_col, names) -> EncodedSplit:
    import datasets

    cache = Path(datasets.config.HF_DATASETS_CACHE).expanduser().resolve()
    data_root = files[0].parent.resolve()
    if cache == data_root or data_root in cache.parents:
        raise DataUnreachableError(
            f"HF_DATASETS_CACHE={cache} lies inside the data folder {data_root}; point HF_DATASETS_CACHE elsewhere"
        )
    dataset = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train", cache_dir=str(cache))
    return _from_hf_dataset(dataset, image_col, label_col, names)


def _encoded_images(column, name: str, where: str) -> list:
    """An HF Image struct {bytes, path}, raw binary, or path strings -> a list of bytes-or-path."""
    import pyarrow as pa

    array = column.combine_chunks()
    if pa.types.is_struct(array.type) and array.type.get_field_index("bytes") >= 0:
        data = array.field("bytes").to_pylist()
        has_path = array.type.get_field_index("path") >= 0
        paths = array.field("path").to_pylist() if has_path else [None] * len(data)
        return [b if b is not None else p for b, p in zip(data, paths)]
    if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
        return array.to_pylist()
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return array.to_pylist()
    raise DataConfigError(
        f"image column {name!r} in {where} has type {array.type}, not encoded images; set data.image_column"
    )


def _labels(column) -> torch.Tensor:
    return torch.from_numpy(np.asarray(column.to_numpy(), dtype=np.int64).copy())


# --- Hugging Face hub ------------------------------------------------------------------------


def read_hub_split(dataset_dict, split: str, image_column: Optional[str], label_column: Optional[str]) -> EncodedSplit:
    dataset = dataset_dict[split]
    features = dataset.features.to_dict()
    where = f"hub split {split!r}"
    image_col = pick_column("image", dataset.column_names, features, image_column, where)
    label_col = pick_column("label", dataset.column_names, features, label_column, where)
    return _from_hf_dataset(dataset, image_col, label_col, class_names(features, label_col))


def _from_hf_dataset(dataset, image_col: str, label_col: str, names) -> EncodedSplit:
    labels = _labels(dataset.data.column(label_col))
    if dataset.data.nbytes <= LARGE_SPLIT_BYTES:
        return EncodedSplit(_encoded_images(dataset.data.column(image_col), image_col, "the dataset"), labels, names)
    images = cast(Sequence, LazyHFImages(dataset, image_col))  # a sequence by duck typing: len() and [i]
    return EncodedSplit(images, labels, names)


class LazyHFImages:
    """Encoded images fetched one at a time from a memory-mapped `datasets.Dataset` (pickles by file path)."""

    def __init__(self, dataset, column: str):
        from datasets import Image

        dataset = dataset.select_columns([column])
        if isinstance(dataset.features[column], Image):
            dataset = dataset.cast_column(column, Image(decode=False))  # bytes out, PIL decodes later
        self.dataset, self.column = dataset, column

    def __len__(self) -> int:
        return len(self.dataset)

    def select(self, rows) -> "LazyHFImages":
        """A part (data.eval_limit's sample: a list of indices), still lazy."""
        part = object.__new__(LazyHFImages)
        part.dataset, part.column = self.dataset.select(rows), self.column
        return part

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.select(range(len(self))[index])
        value = self.dataset[int(index)][self.column]
        if isinstance(value, dict):
            return value["bytes"] if value.get("bytes") is not None else value["path"]
        return value


# --- image folders ---------------------------------------------------------------------------


def image_folder_classes(train_folder: Path) -> List[str]:
    return sorted(child.name for child in train_folder.iterdir() if child.is_dir())


def read_image_folder_split(folder: Path, classes: List[str]) -> EncodedSplit:
    unknown = sorted(set(image_folder_classes(folder)) - set(classes))
    if unknown:
        raise DataConfigError(
            f"{folder} has class folders absent from train/: {', '.join(unknown)}; add them to train/ or remove them"
        )
    paths, labels = [], []
    for index, name in enumerate(classes):
        for directory, subdirs, files in os.walk(folder / name):
            subdirs.sort()  # deterministic order on every file system
            for file in sorted(files):
                if file.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(directory, file))
                    labels.append(index)
    if not paths:
        kinds = ", ".join(IMAGE_EXTENSIONS)
        raise DataNotFoundError(f"no images ({kinds}) under {folder}/<class>/; add images or fix data.path")
    return EncodedSplit(paths, torch.tensor(labels, dtype=torch.int64), classes)


# --- scikit-learn digits ---------------------------------------------------------------------


def load_digits_pixels():
    """scikit-learn's bundled 8x8 digits (no download): uint8 (N, 1, 8, 8) scaled from 0..16 to 0..255, labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return torch.from_numpy(pixels), torch.from_numpy(bunch.target.astype(np.int64))
