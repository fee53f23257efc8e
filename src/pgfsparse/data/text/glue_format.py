"""GLUE as text-to-text (T5 style), with each task's standard metric computed locally.

A row of the Hub dataset `nyu-mll/glue` becomes a (source, target) pair in the
T5 paper's format, e.g. "mrpc sentence1: A sentence2: B" -> "equivalent", or
"stsb sentence1: A sentence2: B" -> "3.8" (the score rounded to the nearest 0.2).
Generated text is mapped back with `parse_prediction`, and `glue_metrics`
scores it on the GLUE leaderboard's 0-100 scale.

Invalid predictions count as wrong: a classification output that is none of
the task's label words parses to -1 and is scored as a label different from the
reference (so it lowers accuracy, F1 and MCC alike); an stsb output that is not
a number parses to 0.0. `glue_metrics` reports their share as "invalid".
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple, Union

Prediction = Union[int, float]


@dataclass(frozen=True)
class GlueTask:
    name: str
    input_columns: Tuple[Tuple[str, str], ...]  # (dataset column, prefix word), in T5's order
    label_words: Tuple[str, ...]  # index = label id; empty for stsb
    eval_split: str
    metric_names: Tuple[str, ...]  # first = headline
    is_regression: bool = False


def _task(name, columns, words, metrics, eval_split="validation"):
    return GlueTask(name, tuple((c, c) for c in columns), tuple(words), eval_split, tuple(metrics), not words)


GLUE_TASKS: Dict[str, GlueTask] = {
    t.name: t
    for t in (
        _task("cola", ["sentence"], ["unacceptable", "acceptable"], ["mcc"]),
        _task("sst2", ["sentence"], ["negative", "positive"], ["accuracy"]),
        _task("mrpc", ["sentence1", "sentence2"], ["not_equivalent", "equivalent"], ["f1", "accuracy"]),
        _task("qqp", ["question1", "question2"], ["not_duplicate", "duplicate"], ["f1", "accuracy"]),
        _task("stsb", ["sentence1", "sentence2"], [], ["pearson", "spearman"]),
        _task(
            "mnli",
            ["hypothesis", "premise"],
            ["entailment", "neutral", "contradiction"],
            ["accuracy"],
            eval_split="validation_matched",
        ),
        _task("qnli", ["question", "sentence"], ["entailment", "not_entailment"], ["accuracy"]),
        _task("rte", ["sentence1", "sentence2"], ["entailment", "not_entailment"], ["accuracy"]),
        _task("wnli", ["sentence1", "sentence2"], ["not_entailment", "entailment"], ["accuracy"]),
    )
}


def get_task(name: str) -> GlueTask:
    task = GLUE_TASKS.get(str(name).strip().lower())
    if task is None:
        raise ValueError(f"glue task {name!r} is unknown; choose one of {', '.join(GLUE_TASKS)}")
    return task


def headline_metric(task: GlueTask) -> str:
    return task.metric_names[0]


def stsb_target(score: float) -> str:
    """The score rounded to the nearest 0.2 (halves to even, like T5's np.round), one decimal."""
    return f"{round(float(score) * 5) / 5:.1f}"


def to_text(task: GlueTask, row: dict) -> Tuple[str, str]:
    """(source, target); target is "" for an unlabeled row (label -1, as in the test splits)."""
    parts = [task.name] + [f"{prefix}: {row[column]}" for column, prefix in task.input_columns]
    source = " ".join(parts)
    label = row.get("label", -1)
    if label is None or label == -1:
        return source, ""
    if task.is_regression:
        return source, stsb_target(label)
    return source, task.label_words[int(label)]


def _parse(task: GlueTask, text: str) -> Tuple[Prediction, bool]:
    """(value, parsed?)"""
    cleaned = str(text).strip().lower()
    if task.is_regression:
        try:
            value = float(cleaned)
        except ValueError:
            return 0.0, False
        if math.isnan(value):
            return 0.0, False
        return min(max(value, 0.0), 5.0), True
    if cleaned in task.label_words:
        return task.label_words.index(cleaned), True
    return -1, False


def parse_prediction(task: GlueTask, text: str) -> Prediction:
    """Label id of the generated word (-1: none of them), or the stsb score clipped to [0, 5] (0.0: not a number)."""
    return _parse(task, text)[0]


def _correlation(fn, x: Sequence[float], y: Sequence[float]) -> float:
    if len(x) < 2:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: scipy warns and returns NaN
        value = float(fn(x, y)[0])
    return 0.0 if math.isnan(value) else 100.0 * value


def glue_metrics(
    task: GlueTask, predictions: Sequence[Union[str, Prediction]], references: Sequence[Prediction]
) -> Dict[str, float]:
    """The task's metrics on the 0-100 scale, plus "invalid" (percent of predictions that did not parse).

    predictions are generated strings (parsed here) or values from `parse_prediction`;
    references are label ids (the stsb score for stsb).
    """
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import matthews_corrcoef

    if len(predictions) == 0 or len(predictions) != len(references):
        raise ValueError(
            f"glue_metrics needs as many predictions as references, at least one (got {len(predictions)} "
            f"and {len(references)})"
        )
    n_labels = len(task.label_words)
    parsed = [
        _parse(task, p) if isinstance(p, str) else (p, task.is_regression or 0 <= int(p) < n_labels)
        for p in predictions
    ]
    values = [v for v, _ in parsed]
    result: Dict[str, float] = {"invalid": 100.0 * sum(not ok for _, ok in parsed) / len(parsed)}

    if task.is_regression:
        preds = [float(v) for v in values]
        refs = [float(r) for r in references]
        result["pearson"] = _correlation(pearsonr, preds, refs)
        result["spearman"] = _correlation(spearmanr, preds, refs)
        return result

    refs = [int(r) for r in references]
    if any(not 0 <= r < n_labels for r in refs):
        raise ValueError(f"glue_metrics: {task.name} references must be label ids 0..{n_labels - 1} (-1 is unlabeled)")
    # An invalid prediction becomes a label other than the reference: always wrong.
    preds = [int(v) if 0 <= int(v) < n_labels else (r + 1) % n_labels for v, r in zip(values, refs)]
    for name in task.metric_names:
        if name == "accuracy":
            result[name] = 100.0 * sum(p == r for p, r in zip(preds, refs)) / len(refs)
        elif name == "mcc":
            result[name] = 100.0 * float(matthews_corrcoef(refs, preds))
        elif name == "f1":  # of the positive class 1
            tp = sum(p == 1 and r == 1 for p, r in zip(preds, refs))
            fp = sum(p == 1 and r != 1 for p, r in zip(preds, refs))
            fn = sum(p != 1 and r == 1 for p, r in zip(preds, refs))
            result[name] = 100.0 * 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return result
