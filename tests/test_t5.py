"""T5 through pgf-train: translation, span corruption and GLUE on local Parquet, pretrained loading, FLOPs.

Every run is a tiny T5 (d_model 32, one block each side) with a 400-token BPE
trained on the test's own data, so each takes a second or two on a CPU.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("hydra")

from test_cli import (  # noqa: E402
    QUIET,
    SHARED_DATA,
    assert_resume_equals_uninterrupted,
    events,
    train,
)
from test_flops import reference_train_step, relative_error  # noqa: E402

TINY_T5 = ["model=t5", "model.kwargs.d_model=32", "model.kwargs.d_ff=64", "model.kwargs.d_kv=16",
           "model.kwargs.num_heads=2", "model.kwargs.num_layers=1", "model.kwargs.num_decoder_layers=1",
           "model.tokenizer.vocab_size=400", "data.batch_size=8", "data.eval_batch_size=16"]

NOUNS = {"dog": "hund", "cat": "katze", "man": "mann", "child": "kind", "bird": "vogel", "house": "haus"}
VERBS = {"runs": "läuft", "sleeps": "schläft", "sings": "singt", "waits": "wartet"}


def sentence_pairs(count: int, seed: int):
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        noun, verb = rng.choice(sorted(NOUNS)), rng.choice(sorted(VERBS))
        pairs.append((f"the {noun} {verb} .", f"der {NOUNS[noun]} {VERBS[verb]} ."))
    return pairs


def write_parquet(path: Path, columns: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Tokenizers are cached under the test's own folder, never in the user's cache."""
    monkeypatch.setenv("PGF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("PGF_DATA_DIR", raising=False)


@pytest.fixture
def translation_dir(tmp_path):
    folder = tmp_path / "pairs"
    for split, count, seed in (("train", 96, 0), ("validation", 16, 1)):
        pairs = sentence_pairs(count, seed)
        write_parquet(folder / f"{split}.parquet", {"en": [e for e, _ in pairs], "de": [d for _, d in pairs]})
    return folder


def test_translation_run_reports_token_accuracy_bleu_and_flops(tmp_path, translation_dir):
    run = tmp_path / "run"
    train(run, *TINY_T5, "sparsity=1:4", f"data.path={translation_dir}", "budget.steps=4")
    summary = read_summary(run)
    assert summary["eval_metric"] == "token_acc" and summary["data"] == "multi30k"
    final = summary["eval"]
    for key in ("eval/token_acc", "eval/bleu", "eval/loss", "eval_strict/token_acc", "eval_strict/bleu"):
        assert key in final
    assert 0 <= final["eval/token_acc"] <= 100 and 0 <= final["eval/bleu"] <= 100
    assert final["eval/bleu_sentences"] == 16
    # target tokens: every validation target, EOS included, counted once
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run / "tokenizer")
    targets = [d for _, d in sentence_pairs(16, 1)]
    assert final["eval/target_tokens"] == sum(len(tokenizer(t)["input_ids"]) for t in targets)
    assert summary["sparse_layers"] == 4 and summary["patterns"] == {"ff": "1:4"}  # wi + wo, encoder and decoder
    assert summary["train_flops"] > 0 and events(run, "train")


def test_translation_either_direction_and_a_bad_column(tmp_path, translation_dir):
    summary = train(tmp_path / "de-en", *TINY_T5, f"data.path={translation_dir}", "data.source_lang=de",
                    "data.target_lang=en", "budget.steps=1")
    assert summary["eval"]["eval/bleu_sentences"] == 16
    from pgfsparse.errors import DataError

    with pytest.raises(DataError, match="no column 'fr'"):
        train(tmp_path / "fr", *TINY_T5, f"data.path={translation_dir}", "data.target_lang=fr", "budget.steps=1")


def test_wmt_layout_a_translation_struct_column(tmp_path):
    """WMT's hub rows hold {"translation": {"de": ..., "en": ...}}: source/target name its keys."""
    folder = tmp_path / "wmt"
    for split, count, seed in (("train", 64, 0), ("validation", 8, 1)):
        pairs = [{"de": d, "en": e} for e, d in sentence_pairs(count, seed)]
        write_parquet(folder / "de-en" / f"{split}-00000-of-00001.parquet", {"translation": pairs})
    summary = train(tmp_path / "run", *TINY_T5, "data=wmt16", f"data.path={folder}", "budget.steps=1")
    assert summary["data"] == "wmt16" and summary["eval"]["eval/bleu_sentences"] == 8


def test_byte_tokenizer_runs_with_no_files(tmp_path, translation_dir):
    summary = train(tmp_path / "run", *TINY_T5, "model.tokenizer.kind=byte", f"data.path={translation_dir}",
                    "budget.steps=1")
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(tmp_path / "run" / "tokenizer")) == 359  # 3 + 256 bytes + 100 sentinels
    assert summary["eval"]["eval/target_tokens"] == sum(len(d.encode()) + 1 for _, d in sentence_pairs(16, 1))


def test_streamed_span_corruption_reads_the_hub_split_lazily(tmp_path, monkeypatch):
    """data=c4 streams: a fake streamed dataset stands in for allenai/c4 (no network here)."""
    import datasets

    documents = [" ".join(f"{a} {b}" for a, b in sentence_pairs(6, seed)) for seed in range(200)]
    seen = []

    def fake_load_dataset(hub_id, config=None, streaming=False):
        assert (hub_id, config, streaming) == ("allenai/c4", "en", True)

        def rows(start, stop):
            for index in range(start, stop):
                seen.append(index)
                yield {"text": documents[index], "url": "x"}

        make = datasets.IterableDataset.from_generator
        return datasets.IterableDatasetDict({"train": make(rows, gen_kwargs={"start": 0, "stop": 180}),
                                             "validation": make(rows, gen_kwargs={"start": 180, "stop": 200})})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    summary = train(tmp_path / "run", *TINY_T5, "data=c4", "data.max_source_length=32", "data.max_target_length=16",
                    "budget.steps=2", "data.eval_limit=10")
    assert summary["data"] == "c4" and "streamed" in summary["data_source"]
    assert summary["eval"]["eval/target_tokens"] > 0
    from pgfsparse.errors import ConfigError

    with pytest.raises(ConfigError, match="streamed and has no epochs"):
        train(tmp_path / "epochs", *TINY_T5, "data=c4", "data.max_source_length=32", "data.max_target_length=16",
              "budget.epochs=1")


@pytest.mark.parametrize("layout", ["parquet", "txt"])
def test_span_corruption_run_on_local_text(tmp_path, layout):
    folder = tmp_path / "corpus"
    folder.mkdir()
    documents = [" ".join(f"{a} {b}" for a, b in sentence_pairs(6, seed)) for seed in range(80)]
    for split, part in (("train", documents[:70]), ("validation", documents[70:])):
        if layout == "parquet":  # a `body` column, named with data.text_column
            write_parquet(folder / f"{split}.parquet", {"body": part, "id": list(range(len(part)))})
        else:
            (folder / f"{split}.txt").write_text("\n".join(part))
    run = tmp_path / "run"
    train(run, *TINY_T5, "data=text", f"data.path={folder}", "data.text_column=body", "data.max_source_length=32",
          "data.max_target_length=16", "budget.steps=3", "sparsity=1:4")
    summary = read_summary(run)
    assert summary["eval_metric"] == "token_acc" and summary["steps"] == 3
    assert set(summary["eval"]) >= {"eval/token_acc", "eval/loss", "eval_strict/token_acc"}
    assert "eval/bleu" not in summary["eval"]
    # max_source_length 32 -> 34-token chunks: 5 noise tokens in 2 spans -> targets of 5 + 2 sentinels + EOS = 8
    from pgfsparse.data.text.span_masking import (
        lengths_after_corruption,
        raw_length_for,
    )

    assert raw_length_for(32) == 34 and lengths_after_corruption(34) == (32, 8)
    tokens = summary["eval"]["eval/target_tokens"]
    assert tokens > 0 and tokens % 8 == 0


def test_span_corruption_targets_too_long_for_max_target_length(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "train.txt").write_text("a b c d e f g\n" * 50)
    from pgfsparse.errors import ConfigError

    with pytest.raises(ConfigError, match="raise it to"):
        train(tmp_path / "run", *TINY_T5, "data=text", f"data.path={folder}", "data.max_source_length=128",
              "data.max_target_length=8", "budget.steps=1")


def glue_dir(tmp_path, task: str) -> Path:
    rng = random.Random(0)
    folder = tmp_path / "glue" / task
    for split, count in (("train", 64), ("validation", 24)):
        if task == "sst2":
            words = [rng.choice(["good", "great", "bad", "awful"]) for _ in range(count)]
            columns = {"sentence": [f"it was {w}" for w in words], "label": [int(w in ("good", "great")) for w in words],
                       "idx": list(range(count))}
        else:  # stsb
            first = [rng.choice(sorted(NOUNS)) for _ in range(count)]
            second = [rng.choice(sorted(NOUNS)) for _ in range(count)]
            columns = {"sentence1": [f"a {a} sits" for a in first], "sentence2": [f"a {b} sits" for b in second],
                       "label": [5.0 if a == b else rng.uniform(0, 2) for a, b in zip(first, second)]}
        write_parquet(folder / f"{split}-00000-of-00001.parquet", columns)
    return folder


@pytest.mark.parametrize("task, metric", [("sst2", "accuracy"), ("stsb", "pearson")])
def test_glue_runs_report_the_tasks_metric(tmp_path, task, metric):
    train(tmp_path / "run", *TINY_T5, "data=glue", f"data.glue_task={task}",
          f"data.path={glue_dir(tmp_path, task)}", "budget.steps=2")
    summary = read_summary(tmp_path / "run")
    assert summary["eval_metric"] == metric
    assert summary["eval_value"] == summary["eval"][f"eval/{metric}"]
    assert "eval/invalid" in summary["eval"] and "eval/token_acc" in summary["eval"]
    if task == "stsb":
        assert "eval/spearman" in summary["eval"]


def test_glue_from_the_hub_loads_the_tasks_config(tmp_path, monkeypatch):
    """No network here: a fake `load_dataset` returns what the hub would for nyu-mll/glue, config rte."""
    import datasets

    calls = []

    def fake_load_dataset(hub_id, config=None, streaming=False):
        calls.append((hub_id, config, streaming))
        rows = lambda n: {"sentence1": [f"a {w} sits" for w in ["dog", "cat"] * n],  # noqa: E731
                          "sentence2": ["a dog sits"] * (2 * n), "label": [0, 1] * n, "idx": list(range(2 * n))}
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows(16)),
                                     "validation": datasets.Dataset.from_dict(rows(4)),
                                     "test": datasets.Dataset.from_dict(rows(4))})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    summary = train(tmp_path / "run", *TINY_T5, "data=glue", "data.glue_task=rte", "budget.steps=1")
    assert calls == [("nyu-mll/glue", "rte", False)]
    assert summary["eval_metric"] == "accuracy" and summary["data_source"] == "hub nyu-mll/glue (rte)"
    assert summary["eval"]["eval/target_tokens"] > 8


def test_glue_finds_its_task_folder_under_pgf_data_dir(tmp_path, monkeypatch):
    glue_dir(tmp_path / "data", "sst2")
    monkeypatch.setenv("PGF_DATA_DIR", str(tmp_path / "data"))
    summary = train(tmp_path / "run", *TINY_T5, "data=glue", "data.glue_task=sst2", "budget.steps=1")
    assert str(tmp_path / "data" / "glue" / "sst2") in summary["data_source"]


def test_the_tokenizer_cache_never_lies_inside_the_data_folder(tmp_path, monkeypatch, translation_dir):
    monkeypatch.setenv("PGF_DATA_DIR", str(tmp_path))  # the cache (tmp_path/cache) is inside it
    from pgfsparse.errors import DataError

    with pytest.raises(DataError, match="set PGF_CACHE_DIR elsewhere"):
        train(tmp_path / "run", *TINY_T5, f"data.path={translation_dir}", "budget.steps=1")
    assert not (tmp_path / "cache").exists()


def test_pretrained_round_trip_through_a_saved_directory(tmp_path, translation_dir):
    """Train a tiny T5, save model + tokenizer with save_pretrained, then load it with model.pretrained=DIR."""
    first = tmp_path / "first"
    train(first, *TINY_T5, f"data.path={translation_dir}", "budget.steps=2")
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    from pgfsparse.config.schema import ModelConfig
    from pgfsparse.models import build_t5

    saved = tmp_path / "saved"
    tokenizer = AutoTokenizer.from_pretrained(first / "tokenizer")
    model = build_t5(ModelConfig(family="t5", kwargs={"d_model": 32, "d_ff": 64, "d_kv": 16, "num_heads": 2,
                                                     "num_layers": 1}), tokenizer)
    model.load_state_dict(torch.load(first / "checkpoint.pt", weights_only=True)["model"])
    model.save_pretrained(saved)
    tokenizer.save_pretrained(saved)
    loaded = build_t5(ModelConfig(family="t5", pretrained=str(saved)), tokenizer)
    for name, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    # through the command: a dense run at lr 1e-30 (lr must be > 0) moves no fp32 weight, and the saved
    # tokenizer is used
    run = tmp_path / "finetune"
    train(run, *TINY_T5, f"model.pretrained={saved}", f"data.path={translation_dir}", "budget.steps=1",
          "optim.lr=1e-30", "optim.weight_decay=0")
    after = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    reference = T5ForConditionalGeneration.from_pretrained(saved).state_dict()
    for name, value in reference.items():
        assert torch.equal(value, after[name]), name
    assert AutoTokenizer.from_pretrained(run / "tokenizer").get_vocab() == tokenizer.get_vocab()


def test_a_missing_pretrained_directory_fails_in_one_line(tmp_path, translation_dir):
    from pgfsparse.errors import ConfigError

    with pytest.raises(Exception) as info:
        train(tmp_path / "run", *TINY_T5, f"model.pretrained={tmp_path / 'nothing'}", f"data.path={translation_dir}",
              "budget.steps=1")
    assert isinstance(info.value, (ConfigError, OSError)) and "\n" not in str(info.value)
    assert str(tmp_path / "nothing") in str(info.value)


def test_gated_ff_t5_sparsifies_wi_0_wi_1_and_wo(tmp_path, translation_dir):
    summary = train(tmp_path / "run", *TINY_T5, "model.kwargs.feed_forward_proj=gated-gelu", "sparsity=1:4",
                    "sparsity.qkv=1:4", f"data.path={translation_dir}", "budget.steps=1")
    # per block: wi_0, wi_1, wo + q, k, v of each attention (encoder self; decoder self and cross)
    assert summary["sparse_layers"] == (3 + 3) + (3 + 3 + 3)


def test_resume_equals_an_uninterrupted_translation_run(tmp_path, translation_dir):
    common = [*TINY_T5, f"data.path={translation_dir}", "sparsity=1:4", "budget.steps=6",
              "model.kwargs.dropout_rate=0.1"]  # dropout draws from the RNG that a resume restores
    assert_resume_equals_uninterrupted(tmp_path, common, at=4)  # on a log_every=2 boundary


def test_flop_count_of_a_translation_step_matches_flop_counter_mode(tmp_path, translation_dir):
    """The counter's per-example shapes are the mean token counts; FlopCounterMode measures that batch."""
    from hydra import compose, initialize_config_module

    from pgfsparse.config.validation import to_train_config
    from pgfsparse.flops.counter import FlopCounter
    from pgfsparse.tasks import build_task

    with initialize_config_module(config_module="pgfsparse.conf", version_base="1.3"):
        cfg = to_train_config(compose(config_name="train", overrides=[*QUIET, *TINY_T5,
                                                                       f"data.path={translation_dir}"]))
    task = build_task(cfg, tmp_path / "run")
    data = task.build_data()
    model = task.build_model(data)
    args, kwargs = task.example_inputs(data, torch.device("cpu"))
    # "the dog runs ." -> source and target lengths by hand: tokens of the mean pair, EOS included
    encoded = [task.collator().encode([data.train[i]])[0] for i in range(len(data.train))]
    assert kwargs["input_ids"].shape[1] == round(sum(len(s) for s, _ in encoded) / len(encoded))
    assert kwargs["labels"].shape[1] == round(sum(len(t) for _, t in encoded) / len(encoded))
    batch = 3
    counter = FlopCounter(model, args, kwargs, examples_per_step=batch)
    repeated = {k: v.repeat(batch, 1) for k, v in kwargs.items()}
    measured = reference_train_step(model, (), repeated)
    assert relative_error(counter.step_train_flops(0), measured) < 0.02


@pytest.mark.skipif(not (SHARED_DATA / "multi30k").is_dir(), reason="../shared/data/multi30k is absent")
def test_model_t5_alone_trains_on_multi30k_from_pgf_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PGF_DATA_DIR", str(SHARED_DATA))
    summary = train(tmp_path / "run", *TINY_T5, "budget.steps=2", "data.eval_limit=32", "data.generate_limit=8",
                    "model.tokenizer.train_texts=2000")
    assert summary["data"] == "multi30k" and "validation" in summary["data_source"]
    assert summary["eval"]["eval/target_tokens"] > 32 and summary["eval"]["eval/bleu_sentences"] == 8
