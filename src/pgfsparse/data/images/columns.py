"""Which columns hold the image and the label, and what the label classes are called.

`features` is the Hugging Face features dict (`Features.to_dict()`, or the
`huggingface` entry of a Parquet file's schema metadata), e.g.
`{"img": {"_type": "Image"}, "label": {"_type": "ClassLabel", "names": [...]}}`.
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional, Sequence

from pgfsparse.errors import DataConfigError

IMAGE_COLUMN_NAMES = ("img", "image", "images", "pixel_values", "picture", "jpg", "jpeg", "png")
LABEL_COLUMN_NAMES = ("label", "labels", "fine_label", "class", "classes", "target", "cls", "y")


def features_from_metadata(metadata: Optional[Dict[bytes, bytes]]) -> Dict[str, dict]:
    """The features dict that `datasets` writes into Parquet schema metadata ({} when absent)."""
    raw = (metadata or {}).get(b"huggingface")
    if not raw:
        return {}
    features = json.loads(raw).get("info", {}).get("features", {})
    return features if isinstance(features, dict) else {}


def pick_column(
    kind: str, columns: Sequence[str], features: Dict[str, dict], configured: Optional[str], where: str
) -> str:
    """kind is "image" or "label"; a configured name must exist, otherwise detect by feature type then name."""
    option = f"data.{kind}_column"
    listing = ", ".join(columns)
    if configured is not None:
        if configured not in columns:
            raise DataConfigError(
                f"{option}={configured!r} is not a column of {where} (columns: {listing}); set {option} to one of them"
            )
        return configured
    feature_type = "Image" if kind == "image" else "ClassLabel"
    names = IMAGE_COLUMN_NAMES if kind == "image" else LABEL_COLUMN_NAMES
    # Names first for labels (fine_label beats coarse_label); the Image type first for images.
    by_type = [c for c in columns if features.get(c, {}).get("_type") == feature_type]
    by_name = [c for name in names for c in columns if c.lower() == name]
    candidates = by_type + by_name if kind == "image" else by_name + by_type
    if not candidates:
        raise DataConfigError(f"no {kind} column found in {where} (columns: {listing}); set {option} to one of them")
    return candidates[0]


def class_names(features: Dict[str, dict], label_column: str) -> Optional[List[str]]:
    names = features.get(label_column, {}).get("names")
    return [str(n) for n in names] if names else None
