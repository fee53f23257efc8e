"""Data for the trainer: image datasets (`build_image_data`) and resumable loaders.

Imported by the trainer only (it pulls in torchvision, and pyarrow / datasets /
timm where a source needs them), never by `import pgfsparse`.
"""
from .errors import DataConfigError, DataError, DataNotFoundError, DataUnreachableError
from .images import ImageData, build_image_data
from .loader import make_eval_loader, make_train_loader, steps_per_epoch
from .transforms import normalization

__all__ = [
    "DataConfigError", "DataError", "DataNotFoundError", "DataUnreachableError", "ImageData", "build_image_data",
    "make_eval_loader", "make_train_loader", "normalization", "steps_per_epoch",
]
