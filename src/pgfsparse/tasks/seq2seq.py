"""What every text-to-text task shares: the tokenizer, T5, padding, the loss and token accuracy.

A batch is `{input_ids, attention_mask, labels}` (labels padded with -100, EOS
included), so the loss is the model's own cross-entropy over real target tokens.
Subclasses say where (source, target) pairs come from and may add metrics on
greedy generations (BLEU, GLUE scores) through `generation_metrics`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from pgfsparse.data.text.span_masking import IGNORE_INDEX, pad_seq2seq
from pgfsparse.tasks.task import Task

LENGTH_SAMPLE = 2000  # training pairs tokenized to measure mean lengths (the FLOP count's shapes)


class PairDataset(torch.utils.data.Dataset):
    """Rows -> (source text, target text) through `to_pair(row)`; tokenized later, per batch."""

    def __init__(self, rows, to_pair):
        self.rows, self.to_pair = rows, to_pair

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Tuple[str, str]:
        return self.to_pair(self.rows[index])


class TextPairCollator:
    """Tokenizes a batch of text pairs (EOS appended, truncated to the max lengths) and pads it."""

    def __init__(self, tokenizer, max_source_length: int, max_target_length: int):
        self.tokenizer, self.max_source, self.max_target = tokenizer, max_source_length, max_target_length

    def encode(self, pairs: Sequence[Tuple[str, str]]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        sources = self.tokenizer([s for s, _ in pairs], max_length=self.max_source, truncation=True)["input_ids"]
        targets = self.tokenizer([t for _, t in pairs], max_length=self.max_target, truncation=True)["input_ids"]
        return [
            (torch.tensor(s, dtype=torch.long), torch.tensor(t, dtype=torch.long)) for s, t in zip(sources, targets)
        ]

    def __call__(self, pairs):
        return pad_seq2seq(self.encode(pairs), self.tokenizer.pad_token_id)


class Seq2SeqTask(Task):
    eval_metric = "token_acc"
    generates = False  # True: evaluation also decodes eval sources greedily and calls generation_metrics
    # Both set by build_data. The tokenizer is a Hugging Face one, untyped (data.text.tokenizer builds it).
    tokenizer: Any
    eval_pairs: Optional[PairDataset]

    def __init__(self, cfg, run_dir: Optional[Path] = None):
        self.cfg, self.run_dir = cfg, Path(run_dir) if run_dir else None
        self.tokenizer, self.eval_pairs = None, None

    # -- what subclasses provide --------------------------------------------------------------
    def load_splits(self):
        """(TextSplits, to_pair): the rows, and the function that turns a row into (source, target) text."""
        raise NotImplementedError

    def tokenizer_texts(self, train: PairDataset):
        """What a BPE tokenizer is trained on: both sides of every training pair."""
        for index in range(len(train)):
            yield from train[index]

    def generation_references(self, count: int) -> list:
        """What the generations of the first `count` eval pairs are scored against: their target texts."""
        eval_set = self.built_eval_pairs()
        return [eval_set[i][1] for i in range(count)]

    def generation_metrics(self, generated: List[str], references: list) -> Dict[str, float]:
        """Metrics of greedy generations of the first `data.generate_limit` eval pairs (when `generates`)."""
        raise NotImplementedError

    # -- data -----------------------------------------------------------------------------------
    def built_eval_pairs(self) -> PairDataset:
        """The eval split's text pairs, which build_data keeps for generation."""
        if self.eval_pairs is None:
            raise RuntimeError("the eval pairs are read before build_data() loaded them")
        return self.eval_pairs

    def build_data(self):
        from pgfsparse.data.loader import eval_sample, eval_sample_note

        splits, to_pair = self.load_splits()
        limit, size = self.cfg.data.eval_limit, len(splits.eval)  # (a streamed split's eval rows: its first ones)
        indices = eval_sample(size, limit)  # a fixed sample, the same for every run and seed
        eval_rows = splits.eval if indices is None else splits.eval.select(indices)
        train, eval_set = PairDataset(splits.train, to_pair), PairDataset(eval_rows, to_pair)
        self.tokenizer = self.build_tokenizer(lambda: self.tokenizer_texts(train))
        self.eval_pairs = eval_set  # generation reads raw text pairs, not padded batches
        return TextData(train, eval_set, splits.source + eval_sample_note(size, limit))

    def build_tokenizer(self, texts):
        """The run dir's saved tokenizer (a resume), else that of the run model.checkpoint names (the same
        vocabulary as its weights), else the configured one; saved to the run dir."""
        from pgfsparse.data.lookup import DATA_DIR_ENV
        from pgfsparse.data.text.tokenizer import (
            build_tokenizer,
            load_from_run_dir,
            load_source_run_tokenizer,
            save_to_run_dir,
        )
        from pgfsparse.models.t5 import pretrained_source

        settings = self.cfg.model.tokenizer
        saved = load_from_run_dir(self.run_dir) if self.run_dir else None
        if saved is not None:
            return saved
        source = load_source_run_tokenizer(self.cfg.model.checkpoint)
        if source is not None:
            if self.run_dir:
                save_to_run_dir(source, self.run_dir)
            return source
        pretrained = settings.name or pretrained_source(self.cfg.model)
        kind = settings.kind
        if kind == "auto":
            kind = "pretrained" if pretrained else "bpe"
        limit = settings.train_texts
        tokenizer = build_tokenizer(
            kind,
            texts=lambda: _first(texts(), limit),
            vocab_size=settings.vocab_size,
            pretrained=pretrained,
            data_dir_guard=os.environ.get(DATA_DIR_ENV),
        )
        if self.run_dir:
            save_to_run_dir(tokenizer, self.run_dir)
        return tokenizer

    def collator(self):
        return TextPairCollator(self.tokenizer, self.cfg.data.max_source_length, self.cfg.data.max_target_length)

    def train_examples(self, data) -> Optional[int]:
        return len(data.train)

    def example_lengths(self, data) -> Tuple[int, int]:
        """Mean source and target token counts (EOS in, padding out) over a sample of training pairs."""
        count = min(len(data.train), LENGTH_SAMPLE)
        pairs = self.collator().encode([data.train[i] for i in range(count)])
        source = sum(len(s) for s, _ in pairs) / count
        target = sum(len(t) for _, t in pairs) / count
        return max(1, round(source)), max(1, round(target))

    def example_inputs(self, data, device):
        source, target = self.example_lengths(data)
        # Token values do not change FLOPs; only the shapes do.
        kwargs = {
            "input_ids": torch.full((1, source), 3, dtype=torch.long, device=device),
            "attention_mask": torch.ones((1, source), dtype=torch.long, device=device),
            "labels": torch.full((1, target), 3, dtype=torch.long, device=device),
        }
        return (), kwargs

    # -- model, loss, metrics -------------------------------------------------------------------
    def build_model(self, data):
        from pgfsparse.models import build_t5

        return build_t5(self.cfg.model, self.tokenizer)

    def to_device(self, batch, device):
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    def batch_size(self, batch) -> int:
        return len(batch["input_ids"])

    def loss(self, model, batch) -> torch.Tensor:
        return model(**batch).loss

    @torch.no_grad()
    def evaluate(self, model, batches, device, autocast) -> Dict[str, float]:
        """Teacher-forced token accuracy (%) and loss per token, then metrics on greedy generations."""
        correct = tokens = 0
        loss_sum = 0.0
        for batch in batches:
            batch = self.to_device(batch, device)
            with autocast():
                logits = model(**batch).logits.float()
            labels = batch["labels"]
            real = labels != IGNORE_INDEX
            loss_sum += torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
            ).item()
            correct += ((logits.argmax(dim=-1) == labels) & real).sum().item()
            tokens += real.sum().item()
        metrics = {
            "token_acc": 100.0 * correct / max(tokens, 1),
            "loss": loss_sum / max(tokens, 1),
            "target_tokens": tokens,
        }
        metrics.update(self._generate_and_score(model, device, autocast))
        return metrics

    def _generate_and_score(self, model, device, autocast) -> Dict[str, float]:
        if not self.generates:
            return {}
        eval_set = self.built_eval_pairs()
        limit = self.cfg.data.generate_limit
        count = len(eval_set) if limit is None else min(limit, len(eval_set))
        generated = self.generate([eval_set[i][0] for i in range(count)], model, device, autocast)
        return self.generation_metrics(generated, self.generation_references(count))

    def generate(self, sources: List[str], model, device, autocast) -> List[str]:
        """Greedy decoding (no beams, no sampling), at most max_target_length tokens, in eval batches."""
        out: List[str] = []
        size = self.cfg.data.eval_batch_size
        for start in range(0, len(sources), size):
            encoded = self.tokenizer(
                sources[start : start + size],
                max_length=self.cfg.data.max_source_length,
                truncation=True,
                padding=True,
                return_tensors="pt",
            ).to(device)
            with autocast():
                ids = model.generate(
                    **encoded,
                    max_new_tokens=self.cfg.data.max_target_length,
                    do_sample=False,
                    num_beams=1,
                    use_cache=True,
                )
            out += self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [text.strip() for text in out]


class TextData:
    """What build_data returns: train and eval datasets, and where they came from."""

    def __init__(self, train, eval_set, source):
        self.train, self.eval, self.source = train, eval_set, source


def _first(texts, limit: int):
    for index, text in enumerate(texts):
        if index >= limit:
            return
        yield text
