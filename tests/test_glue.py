"""GLUE as text-to-text: T5's source/target strings, parsing of generated text, local metrics.

Offline and fast. Every metric is checked against a value worked out by hand
(confusion-matrix counts, closed-form Pearson, Spearman from hand ranks).
"""
from __future__ import annotations

import math
import warnings

import pytest

from pgfsparse.data.text.glue_format import (
    GLUE_TASKS,
    get_task,
    glue_metrics,
    headline_metric,
    parse_prediction,
    to_text,
)

# --- to_text ----------------------------------------------------------------------------------

ROWS = [
    ("cola", {"sentence": "The cat sat.", "label": 1}, "cola sentence: The cat sat.", "acceptable"),
    ("sst2", {"sentence": "it was great", "label": 1}, "sst2 sentence: it was great", "positive"),
    ("sst2", {"sentence": "dull", "label": 0}, "sst2 sentence: dull", "negative"),
    ("mrpc", {"sentence1": "A", "sentence2": "B", "label": 1}, "mrpc sentence1: A sentence2: B", "equivalent"),
    ("mrpc", {"sentence1": "A", "sentence2": "C", "label": 0}, "mrpc sentence1: A sentence2: C", "not_equivalent"),
    ("qqp", {"question1": "Why?", "question2": "How?", "label": 0}, "qqp question1: Why? question2: How?",
     "not_duplicate"),
    ("stsb", {"sentence1": "A man.", "sentence2": "A guy.", "label": 3.77}, "stsb sentence1: A man. sentence2: A guy.",
     "3.8"),
    ("mnli", {"premise": "P.", "hypothesis": "H.", "label": 2}, "mnli hypothesis: H. premise: P.", "contradiction"),
    ("mnli", {"premise": "P.", "hypothesis": "H.", "label": 1}, "mnli hypothesis: H. premise: P.", "neutral"),
    ("qnli", {"question": "Who?", "sentence": "Bob did.", "label": 0}, "qnli question: Who? sentence: Bob did.",
     "entailment"),
    ("rte", {"sentence1": "X.", "sentence2": "Y.", "label": 1}, "rte sentence1: X. sentence2: Y.", "not_entailment"),
    ("wnli", {"sentence1": "X.", "sentence2": "Y.", "label": 1}, "wnli sentence1: X. sentence2: Y.", "entailment"),
]


@pytest.mark.parametrize("name,row,source,target", ROWS)
def test_to_text_matches_t5_format(name, row, source, target):
    assert to_text(get_task(name), row) == (source, target)


def test_every_task_has_a_to_text_case():
    assert {name for name, *_ in ROWS} == set(GLUE_TASKS)


@pytest.mark.parametrize("name,row", [
    ("sst2", {"sentence": "x", "label": -1}),
    ("stsb", {"sentence1": "a", "sentence2": "b", "label": -1.0}),
    ("mnli", {"premise": "p", "hypothesis": "h", "label": -1}),
])
def test_unlabeled_rows_have_empty_target(name, row):
    assert to_text(get_task(name), row)[1] == ""


@pytest.mark.parametrize("score,text", [(3.77, "3.8"), (2.1, "2.0"), (5.0, "5.0"), (0.09, "0.0"), (0.0, "0.0"),
                                        (4.5, "4.4"), (1.3, "1.2"), (2.5, "2.4"), (0.11, "0.2")])
def test_stsb_target_rounds_to_nearest_fifth(score, text):
    row = {"sentence1": "a", "sentence2": "b", "label": score}
    assert to_text(get_task("stsb"), row)[1] == text


def test_task_fields():
    assert get_task("mnli").eval_split == "validation_matched"
    assert {t.eval_split for n, t in GLUE_TASKS.items() if n != "mnli"} == {"validation"}
    assert get_task("stsb").is_regression and get_task("stsb").label_words == ()
    assert not any(t.is_regression for n, t in GLUE_TASKS.items() if n != "stsb")
    assert get_task("wnli").label_words == ("not_entailment", "entailment")
    assert get_task("rte").label_words == ("entailment", "not_entailment")
    headlines = {n: headline_metric(t) for n, t in GLUE_TASKS.items()}
    assert headlines == {"cola": "mcc", "sst2": "accuracy", "mrpc": "f1", "qqp": "f1", "stsb": "pearson",
                         "mnli": "accuracy", "qnli": "accuracy", "rte": "accuracy", "wnli": "accuracy"}
    assert get_task("mrpc").metric_names == ("f1", "accuracy")
    assert get_task("stsb").metric_names == ("pearson", "spearman")


def test_unknown_task_message():
    with pytest.raises(ValueError) as info:
        get_task("squad")
    assert str(info.value) == (
        "glue task 'squad' is unknown; choose one of cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli"
    )


# --- parse_prediction -------------------------------------------------------------------------

def test_parse_classification_words():
    mnli = get_task("mnli")
    assert [parse_prediction(mnli, w) for w in ("entailment", "neutral", "contradiction")] == [0, 1, 2]
    assert parse_prediction(mnli, "  Neutral \n") == 1
    assert parse_prediction(get_task("mrpc"), "NOT_EQUIVALENT") == 0
    assert parse_prediction(get_task("wnli"), "entailment") == 1
    assert parse_prediction(mnli, "maybe") == -1
    assert parse_prediction(mnli, "") == -1
    assert parse_prediction(mnli, "entailment entailment") == -1
    assert parse_prediction(get_task("sst2"), "entailment") == -1  # another task's word


def test_parse_stsb():
    stsb = get_task("stsb")
    assert parse_prediction(stsb, "3.8") == pytest.approx(3.8)
    assert parse_prediction(stsb, " 2 ") == 2.0
    assert parse_prediction(stsb, "7.5") == 5.0
    assert parse_prediction(stsb, "-1") == 0.0
    assert parse_prediction(stsb, "three") == 0.0
    assert parse_prediction(stsb, "nan") == 0.0
    assert parse_prediction(stsb, "") == 0.0


# --- metrics ----------------------------------------------------------------------------------

def _mcc(tp, tn, fp, fn):
    return (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))


def test_mcc_matches_closed_form():
    refs = [1, 1, 1, 0, 0, 0, 1, 0]
    preds = [1, 0, 1, 0, 1, 0, 1, 0]  # TP 3 (0, 2, 6), FN 1 (1), TN 3 (3, 5, 7), FP 1 (4)
    result = glue_metrics(get_task("cola"), preds, refs)
    assert result["mcc"] == pytest.approx(100 * _mcc(3, 3, 1, 1))
    assert result["mcc"] == pytest.approx(50.0)
    assert result["invalid"] == 0.0
    words = ["acceptable" if p else "unacceptable" for p in preds]
    assert glue_metrics(get_task("cola"), words, refs)["mcc"] == pytest.approx(50.0)


def test_invalid_counts_wrong_in_mcc():
    refs = [1, 0, 1, 0, 1, 0]
    # "???" on a negative reference is wrong -> a false positive: TP 2, FN 1, TN 2, FP 1.
    preds = ["acceptable", "???", "unacceptable", "unacceptable", "acceptable", "unacceptable"]
    result = glue_metrics(get_task("cola"), preds, refs)
    assert result["mcc"] == pytest.approx(100 * _mcc(2, 2, 1, 1))
    assert result["invalid"] == pytest.approx(100 / 6)


def test_f1_and_accuracy_by_hand():
    refs = [1, 1, 0, 0, 1]
    preds = [1, 0, 1, 0, 1]  # TP 2, FP 1, FN 1, TN 1
    result = glue_metrics(get_task("mrpc"), preds, refs)
    assert result["f1"] == pytest.approx(100 * 2 * 2 / (2 * 2 + 1 + 1))
    assert result["accuracy"] == pytest.approx(60.0)
    assert set(result) == {"f1", "accuracy", "invalid"}


def test_f1_invalid_counts_wrong():
    qqp = get_task("qqp")
    # ref 1 + garbage -> FN; ref 0 + garbage -> FP; plus one TP.
    result = glue_metrics(qqp, ["duplicate", "??", "??"], [1, 1, 0])
    assert result["f1"] == pytest.approx(100 * 2 * 1 / (2 * 1 + 1 + 1))
    assert result["accuracy"] == pytest.approx(100 / 3)
    assert result["invalid"] == pytest.approx(200 / 3)
    assert glue_metrics(qqp, ["not_duplicate", "not_duplicate"], [0, 0])["f1"] == 0.0  # no positives at all


def test_accuracy_with_invalid_predictions():
    mnli = get_task("mnli")
    preds = ["entailment", "neutral", "CONTRADICTION", "yes", "neutral"]
    refs = [0, 1, 2, 0, 0]
    result = glue_metrics(mnli, preds, refs)
    assert result == pytest.approx({"accuracy": 60.0, "invalid": 20.0})
    assert glue_metrics(mnli, [0, 1, 2, -1, 1], refs) == pytest.approx({"accuracy": 60.0, "invalid": 20.0})


def test_pearson_and_spearman_by_hand():
    x = [1.0, 2.0, 3.0, 4.0]
    y = [2.0, 1.0, 4.0, 3.0]
    mx, my = sum(x) / 4, sum(y) / 4
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    r = cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))
    assert r == pytest.approx(0.6)
    result = glue_metrics(get_task("stsb"), x, y)
    assert result["pearson"] == pytest.approx(100 * r)
    assert result["invalid"] == 0.0


def test_spearman_from_hand_ranks():
    preds = [0.5, 2.0, 1.0, 4.0]  # ranks 1 3 2 4
    refs = [1.0, 3.0, 4.0, 2.0]  # ranks 1 3 4 2 -> d = 0 0 -2 2, sum d^2 = 8
    rho = 1 - 6 * 8 / (4 * (4 ** 2 - 1))
    assert rho == pytest.approx(0.2)
    assert glue_metrics(get_task("stsb"), preds, refs)["spearman"] == pytest.approx(100 * rho)


def test_stsb_strings_parsed_and_invalid_counted():
    # "abc" -> 0.0 (invalid), "9" -> 5.0: predictions 3, 0, 5, 1 against 3, 1, 4, 2.
    x = [3.0, 0.0, 5.0, 1.0]
    y = [3.0, 1.0, 4.0, 2.0]
    expected = glue_metrics(get_task("stsb"), x, y)
    result = glue_metrics(get_task("stsb"), ["3.0", "abc", "9", " 1 "], y)
    assert result["pearson"] == pytest.approx(expected["pearson"])
    assert result["invalid"] == pytest.approx(25.0)


def test_constant_predictions_give_zero_not_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = glue_metrics(get_task("stsb"), [2.0, 2.0, 2.0], [1.0, 3.0, 4.5])
    assert result["pearson"] == 0.0 and result["spearman"] == 0.0
    assert glue_metrics(get_task("cola"), [1, 1, 1], [1, 0, 1])["mcc"] == 0.0


def test_metrics_reject_bad_inputs():
    with pytest.raises(ValueError):
        glue_metrics(get_task("sst2"), [], [])
    with pytest.raises(ValueError):
        glue_metrics(get_task("sst2"), [1, 0], [1])
    with pytest.raises(ValueError):
        glue_metrics(get_task("sst2"), [1], [-1])  # unlabeled reference
