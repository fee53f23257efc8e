"""Tasks: what the shared trainer needs from a kind of problem (data, model, loss, metrics)."""
from .base import Task
from .image_classification import ImageClassification


def build_task(cfg) -> Task:
    """The task for a config: image classification for the vision model families."""
    return ImageClassification(cfg)


__all__ = ["ImageClassification", "Task", "build_task"]
