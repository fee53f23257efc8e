"""Causal language modelling (GPT-2, Llama-family): predict every next token of plain text.

Data (`data.kind: corpus` with a decoder model): each split's documents are tokenized and joined into one
token stream, EOS between documents (nothing when the tokenizer has no EOS: a char tokenizer of a
one-document corpus such as Tiny Shakespeare), and cut into blocks of data.block_size + 1 tokens with
stride block_size (data/text/lm_blocks.py): inputs the first block_size tokens, targets the next token
of each, so every token after the first is predicted exactly once. A corpus whose rows are lines of one
running text (`data.row_separator` set, WikiText) joins its rows with that separator instead, no EOS.

Training draws whole blocks in the base Task's seeded shuffle (exact resume) and drops the last,
partial block. Evaluation keeps it, padded, its padding left out of the loss, so the loss covers every
token of the eval split after its first; `data.eval_limit` evaluates a fixed sample of that many blocks
(a streamed split: its first eval_limit documents, all their blocks). The log says how many tokens and
blocks each split gives.

Metrics: `loss`, the token-weighted mean cross-entropy (nats) over every predicted eval token;
`perplexity` = exp(loss), the headline, lower is better; `token_acc`, the % of next tokens that are the
model's argmax; `tokens`, how many tokens were predicted.
"""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional

import torch
import torch.nn.functional as F

from pgfsparse.data.text.span_masking import IGNORE_INDEX
from pgfsparse.tasks.task import Task

log = logging.getLogger(__name__)


class CausalLM(Task):
    eval_metric = "perplexity"
    higher_is_better = False
    tokenizer: Any  # a pgfsparse.data.text.lm_tokenizer tokenizer, set by build_data

    def __init__(self, cfg, run_dir: Optional[Path] = None):
        self.cfg, self.run_dir = cfg, Path(run_dir) if run_dir else None
        self.tokenizer = None

    # -- data -----------------------------------------------------------------------------------
    def build_data(self):
        from pgfsparse.data.text import lm_tokenizer
        from pgfsparse.data.text.lm_blocks import StreamedBlocks, stream_pieces, token_stream
        from pgfsparse.data.text.rows import StreamedRows, column_values, load_text_splits
        from pgfsparse.tasks.seq2seq import TextData

        data = self.cfg.data
        column = data.text_column
        splits = load_text_splits(data, [column])
        separator = data.row_separator  # None: each row is a document
        rows = splits.train
        if isinstance(rows, StreamedRows):  # exactly when splits.streaming
            streamed: StreamedRows = rows
            train_texts: List[str] = []

            def read_train() -> Iterator[str]:
                return (row[column] for row in streamed.iterate())

        else:
            train_texts = column_values(rows, column)

            def read_train() -> Iterator[str]:
                return iter(train_texts)

        def tokenizer_texts() -> Iterator[str]:  # the separator is part of the text: a char tokenizer needs it
            return itertools.chain([separator] if separator else [], read_train())

        eval_texts = column_values(splits.eval, column)
        self.tokenizer = lm_tokenizer.for_run(
            self.cfg,
            self.run_dir,
            texts=tokenizer_texts,
            several_documents=separator is None and (splits.streaming or sum(map(bool, train_texts)) > 1),
            eval_texts=lambda: eval_texts,
            complete=not splits.streaming,
        )
        joiner = self._joiner(separator)

        def pieces(texts: Iterable[str]):
            return stream_pieces(texts, self.tokenizer.encode_batch, joiner, skip_empty=separator is None)

        eval_set, note = self._eval_set(token_stream(pieces(eval_texts)), sample=not splits.streaming)
        source = splits.source + note
        if isinstance(rows, StreamedRows):
            return TextData(StreamedBlocks(lambda: pieces(read_train()), data.block_size, rows.where), eval_set, source)
        return TextData(self._train_set(token_stream(pieces(train_texts))), eval_set, source)

    def _eval_set(self, stream: torch.Tensor, *, sample: bool):
        """(every block of the eval stream, the last padded; or data.eval_limit's fixed sample of them when
        `sample`), and what summary.json's data_source adds."""
        from torch.utils.data import Subset

        from pgfsparse.data.loader import eval_sample, eval_sample_note
        from pgfsparse.data.text.lm_blocks import Blocks
        from pgfsparse.errors import DataConfigError

        data, size = self.cfg.data, self.cfg.data.block_size
        blocks = Blocks(stream, size, keep_partial=True)
        if len(blocks) == 0:
            raise DataConfigError(f"the eval split of data={data.name} holds fewer than 2 tokens: nothing to predict")
        predicted = blocks.predicted_tokens()
        log.info(
            "causal LM eval: %d tokens to predict, in %d blocks of %d (the last holds %d)",
            predicted,
            len(blocks),
            size,
            predicted - (len(blocks) - 1) * size,
        )
        indices = eval_sample(len(blocks), data.eval_limit) if sample else None
        if indices is None:
            return blocks, ""
        return Subset(blocks, indices), eval_sample_note(len(blocks), data.eval_limit)

    def _train_set(self, stream: torch.Tensor):
        """Every full block of the training stream (the last partial one dropped)."""
        from pgfsparse.data.text.lm_blocks import Blocks
        from pgfsparse.errors import DataConfigError

        data, size = self.cfg.data, self.cfg.data.block_size
        blocks = Blocks(stream, size, keep_partial=False)
        if len(blocks) == 0:
            raise DataConfigError(
                f"the training split of data={data.name} holds {len(stream)} tokens, fewer than "
                f"data.block_size + 1 = {size + 1}: lower data.block_size or add text"
            )
        log.info(
            "causal LM train: %d tokens -> %d blocks of %d (the last %d tokens dropped)",
            len(stream),
            len(blocks),
            size,
            max(len(stream) - 1, 0) - blocks.predicted_tokens(),
        )
        return blocks

    def _joiner(self, separator: Optional[str]) -> List[int]:
        """The ids between two consecutive rows: EOS between documents, or the separator's tokens."""
        if separator is not None:
            return self.tokenizer.encode(separator)
        eos = self.tokenizer.eos_token_id
        return [] if eos is None else [eos]

    def train_examples(self, data) -> Optional[int]:
        from pgfsparse.data.text.lm_blocks import StreamedBlocks

        return None if isinstance(data.train, StreamedBlocks) else len(data.train)

    def train_batches(self, data, *, start_micro_step: int, rank: int, world_size: int):
        from pgfsparse.data.text.lm_blocks import StreamedBlocks

        if not isinstance(data.train, StreamedBlocks):
            return super().train_batches(data, start_micro_step=start_micro_step, rank=rank, world_size=world_size)
        return data.train.batches(self.cfg.data.batch_size, start_micro_step, rank, world_size)

    def example_inputs(self, data, device):
        # token values do not change FLOPs; a full block of block_size tokens does
        ids = torch.zeros((1, self.cfg.data.block_size), dtype=torch.long, device=device)
        return (), {"input_ids": ids, "use_cache": False}

    # -- model, loss, metrics -------------------------------------------------------------------
    def build_model(self, data):
        from pgfsparse.models.causal_lm import build_causal_lm

        eos = self.tokenizer.eos_token_id
        return build_causal_lm(
            self.cfg.model,
            self.tokenizer.vocab_size,
            eos_token_id=eos,
            pad_token_id=eos,  # never fed to the model in training; eval padding is left out of the loss
            block_size=self.cfg.data.block_size,
        )

    def loss(self, model, batch) -> torch.Tensor:
        """Mean cross-entropy over the micro-batch's predicted tokens (targets already shifted by the data)."""
        inputs, targets = batch
        logits = model(input_ids=inputs, use_cache=False).logits
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)

    @torch.no_grad()
    def evaluate(self, model, batches, device, autocast) -> Dict[str, float]:
        """Token-weighted loss over every predicted token (padding ignored), its exp, and next-token accuracy."""
        loss_sum, correct, tokens = 0.0, 0, 0
        for batch in batches:
            inputs, targets = self.to_device(batch, device)
            with autocast():
                logits = model(input_ids=inputs, use_cache=False).logits
            logits = logits.float()
            real = targets != IGNORE_INDEX
            loss_sum += F.cross_entropy(
                logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
            ).item()
            correct += int(((logits.argmax(dim=-1) == targets) & real).sum().item())
            tokens += int(real.sum().item())
        loss = loss_sum / max(tokens, 1)
        return {
            "loss": loss,
            "perplexity": math.exp(loss) if loss < 700 else math.inf,  # exp overflows a float past ~709
            "token_acc": 100.0 * correct / max(tokens, 1),
            "tokens": tokens,
        }

    def headline_extra(self, summary: Dict[str, Any]) -> str:
        """' (loss as trained / strict)': the number nanoGPT and most papers quote."""
        final = summary["eval"]
        return f" (loss {final['eval/loss']:.3f} / {final['eval_strict/loss']:.3f})"
