"""Checks a composed config before anything is built, downloaded or written.

Every problem becomes a `ConfigError` with a one-line message that names the
key and the fix; `pgf-train` prints it and exits with status 2.
"""
from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Dict, NamedTuple, Tuple

from pgfsparse.config.schema import TrainConfig
from pgfsparse.errors import ConfigError, Contradiction, first_line
from pgfsparse.rundir.naming import describe_sparsity, slug
from pgfsparse.sparsity.pattern import NM
from pgfsparse.sparsity.recipes import (
    Recipe,
    load_recipe_class,
    make_recipe,
    recipe_class,
)
from pgfsparse.sparsity.targets import resolve_patterns

PATTERN_KEYS = ("ff", "q", "k", "v", "qk", "qkv", "attn_out")






def to_train_config(cfg) -> TrainConfig:
    """Merge a composed DictConfig onto the typed schema; unknown keys and bad types fail here."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    plain = {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}
    unknown = _unknown_keys(plain, TrainConfig)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)}: check the spelling (pgf-train --cfg job lists all)")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), plain)
        return OmegaConf.to_object(merged)
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


def sparsity_patterns(cfg: TrainConfig) -> Dict[str, NM]:
    """The location -> N:M map of `sparsity.*` (dense entries dropped)."""
    given = {key: getattr(cfg.sparsity, key) for key in PATTERN_KEYS if getattr(cfg.sparsity, key) is not None}
    try:
        return resolve_patterns(given)
    except ValueError as error:
        raise ConfigError(f"sparsity: {error}") from None


def resolve_recipe(cfg: TrainConfig, patterns: Dict[str, NM]) -> Recipe:
    """The Recipe to run, with `auto` and contradictions settled.

    Rule: recipe=auto means dense when no location has a pattern and decay
    (mdgf_exp) otherwise. An explicit sparse recipe with no pattern, or
    recipe=dense with a pattern, is refused (in a sweep that job is skipped, so
    the grid never runs the dense baseline twice).
    """
    name = cfg.recipe["name"]
    try:
        recipe_class, options = recipe_class_and_knobs(cfg.recipe, patterns)
        recipe = make_recipe(recipe_class, **options)
    except ValueError as error:
        raise ConfigError(f"recipe: {error}") from None
    if recipe.is_sparse and not patterns:
        raise Contradiction(
            f"recipe={name} needs an N:M pattern but sparsity is dense: "
            "add e.g. sparsity=1:16, or use recipe=dense for the baseline"
        )
    if not recipe.is_sparse and patterns:
        shown = ", ".join(f"{k}={v}" for k, v in patterns.items())
        raise Contradiction(
            f"recipe=dense contradicts the pattern {shown}: pick a sparse recipe (e.g. recipe=decay) or sparsity=dense"
        )
    return recipe


def recipe_class_and_knobs(recipe_cfg, patterns: Dict[str, NM]):
    """(the Recipe class, its knobs) named by the recipe node: a name, `auto`, or `custom` + target.

    `auto` is mdgf_exp with a pattern and dense without one (whose knobs it then drops).
    """
    settings = dict(recipe_cfg)
    name = str(settings.pop("name"))
    if name == "custom":
        target = settings.pop("target", None)
        if target in (None, "", "???"):
            raise ValueError("recipe=custom needs recipe.target=path/file.py:Class or module:Class "
                             "(see examples/my_recipe.py)")
        return load_recipe_class(target), settings
    if name == "auto":
        name = "mdgf_exp" if patterns else "dense"
        settings = settings if patterns else {}
    return recipe_class(name), settings


def resolve_patterns_and_recipe(cfg) -> Tuple[Dict[str, NM], str]:
    """(patterns, canonical recipe name) of a composed config: what a run's name needs, before any check."""
    patterns = sparsity_patterns(cfg)
    return patterns, recipe_class_and_knobs(cfg.recipe, patterns)[0].name


def check_budget(cfg: TrainConfig) -> Tuple[str, float]:
    """('steps' | 'epochs' | 'train_flops', value) after checking at most one is set."""
    budget = cfg.budget
    given = [(k, getattr(budget, k)) for k in ("steps", "epochs", "train_flops") if getattr(budget, k) is not None]
    if len(given) > 1:
        shown = ", ".join(f"budget.{k}={v}" for k, v in given)
        raise ConfigError(f"set one run length, not {shown}: drop all but one (e.g. '~budget.epochs')")
    default = budget.default_epochs if budget.default_epochs is not None else cfg.data.default_epochs
    kind, value = given[0] if given else ("epochs", default)
    if not value or value <= 0:
        raise ConfigError(f"budget.{kind}={value} must be positive")
    return kind, float(value)


TEXT_FAMILIES = ("t5",)
VISION_FAMILIES = ("vit", "swin", "timm")
DATA_KINDS = ("image", "translation", "span_corruption", "glue")


def check_model_and_data(cfg: TrainConfig) -> None:
    """A text model needs text data and a vision model images: say which choices fit."""
    family, kind = cfg.model.family, cfg.data.kind
    if family not in TEXT_FAMILIES + VISION_FAMILIES:
        raise ConfigError(f"model.family={family!r} is unknown: choose one of {', '.join(VISION_FAMILIES + TEXT_FAMILIES)}")
    if kind not in DATA_KINDS:
        raise ConfigError(f"data.kind={kind!r} is unknown: choose one of {', '.join(DATA_KINDS)}")
    if family in TEXT_FAMILIES and kind == "image":
        raise ConfigError(
            f"model={family} is a text model but data={cfg.data.name} is image data: "
            "choose data=multi30k, wmt16, c4, text or glue (or an image model such as model=vit)"
        )
    if family in VISION_FAMILIES and kind != "image":
        raise ConfigError(
            f"model={family} is an image model but data={cfg.data.name} is {kind.replace('_', '-')} text data: "
            "choose model=t5 (or t5_small, t5_base), or image data such as data=cifar10"
        )
    if kind == "translation" and not (cfg.data.source_lang and cfg.data.target_lang):
        raise ConfigError("translation needs data.source_lang and data.target_lang (two text columns, e.g. en and de)")
    if kind == "translation" and cfg.data.source_lang == cfg.data.target_lang:
        raise ConfigError(f"data.source_lang and data.target_lang are both {cfg.data.source_lang!r}: name two columns")
    if kind == "glue" and not cfg.data.glue_task:
        raise ConfigError("data=glue needs data.glue_task (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte or wnli)")


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
    "budget.steps": AT_LEAST_1,
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
    "diagnostics_every": NON_NEGATIVE,  # 0 = off
    "threads": AT_LEAST_1,
    "peak_flops": POSITIVE,
}
NULL_MEANS = {"optim.grad_clip": "off", "eval_every": "at the end only", "checkpoint_every": "only at the end",
              "data.eval_limit": "all", "data.generate_limit": "all", "threads": "automatic",
              "peak_flops": "the device table"}


def check_ranges(cfg: TrainConfig) -> None:
    """Every key of RANGES within its range, else a one-line error naming key, value and range."""
    for key, valid in RANGES.items():
        value = _get(cfg, key)
        if value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if not (isinstance(item, (int, float)) and valid.test(item)):
                null = f" (or null: {NULL_MEANS[key]})" if key in NULL_MEANS else ""
                raise ConfigError(f"{key}={_shown(value)} is out of range: it must be {valid.text}{null}")


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _shown(value) -> str:
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, (list, tuple)) else str(value)


def check_optimizer(cfg: TrainConfig) -> None:
    from timm.optim import list_optimizers

    known = list_optimizers()
    if cfg.optim.name.lower() not in known:
        import difflib

        close = difflib.get_close_matches(cfg.optim.name.lower(), known, n=4) or ["adamw", "sgd", "lamb"]
        raise ConfigError(f"optim.name={cfg.optim.name!r} is not a timm optimizer: e.g. {', '.join(close)}")


def check_files(cfg: TrainConfig) -> None:
    """Files the config names must exist (and a weights file must be safe to load)."""
    from pgfsparse.run.checkpoint import check_weights_file

    if cfg.resume is not None and not Path(cfg.resume).is_dir():
        raise ConfigError(f"resume={cfg.resume}: no such run dir (give the folder a run wrote)")
    if cfg.data.path is not None and not Path(cfg.data.path).expanduser().exists():
        raise ConfigError(f"data.path={cfg.data.path}: no such file or folder")
    if cfg.model.checkpoint is not None:
        check_weights_file(Path(cfg.model.checkpoint).expanduser(), "model.checkpoint")


def check(cfg: TrainConfig) -> Tuple[Dict[str, NM], Recipe]:
    """All checks that need no model or data; returns (patterns, recipe)."""
    check_ranges(cfg)
    check_model_and_data(cfg)
    patterns = sparsity_patterns(cfg)
    recipe = resolve_recipe(cfg, patterns)
    check_budget(cfg)
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
    check_files(cfg)
    return patterns, recipe


__all__ = ["RANGES", "ConfigError", "Contradiction", "check", "check_ranges", "check_budget", "check_model_and_data", "describe_sparsity", "resolve_patterns_and_recipe", "resolve_recipe",
           "slug", "sparsity_patterns", "to_train_config"]
