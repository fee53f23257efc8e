"""Data for the trainer: image datasets (`build_image_data`) and resumable loaders.

Imported by the trainer only (it pulls in torchvision, and pyarrow / datasets /
timm where a source needs them), never by `import pgfsparse`.
"""

from pgfsparse.data.images.dataset import ImageData, build_image_data
from pgfsparse.data.images.transforms import normalization
from pgfsparse.data.loader import make_eval_loader, make_train_loader, steps_per_epoch
from pgfsparse.errors import (
    DataConfigError,
    DataError,
    DataNotFoundError,
    DataUnreachableError,
)

__all__ = [
    "DataConfigError",
    "DataError",
    "DataNotFoundError",
    "DataUnreachableError",
    "ImageData",
    "build_image_data",
    "make_eval_loader",
    "make_train_loader",
    "normalization",
    "steps_per_epoch",
]
