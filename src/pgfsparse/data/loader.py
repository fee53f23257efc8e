"""Deterministic, resumable, shardable batch streams.

Epoch e visits the examples in `torch.randperm(n, generator=Generator().manual_seed(seed + e))`.
Each global batch of `batch_size * world_size` consecutive indices of that
order is cut into one contiguous block per rank. Resuming at optimizer step k
jumps straight to batch k * accumulate by index arithmetic (nothing skipped is
read or decoded), so batch i of a resumed loader equals batch k * accumulate + i
of an uninterrupted one.

With num_workers=0 the only randomness in a batch besides this order is the
augmentation, drawn from torch's global RNG: restore that state and a resumed
run replays the uninterrupted one exactly. (The DataLoaders get a private
generator, so creating them never consumes the global RNG.) With workers, each
worker seeds its own RNG, which is reproducible per run but not across a resume.
"""

from __future__ import annotations

import math
from typing import Iterator, List, Optional

import torch
from torch.utils.data import DataLoader, Dataset

from pgfsparse.errors import DataConfigError


def batches_per_epoch(dataset_len: int, batch_size: int, world_size: int = 1, drop_last: bool = True) -> int:
    """Batches each rank draws per pass over the data."""
    global_batch = batch_size * world_size
    return dataset_len // global_batch if drop_last else math.ceil(dataset_len / global_batch)


def steps_per_epoch(dataset_len: int, batch_size: int, world_size: int = 1, accumulate: int = 1) -> int:
    """Optimizer steps per epoch with `batch_size` examples per rank per micro-batch (drop_last, floored, >= 1).

    The stream is continuous across epochs, so a step that straddles an epoch
    boundary is simply half in each.
    """
    return max(1, batches_per_epoch(dataset_len, batch_size, world_size) // accumulate)


class EpochShardedBatches:
    """An endless batch sampler: this rank's index lists, epoch after epoch, from `start_batch` on."""

    def __init__(
        self,
        dataset_len: int,
        batch_size: int,
        *,
        seed: int,
        start_batch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ):
        if not 0 <= rank < world_size:
            raise DataConfigError(f"rank={rank} is outside world_size={world_size}; pass 0 <= rank < world_size")
        self.per_epoch = batches_per_epoch(dataset_len, batch_size, world_size, drop_last)
        if self.per_epoch == 0:
            raise DataConfigError(
                f"{dataset_len} examples make no full batch of {batch_size} x {world_size} ranks; lower data.batch_size"
            )
        self.dataset_len, self.batch_size, self.seed = dataset_len, batch_size, seed
        self.start_batch, self.rank, self.world_size = start_batch, rank, world_size

    def epoch_order(self, epoch: int) -> torch.Tensor:
        return torch.randperm(self.dataset_len, generator=torch.Generator().manual_seed(self.seed + epoch))

    def __iter__(self) -> Iterator[List[int]]:
        epoch, offset = divmod(self.start_batch, self.per_epoch)
        while True:
            order = self.epoch_order(epoch)
            for batch in range(offset, self.per_epoch):
                yield self._rank_slice(order, batch)
            epoch, offset = epoch + 1, 0

    def _rank_slice(self, order: torch.Tensor, batch: int) -> List[int]:
        global_batch = self.batch_size * self.world_size
        chunk = order[batch * global_batch : (batch + 1) * global_batch]
        per_rank = math.ceil(len(chunk) / self.world_size)
        if per_rank * self.world_size > len(chunk):
            # Last, short batch (drop_last=False): every rank needs the same count or DDP stalls,
            # so wrap around to the epoch's first indices as DistributedSampler does.
            chunk = torch.cat([chunk, order[: per_rank * self.world_size - len(chunk)]])
        return chunk[self.rank * per_rank : (self.rank + 1) * per_rank].tolist()


def make_train_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    seed: int,
    start_step: int = 0,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = True,
    accumulate: int = 1,
    collate_fn=None,
) -> DataLoader:
    """Endless training batches from optimizer step `start_step` (each step = `accumulate` batches).

    Iterate it once and keep the iterator: a fresh `iter()` starts again at `start_step`.
    """
    size = len(dataset)  # type: ignore[arg-type]  # a map-style dataset: sized
    sampler = EpochShardedBatches(
        size,
        batch_size,
        seed=seed,
        start_batch=start_step * accumulate,
        rank=rank,
        world_size=world_size,
        drop_last=drop_last,
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed + start_step),
        collate_fn=collate_fn,
    )


def eval_sample(size: int, limit: Optional[int]) -> Optional[List[int]]:
    """`data.eval_limit`: the sorted indices of a fixed random `limit` of a `size`-example eval split (None: all).

    A prefix would be one class of a class-ordered split (an image folder's test/ starts with every
    `airplane`). The draw is seeded by the split's size, never by the run's seed, so every run and seed
    evaluates the same examples, in the split's own order.
    """
    if limit is None or limit >= size:
        return None
    order = torch.randperm(size, generator=torch.Generator().manual_seed(size))
    return sorted(order[:limit].tolist())


def eval_sample_note(size: int, limit: Optional[int]) -> str:
    """What a run's data source adds when it evaluates on `eval_sample(size, limit)` (summary.json's data_source)."""
    if limit is None or limit >= size:
        return ""
    return f"; eval on a fixed seeded sample of {limit} of {size} examples (data.eval_limit)"


def make_eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, collate_fn=None) -> DataLoader:
    """The whole dataset once, in order.

    It never draws from the global RNG, so evaluating mid-run leaves training unchanged.
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        drop_last=False,
        num_workers=num_workers,
        generator=torch.Generator(),
        collate_fn=collate_fn,
    )
