"""GLUE fine-tuning as text-to-text: "sst2 sentence: ..." -> "positive", scored by the task's own metric.

The headline metric (summary.json's eval_value) is the task's standard one:
MCC for cola, F1 for mrpc/qqp, Pearson for stsb, accuracy otherwise; all are
computed locally from greedy generations of the eval split (validation;
validation_matched for mnli), on GLUE's 0-100 scale. Teacher-forced token
accuracy and loss are reported as well.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List

from pgfsparse.tasks.seq2seq import Seq2SeqTask


class Glue(Seq2SeqTask):
    generates = True

    def __init__(self, cfg, run_dir=None):
        from pgfsparse.data.text.glue_format import get_task, headline_metric
        from pgfsparse.errors import ConfigError

        super().__init__(cfg, run_dir)
        try:
            self.glue = get_task(cfg.data.glue_task)
        except ValueError as error:
            raise ConfigError(f"data.glue_task: {error}") from None
        self.eval_metric = headline_metric(self.glue)

    def load_splits(self):
        from pgfsparse.data.text.glue_format import to_text
        from pgfsparse.data.text.rows import load_text_splits

        columns = [column for column, _ in self.glue.input_columns] + ["label"]
        data = replace(self.cfg.data, hub_config=self.cfg.data.hub_config or self.glue.name)  # the hub's config = task
        splits = load_text_splits(data, columns, folder_name=f"glue/{self.glue.name}", eval_split=self.glue.eval_split)
        task = self.glue
        return splits, lambda row: to_text(task, row)

    def generation_references(self, count: int) -> list:
        """The raw labels, not the target texts: stsb is scored against the unrounded score."""
        rows = self.built_eval_pairs().rows
        return [rows[i]["label"] for i in range(count)]

    def generation_metrics(self, generated: List[str], references: list) -> Dict[str, float]:
        from pgfsparse.data.text.glue_format import glue_metrics

        return glue_metrics(self.glue, generated, references)
