"""The causal-LM task: blocks, tokenizers, the token-weighted loss, routing, and one pgf-train run.

Blocks are checked against hand-worked token lists, the metrics against a cross-entropy computed
independently on a tiny GPT-2 built here, and the tokenizers by round trips and by their saved copies.
"""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers / huggingface_hub read it

import pytest
import torch
import torch.nn.functional as F

from pgfsparse.config.schema import TrainConfig
from pgfsparse.data.text import lm_tokenizer
from pgfsparse.data.text.lm_blocks import Blocks, StreamedBlocks, block_count, stream_pieces, token_stream
from pgfsparse.data.text.span_masking import IGNORE_INDEX
from pgfsparse.errors import DataConfigError
from pgfsparse.rundir.layout import RunDir

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHAKESPEARE = SHARED_DATA / "tiny_shakespeare"
needs_shakespeare = pytest.mark.skipif(not SHAKESPEARE.is_dir(), reason="../shared/data/tiny_shakespeare is absent")
SAMPLES = ["Hello, world!  Two  spaces\tand a tab.", "Das Mädchen läuft über die Straße; ÄÖÜ ß.", " lead", "日本 €"]
PAD = -7  # an input padding value no real token has, so a test sees where padding went


# -- blocks -------------------------------------------------------------------------------------
def test_blocks_hand_worked_stride_shift_and_the_partial_block():
    stream = torch.arange(10, 20, dtype=torch.int32)  # t0..t9 = 10..19
    train = Blocks(stream, 4, keep_partial=False)
    assert len(train) == 2 and train.predicted_tokens() == 8
    assert [train[i][0].tolist() for i in range(2)] == [[10, 11, 12, 13], [14, 15, 16, 17]]
    assert [train[i][1].tolist() for i in range(2)] == [[11, 12, 13, 14], [15, 16, 17, 18]]
    assert train[0][0].dtype == torch.long
    with pytest.raises(IndexError):
        train[2]
    evaluation = Blocks(stream, 4, keep_partial=True, pad_id=PAD)
    assert len(evaluation) == 3 and evaluation.predicted_tokens() == 9
    assert evaluation[2][0].tolist() == [18, PAD, PAD, PAD]
    assert evaluation[2][1].tolist() == [19, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    # every token after the first is a target exactly once, in order
    targets = torch.cat([evaluation[i][1] for i in range(len(evaluation))])
    assert targets[targets != IGNORE_INDEX].tolist() == list(range(11, 20))


@pytest.mark.parametrize(
    "tokens, size, train, evaluation",
    [(5, 4, 1, 1), (9, 4, 2, 2), (10, 4, 2, 3), (4, 4, 0, 1), (1, 4, 0, 0), (0, 4, 0, 0), (8, 1, 7, 7)],
)
def test_block_count(tokens, size, train, evaluation):
    assert block_count(tokens, size, keep_partial=False) == train
    assert block_count(tokens, size, keep_partial=True) == evaluation
    assert len(Blocks(torch.arange(tokens), size, keep_partial=True)) == evaluation


def test_stream_pieces_join_documents_with_eos_and_lines_with_the_separator():
    encode = lambda texts: [[ord(c) - 96 for c in t] for t in texts]  # noqa: E731 - a=1, b=2, ...
    documents = list(stream_pieces(["ab", "", "c", "d"], encode, [0], skip_empty=True))
    assert token_stream(documents).tolist() == [1, 2, 0, 3, 0, 4]  # EOS between documents, the empty one left out
    lines = list(stream_pieces(["ab", "", "c"], encode, [27], skip_empty=False))
    assert token_stream(lines).tolist() == [1, 2, 27, 27, 3]  # an empty line still makes a separator
    assert token_stream(stream_pieces(["ab", "c"], encode, [], skip_empty=True)).tolist() == [1, 2, 3]
    assert token_stream([]).dtype == torch.int32


def test_streamed_blocks_cut_like_the_stored_ones_and_resume_exactly():
    texts = ["abcdefg", "hij", "klmnopqrstu"]
    encode = lambda texts: [[ord(c) - 96 for c in t] for t in texts]  # noqa: E731
    pieces = lambda: stream_pieces(texts, encode, [0], skip_empty=True)  # noqa: E731
    stored = Blocks(token_stream(pieces()), 4, keep_partial=False)
    streamed = StreamedBlocks(pieces, 4, "test texts")
    blocks = streamed.blocks()
    for i in range(2 * len(stored)):  # a second pass starts over
        block = next(blocks)
        inputs, targets = stored[i % len(stored)]
        assert block[:-1].tolist() == inputs.tolist() and block[1:].tolist() == targets.tolist()
    uninterrupted = streamed.batches(2, 0, rank=0, world_size=1)
    batches = [next(uninterrupted) for _ in range(4)]
    resumed = streamed.batches(2, 3, rank=0, world_size=1)
    assert all(torch.equal(a, b) for a, b in zip(next(resumed), batches[3]))
    assert [t.tolist() for t in batches[0]] == [[stored[0][0].tolist(), stored[1][0].tolist()],
                                                [stored[0][1].tolist(), stored[1][1].tolist()]]
    with pytest.raises(DataConfigError, match="less than one block of 41 tokens"):
        next(StreamedBlocks(pieces, 40, "test texts").blocks())


# -- tokenizers ---------------------------------------------------------------------------------
def test_char_tokenizer_hand_worked_eos_and_unk():
    tok = lm_tokenizer.CharTokenizer.from_texts(["hello", "world"], eos=True)
    assert tok.chars == list("dehlorw") and tok.eos_token_id == 7 and tok.unk_token_id is None
    assert tok.vocab_size == 8 and tok.encode("hold") == [2, 4, 3, 0]
    assert tok.decode([2, 4, 7, 3, 0]) == "hold"  # EOS is left out
    with pytest.raises(DataConfigError, match=r"the character 'z' is not among this char tokenizer's 7") as error:
        tok.encode("lz")
    assert "\n" not in str(error.value)
    single = lm_tokenizer.CharTokenizer.from_texts(["ab"], eos=False, eval_texts=["abc", "c!"])
    assert (single.vocab_size, single.eos_token_id, single.unk_token_id) == (3, None, 2)
    assert single.encode("ca!b") == [2, 0, 2, 1] and single.decode([0, 2]) == "a\ufffd"


@needs_shakespeare
def test_char_tokenizer_on_tiny_shakespeare_is_nanogpts_65():
    import pyarrow.parquet as pq

    train, valid = (pq.read_table(SHAKESPEARE / f"{s}.parquet").column("text").to_pylist()
                    for s in ("train", "validation"))
    tok = lm_tokenizer.build("char", texts=lambda: train, several_documents=False, eval_texts=lambda: valid)
    assert tok.vocab_size == 65 and tok.eos_token_id is None and tok.unk_token_id is None
    assert tok.chars[:3] == ["\n", " ", "!"] and tok.chars[-1] == "z"  # sorted, as nanoGPT's stoi
    ids = tok.encode(valid[0])
    assert len(ids) == len(valid[0]) == 111540 and max(ids) == 64
    assert tok.decode(ids) == valid[0]


def test_byte_tokenizer_round_trips_any_text():
    tok = lm_tokenizer.build("byte", texts=lambda: [], several_documents=True)
    assert (tok.vocab_size, tok.eos_token_id) == (257, 256)
    for text in SAMPLES:
        assert tok.encode(text) == list(text.encode("utf-8")) and tok.decode(tok.encode(text)) == text
    assert tok.decode([104, 105, 256]) == "hi"


@pytest.fixture
def bpe(tmp_path):
    words = "the cat dog house runs quickly und die Straße läuft über a small red tree".split()
    texts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(9)) for i in range(200)]
    return lm_tokenizer.build("bpe", texts=lambda: texts, several_documents=True, vocab_size=400,
                              cache_dir=tmp_path / "cache")


def test_bpe_round_trips_without_special_tokens(bpe):
    assert bpe.kind == "bpe" and bpe.vocab_size == 400 and bpe.eos_token_id == 1
    for text in SAMPLES + ["the cat runs über die Straße"]:
        ids = bpe.encode(text)
        assert bpe.eos_token_id not in ids and bpe.decode(ids) == text  # no EOS appended, exact text back
    assert len(bpe.encode("the cat runs")) < len("the cat runs")  # merges learned
    assert bpe.encode_batch(["the cat", "a dog"]) == [bpe.encode("the cat"), bpe.encode("a dog")]


def test_unknown_kind_and_pretrained_without_a_name_are_one_line_errors():
    with pytest.raises(DataConfigError, match="kind='words' is unknown.*char, byte, bpe"):
        lm_tokenizer.build("words", texts=lambda: [], several_documents=True)
    with pytest.raises(DataConfigError, match="needs model.tokenizer.name or model.pretrained"):
        lm_tokenizer.build("pretrained", texts=lambda: [], several_documents=True)


def test_pretrained_kind_loads_a_local_tokenizer_and_auto_picks_it(bpe, tmp_path):
    bpe.tokenizer.save_pretrained(str(tmp_path / "model"))  # a "pretrained" model's folder
    tok = lm_tokenizer.build("auto", texts=lambda: [], several_documents=True, pretrained=str(tmp_path / "model"))
    assert tok.kind == "pretrained" and tok.vocab_size == bpe.vocab_size and tok.eos_token_id == bpe.eos_token_id
    assert tok.encode("the cat runs") == bpe.encode("the cat runs")


@pytest.mark.parametrize("kind", ["char", "byte", "bpe"])
def test_a_run_dir_keeps_its_tokenizer_and_a_resume_reads_it(kind, bpe, tmp_path):
    built = {
        "char": lm_tokenizer.CharTokenizer.from_texts(["hello", "world"], eos=True, eval_texts=["hi!"]),
        "byte": lm_tokenizer.ByteTokenizer(),
        "bpe": bpe,
    }[kind]
    run = tmp_path / "run"
    path = lm_tokenizer.save_to_run_dir(built, run)
    assert path == RunDir(run).tokenizer and sorted(p.name for p in run.iterdir()) == ["tokenizer"]
    loaded = lm_tokenizer.load(path)
    assert (loaded.kind, loaded.vocab_size, loaded.eos_token_id) == (built.kind, built.vocab_size, built.eos_token_id)
    for text in ["hello world", "hi!", "the cat"] if kind != "char" else ["hello world", "hi!"]:
        assert loaded.encode(text) == built.encode(text) and loaded.decode(loaded.encode(text)) == built.decode(
            built.encode(text))
    # a resumed run reads the saved tokenizer, whatever the configuration now says
    cfg = TrainConfig()
    cfg.model.tokenizer.kind = "byte" if kind != "byte" else "char"
    again = lm_tokenizer.for_run(cfg, run, texts=lambda: ["zzz"], several_documents=True)
    assert (again.kind, again.vocab_size) == (built.kind, built.vocab_size)


def test_a_run_started_from_another_runs_checkpoint_reads_that_runs_tokenizer(tmp_path):
    source = tmp_path / "source"
    lm_tokenizer.save_to_run_dir(lm_tokenizer.CharTokenizer.from_texts(["abc"], eos=False), source)
    (source / "checkpoint.pt").write_bytes(b"")
    cfg = TrainConfig()
    cfg.model.tokenizer.kind = "byte"
    for named in (source, source / "checkpoint.pt"):
        cfg.model.checkpoint = str(named)
        new = tmp_path / f"new-{named.name}"
        tok = lm_tokenizer.for_run(cfg, new, texts=lambda: ["xyz"], several_documents=True)
        assert (tok.kind, tok.chars) == ("char", ["a", "b", "c"])
        assert lm_tokenizer.load(RunDir(new).tokenizer).chars == ["a", "b", "c"]  # saved into the new run
    cfg.model.checkpoint = str(tmp_path / "weights.pth")  # a plain weights file: no run, a new tokenizer
    assert lm_tokenizer.for_run(cfg, None, texts=lambda: [], several_documents=True).kind == "byte"


def test_t5_tasks_start_from_the_source_runs_tokenizer(tmp_path):
    from pgfsparse.data.text.tokenizer import build_tokenizer, load_source_run_tokenizer
    from pgfsparse.tasks.seq2seq import Seq2SeqTask

    texts = ["the cat runs over the small red tree"] * 50
    t5_tok = build_tokenizer("bpe", texts=texts, vocab_size=400, cache_dir=tmp_path / "cache")
    source = tmp_path / "t5-run"
    t5_tok.save_pretrained(str(RunDir(source).tokenizer))
    cfg = TrainConfig()
    cfg.model.family, cfg.model.checkpoint = "t5", str(source / "checkpoint.pt")
    cfg.model.tokenizer.kind = "byte"  # would build ByT5's; the source run's BPE wins
    task = Seq2SeqTask(cfg, tmp_path / "new")
    tok = task.build_tokenizer(lambda: iter(["other text"]))
    assert len(tok) == len(t5_tok) and tok("the cat").input_ids == t5_tok("the cat").input_ids
    assert (RunDir(tmp_path / "new").tokenizer / "tokenizer_config.json").is_file()
    char_run = tmp_path / "char-run"
    lm_tokenizer.save_to_run_dir(lm_tokenizer.ByteTokenizer(), char_run)
    with pytest.raises(DataConfigError, match="causal LM's char or byte one"):
        load_source_run_tokenizer(char_run)


# -- the task -----------------------------------------------------------------------------------
def tiny_gpt2(vocab_size: int, positions: int = 8, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab_size, n_positions=positions, n_embd=16, n_layer=1, n_head=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config).eval()


def causal_task(**data):
    from pgfsparse.tasks.causal_lm import CausalLM

    cfg = TrainConfig()
    cfg.model.family, cfg.data.kind = "gpt2", "corpus"
    for key, value in data.items():
        setattr(cfg.data, key, value)
    return CausalLM(cfg)


def test_evaluate_is_the_token_weighted_cross_entropy_of_the_whole_split():
    from pgfsparse.data.loader import make_eval_loader

    torch.manual_seed(1)
    stream = torch.randint(0, 11, (23,), dtype=torch.int32)
    blocks = Blocks(stream, 4, keep_partial=True, pad_id=3)  # 22 predicted tokens: 5 full blocks + 2 tokens
    model, task = tiny_gpt2(11), causal_task(block_size=4)
    metrics = task.evaluate(model, make_eval_loader(blocks, 4), torch.device("cpu"), contextlib.nullcontext)
    # independently: each block run alone and unpadded, log-probabilities of the true next tokens summed
    log_probs, hits = [], 0
    for start in range(0, 22, 4):
        window = stream[start : min(start + 5, 23)].long()
        logits = model(input_ids=window[None, :-1]).logits[0]
        log_probs += logits.log_softmax(-1).gather(1, window[1:, None]).squeeze(1).tolist()
        hits += int((logits.argmax(-1) == window[1:]).sum())
    expected = -sum(log_probs) / 22
    assert len(log_probs) == 22 and metrics["tokens"] == 22
    assert metrics["loss"] == pytest.approx(expected, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)
    assert metrics["perplexity"] == math.exp(metrics["loss"])
    assert metrics["token_acc"] == pytest.approx(100 * hits / 22)
    # a per-batch mean of batch losses would differ: the batches hold 16 and 6 tokens
    per_batch = [F.cross_entropy(model(input_ids=i).logits.flatten(0, 1), t.flatten(), ignore_index=IGNORE_INDEX)
                 for i, t in make_eval_loader(blocks, 4)]
    assert abs(sum(per_batch).item() / 2 - expected) > 1e-4


def test_loss_is_the_mean_over_the_micro_batch_and_example_inputs_are_one_block():
    model, task = tiny_gpt2(11), causal_task(block_size=6)
    inputs, targets = torch.randint(0, 11, (3, 6)), torch.randint(0, 11, (3, 6))
    log_probs = model(input_ids=inputs).logits.log_softmax(-1).gather(2, targets[..., None])
    assert task.loss(model, (inputs, targets)).item() == pytest.approx(-log_probs.mean().item(), rel=1e-5)
    args, kwargs = task.example_inputs(None, torch.device("cpu"))
    assert args == () and kwargs["input_ids"].shape == (1, 6)
    assert (task.eval_metric, task.higher_is_better) == ("perplexity", False)


def write_corpus(folder: Path, train: str, validation: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text(train)
    (folder / "validation.txt").write_text(validation)
    return folder


def test_build_data_joins_documents_with_eos_and_keeps_the_whole_eval_split(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", "abc\nba\n\ncab\n", "ab\nc\n")
    task = causal_task(path=str(corpus), name="text", block_size=3)
    task.cfg.model.tokenizer.kind = "char"
    data = task.build_data()
    tok = task.tokenizer
    assert (tok.chars, tok.eos_token_id) == (["a", "b", "c"], 3)  # three documents: an EOS id
    # a b c EOS b a EOS c a b -> 10 tokens, 9 predicted: 3 training blocks of 3
    assert data.train.stream.tolist() == [0, 1, 2, 3, 1, 0, 3, 2, 0, 1] and len(data.train) == 3
    assert data.train[2][1].tolist() == [2, 0, 1]
    # eval: a b EOS c -> 3 predicted tokens, one block
    assert data.eval.stream.tolist() == [0, 1, 3, 2] and len(data.eval) == 1
    assert task.train_examples(data) == 3


def test_row_separator_joins_lines_of_one_text_without_eos(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", "ab\nc\nab\n", "ba\ncc\n")
    task = causal_task(path=str(corpus), name="text", block_size=2)
    task.cfg.data.row_separator = "\n"  # (data.row_separator: rows are lines of one text)
    task.cfg.model.tokenizer.kind = "char"
    data = task.build_data()
    assert task.tokenizer.eos_token_id is None and task.tokenizer.chars == ["\n", "a", "b", "c"]
    assert task.tokenizer.decode(data.train.stream.tolist()) == "ab\nc\nab"
    assert task.tokenizer.decode(data.eval.stream.tolist()) == "ba\ncc"


def test_eval_limit_is_a_fixed_sample_of_blocks(tmp_path):
    from pgfsparse.data.loader import eval_sample

    corpus = write_corpus(tmp_path / "corpus", "abcabcabcab\n", "abcabcabcabcabcabcabcabca\n")
    task = causal_task(path=str(corpus), name="text", block_size=2, eval_limit=5)
    task.cfg.model.tokenizer.kind = "char"
    data = task.build_data()
    assert len(data.eval) == 5 and data.eval.indices == eval_sample(12, 5)  # 24 predicted tokens: 12 blocks
    assert "fixed seeded sample of 5 of 12" in data.source


def test_too_little_text_is_a_one_line_error(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", "abc\n", "ab\n")
    task = causal_task(path=str(corpus), name="text", block_size=8)
    task.cfg.model.tokenizer.kind = "byte"
    with pytest.raises(DataConfigError, match=r"holds 3 tokens, fewer than data.block_size \+ 1 = 9"):
        task.build_data()


@needs_shakespeare
def test_tiny_shakespeare_blocks_cover_the_whole_validation_split(monkeypatch):
    monkeypatch.setenv("PGF_DATA_DIR", str(SHARED_DATA))
    task = causal_task(name="tiny_shakespeare", block_size=64)
    task.cfg.model.tokenizer.kind = "char"
    data = task.build_data()
    assert task.tokenizer.vocab_size == 65
    assert len(data.train) == (1003854 - 1) // 64 == 15685
    assert len(data.eval) == math.ceil((111540 - 1) / 64) == 1743 and data.eval.predicted_tokens() == 111539
    assert (data.eval[1742][1] != IGNORE_INDEX).sum() == 111539 - 1742 * 64


def test_headline_reads_perplexity_and_loss():
    summary = {"eval_metric": "perplexity", "eval_value": 5.4321, "eval_value_strict": 6.1, "steps": 20,
               "train_flops": 1.234e12, "wall_seconds": 12.3, "run_dir": "runs/x",
               "eval": {"eval/loss": 1.6923, "eval_strict/loss": 1.8083}}
    assert causal_task().headline(summary) == (
        "perplexity 5.43 as trained, 6.10 strict N:M (loss 1.692 / 1.808); 20 steps, 1.23e+12 training FLOPs, "
        "12s -> runs/x")


# -- routing --------------------------------------------------------------------------------------
@pytest.mark.parametrize("family, kind, task", [
    ("gpt2", "corpus", "CausalLM"), ("llama", "corpus", "CausalLM"), ("gpt2", "span_corruption", "CausalLM"),
    ("t5", "corpus", "SpanCorruption"), ("t5", "span_corruption", "SpanCorruption"),
    ("t5", "translation", "Translation"),
])
def test_a_corpus_task_follows_the_model_family(family, kind, task):
    from pgfsparse.tasks import build_task

    cfg = TrainConfig()
    cfg.model.family, cfg.data.kind = family, kind
    assert type(build_task(cfg)).__name__ == task


def test_the_corpus_configs():
    pytest.importorskip("hydra")
    from hydra import compose, initialize_config_module

    from pgfsparse.config.validation import to_train_config

    with initialize_config_module(config_module="pgfsparse.conf", version_base="1.3"):
        composed = lambda *o: to_train_config(compose(config_name="train", overrides=list(o)))  # noqa: E731
        shakespeare = composed("model=gpt2", "data=tiny_shakespeare").data
        wikitext = composed("model=gpt2", "data=wikitext").data
        wikitext_103 = composed("model=gpt2", "data=wikitext", "data.hub_config=wikitext-103-raw-v1").data
        text = composed("model=llama", "data=text", "data.path=/corpus").data
    assert (shakespeare.kind, shakespeare.hub_id, shakespeare.block_size) == ("corpus", None, 64)
    assert (wikitext.kind, wikitext.hub_id) == ("corpus", "Salesforce/wikitext")
    assert wikitext.hub_config == "wikitext-2-raw-v1"
    assert wikitext.row_separator == "" and wikitext_103.hub_config == "wikitext-103-raw-v1"
    assert (text.kind, text.path, text.row_separator) == ("corpus", "/corpus", None)


# -- pgf-train --------------------------------------------------------------------------------------
@needs_shakespeare
def test_pgf_train_gpt2_on_tiny_shakespeare(tmp_path, monkeypatch):
    pytest.importorskip("hydra")
    from test_cli import train

    monkeypatch.setenv("PGF_DATA_DIR", str(SHARED_DATA))
    monkeypatch.setenv("PGF_CACHE_DIR", str(tmp_path / "cache"))
    run = tmp_path / "run"
    summary = train(run, "model=gpt2", "data=tiny_shakespeare", "sparsity=1:4", "recipe=decay", "budget.steps=4",
                    "threads=1", "data.eval_limit=8", "data.batch_size=4", "model.tokenizer.kind=char",
                    "model.kwargs.n_layer=1", "model.kwargs.n_embd=32", "model.kwargs.n_head=2")
    assert summary["eval_metric"] == "perplexity" and summary["steps"] == 4
    final = summary["eval"]
    assert summary["eval_value"] == final["eval/perplexity"] == math.exp(final["eval/loss"])
    assert final["eval/tokens"] == 8 * 64 and math.log(65) - 1 < final["eval/loss"] < math.log(65) + 1
    assert "fixed seeded sample of 8 of 1743" in summary["data_source"]
    assert lm_tokenizer.load(RunDir(run).tokenizer).vocab_size == 65


def test_a_streamed_corpus_trains_on_blocks_in_stream_order(monkeypatch):
    from pgfsparse.data.text import rows as rows_module
    from pgfsparse.data.text.rows import StreamedRows, TextSplits

    documents = [{"text": text} for text in ("abcab", "ca", "bbbac")]
    splits = TextSplits(StreamedRows(documents, ["text"], "a test stream"), [{"text": "abz"}], "stream", streaming=True)
    monkeypatch.setattr(rows_module, "load_text_splits", lambda cfg, columns: splits)
    task = causal_task(name="c4", block_size=3, batch_size=2, eval_limit=1)
    task.cfg.model.tokenizer.kind = "char"
    data = task.build_data()
    tok = task.tokenizer
    # a stream's vocabulary is a sample: an unk id always; documents: an EOS id
    assert (tok.chars, tok.eos_token_id, tok.unk_token_id) == (["a", "b", "c"], 3, 4)
    assert task.train_examples(data) is None and len(data.eval) == 1  # eval: all blocks of the first documents
    assert data.source == "stream"
    assert data.eval[0][1].tolist() == [1, 4, IGNORE_INDEX]  # a b z -> targets b unk
    # a b c a b EOS c a EOS b b b a c: blocks of 3 + 1, stride 3
    inputs, targets = next(task.train_batches(data, start_micro_step=0, rank=0, world_size=1))
    assert inputs.tolist() == [[0, 1, 2], [0, 1, 3]] and targets.tolist() == [[1, 2, 0], [1, 3, 2]]
    inputs, _ = next(task.train_batches(data, start_micro_step=1, rank=0, world_size=1))
    assert inputs.tolist() == [[2, 0, 3], [1, 1, 1]]


def test_resume_equals_an_uninterrupted_causal_lm_run(tmp_path):
    pytest.importorskip("hydra")
    from test_cli import assert_resume_equals_uninterrupted

    corpus = write_corpus(tmp_path / "corpus", "\n".join(SAMPLES * 20) + "\n", "\n".join(SAMPLES) + "\n")
    common = ["model=gpt2", "data=text", f"data.path={corpus}", "model.tokenizer.kind=byte", "data.block_size=16",
              "data.batch_size=4", "model.kwargs.n_layer=1", "model.kwargs.n_embd=32", "model.kwargs.n_head=2",
              "model.kwargs.resid_pdrop=0.1", "sparsity=1:4", "budget.steps=6", "threads=1"]
    assert_resume_equals_uninterrupted(tmp_path / "runs", common, at=4)
