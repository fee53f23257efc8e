"""The tokenizer for T5 runs, working offline: pad 0, eos 1 (appended to every text), unk 2, 100 sentinels.

`build_tokenizer("bpe", texts=...)` trains a byte-level BPE on the training split and caches it as one
JSON file under the cache folder; "byte" is ByT5's byte tokenizer (no files); "pretrained" loads a hub
id or a local folder. Sentinels follow T5: <extra_id_0> has the highest id. A run saves its tokenizer
into the run folder (`save_to_run_dir`) so a resumed run uses exactly the same vocabulary, and a run started from
another run's weights (model.checkpoint) starts from that run's tokenizer (`load_source_run_tokenizer`).
Size the model's embeddings with `len(tokenizer)`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Callable, Optional

from pgfsparse.errors import DataConfigError, DataNotFoundError, first_line
from pgfsparse.rundir.files import atomic_path, atomic_write_text
from pgfsparse.rundir.layout import CHECKPOINT, RunDir

log = logging.getLogger(__name__)

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
NUM_SENTINELS = 100
SENTINELS = [f"<extra_id_{i}>" for i in range(NUM_SENTINELS)]
KINDS = ("bpe", "byte", "pretrained")
_BPE_FORMAT = "pgfsparse-bpe-v1"  # bump when the training settings below change


def default_cache_dir() -> Path:
    if os.environ.get("PGF_CACHE_DIR"):
        return Path(os.environ["PGF_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "pgfsparse"
    return Path.home() / ".cache" / "pgfsparse"


def sentinel_ids(tokenizer, count: int) -> list[int]:
    """Ids of <extra_id_0>, <extra_id_1>, ... <extra_id_{count-1}>."""
    ids = tokenizer.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(count)])
    if any(i is None or i == tokenizer.unk_token_id for i in ids):
        have = sum(i is not None and i != tokenizer.unk_token_id for i in ids)
        raise ValueError(f"the tokenizer has {have} sentinel tokens <extra_id_N>, {count} are needed")
    return ids


def build_tokenizer(
    kind: str, *, texts=None, vocab_size: int = 8000, cache_dir=None, pretrained=None, data_dir_guard=None
):
    """A `PreTrainedTokenizerBase` with T5's special tokens; see the module docstring for the kinds."""
    if kind == "bpe":
        if texts is None:
            raise DataConfigError("tokenizer 'bpe' needs the training texts (texts=...)")
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        _check_outside(cache, data_dir_guard)
        return _bpe(texts, vocab_size, cache / "tokenizers")
    if kind == "byte":
        from transformers import ByT5Tokenizer

        # reversed so that <extra_id_0> gets the highest id, as in T5
        return ByT5Tokenizer(extra_ids=NUM_SENTINELS, additional_special_tokens=SENTINELS[::-1])
    if kind == "pretrained":
        return _pretrained(pretrained)
    raise DataConfigError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(KINDS)}")


def _check_outside(cache: Path, data_dir) -> None:
    if data_dir is None:
        return
    if cache.resolve().is_relative_to(Path(data_dir).resolve()):
        raise DataConfigError(
            f"the cache folder {cache} lies inside the data folder {data_dir}, which the project "
            f"never writes to; set PGF_CACHE_DIR elsewhere"
        )


def _bpe(texts, vocab_size: int, folder: Path):
    from tokenizers import Tokenizer

    minimum = 3 + 256 + NUM_SENTINELS + 1  # specials, the byte alphabet, sentinels, at least one merge
    if vocab_size < minimum:
        raise DataConfigError(
            f"tokenizer vocab_size={vocab_size} is too small for a byte-level BPE; use at least {minimum}"
        )
    if not callable(texts):
        texts = list(texts)  # iterated twice: once to hash, once to train
    source = texts if callable(texts) else (lambda: texts)
    digest = hashlib.sha256(f"{_BPE_FORMAT}|{vocab_size}|{NUM_SENTINELS}".encode())
    for text in source():
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)
    path = folder / f"bpe-{vocab_size}-{digest.hexdigest()[:16]}.json"
    if path.is_file():
        log.info("tokenizer: loaded the byte-level BPE from the cache %s", path)
        return _wrap(Tokenizer.from_file(str(path)))
    start = time.perf_counter()
    tok = _train_bpe(source(), vocab_size)
    log.info(
        "tokenizer: trained a byte-level BPE (%d tokens) in %.1f s; cached as %s",
        tok.get_vocab_size(),
        time.perf_counter() - start,
        path,
    )
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, tok.to_str())  # parallel jobs see the whole file or none
    return _wrap(tok)


def _train_bpe(texts, vocab_size: int):
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - NUM_SENTINELS,
        special_tokens=[PAD, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_special_tokens(SENTINELS[::-1])  # last, reversed: <extra_id_0> gets the highest id
    eos = tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, eos)]
    )
    return tok


def _wrap(tok):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        extra_special_tokens=list(SENTINELS),
        clean_up_tokenization_spaces=False,
    )


def _pretrained(name):
    if not name:
        raise DataConfigError("tokenizer 'pretrained' needs pretrained=<hub id or local folder>")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(name))
    except Exception as e:  # noqa: BLE001 - every failure becomes one line naming the fix
        first = first_line(e)[:300]
        raise DataNotFoundError(
            f"could not load the tokenizer {str(name)!r} ({type(e).__name__}: {first}); pass a local directory "
            "with the tokenizer files, or allow internet access / fill the HF cache"
        ) from e
    if tok.pad_token_id is None or tok.eos_token_id is None:
        raise DataConfigError(f"the tokenizer {str(name)!r} has no pad or eos token; T5 needs both")
    if (tok.pad_token_id, tok.eos_token_id) != (0, 1):
        log.warning("tokenizer %s: pad id %s, eos id %s (T5 uses 0 and 1)", name, tok.pad_token_id, tok.eos_token_id)
    return tok


def save_to_run_dir(tokenizer, run_dir, write: Optional[Callable[[Path], None]] = None) -> Path:
    """Save into <run_dir>/tokenizer (atomically); an existing one is left as it is.

    `write(folder)` writes the files (default: a Hugging Face tokenizer's save_pretrained).
    """
    target = RunDir(run_dir).tokenizer
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(target) as tmp:
            if write is None:
                tokenizer.save_pretrained(str(tmp))
            else:
                write(tmp)
    except OSError:
        if not target.exists():  # else another rank saved it first: the same vocabulary
            raise
    return target


def load_from_run_dir(run_dir):
    """The tokenizer saved in <run_dir>/tokenizer, or None when there is none."""
    folder = RunDir(run_dir).tokenizer
    if not folder.is_dir():
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def source_run_tokenizer(checkpoint) -> Optional[Path]:
    """The tokenizer folder of the pgf-train run that `model.checkpoint` names (its run dir, or the
    run dir's checkpoint.pt), or None (no such run, or a run without one, e.g. a vision run).

    A run started from another run's weights must read text with that run's vocabulary.
    """
    if not checkpoint:
        return None
    path = Path(checkpoint).expanduser()
    run_dir = path if path.is_dir() else path.parent if path.name == CHECKPOINT else None
    folder = RunDir(run_dir).tokenizer if run_dir is not None else None
    return folder if folder is not None and folder.is_dir() else None


def load_source_run_tokenizer(checkpoint):
    """The Hugging Face tokenizer of model.checkpoint's run (`source_run_tokenizer`), or None; a T5 run needs one."""
    folder = source_run_tokenizer(checkpoint)
    if folder is None:
        return None
    if not (folder / "tokenizer_config.json").is_file():
        raise DataConfigError(
            f"model.checkpoint={checkpoint} is a run whose tokenizer ({folder}) is a causal LM's char or byte one: "
            "start a T5 run from a T5 run's checkpoint"
        )
    from transformers import AutoTokenizer

    log.info("tokenizer: the one of model.checkpoint's run, %s", folder)
    return AutoTokenizer.from_pretrained(str(folder))
