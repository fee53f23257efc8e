"""Causal-LM examples: a split's token stream cut into blocks of block_size + 1 tokens, stride block_size.

A split's texts become one stream of ids: each text's tokens, with the `joiner` between consecutive texts
(EOS between documents; a corpus whose rows are lines of one text puts the separator's tokens there).
A block's inputs are its first block_size tokens and its targets the next token of each, so every
token of the stream after the first is predicted exactly once:

    stream    t0 t1 t2 t3 t4 t5 t6 t7 t8 t9              block_size 4
    block 0   inputs t0 t1 t2 t3   targets t1 t2 t3 t4
    block 1   inputs t4 t5 t6 t7   targets t5 t6 t7 t8
    block 2   inputs t8 .. .. ..   targets t9 -- -- --   (evaluation only; `..` pad, `--` ignored)

Training drops the last, partial block (its few tokens would be a batch row of mostly padding);
evaluation keeps it, padded, with the padding left out of the loss, so the eval loss covers the
whole split. The padding sits after the real tokens, which causal attention never lets them see.
"""

from __future__ import annotations

import itertools
from typing import Callable, Iterable, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from pgfsparse.data.text.span_masking import IGNORE_INDEX
from pgfsparse.errors import DataConfigError

ENCODE_BATCH = 256  # texts tokenized per call


def stream_pieces(
    texts: Iterable[str],
    encode_batch: Callable[[List[str]], List[List[int]]],
    joiner: Sequence[int],
    *,
    skip_empty: bool,
) -> Iterator[Sequence[int]]:
    """The stream of `texts`, piece by piece: text 0's ids, `joiner`, text 1's ids, `joiner`, ... (none after
    the last); `skip_empty` leaves empty texts out (documents: no doubled EOS)."""
    iterator = (text for text in texts if text) if skip_empty else iter(texts)
    first = True
    while batch := list(itertools.islice(iterator, ENCODE_BATCH)):
        for ids in encode_batch(batch):
            if not first and joiner:
                yield joiner
            first = False
            yield ids


def token_stream(pieces: Iterable[Sequence[int]]) -> torch.Tensor:
    """The pieces as one 1-D int32 tensor (half the memory of int64; blocks are widened when read)."""
    flat = np.fromiter(itertools.chain.from_iterable(pieces), dtype=np.int32)
    return torch.from_numpy(flat)


def block_count(tokens: int, block_size: int, *, keep_partial: bool) -> int:
    """Blocks cut from a `tokens`-long stream: one per block_size predicted tokens (tokens - 1 of them)."""
    predicted = max(tokens - 1, 0)
    return -(-predicted // block_size) if keep_partial else predicted // block_size


class Blocks(Dataset):
    """Block i of a token stream as (inputs, targets), each (block_size,) int64.

    `keep_partial`: the last, shorter block is kept (inputs padded with `pad_id`, targets with IGNORE_INDEX).
    """

    def __init__(self, stream: torch.Tensor, block_size: int, *, keep_partial: bool, pad_id: int = 0):
        self.stream, self.block_size, self.keep_partial, self.pad_id = stream, block_size, keep_partial, pad_id
        self.count = block_count(len(stream), block_size, keep_partial=keep_partial)

    def __len__(self) -> int:
        return self.count

    def predicted_tokens(self) -> int:
        """Targets that are real tokens, over all blocks."""
        predicted = max(len(self.stream) - 1, 0)
        return predicted if self.keep_partial else self.count * self.block_size

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.count:
            raise IndexError(f"block {index} of {self.count}")
        size = self.block_size
        chunk = self.stream[index * size : (index + 1) * size + 1].long()
        inputs, targets = chunk[:-1], chunk[1:]
        short = size - len(targets)
        if short:
            inputs = torch.cat([inputs, torch.full((short,), self.pad_id, dtype=torch.long)])
            targets = torch.cat([targets, torch.full((short,), IGNORE_INDEX, dtype=torch.long)])
        return inputs, targets


class StreamedBlocks:
    """Training blocks of a streamed split, cut on the fly in the stream's own order (no shuffle).

    The texts are read again from the start whenever they run out. Rank r of w takes every w-th block.
    Resuming at micro-step k re-reads the stream and discards the first k batches: the same blocks as an
    uninterrupted run (nothing here is random), at the cost of the re-read.
    """

    def __init__(self, pieces: Callable[[], Iterator[Sequence[int]]], block_size: int, where: str):
        """`pieces()`: a fresh pass over the split's stream (`stream_pieces`); `where`: the data, for messages."""
        self.pieces, self.block_size, self.where = pieces, block_size, where

    def blocks(self) -> Iterator[torch.Tensor]:
        """Blocks of block_size + 1 ids, endlessly; each pass's last partial block is dropped."""
        size = self.block_size
        while True:
            buffer: List[int] = []
            start, produced = 0, 0
            for piece in self.pieces():
                buffer.extend(piece)
                while len(buffer) - start >= size + 1:
                    produced += 1
                    yield torch.tensor(buffer[start : start + size + 1], dtype=torch.long)
                    start += size
                if start > 4 * size:  # drop what every block has passed (keeps the buffer short)
                    buffer, start = buffer[start:], 0
            if produced == 0:
                raise DataConfigError(
                    f"{self.where} holds less than one block of {size + 1} tokens; lower data.block_size or add text"
                )

    def batches(self, batch_size: int, start_micro_step: int, rank: int, world_size: int):
        """Micro-batches (inputs, targets) of this rank, from micro-step `start_micro_step` on."""
        skip = start_micro_step * batch_size * world_size
        batch: List[torch.Tensor] = []
        for index, block in enumerate(self.blocks()):
            if index < skip or index % world_size != rank:
                continue
            batch.append(block)
            if len(batch) == batch_size:
                stacked = torch.stack(batch)
                yield stacked[:, :-1], stacked[:, 1:]
                batch = []
