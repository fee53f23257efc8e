"""Translation: source -> target text columns (Multi30k en->de by default, WMT pairs, any two columns).

Metrics: teacher-forced token accuracy over non-pad target tokens, EOS included
(the paper's metric), loss per token, and BLEU (sacrebleu's corpus BLEU with its
defaults: 13a tokenization, exponential smoothing) of greedy generations of the
first `data.generate_limit` eval pairs against their raw reference sentences.
"""

from __future__ import annotations

from typing import Dict, List

from pgfsparse.tasks.seq2seq import Seq2SeqTask


class Translation(Seq2SeqTask):
    eval_metric = "token_acc"
    generates = True

    def load_splits(self):
        from pgfsparse.data.text.rows import load_text_splits

        data = self.cfg.data
        source, target, prefix = data.source_lang, data.target_lang, data.source_prefix

        def to_pair(row):
            return prefix + row[source], row[target]

        return load_text_splits(data, [source, target]), to_pair

    def tokenizer_texts(self, train):
        """Both languages' raw sentences (one vocabulary, as T5 shares its embeddings), without the prefix."""
        for index in range(len(train.rows)):
            row = train.rows[index]
            yield row[self.cfg.data.source_lang]
            yield row[self.cfg.data.target_lang]

    def generation_metrics(self, generated: List[str], references: List[str]) -> Dict[str, float]:
        import sacrebleu

        return {"bleu": sacrebleu.corpus_bleu(generated, [references]).score, "bleu_sentences": len(generated)}

    def headline_extra(self, summary: Dict) -> str:
        """' (BLEU as trained / strict)' when the run measured BLEU."""
        bleu = summary["eval"].get("eval/bleu")
        return f" (BLEU {bleu:.2f} / {summary['eval']['eval_strict/bleu']:.2f})" if bleu is not None else ""
