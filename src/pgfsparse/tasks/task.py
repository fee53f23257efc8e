"""The interface between the shared trainer and a task. The loop never looks inside a batch."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import torch
from torch import nn


class Task:
    eval_metric: str = "accuracy"  # the headline metric name in summary.json
    higher_is_better: bool = True  # the headline's direction (perplexity: False); summary.json records it
    cfg: Any  # the run's TrainConfig, set by each task's __init__

    def build_data(self) -> Any:
        """Load (or locate) the data; fail in one line before any heavy work if it is missing."""
        raise NotImplementedError

    def build_model(self, data: Any) -> nn.Module:
        raise NotImplementedError

    def collator(self) -> Optional[Callable[[list], Any]]:
        """How a list of examples becomes a batch; None: torch's default collation."""
        return None

    def train_batches(self, data: Any, *, start_micro_step: int, rank: int, world_size: int) -> Iterator[Any]:
        """An endless iterator of micro-batches of `data.train`, starting where a run that did
        `start_micro_step` stopped."""
        from pgfsparse.data import make_train_loader

        return iter(
            make_train_loader(
                data.train,
                self.cfg.data.batch_size,
                seed=self.cfg.seed,
                start_step=start_micro_step,
                num_workers=self.cfg.data.num_workers,
                rank=rank,
                world_size=world_size,
                collate_fn=self.collator(),
            )
        )

    def eval_batches(self, data: Any) -> Iterable[Any]:
        """`data.eval` once, in order."""
        from pgfsparse.data import make_eval_loader

        return make_eval_loader(
            data.eval, self.cfg.data.eval_batch_size, num_workers=self.cfg.data.num_workers, collate_fn=self.collator()
        )

    def calibration_batches(self, data: Any, samples: int, seed: int) -> List[Any]:
        """`samples` training examples for a one-shot prune, in batches of at most data.batch_size (CPU).

        A split of known size gives a seeded random draw without replacement (the same for every run of the seed);
        a streamed one its first examples. The draw has its own generator; a dataset's augmentations use the global
        RNG, which the caller forks (`pgfsparse.run.oneshot_start`).
        """
        from torch.utils.data import default_collate

        from pgfsparse.errors import ConfigError

        size = self.cfg.data.batch_size
        count = self.train_examples(data)
        if count is None:  # streamed: the stream's first batches, the last one cut to `samples`
            batches, stream, left = [], self.train_batches(data, start_micro_step=0, rank=0, world_size=1), samples
            while left > 0:
                batch = first_examples(next(stream), left)
                batches.append(batch)
                left -= self.batch_size(batch)
            return batches
        if samples > count:
            raise ConfigError(
                f"oneshot.samples={samples} exceeds the {count} examples of data={self.cfg.data.name}'s training "
                f"split: lower oneshot.samples (e.g. {count})"
            )
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:samples].tolist()
        collate = self.collator() or default_collate
        return [collate([data.train[i] for i in order[start : start + size]]) for start in range(0, samples, size)]

    def train_examples(self, data: Any) -> Optional[int]:
        """Size of the training split (for epoch budgets); None when streamed."""
        raise NotImplementedError

    def example_inputs(self, data: Any, device: torch.device) -> Tuple[tuple, dict]:
        """(args, kwargs) of a one-example forward, used to count FLOPs from real shapes."""
        raise NotImplementedError

    def to_device(self, batch: Any, device: torch.device) -> Any:
        return [t.to(device, non_blocking=True) if torch.is_tensor(t) else t for t in batch]

    def batch_size(self, batch: Any) -> int:
        return len(batch[0])

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches, device: torch.device, autocast) -> Dict[str, float]:
        """Metrics over the eval split: must include `self.eval_metric`."""
        raise NotImplementedError

    def headline(self, summary: Dict[str, Any]) -> str:
        """The one-line result pgf-train prints from a run's summary."""
        also = self.headline_extra(summary)
        return (
            f"{summary['eval_metric']} {summary['eval_value']:.2f} as trained, "
            f"{summary['eval_value_strict']:.2f} strict N:M{also}; {summary['steps']} steps, "
            f"{summary['train_flops']:.3g} training FLOPs, {summary['wall_seconds']:.0f}s -> {summary['run_dir']}"
        )

    def headline_extra(self, summary: Dict[str, Any]) -> str:
        """What the task adds after the strict value in its headline ('' here)."""
        return ""


def first_examples(batch: Any, count: int) -> Any:
    """The first `count` examples of a collated batch: tensors (in lists, tuples or dicts) cut along dim 0."""
    if torch.is_tensor(batch):
        return batch[:count]
    if isinstance(batch, dict):
        return {key: first_examples(value, count) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(first_examples(item, count) for item in batch)
    return batch
