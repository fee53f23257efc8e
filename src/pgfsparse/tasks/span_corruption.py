"""Span-corruption pre-training (T5's objective) on any text: local Parquet/text files, or C4 streamed.

Documents are tokenized, joined (each followed by EOS) and cut into chunks
sized so that the corrupted inputs fit `data.max_source_length`; 15% of each
chunk's tokens, in spans of mean length 3, become sentinels (data/span_corruption.py).
Training masks are drawn afresh each time a chunk is read (torch's global RNG,
restored on resume); the eval split is corrupted once with a fixed seed, so
evaluating never changes training. Metrics: token accuracy and loss.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Iterator, Optional, Union

import torch

from pgfsparse.tasks.seq2seq import Seq2SeqTask, TextData

log = logging.getLogger(__name__)
EVAL_MASK_SEED = 1234
STREAM_BUFFER_DOCUMENTS = 256  # streamed documents tokenized per call


class SpanCorruption(Seq2SeqTask):
    eval_metric = "token_acc"

    def build_data(self):
        from pgfsparse.data.loader import eval_sample, eval_sample_note
        from pgfsparse.data.text.rows import StreamedRows, load_text_splits
        from pgfsparse.data.text.span_masking import (
            SpanCorruptionDataset,
            lengths_after_corruption,
            raw_length_for,
        )
        from pgfsparse.errors import ConfigError

        data = self.cfg.data
        column = data.text_column
        splits = load_text_splits(data, [column])
        self.raw_length = raw_length_for(data.max_source_length)
        self.lengths = lengths_after_corruption(self.raw_length)
        if self.lengths[1] > data.max_target_length:
            raise ConfigError(
                f"span corruption of {self.raw_length}-token chunks makes {self.lengths[1]}-token targets, more than "
                f"data.max_target_length={data.max_target_length}: raise it to {self.lengths[1]}"
            )

        def train_texts() -> Iterator[str]:
            rows = splits.train
            if isinstance(rows, StreamedRows):  # exactly when splits.streaming
                return (row[column] for row in rows.iterate())
            return (rows[i][column] for i in range(len(rows)))

        self.tokenizer = self.build_tokenizer(train_texts)
        indices = eval_sample(len(splits.eval), data.eval_limit)  # a fixed sample, the same for every run and seed
        eval_texts = [splits.eval[i][column] for i in (range(len(splits.eval)) if indices is None else indices)]
        eval_set = self._fixed_corruption(self._chunks(eval_texts))
        train: Union[_StreamedChunks, SpanCorruptionDataset]
        if splits.streaming:
            train = _StreamedChunks(
                splits.train, column, self.tokenizer, self.raw_length, self._sentinels(), pad=self.collator()
            )
        else:
            train = SpanCorruptionDataset(self._chunks(train_texts()), self._sentinels(), self.tokenizer.eos_token_id)
        log.info("span corruption: %d-token chunks -> inputs %d, targets %d tokens", self.raw_length, *self.lengths)
        return TextData(train, eval_set, splits.source + eval_sample_note(len(splits.eval), data.eval_limit))

    def _sentinels(self):
        from pgfsparse.data.text.span_masking import noise_span_counts
        from pgfsparse.data.text.tokenizer import sentinel_ids

        return sentinel_ids(self.tokenizer, noise_span_counts(self.raw_length)[1])

    def _chunks(self, texts) -> torch.Tensor:
        from pgfsparse.data.text.span_masking import pack

        tokens = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return pack(tokens, self.raw_length, self.tokenizer.eos_token_id)

    def _fixed_corruption(self, chunks: torch.Tensor):
        from pgfsparse.data.text.span_masking import corrupt, random_spans_noise_mask

        generator = torch.Generator().manual_seed(EVAL_MASK_SEED)
        sentinels, eos = self._sentinels(), self.tokenizer.eos_token_id
        return [
            corrupt(chunk, random_spans_noise_mask(len(chunk), generator=generator), sentinels, eos) for chunk in chunks
        ]

    def collator(self):
        from pgfsparse.data.text.span_masking import pad_seq2seq

        return partial(pad_seq2seq, pad_id=self.tokenizer.pad_token_id)  # chunks arrive tokenized

    def train_examples(self, data) -> Optional[int]:
        return None if isinstance(data.train, _StreamedChunks) else len(data.train)

    def train_batches(self, data, *, start_micro_step: int, rank: int, world_size: int):
        if not isinstance(data.train, _StreamedChunks):
            return super().train_batches(data, start_micro_step=start_micro_step, rank=rank, world_size=world_size)
        return data.train.batches(self.cfg.data.batch_size, start_micro_step, rank, world_size)

    def example_lengths(self, data):
        return self.lengths  # fixed by the chunk length: no padding ever


class _StreamedChunks:
    """Training examples from a streamed split: tokenize, pack and corrupt on the fly.

    Rank r of w takes every w-th example. Resuming at micro-step k re-reads the
    stream and discards the first k batches: the position is right, but the
    masks of later examples differ from an uninterrupted run (they come from the
    RNG the skipped ones used), and skipping costs a re-read. Local data resumes
    exactly, by index arithmetic.
    """

    def __init__(self, rows, column: str, tokenizer, raw_length: int, sentinels, *, pad):
        """`raw_length`: tokens per chunk before corruption; `pad`: micro-batch of examples -> padded batch."""
        self.rows, self.column, self.tokenizer, self.raw_length = rows, column, tokenizer, raw_length
        self.sentinels, self.pad = sentinels, pad

    def examples(self):
        """Corrupted chunks, endlessly: a finished stream starts over (a local file is one such pass)."""
        from pgfsparse.data.text.span_masking import corrupt, random_spans_noise_mask
        from pgfsparse.errors import DataConfigError

        raw, sentinels, eos = self.raw_length, self.sentinels, self.tokenizer.eos_token_id
        while True:
            buffer, documents, produced = [], [], 0
            for last, text in _mark_last(row[self.column] for row in self.rows.iterate()):
                documents.append(text)
                if len(documents) < STREAM_BUFFER_DOCUMENTS and not last:
                    continue
                for ids in self.tokenizer(documents, add_special_tokens=False)["input_ids"]:
                    buffer += [*ids, eos]
                documents = []
                while len(buffer) >= raw:
                    chunk, buffer = torch.tensor(buffer[:raw], dtype=torch.long), buffer[raw:]
                    produced += 1
                    yield corrupt(chunk, random_spans_noise_mask(raw), sentinels, eos)
            if produced == 0:
                raise DataConfigError(
                    f"{self.rows.where} holds less than one {raw}-token chunk of text; "
                    "lower data.max_source_length or use more text"
                )

    def batches(self, batch_size: int, start_micro_step: int, rank: int, world_size: int):
        batch, index, skip = [], 0, start_micro_step * batch_size * world_size
        for index, example in enumerate(self.examples()):
            if index < skip or index % world_size != rank:
                continue
            batch.append(example)
            if len(batch) == batch_size:
                yield self.pad(batch)
                batch = []


def _mark_last(items):
    """(is_last, item) pairs, so a stream's final partial buffer is still used."""
    iterator = iter(items)
    try:
        previous = next(iterator)
    except StopIteration:
        return
    for item in iterator:
        yield False, previous
        previous = item
    yield True, previous
