"""Tasks: what the shared trainer needs from a kind of problem (data, model, loss, metrics)."""

from pgfsparse.tasks.image_classification import ImageClassification
from pgfsparse.tasks.task import Task


def build_task(cfg, run_dir=None) -> Task:
    """The task for `data.kind` and, for plain text, the model family.

    image: image classification; translation, glue: text-to-text (T5; validation refuses them for a decoder);
    corpus (0.2.0's span_corruption): causal language modelling for a decoder (model=gpt2, llama), span
    corruption for T5.
    Text tasks keep their tokenizer in `run_dir/tokenizer/` so a resumed run reads the same vocabulary.
    """
    from pgfsparse.config.schema import DECODER_FAMILIES

    kind, family = cfg.data.kind, cfg.model.family
    if kind == "image":
        return ImageClassification(cfg)
    if kind in ("corpus", "span_corruption"):
        if family in DECODER_FAMILIES:
            from pgfsparse.tasks.causal_lm import CausalLM

            return CausalLM(cfg, run_dir)
        from pgfsparse.tasks.span_corruption import SpanCorruption

        return SpanCorruption(cfg, run_dir)
    if kind == "translation":
        from pgfsparse.tasks.translation import Translation

        return Translation(cfg, run_dir)
    if kind == "glue":
        from pgfsparse.tasks.glue import Glue

        return Glue(cfg, run_dir)
    raise ValueError(f"data.kind={kind!r} has no task")


__all__ = ["ImageClassification", "Task", "build_task"]
