"""Checks a composed config before anything is built, downloaded or written.

Every problem becomes a `ConfigError` with a one-line message that names the
key and the fix; `pgf-train` prints it and exits with status 2.
"""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, cast

from pgfsparse.config.schema import (
    DATA_KINDS,
    DECODER_FAMILIES,
    DISTRIBUTED_STRATEGIES,
    ONESHOT_METHODS,
    TEXT_FAMILIES,
    VISION_FAMILIES,
    TrainConfig,
)
from pgfsparse.config.spec import RunSpec, resolve
from pgfsparse.errors import ConfigError, first_line
from pgfsparse.evaluation.harness import check_lm_eval
from pgfsparse.run.mlflow_logger import check_mlflow


def to_train_config(cfg) -> TrainConfig:
    """Merge a composed DictConfig onto the typed schema; unknown keys and bad types fail here."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    container = cast(Dict[str, Any], OmegaConf.to_container(cfg, resolve=False))  # a DictConfig becomes a dict
    plain = {k: v for k, v in container.items() if k != "hydra"}
    unknown = _unknown_keys(plain, TrainConfig)
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(unknown)}: check the spelling (pgf-train --cfg job lists all)"
        )
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), plain)
        return cast(TrainConfig, OmegaConf.to_object(merged))  # a structured config becomes its dataclass again
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        raise ConfigError(f"config error{f' at {key}' if key else ''}: {first_line(error)}") from None


def _unknown_keys(values: dict, schema, prefix: str = "") -> list:
    """Dotted keys of `values` that the dataclass `schema` does not declare (free-form dicts excepted)."""
    declared = {f.name: f for f in fields(schema)}
    unknown = []
    for key, value in values.items():
        field = declared.get(key)
        if field is None:
            unknown.append(prefix + key)
            continue
        nested = field.default_factory() if field.default_factory is not MISSING else None
        if is_dataclass(nested) and isinstance(value, dict):
            unknown += _unknown_keys(value, type(nested), f"{prefix}{key}.")
    return unknown


# The text data options, by task: what a one-line error suggests
CORPUS_DATA = "tiny_shakespeare, wikitext or text"  # plain text (data.kind corpus)
T5_DATA = f"multi30k, wmt16, glue, c4, {CORPUS_DATA}"


def check_model_and_data(cfg: TrainConfig) -> None:
    """A model needs data of its kind (images; text pairs or corpora for T5; corpora for decoders): say which fit."""
    family, kind = cfg.model.family, cfg.data.kind
    if family not in TEXT_FAMILIES + VISION_FAMILIES:
        raise ConfigError(
            f"model.family={family!r} is unknown: choose one of {', '.join(VISION_FAMILIES + TEXT_FAMILIES)}"
        )
    if kind not in DATA_KINDS:
        raise ConfigError(f"data.kind={kind!r} is unknown: choose one of {', '.join(DATA_KINDS)}")
    if family in TEXT_FAMILIES and kind == "image":
        choices = CORPUS_DATA if family in DECODER_FAMILIES else T5_DATA
        raise ConfigError(
            f"model={family} is a text model but data={cfg.data.name} is image data: "
            f"choose data={choices} (or an image model such as model=vit)"
        )
    if family in VISION_FAMILIES and kind != "image":
        raise ConfigError(
            f"model={family} is an image model but data={cfg.data.name} is {kind.replace('_', '-')} text data: "
            "choose a text model (model=t5, gpt2 or llama), or image data such as data=cifar10"
        )
    if family in DECODER_FAMILIES and kind not in ("corpus", "span_corruption"):
        raise ConfigError(
            f"model={family} is a decoder (causal language model) and trains on plain text, but data={cfg.data.name} "
            f"is {kind} data: choose data={CORPUS_DATA} (data.path=...), or model=t5 for {kind}"
        )
    if kind == "translation" and not (cfg.data.source_lang and cfg.data.target_lang):
        raise ConfigError("translation needs data.source_lang and data.target_lang (two text columns, e.g. en and de)")
    if kind == "translation" and cfg.data.source_lang == cfg.data.target_lang:
        raise ConfigError(f"data.source_lang and data.target_lang are both {cfg.data.source_lang!r}: name two columns")
    if kind == "glue" and not cfg.data.glue_task:
        raise ConfigError("data=glue needs data.glue_task (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte or wnli)")


def check_decoder(cfg: TrainConfig) -> None:
    """A decoder built from a config: its model.kwargs and its context against data.block_size, before any build.

    A pretrained decoder's context is known once its config is read: `build_causal_lm` checks it.
    """
    from pgfsparse.models.causal_lm import check_block_size, pretrained_source, scratch_config

    if cfg.model.family not in DECODER_FAMILIES or pretrained_source(cfg.model) is not None:
        return
    config = scratch_config(cfg.model, 1, eos_token_id=0)  # vocabulary and ids do not change the checks
    check_block_size(config, cfg.data.block_size, cfg.model)


class Range(NamedTuple):
    """A numeric key's valid values: `test(value)` holds, shown as `text`; null always passes."""

    test: Callable[[Any], bool]
    text: str


AT_LEAST_1 = Range(lambda v: v >= 1, ">= 1")
AT_LEAST_2 = Range(lambda v: v >= 2, ">= 2")
POSITIVE = Range(lambda v: v > 0, "> 0")
NON_NEGATIVE = Range(lambda v: v >= 0, ">= 0")
FRACTION = Range(lambda v: 0 <= v <= 1, "in [0, 1]")
BELOW_1 = Range(lambda v: 0 <= v < 1, "in [0, 1)")

# Every numeric key of the schema (config.py) and its valid range; a test checks that none is missing.
# Lists (optim.betas) are checked element by element.
RANGES: Dict[str, Range] = {
    "model.tokenizer.vocab_size": AT_LEAST_1,
    "model.tokenizer.train_texts": AT_LEAST_1,
    "budget.steps": NON_NEGATIVE,  # 0 only with a one-shot prune (spec.check_budget)
    "budget.epochs": POSITIVE,
    "budget.train_flops": POSITIVE,
    "budget.default_epochs": POSITIVE,
    "data.image_size": AT_LEAST_1,
    "data.batch_size": AT_LEAST_1,
    "data.eval_batch_size": AT_LEAST_1,
    "data.eval_limit": AT_LEAST_1,
    "data.num_workers": NON_NEGATIVE,
    "data.default_epochs": POSITIVE,
    "data.augment.hflip": FRACTION,
    "data.augment.mixup": NON_NEGATIVE,
    "data.augment.cutmix": NON_NEGATIVE,
    "data.augment.label_smoothing": BELOW_1,
    "data.max_source_length": AT_LEAST_2,  # a token plus EOS
    "data.max_target_length": AT_LEAST_2,
    "data.generate_limit": AT_LEAST_1,
    "data.block_size": AT_LEAST_1,
    "eval.lm_eval.num_fewshot": NON_NEGATIVE,
    "eval.lm_eval.limit": AT_LEAST_1,
    "eval.lm_eval.batch_size": AT_LEAST_1,
    "optim.lr": POSITIVE,
    "optim.weight_decay": NON_NEGATIVE,
    "optim.betas": BELOW_1,
    "optim.grad_clip": POSITIVE,
    "optim.accumulate": AT_LEAST_1,
    "schedule.warmup_fraction": FRACTION,
    "schedule.warmup_steps": NON_NEGATIVE,
    "schedule.min_lr": NON_NEGATIVE,
    "seed": NON_NEGATIVE,
    "log_every": AT_LEAST_1,
    "eval_every": AT_LEAST_1,
    "checkpoint_every": AT_LEAST_1,
    "diagnostics_every": NON_NEGATIVE,  # 0 = off (ZERO_MEANS)
    "threads": AT_LEAST_1,
    "peak_flops": POSITIVE,
    "oneshot.samples": AT_LEAST_1,
    "oneshot.blocksize": AT_LEAST_1,
    "oneshot.damp": NON_NEGATIVE,
}
NULL_MEANS = {
    "optim.grad_clip": "off",
    "eval_every": "at the end only",
    "checkpoint_every": "only at the end",
    "data.eval_limit": "all",
    "data.generate_limit": "all",
    "threads": "automatic",
    "peak_flops": "the device table",
}
# keys whose 0 is a setting of its own, said in their range message
ZERO_MEANS = {"diagnostics_every": "off", "budget.steps": "evaluate a one-shot prune untrained"}


def check_ranges(cfg: TrainConfig) -> None:
    """Every key of RANGES within its range, else a one-line error naming key, value and range."""
    for key, valid in RANGES.items():
        value = _get(cfg, key)
        if value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if not (isinstance(item, (int, float)) and valid.test(item)):
                null = f" (or null: {NULL_MEANS[key]})" if key in NULL_MEANS else ""
                zero = f" (0: {ZERO_MEANS[key]})" if key in ZERO_MEANS else ""
                raise ConfigError(f"{key}={_shown(value)} is out of range: it must be {valid.text}{zero}{null}")
    if len(cfg.optim.betas) != 2:  # Adam's (beta1, beta2): torch fails on any other count, deep in the build
        raise ConfigError(
            f"optim.betas={_shown(cfg.optim.betas)} needs two values, each in [0, 1): e.g. optim.betas=[0.9,0.999]"
        )


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _shown(value) -> str:
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, (list, tuple)) else str(value)


def check_optimizer(cfg: TrainConfig) -> None:
    from timm.optim import list_optimizers

    known = cast(List[str], list_optimizers())  # names only: (name, description) pairs need with_description
    if cfg.optim.name.lower() not in known:
        import difflib

        close = difflib.get_close_matches(cfg.optim.name.lower(), known, n=4) or ["adamw", "sgd", "lamb"]
        raise ConfigError(f"optim.name={cfg.optim.name!r} is not a timm optimizer: e.g. {', '.join(close)}")


def check_files(cfg: TrainConfig) -> None:
    """Files the config names must exist (and a weights file must be safe to load)."""
    if cfg.resume is not None and not Path(cfg.resume).is_dir():
        raise ConfigError(f"resume={cfg.resume}: no such run dir (give the folder a run wrote)")
    if cfg.data.path is not None and not Path(cfg.data.path).expanduser().exists():
        raise ConfigError(f"data.path={cfg.data.path}: no such file or folder")
    if cfg.model.checkpoint is not None:
        check_start_weights(cfg, cfg.model.checkpoint)


def check_start_weights(cfg: TrainConfig, checkpoint: str) -> None:
    """model.checkpoint: a pgf-train run dir or checkpoint (any family), or a timm weights file (vision)."""
    from pgfsparse.models.start_weights import is_run_checkpoint
    from pgfsparse.run.checkpoint import check_weights_file
    from pgfsparse.rundir.layout import CHECKPOINT

    path = Path(checkpoint).expanduser()
    if path.is_dir():
        if not (path / CHECKPOINT).is_file():
            raise ConfigError(
                f"model.checkpoint={path} is a folder without {CHECKPOINT}: give a pgf-train run dir that has "
                "written one, or its checkpoint file"
            )
        path = path / CHECKPOINT
    check_weights_file(path, "model.checkpoint")  # exists, and holds only tensors (never unpickles code)
    if cfg.model.family not in VISION_FAMILIES and not is_run_checkpoint(path):
        raise ConfigError(
            f"model.checkpoint={path} is not a pgf-train checkpoint: model={cfg.model.family} starts from a "
            "pgf-train run dir or its checkpoint.pt (Hugging Face weights: model.pretrained=DIR)"
        )


def check_oneshot(cfg: TrainConfig, spec: RunSpec) -> None:
    """A one-shot prune needs a pattern, the row layout, no dense warm-up and (SparseGPT) M dividing its block size."""
    method = cfg.oneshot.method
    if method not in ONESHOT_METHODS:
        raise ConfigError(f"oneshot={method!r} is unknown: choose one of {', '.join(ONESHOT_METHODS)}")
    if method == "none":
        return
    if not spec.patterns:
        raise ConfigError(f"oneshot={method} prunes to an N:M pattern but sparsity is dense: add e.g. sparsity=2:4")
    if cfg.sparsity.layout != "row":
        raise ConfigError(
            f"oneshot={method} groups weights along their inputs (the row layout): "
            f"drop sparsity.layout={cfg.sparsity.layout}"
        )
    warmup = getattr(spec.recipe, "dense_fraction", 0.0)
    if warmup > 0:
        raise ConfigError(
            f"oneshot={method} starts from pruned weights, so it has no dense warm-up, but "
            f"recipe.dense_fraction={warmup}: drop that override (a one-shot start sets it to 0)"
        )
    if method == "sparsegpt":
        for location, nm in spec.patterns.items():
            if cfg.oneshot.blocksize % nm.m:
                raise ConfigError(
                    f"oneshot.blocksize={cfg.oneshot.blocksize} is not a multiple of M={nm.m} ({location}={nm}): "
                    "SparseGPT picks N:M groups inside its column blocks; use e.g. "
                    f"oneshot.blocksize={nm.m * max(1, 128 // nm.m)}"
                )


def check(cfg: TrainConfig, model: Optional[str] = None, name: Optional[str] = None) -> RunSpec:
    """All checks that need no model or data; returns the run's RunSpec (see `spec.resolve`)."""
    check_ranges(cfg)
    check_model_and_data(cfg)
    check_decoder(cfg)
    spec = resolve(cfg, model, name=name)  # patterns, recipe and budget
    check_oneshot(cfg, spec)
    check_optimizer(cfg)
    if cfg.sparsity.layout not in ("row", "col"):
        raise ConfigError(f"sparsity.layout={cfg.sparsity.layout!r}: choose row or col")
    if cfg.schedule.name not in ("cosine", "constant"):
        raise ConfigError(f"schedule.name={cfg.schedule.name!r}: choose cosine or constant")
    if cfg.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"precision={cfg.precision!r}: choose auto, fp32, bf16 or fp16")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device={cfg.device!r}: choose auto, cpu or cuda")
    mode = cfg.logger.mode
    if mode is not None and mode not in ("online", "offline", "disabled"):
        raise ConfigError(f"logger.mode={mode!r}: choose online, offline or disabled")
    if cfg.distributed.strategy not in DISTRIBUTED_STRATEGIES:
        raise ConfigError(
            f"distributed.strategy={cfg.distributed.strategy!r}: choose {' or '.join(DISTRIBUTED_STRATEGIES)}"
        )
    check_mlflow(cfg.logger)
    check_files(cfg)
    # last: with lm-eval's built-in task names it scans lm-eval's task index (seconds), which the run's end reuses
    check_lm_eval(cfg)
    return spec


__all__ = [
    "RANGES",
    "check",
    "check_decoder",
    "check_model_and_data",
    "check_oneshot",
    "check_ranges",
    "to_train_config",
]
