"""Causal-LM tokenizers: characters, bytes, the offline BPE, or a pretrained model's own.

Every kind follows one small protocol, which the task, the lm-eval wrapper and the export read:
`encode(text) -> ids` (no special token added), `encode_batch(texts)`, `decode(ids)` (special ids
left out), `vocab_size` (the model's embedding rows), `eos_token_id` (None: documents are joined with
nothing), `save(folder)`; the module's `load(folder)` reads any of them back.

- `char`: the sorted distinct characters of the training split, as nanoGPT's shakespeare_char (65 ids for
  Tiny Shakespeare). An EOS id (after the characters) exists only when the training split holds several
  documents: one running text needs no separator, so Tiny Shakespeare keeps nanoGPT's 65 ids. A character
  of the eval split that training never saw maps to one more id, `unk`, which exists only when the eval
  split has such characters (a warning counts them); without it an unseen character is refused in one line.
- `byte`: the UTF-8 bytes 0-255, EOS 256 (257 ids); covers every text.
- `bpe`: the byte-level BPE that T5 runs train (data/text/tokenizer.py), trained on the training split and
  cached; its pad/unk ids and 100 sentinels stay in the vocabulary, unused, so that a T5 run and a decoder
  run on one corpus share one tokenizer. EOS is its `</s>`.
- `pretrained`: the model's own `AutoTokenizer` (model.tokenizer.name, else model.pretrained); EOS is its eos.
- `auto`: `pretrained` when model.pretrained (or model.tokenizer.name) is set, else `bpe`.

A run keeps its tokenizer in `<run dir>/tokenizer/` (`for_run`), so a resumed run reads the same
vocabulary; a run started from another run's weights (model.checkpoint) starts from that run's tokenizer.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

from pgfsparse.errors import DataConfigError, DataNotFoundError, first_line
from pgfsparse.rundir.layout import RunDir

log = logging.getLogger(__name__)

KINDS = ("auto", "char", "byte", "bpe", "pretrained")
META_FILE = "lm_tokenizer.json"  # which kind a saved folder holds, and a char/byte tokenizer's whole state
FORMAT = "pgfsparse-lm-tokenizer-v1"
UNSEEN_SHOWN = 10  # unseen eval characters quoted in the warning


class CharTokenizer:
    """One id per character of the training split (sorted), then EOS and `unk` when they exist."""

    kind = "char"

    def __init__(self, chars: Sequence[str], *, eos: bool, unk: bool):
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        size = len(self.chars)
        self.eos_token_id: Optional[int] = size if eos else None
        self.unk_token_id: Optional[int] = size + int(eos) if unk else None
        self.vocab_size = size + int(eos) + int(unk)

    @classmethod
    def from_texts(
        cls, texts: Iterable[str], *, eos: bool, eval_texts: Iterable[str] = (), unk: bool = False
    ) -> "CharTokenizer":
        """The characters of `texts`; `unk` if `eval_texts` hold others (warned with a count) or `unk` is set."""
        seen: set = set()
        for text in texts:
            seen.update(text)
        unseen: Dict[str, int] = {}
        for text in eval_texts:
            for char in set(text) - seen:
                unseen[char] = unseen.get(char, 0) + text.count(char)
        if unseen:
            shown = ", ".join(repr(c) for c in sorted(unseen)[:UNSEEN_SHOWN])
            log.warning(
                "char tokenizer: %d eval characters (%d distinct: %s) never occur in the training split; "
                "they share one unk id",
                sum(unseen.values()),
                len(unseen),
                shown,
            )
        return cls(sorted(seen), eos=eos, unk=unk or bool(unseen))

    def encode(self, text: str) -> List[int]:
        index, unk = self.index, self.unk_token_id
        if unk is not None:
            return [index.get(c, unk) for c in text]
        try:
            return [index[c] for c in text]
        except KeyError as error:
            raise DataConfigError(
                f"the character {error.args[0]!r} is not among this char tokenizer's {len(self.chars)} characters "
                "(its training split's): use model.tokenizer.kind=byte or bpe, which cover any text"
            ) from None

    def encode_batch(self, texts: Sequence[str]) -> List[List[int]]:
        return [self.encode(text) for text in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """The characters of `ids`: EOS is left out, `unk` reads as U+FFFD."""
        chars, unk = self.chars, self.unk_token_id
        return "".join(chars[i] if i < len(chars) else "\ufffd" if i == unk else "" for i in map(int, ids))

    def save(self, folder: Path) -> None:
        meta = {"kind": self.kind, "chars": self.chars, "eos": self.eos_token_id is not None}
        _write_meta(folder, {**meta, "unk": self.unk_token_id is not None})


class ByteTokenizer:
    """UTF-8 bytes as ids 0-255, EOS 256."""

    kind = "byte"
    eos_token_id: Optional[int] = 256
    vocab_size = 257

    def encode(self, text: str) -> List[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: Sequence[str]) -> List[List[int]]:
        return [self.encode(text) for text in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of the byte ids (EOS left out; a cut multi-byte character reads as U+FFFD)."""
        return bytes(i for i in map(int, ids) if i < 256).decode("utf-8", errors="replace")

    def save(self, folder: Path) -> None:
        _write_meta(folder, {"kind": self.kind})


class HFTokenizer:
    """A Hugging Face tokenizer (the offline BPE, or a pretrained model's) behind the same protocol."""

    def __init__(self, tokenizer, kind: str):
        self.tokenizer, self.kind = tokenizer, kind
        self.eos_token_id: Optional[int] = tokenizer.eos_token_id
        self.vocab_size = len(tokenizer)
        # The BOS a pretrained model puts before every text (Llama's; GPT-2 and the offline BPE have none): the
        # lm-eval wrapper conditions on it as lm-eval's own HF model does, or Llama-family scores drop.
        bos = tokenizer.bos_token_id
        self.bos_token_id: Optional[int] = bos if bos is not None and tokenizer("a")["input_ids"][:1] == [bos] else None

    def encode(self, text: str) -> List[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> List[List[int]]:
        # verbose=False: a whole document is longer than the model's context, on purpose (it is cut into blocks)
        return self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def save(self, folder: Path) -> None:
        self.tokenizer.save_pretrained(str(folder))
        _write_meta(folder, {"kind": self.kind})


LMTokenizer = Union[CharTokenizer, ByteTokenizer, HFTokenizer]


def _write_meta(folder: Path, meta: dict) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / META_FILE).write_text(json.dumps({"format": FORMAT, **meta}, indent=1) + "\n", encoding="utf-8")


def load(folder) -> LMTokenizer:
    """The tokenizer saved in `folder` by `save`; a plain Hugging Face tokenizer folder (a T5 run's) loads too."""
    folder = Path(folder)
    meta_path = folder / META_FILE
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        kind = meta.get("kind")
        if kind == "char":
            return CharTokenizer(meta["chars"], eos=meta["eos"], unk=meta["unk"])
        if kind == "byte":
            return ByteTokenizer()
        return HFTokenizer(_auto_tokenizer(folder), kind)
    if (folder / "tokenizer_config.json").is_file():
        return HFTokenizer(_auto_tokenizer(folder), "pretrained")
    raise DataNotFoundError(f"{folder} holds no saved tokenizer ({META_FILE} or tokenizer_config.json)")


def build(
    kind: str,
    *,
    texts: Callable[[], Iterable[str]],
    several_documents: bool,
    eval_texts: Callable[[], Iterable[str]] = lambda: (),
    complete: bool = True,
    vocab_size: int = 8000,
    train_texts: Optional[int] = None,
    pretrained: Optional[str] = None,
    cache_dir=None,
    data_dir_guard=None,
) -> LMTokenizer:
    """A new tokenizer of `kind` (see the module docstring); `texts()` gives the training split's texts.

    `several_documents`: the training split is more than one document (char: whether an EOS id exists);
    `eval_texts()`: the eval split's texts (char: whether an `unk` id is needed); `complete`: `texts()` is
    the whole training split (False, a stream: char reads its first `train_texts` and always has `unk`);
    `train_texts`: bpe trains on at most this many texts.
    """
    if kind == "auto":
        kind = "pretrained" if pretrained else "bpe"
    if kind == "char":
        sample = texts() if complete else _first(texts(), train_texts)
        return CharTokenizer.from_texts(sample, eos=several_documents, eval_texts=eval_texts(), unk=not complete)
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        from pgfsparse.data.text.tokenizer import build_tokenizer

        bpe = build_tokenizer(
            "bpe",
            texts=lambda: _first(texts(), train_texts),
            vocab_size=vocab_size,
            cache_dir=cache_dir,
            data_dir_guard=data_dir_guard,
        )
        return HFTokenizer(bpe, "bpe")
    if kind == "pretrained":
        if not pretrained:
            raise DataConfigError(
                "model.tokenizer.kind=pretrained needs model.tokenizer.name or model.pretrained (a hub id or folder)"
            )
        return HFTokenizer(_auto_tokenizer(pretrained), "pretrained")
    raise DataConfigError(f"model.tokenizer.kind={kind!r} is unknown for a causal LM; choose one of {', '.join(KINDS)}")


def _first(texts: Iterable[str], limit: Optional[int]) -> Iterable[str]:
    return texts if limit is None else (text for _, text in zip(range(limit), texts))


def _auto_tokenizer(name):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(name))
    except Exception as error:  # noqa: BLE001 - every failure becomes one line naming the fix
        raise DataNotFoundError(
            f"could not load the tokenizer {str(name)!r} ({type(error).__name__}: {first_line(error)[:300]}); "
            "pass a local directory with the tokenizer files, or allow internet access / fill the HF cache"
        ) from error


def for_run(
    cfg,
    run_dir,
    *,
    texts: Callable[[], Iterable[str]],
    several_documents: bool,
    eval_texts: Callable[[], Iterable[str]] = lambda: (),
    complete: bool = True,
) -> LMTokenizer:
    """The run's tokenizer: the run dir's saved one (a resume), else that of the run model.checkpoint names,
    else a new one per model.tokenizer (`build`'s arguments); saved to `<run_dir>/tokenizer/` when new there."""
    from pgfsparse.data.lookup import DATA_DIR_ENV
    from pgfsparse.data.text.tokenizer import source_run_tokenizer
    from pgfsparse.models.hugging_face import pretrained_source

    if run_dir is not None and RunDir(run_dir).tokenizer.is_dir():
        return load(RunDir(run_dir).tokenizer)
    source = source_run_tokenizer(cfg.model.checkpoint)
    if source is not None:
        log.info("tokenizer: the one of model.checkpoint's run, %s", source)
        tokenizer = load(source)
    else:
        settings = cfg.model.tokenizer
        tokenizer = build(
            settings.kind,
            texts=texts,
            several_documents=several_documents,
            eval_texts=eval_texts,
            complete=complete,
            vocab_size=settings.vocab_size,
            train_texts=settings.train_texts,
            pretrained=settings.name or pretrained_source(cfg.model),
            data_dir_guard=os.environ.get(DATA_DIR_ENV),
        )
    if run_dir is not None:
        save_to_run_dir(tokenizer, run_dir)
    return tokenizer


def save_to_run_dir(tokenizer: LMTokenizer, run_dir) -> Path:
    """Save into <run_dir>/tokenizer (atomically); an existing one is left as it is (another rank's, the same)."""
    from pgfsparse.data.text import tokenizer as t5_tokenizer

    return t5_tokenizer.save_to_run_dir(tokenizer, run_dir, write=tokenizer.save)
