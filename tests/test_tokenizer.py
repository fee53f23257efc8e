"""The T5 tokenizer: special ids, sentinels, the BPE cache (atomic, shared by parallel jobs), the guard, kinds."""
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers / huggingface_hub read it

import pytest
from transformers import PreTrainedTokenizerBase

from pgfsparse.data.text import tokenizer as tk
from pgfsparse.data.text.tokenizer import (
    build_tokenizer,
    load_from_run_dir,
    save_to_run_dir,
    sentinel_ids,
)

WORDS = ("the cat dog house runs quickly slowly under over and a small big red green tree "
         "der die das Haus Mädchen läuft über Straße grün schön Größe und nicht Bäume").split()
SAMPLES = ["Hello, world!  Two  spaces and a tab\there.", "Das Mädchen läuft über die Straße; Größe: ÄÖÜ äöü ß.",
           " leading space", "trailing space ", "unseen wörds: ĳ € 日本"]


def corpus(seed=0, n=300):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + "." for _ in range(n)]


@pytest.fixture
def texts():
    return corpus()


@pytest.fixture
def bpe(texts, tmp_path):
    return build_tokenizer("bpe", texts=texts, vocab_size=400, cache_dir=tmp_path / "cache")


def test_bpe_special_ids_eos_and_sentinels(bpe):
    assert isinstance(bpe, PreTrainedTokenizerBase)
    assert len(bpe) == 400
    assert (bpe.pad_token_id, bpe.eos_token_id, bpe.unk_token_id) == (0, 1, 2)
    assert bpe.convert_ids_to_tokens([0, 1, 2]) == ["<pad>", "</s>", "<unk>"]
    assert sentinel_ids(bpe, 100) == [399 - i for i in range(100)]
    assert bpe.convert_ids_to_tokens(sentinel_ids(bpe, 2)) == ["<extra_id_0>", "<extra_id_1>"]
    ids = bpe("the cat runs").input_ids
    assert ids[-1] == 1 and 1 not in ids[:-1] and 0 not in ids
    assert bpe("a", "b").input_ids.count(1) == 2
    batch = bpe(["x", "the green tree"], padding=True).input_ids
    assert batch[0][-1] == 0 and batch[0].count(1) == 1 and batch[1][-1] == 1
    # sentinels in a text are single tokens, never split
    ids = bpe("the <extra_id_0> cat <extra_id_1>").input_ids
    assert 399 in ids and 398 in ids
    with pytest.raises(ValueError, match="100 sentinel"):
        sentinel_ids(bpe, 101)


def test_bpe_decode_round_trip(bpe):
    for s in SAMPLES:
        ids = bpe(s).input_ids
        assert bpe.unk_token_id not in ids  # byte-level: every string is covered
        assert bpe.decode(ids, skip_special_tokens=True) == s
    # merges were learnt: frequent words are one or two tokens, not bytes
    assert len(bpe("Mädchen").input_ids) <= 3


def test_cache_loads_without_training(texts, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = build_tokenizer("bpe", texts=texts, vocab_size=400, cache_dir=cache)
    files = sorted((cache / "tokenizers").iterdir())
    assert [f.name for f in files] == [files[0].name] and files[0].name.startswith("bpe-400-")
    assert len(files[0].stem.split("-")[-1]) == 16
    json.loads(files[0].read_text(encoding="utf-8"))  # valid JSON

    def no_training(*a, **k):
        raise AssertionError("trained again although the cache holds this tokenizer")
    monkeypatch.setattr(tk, "_train_bpe", no_training)
    again = build_tokenizer("bpe", texts=lambda: iter(texts), vocab_size=400, cache_dir=cache)  # callable works too
    for s in SAMPLES + texts[:20]:
        assert again(s).input_ids == first(s).input_ids
    assert sentinel_ids(again, 3) == [399, 398, 397]
    # different texts or vocabulary: a new file (training is needed, so it fails here)
    with pytest.raises(AssertionError, match="trained again"):
        build_tokenizer("bpe", texts=texts[:-1], vocab_size=400, cache_dir=cache)
    with pytest.raises(AssertionError, match="trained again"):
        build_tokenizer("bpe", texts=texts, vocab_size=401, cache_dir=cache)
    monkeypatch.undo()
    build_tokenizer("bpe", texts=corpus(seed=1), vocab_size=400, cache_dir=cache)
    build_tokenizer("bpe", texts=texts, vocab_size=450, cache_dir=cache)
    names = sorted(f.name for f in (cache / "tokenizers").iterdir())
    assert len(names) == 3 and sum(n.startswith("bpe-450-") for n in names) == 1
    assert not any(n.startswith(".") or n.endswith(".tmp") for n in names)  # no temp files left


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("PGF_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tk.default_cache_dir() == tmp_path / "xdg" / "pgfsparse"
    monkeypatch.setenv("PGF_CACHE_DIR", str(tmp_path / "pgf"))
    assert tk.default_cache_dir() == tmp_path / "pgf"
    build_tokenizer("bpe", texts=corpus(n=50), vocab_size=380)
    assert len(list((tmp_path / "pgf" / "tokenizers").glob("bpe-380-*.json"))) == 1
    monkeypatch.delenv("PGF_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert tk.default_cache_dir() == Path.home() / ".cache" / "pgfsparse"


CHILD = textwrap.dedent("""
    import json, sys
    sys.path[:0] = {path!r}
    from test_tokenizer import corpus, SAMPLES
    from pgfsparse.data.text.tokenizer import build_tokenizer
    tok = build_tokenizer("bpe", texts=corpus(n=2000), vocab_size=500, cache_dir={cache!r})
    print(json.dumps([tok(s).input_ids for s in SAMPLES + corpus(seed=5, n=20)]))
""")


def test_parallel_builds_share_the_cache(tmp_path):
    cache = str(tmp_path / "cache")
    code = CHILD.format(path=[str(Path(__file__).parent), str(Path(tk.__file__).parents[2])], cache=cache)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    assert json.loads(outs[0][0]) == json.loads(outs[1][0])
    names = os.listdir(os.path.join(cache, "tokenizers"))
    assert len(names) == 1 and names[0].startswith("bpe-500-") and names[0].endswith(".json")
    here = build_tokenizer("bpe", texts=corpus(n=2000), vocab_size=500, cache_dir=cache)
    assert [here(s).input_ids for s in SAMPLES + corpus(seed=5, n=20)] == json.loads(outs[0][0])


def test_cache_inside_data_dir_is_refused(texts, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(ValueError, match="lies inside the data folder") as e:
        build_tokenizer("bpe", texts=texts, vocab_size=400, cache_dir=data / "sub" / "cache", data_dir_guard=data)
    assert "\n" not in str(e.value) and "PGF_CACHE_DIR" in str(e.value)
    assert not (data / "sub").exists()
    with pytest.raises(ValueError, match="lies inside"):
        build_tokenizer("bpe", texts=texts, vocab_size=400, cache_dir=data, data_dir_guard=str(data))
    tok = build_tokenizer("bpe", texts=texts, vocab_size=400, cache_dir=tmp_path / "c", data_dir_guard=data)
    assert tok.eos_token_id == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="bpe, byte, pretrained") as e:
        build_tokenizer("sentencepiece")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="texts"):
        build_tokenizer("bpe")
    with pytest.raises(ValueError, match="at least 360"):
        build_tokenizer("bpe", texts=["a b"], vocab_size=300)
    with pytest.raises(ValueError, match="pretrained="):
        build_tokenizer("pretrained")


def test_byte_kind_offline():
    tok = build_tokenizer("byte")
    assert isinstance(tok, PreTrainedTokenizerBase)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    n = len(tok)
    assert n == 3 + 256 + 100
    assert sentinel_ids(tok, 100) == [n - 1 - i for i in range(100)]
    assert tok.convert_ids_to_tokens(n - 1) == "<extra_id_0>"
    ids = tok("hä").input_ids
    assert ids == [ord("h") + 3, 0xC3 + 3, 0xA4 + 3, 1]
    for s in SAMPLES:
        assert tok.decode(tok(s).input_ids, skip_special_tokens=True) == s
    with pytest.raises(ValueError, match="sentinel"):
        sentinel_ids(tok, 101)


def test_pretrained_from_local_dir(bpe, tmp_path):
    bpe.save_pretrained(str(tmp_path / "tok"))
    tok = build_tokenizer("pretrained", pretrained=tmp_path / "tok")
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert sentinel_ids(tok, 100) == sentinel_ids(bpe, 100)
    for s in SAMPLES:
        assert tok(s).input_ids == bpe(s).input_ids


def test_pretrained_missing_hub_id_offline(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="nobody/no-such-tokenizer") as e:
        build_tokenizer("pretrained", pretrained="nobody/no-such-tokenizer")
    msg = str(e.value)
    assert "\n" not in msg and "local directory with the tokenizer files" in msg and "internet access" in msg


@pytest.mark.parametrize("kind", ["bpe", "byte"])
def test_run_dir_round_trip(kind, bpe, tmp_path):
    tok = bpe if kind == "bpe" else build_tokenizer("byte")
    run = tmp_path / "run"
    assert load_from_run_dir(run) is None
    path = save_to_run_dir(tok, run)
    assert path == run / "tokenizer" and path.is_dir()
    assert sorted(p.name for p in run.iterdir()) == ["tokenizer"]  # no temp folder left
    loaded = load_from_run_dir(run)
    assert len(loaded) == len(tok) and sentinel_ids(loaded, 100) == sentinel_ids(tok, 100)
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.unk_token_id) == (0, 1, 2)
    for s in SAMPLES + ["the <extra_id_0> cat"]:
        assert loaded(s).input_ids == tok(s).input_ids
        assert loaded.decode(loaded(s).input_ids, skip_special_tokens=True) == tok.decode(tok(s).input_ids, skip_special_tokens=True)
    # an existing tokenizer is left as it is (a resumed run keeps its vocabulary)
    before = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    other = build_tokenizer("bpe", texts=corpus(seed=3), vocab_size=420, cache_dir=tmp_path / "c2")
    assert save_to_run_dir(other, run) == path
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == before
    assert len(load_from_run_dir(run)) == len(tok)
