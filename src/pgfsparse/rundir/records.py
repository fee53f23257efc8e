"""The typed records of a run dir: summary.json (`RunSummary`) and status.json (`RunStatus`).

The trainer writes them and pgf-report reads them only through these classes. Each record
carries `schema`: 2 since pgfsparse 0.2.0; files written by 0.1.0 have none and read as 1
(the same fields). Keys a record does not know are kept in `extra` and written back, so a
file from a newer version survives a round trip through an older one.

A metric's direction (is a higher value better?) is decided here, once: a run's headline
by the `eval_higher_is_better` its summary records, any other metric, and the headline of
a summary written before that field existed, by `metric_higher_is_better`'s name rule.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Type, TypeVar, Union

from pgfsparse.rundir.files import read_json, write_json
from pgfsparse.rundir.layout import RunDir

SCHEMA_VERSION = 2
REQUIRED_SUMMARY_FIELDS = (
    "run_name",
    "model",
    "sparsity",
    "recipe",
    "seed",
    "steps",
    "train_flops",
    "inference_flops",
    "eval_metric",
    "eval_value",
    "eval_value_strict",
    "eval",
    "wall_seconds",
)
Record = TypeVar("Record", bound="_JsonRecord")
# metric names (or words of them, split at "_" or "-") for which lower is better: cross-entropy and its exponent
LOWER_IS_BETTER = ("loss", "perplexity", "ppl", "nll", "bits_per_byte")


def metric_higher_is_better(metric: Optional[str]) -> bool:
    """Is a higher value of `metric` better, judged by its name alone? Losses and perplexities are not.

    'perplexity', 'eval/loss', 'eval_strict/word_perplexity', 'lm_eval/wikitext/bits_per_byte,none'
    -> False; 'top1', 'token_acc', 'bleu', None -> True. Only for metrics whose run recorded no
    direction: a summary's `eval_higher_is_better` wins for its headline.
    """
    name = str(metric or "").rsplit("/", 1)[-1].split(",", 1)[0].lower()
    return not (name in LOWER_IS_BETTER or set(re.split(r"[_\-]", name)) & set(LOWER_IS_BETTER))


class _JsonRecord:
    """A dataclass that reads and writes itself as one JSON object (unknown keys kept in `extra`)."""

    extra: Dict[str, Any]

    @classmethod
    def from_dict(cls: Type[Record], values: Dict[str, Any]) -> Record:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}  # type: ignore[arg-type]
        record = cls(**{k: v for k, v in values.items() if k in known})
        record.extra = {k: v for k, v in values.items() if k not in known}
        return record

    def to_dict(self) -> Dict[str, Any]:
        values = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if f.name != "extra"
        }
        return {**self.extra, **values}


@dataclass
class RunSummary(_JsonRecord):
    """summary.json: what a finished run did and reached, and the code that made it.

    Every field may be missing from an old file (read as None); `write` requires the REQUIRED ones.
    """

    run_name: Optional[str] = None
    model: Optional[str] = None
    sparsity: Optional[str] = None
    recipe: Optional[str] = None  # "none" for a one-shot model evaluated untrained (budget.steps=0)
    seed: Optional[int] = None
    steps: Optional[int] = None
    train_flops: Optional[float] = None
    inference_flops: Optional[float] = None
    eval_metric: Optional[str] = None
    eval_value: Optional[float] = None
    eval_value_strict: Optional[float] = None
    eval_higher_is_better: Optional[bool] = None  # the headline's direction (the task's); None in older files
    eval: Optional[Dict[str, float]] = None
    wall_seconds: Optional[float] = None
    status: str = "finished"
    budget: Optional[Dict[str, Any]] = None  # {"kind": "steps" | "epochs" | "train_flops", "value": float}
    sweep: Optional[str] = None
    version: Optional[str] = None
    git_sha: Optional[str] = None  # "<sha>+dirty" when src/ or conf/ had uncommitted changes
    threads: Optional[int] = None
    model_name: Optional[str] = None
    data: Optional[str] = None
    data_source: Optional[str] = None
    patterns: Dict[str, str] = field(default_factory=dict)
    recipe_knobs: Dict[str, Any] = field(default_factory=dict)
    oneshot: Optional[str] = None  # the one-shot method that pruned the start (magnitude | wanda | sparsegpt | none)
    # its calibration: samples, forwards, forward_equivalents, flops (charged to train_flops), seconds
    oneshot_calibration: Optional[Dict[str, Any]] = None
    examples_per_step: Optional[int] = None
    train_flops_per_s: Optional[float] = None
    mfu: Optional[float] = None
    peak_flops: Optional[float] = None
    sparse_layers: Optional[int] = None
    skipped_layers: List[str] = field(default_factory=list)
    run_dir: Optional[str] = None
    schema: int = SCHEMA_VERSION
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, run_dir: Union[Path, RunDir]) -> Optional["RunSummary"]:
        """The run's summary, or None when it has none (not finished) or it cannot be read."""
        values = read_json(_run_dir(run_dir).summary)
        return cls.from_dict({"schema": 1, **values}) if isinstance(values, dict) else None  # no schema: 0.1.0

    def higher_is_better(self) -> bool:
        """The headline's direction: as recorded, else (a summary older than the field) by its name."""
        if self.eval_higher_is_better is not None:
            return bool(self.eval_higher_is_better)
        return metric_higher_is_better(self.eval_metric)

    def write(self, run_dir: Union[Path, RunDir]) -> None:
        missing = [name for name in REQUIRED_SUMMARY_FIELDS if getattr(self, name) is None]
        if missing:
            raise ValueError(f"summary.json needs {', '.join(missing)}")
        write_json(_run_dir(run_dir).summary, self.to_dict())


@dataclass
class RunStatus(_JsonRecord):
    """status.json: where a run (or a sweep point) stands: running, finished, failed, skipped, stopped."""

    status: str
    run_name: Optional[str] = None
    overrides: List[str] = field(default_factory=list)
    sweep: Optional[str] = None
    host: Optional[str] = None
    pid: Optional[int] = None
    updated: Optional[str] = None
    exit_code: int = 0
    error: Optional[str] = None  # one line
    error_type: Optional[str] = None
    step: Optional[int] = None
    settings: Optional[str] = None  # digest of the result-changing settings (a finished run is skipped only if equal)
    resumed_from: Optional[int] = None
    collected_while_training: Optional[bool] = None  # pgf-collect copied the point while it trained
    schema: int = SCHEMA_VERSION
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, run_dir: Union[Path, RunDir]) -> Optional["RunStatus"]:
        values = read_json(_run_dir(run_dir).status)
        return cls.from_dict({"schema": 1, **values}) if isinstance(values, dict) and "status" in values else None

    def write(self, run_dir: Union[Path, RunDir]) -> None:
        write_json(_run_dir(run_dir).status, {k: v for k, v in self.to_dict().items() if v is not None})


def _run_dir(run_dir: Union[Path, RunDir]) -> RunDir:
    return run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
