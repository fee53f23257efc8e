"""Tasks: what the shared trainer needs from a kind of problem (data, model, loss, metrics)."""

from pgfsparse.tasks.image_classification import ImageClassification
from pgfsparse.tasks.task import Task


def build_task(cfg, run_dir=None) -> Task:
    """The task for `data.kind`: image classification, or a text-to-text task for T5.

    Text tasks keep their tokenizer in `run_dir/tokenizer/` so a resumed run reads the same vocabulary.
    """
    kind = cfg.data.kind
    if kind == "image":
        return ImageClassification(cfg)
    if kind == "translation":
        from pgfsparse.tasks.translation import Translation

        return Translation(cfg, run_dir)
    if kind in ("corpus", "span_corruption"):
        from pgfsparse.tasks.span_corruption import SpanCorruption

        return SpanCorruption(cfg, run_dir)
    if kind == "glue":
        from pgfsparse.tasks.glue import Glue

        return Glue(cfg, run_dir)
    raise ValueError(f"data.kind={kind!r} has no task")


__all__ = ["ImageClassification", "Task", "build_task"]
