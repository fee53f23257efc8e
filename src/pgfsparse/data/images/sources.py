"""Where an image dataset lives: an explicit folder, $PGF_DATA_DIR/<name>/, the hub, or scikit-learn.

The search is lookup.py's (as for text); here a local folder is told apart as
Parquet splits or an image-folder tree. Only file names are inspected, so a
missing dataset fails in one line before anything is read or decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

from pgfsparse.data.lookup import Place, find_data
from pgfsparse.errors import DataConfigError, DataNotFoundError

LAYOUTS = "Parquet <split>.parquet files or train/ + val/ class folders"  # for the fix hint
KNOWN_NAMES = ("cifar10", "imagenet", "imagefolder", "digits")
DEFAULT_HUB_IDS = {"cifar10": "uoft-cs/cifar10", "imagenet": "ILSVRC/imagenet-1k"}
SPLIT_FOLDER_NAMES = ("train", "validation", "val", "test")


@dataclass(frozen=True)
class Source:
    kind: str  # parquet | imagefolder | hub | digits
    where: str  # where the data was found, for the run summary and error messages
    splits: Dict[str, Tuple[Path, ...]] = field(default_factory=dict)  # parquet files / class-tree root per split
    place: Optional[Place] = None  # the search's result (None for digits)


def resolve_hub_id(name: str, hub_id: Optional[str]) -> Optional[str]:
    """The hub id to try last: the configured one, else the name's usual one; none for imagefolder and digits."""
    if name not in DEFAULT_HUB_IDS:
        return None
    return hub_id or DEFAULT_HUB_IDS[name]


def locate(name: str, path: Optional[str], hub_id: Optional[str]) -> Source:
    if name not in KNOWN_NAMES:
        raise DataConfigError(
            f"data.name={name!r} is not one of {', '.join(KNOWN_NAMES)}; set data.name to one of them"
        )
    if name == "digits":
        return Source("digits", "scikit-learn load_digits (bundled)")
    place = find_data(name, path, resolve_hub_id(name, hub_id), layouts=LAYOUTS)
    if place.local is None:
        return Source("hub", place.label, place=place)
    return _local_source(place.local, place)


def _local_source(folder: Path, place: Place) -> Source:
    label = place.label
    if not folder.is_dir():
        raise DataNotFoundError(f"{label} is not a folder; {place.fix}")
    parquet = find_parquet_splits(folder)
    if parquet:
        return Source("parquet", str(folder), parquet, place)
    tree = find_image_folder_splits(folder)
    if tree:
        return Source("imagefolder", str(folder), tree, place)
    raise DataNotFoundError(
        f"{label} holds neither Parquet splits (train.parquet, train-*.parquet, data/train-*.parquet)"
        f" nor an image-folder tree (train/<class>/*.png + val/ or test/); {place.fix}"
    )


def find_parquet_splits(root: Path) -> Dict[str, Tuple[Path, ...]]:
    """Split name -> files, in the layouts the hub and `Dataset.to_parquet` exports use.

    `train.parquet`, `train-00000-of-00002.parquet`, `data/train-*.parquet`,
    `<config>/train-*.parquet` and `<config>/train/0000.parquet` (the hub's
    parquet-conversion branch). A split's files all come from the shallowest
    folder that has it, so two configs of one dataset are not mixed.
    """
    found: Dict[str, Tuple[Path, list]] = {}
    for file in _shallow_parquet_files(root):
        split = file.stem.split("-", 1)[0]
        if not split or split.isdigit():  # numbered shards inside a folder named by split
            split = file.parent.name
        folder, files = found.setdefault(split, (file.parent, []))
        if folder == file.parent:
            files.append(file)
    return {split: tuple(files) for split, (_, files) in found.items()}


def _shallow_parquet_files(root: Path):
    """Parquet files up to <config>/<split>/, shallowest first, never listing an image tree's class folders."""
    files = sorted(root.glob("*.parquet")) + sorted(root.glob("*/*.parquet"))
    for config in sorted(p for p in root.iterdir() if p.is_dir()):
        nested = [f for split in SPLIT_FOLDER_NAMES for f in sorted((config / split).glob("*.parquet"))]
        if nested:  # the first config only
            return files + nested
    return files


def find_image_folder_splits(root: Path) -> Dict[str, Tuple[Path, ...]]:
    """train/ plus any of validation/, val/, test/, each holding one sub-folder per class."""
    splits: Dict[str, Tuple[Path, ...]] = {}
    for split in SPLIT_FOLDER_NAMES:
        folder = root / split
        if folder.is_dir() and any(child.is_dir() for child in folder.iterdir()):
            splits[split] = (folder,)
    return splits if "train" in splits and len(splits) > 1 else {}
