"""Translation: source -> target text columns (Multi30k en->de by default, WMT pairs, any two columns).

Metrics: teacher-forced token accuracy over non-pad target tokens, EOS included
(the paper's metric), loss per token, and BLEU (sacrebleu's corpus BLEU with its
defaults: 13a tokenization, exponential smoothing) of greedy generations of the
first `data.generate_limit` eval pairs against their raw reference sentences.
"""
from __future__ import annotations

from typing import Dict, List

from .seq2seq import PairDataset, Seq2SeqTask


class Translation(Seq2SeqTask):
    eval_metric = "token_acc"
    generates = True

    def load_pairs(self):
        from ..data.text import load_text_splits

        data = self.cfg.data
        source, target, prefix = data.source_lang, data.target_lang, data.source_prefix
        splits = load_text_splits(data, [source, target])

        def to_pair(row):
            return prefix + row[source], row[target]

        def tokenizer_texts():  # one vocabulary for both languages, as T5 shares its embeddings
            for index in range(len(splits.train)):
                row = splits.train[index]
                yield row[source]
                yield row[target]

        eval_rows = splits.eval if data.eval_limit is None else splits.eval.slice(0, data.eval_limit)
        return PairDataset(splits.train, to_pair), PairDataset(eval_rows, to_pair), splits.source, tokenizer_texts

    def generation_metrics(self, sources: List[str], generated: List[str], references: List[str]) -> Dict[str, float]:
        import sacrebleu

        return {"bleu": sacrebleu.corpus_bleu(generated, [references]).score, "bleu_sentences": len(generated)}
