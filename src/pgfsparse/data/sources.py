"""Where an image dataset lives: an explicit folder, $PGF_DATA_DIR/<name>/, the hub, or scikit-learn.

Lookup order: `data.path` (never falls back: an explicit folder that holds no
data is an error), then `$PGF_DATA_DIR/<name>/` when that folder exists, then
the hub id. Only file names are inspected here, so a missing dataset fails in
one line before anything is read or decoded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

from .errors import DataConfigError, DataNotFoundError

DATA_DIR_ENV = "PGF_DATA_DIR"
KNOWN_NAMES = ("cifar10", "imagenet", "imagefolder", "digits")
DEFAULT_HUB_IDS = {"cifar10": "uoft-cs/cifar10", "imagenet": "ILSVRC/imagenet-1k"}
SPLIT_FOLDER_NAMES = ("train", "validation", "val", "test")


@dataclass(frozen=True)
class Source:
    kind: str  # parquet | imagefolder | hub | digits
    where: str  # where the data was found, for the run summary and error messages
    looked: str  # every place that was checked, for error messages
    splits: Dict[str, Tuple[Path, ...]] = field(default_factory=dict)  # parquet files / class-tree root per split
    hub_id: Optional[str] = None


def resolve_hub_id(name: str, hub_id: Optional[str]) -> Optional[str]:
    """The hub id to try last: the configured one, else the name's usual one; none for imagefolder and digits."""
    if name not in DEFAULT_HUB_IDS:
        return None
    return hub_id or DEFAULT_HUB_IDS[name]


def fix_hint(name: str) -> str:
    return (
        f"set {DATA_DIR_ENV}=DIR (holding {name}/) or data.path=DIR"
        " (Parquet <split>.parquet files or train/ + val/ class folders)"
    )


def locate(name: str, path: Optional[str], hub_id: Optional[str]) -> Source:
    if name not in KNOWN_NAMES:
        raise DataConfigError(f"data.name={name!r} is not one of {', '.join(KNOWN_NAMES)}; set data.name to one of them")
    if name == "digits":
        return Source("digits", "scikit-learn load_digits (bundled)", "scikit-learn")
    fix = fix_hint(name)
    if path:
        return _local_source(Path(path).expanduser(), f"data.path={path}", fix)
    looked = []
    env_dir = os.environ.get(DATA_DIR_ENV)
    if env_dir:
        folder = Path(env_dir).expanduser() / name
        if folder.is_dir():
            return _local_source(folder, f"{DATA_DIR_ENV}/{name} ({folder})", fix)
        looked.append(f"{folder} (absent)")
    else:
        looked.append(f"{DATA_DIR_ENV} (unset)")
    hub = resolve_hub_id(name, hub_id)
    if not hub:
        places = ", ".join(looked)
        raise DataNotFoundError(f"no local data for {name}: looked in {places} and {name} has no hub id; {fix}")
    looked.append(f"hub {hub}")
    return Source("hub", f"hub {hub}", ", ".join(looked), hub_id=hub)


def _local_source(folder: Path, label: str, fix: str) -> Source:
    if not folder.is_dir():
        raise DataNotFoundError(f"{label} is not a folder; {fix}")
    parquet = find_parquet_splits(folder)
    if parquet:
        return Source("parquet", str(folder), label, parquet)
    tree = find_image_folder_splits(folder)
    if tree:
        return Source("imagefolder", str(folder), label, tree)
    raise DataNotFoundError(
        f"{label} holds neither Parquet splits (train.parquet, train-*.parquet, data/train-*.parquet)"
        f" nor an image-folder tree (train/<class>/*.png + val/ or test/); {fix}"
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
    splits = {}
    for split in SPLIT_FOLDER_NAMES:
        folder = root / split
        if folder.is_dir() and any(child.is_dir() for child in folder.iterdir()):
            splits[split] = (folder,)
    return splits if "train" in splits and len(splits) > 1 else {}
