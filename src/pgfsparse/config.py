"""Typed configuration: the schema every composed Hydra config is validated against.

Each dataclass is one config group (`conf/<group>/*.yaml`). Hydra composes the
YAML; `validate()` merges it onto these dataclasses (unknown keys and wrong
types fail there, in one line) and checks the combinations before anything is
built or written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class ModelConfig:
    family: str = "vit"  # vit | swin | timm: which builder and which built-in layer map
    name: str = "vit_tiny_patch16_224"  # timm architecture id (sizes below override it)
    pretrained: bool = False  # load hub weights (needs internet or a local HF cache)
    kwargs: Dict[str, Any] = field(default_factory=dict)  # extra timm.create_model arguments
    layer_map: Optional[str] = None  # built-in map (vit | swin | t5); None = detect from the model class
    layer_patterns: Optional[Dict[str, List[str]]] = None  # {location: [regex of module names]} for other models
    checkpoint: Optional[str] = None  # local weights file (.safetensors/.pth) loaded instead of the hub's


@dataclass
class SparsityConfig:
    """N:M pattern per location; null = dense. qk/qkv expand, the more specific name wins."""

    ff: Optional[str] = None
    q: Optional[str] = None
    k: Optional[str] = None
    v: Optional[str] = None
    qk: Optional[str] = None
    qkv: Optional[str] = None
    attn_out: Optional[str] = None
    layout: str = "row"  # row (groups along inputs, the hardware layout) | col
    allow_skip: bool = False  # leave layers whose shape cannot take the pattern dense (listed in the summary)


@dataclass
class RecipeConfig:
    """Mirrors pgfsparse.Recipe; see the README's recipe table for every knob."""

    name: str = "mdgf_exp"
    dense_fraction: float = 0.05
    finetune_fraction: float = 0.15
    mask_interval: Optional[int] = None
    srste_lambda: float = 2e-4
    beta: Optional[float] = None
    decay_end_fraction: float = 0.7
    decay_epsilon: float = 1e-3
    step_weight: Optional[float] = None
    step_interval: Optional[int] = None
    max_updates: int = 16
    geo_k: int = 8
    ladder: Optional[str] = None


@dataclass
class BudgetConfig:
    """Run length: set at most one of steps, epochs, train_flops; none -> default_epochs."""

    steps: Optional[int] = None  # optimizer steps
    epochs: Optional[float] = None  # passes over the training split
    train_flops: Optional[float] = None  # smallest step count whose training FLOPs reach this
    default_epochs: float = 2.0  # the README's ~15-minute CPU run of model=vit on CIFAR-10


@dataclass
class AugmentConfig:
    hflip: float = 0.5
    random_crop: bool = True  # random-resized crop (timm); False: resize + center crop only
    auto_augment: Optional[str] = None  # timm policy string, e.g. rand-m9-mstd0.5-inc1 (RandAugment)
    mixup: float = 0.0  # mixup alpha (0 = off)
    cutmix: float = 0.0  # cutmix alpha (0 = off)
    label_smoothing: float = 0.0


@dataclass
class DataConfig:
    name: str = "cifar10"  # cifar10 | imagenet | imagefolder | digits
    hub_id: Optional[str] = None  # used when no local copy is found (cifar10: uoft-cs/cifar10)
    path: Optional[str] = None  # one explicit local folder (Parquet files or an image-folder tree)
    image_column: Optional[str] = None  # None = detect (img, image, ...)
    label_column: Optional[str] = None  # None = detect (label, labels, fine_label, ...)
    train_split: str = "train"
    eval_split: Optional[str] = None  # None = first of validation, val, test
    image_size: Optional[int] = None  # None = the data's native size
    batch_size: int = 128  # per process and micro-batch: global batch = batch_size x processes x optim.accumulate
    eval_batch_size: int = 256
    eval_limit: Optional[int] = None  # evaluate on at most this many examples
    num_workers: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class OptimConfig:
    name: str = "adamw"  # any timm.optim.create_optimizer_v2 name
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: Optional[float] = 1.0  # max global gradient norm; null = off
    accumulate: int = 1  # micro-batches per optimizer step


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # cosine | constant (both with linear warm-up)
    warmup_fraction: float = 0.05  # of total steps
    warmup_steps: Optional[int] = None  # overrides warmup_fraction
    min_lr: float = 1e-5


@dataclass
class LoggerConfig:
    wandb: bool = True
    mode: Optional[str] = None  # online | offline | disabled; None = $WANDB_MODE, else offline
    project: str = "pgfsparse"
    entity: Optional[str] = None
    group: Optional[str] = None  # None = the sweep's name in multirun
    tags: List[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
    log_every: int = 20  # optimizer steps between metric lines
    eval_every: Optional[int] = None  # steps between evaluations; None = at the end only
    checkpoint_every: Optional[int] = 200  # steps between checkpoints (and one at the end)
    diagnostics_every: int = 100  # steps between sparsity diagnostics
    resume: Optional[str] = None  # a run dir to continue in place
    output_dir: Optional[str] = None  # None = Hydra's run dir
