"""Typed configuration: the schema every composed Hydra config is validated against.

Each dataclass is one config group (`conf/<group>/*.yaml`). Hydra composes the
YAML; `validation.to_train_config()` merges it onto these dataclasses (unknown
keys and wrong types fail there, in one line) and `validation.check()` checks
the combinations before anything is built or written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union


@dataclass
class TokenizerConfig:
    """Text models only. auto = the pretrained model's own tokenizer, else a BPE trained on the training split."""

    # auto | bpe (trained offline, cached) | byte | char (decoders: the training split's characters) | pretrained
    kind: str = "auto"
    vocab_size: int = 8000  # bpe: vocabulary size, the 100 sentinels <extra_id_N> included
    train_texts: int = 200000  # bpe: train on at most this many training texts
    name: Optional[str] = None  # pretrained: a hub id or local directory; None = model.pretrained


VISION_FAMILIES = ("vit", "swin", "timm")  # model.family values built by timm
DECODER_FAMILIES = ("gpt2", "llama")  # causal language models (Hugging Face GPT2LMHeadModel, LlamaForCausalLM)
TEXT_FAMILIES = ("t5",) + DECODER_FAMILIES  # model.family values built by Hugging Face transformers
# data.kind values. `corpus` is plain text: causal LM for a decoder, span corruption for T5 (the model
# family picks the task); `span_corruption` is 0.2.0's name for a corpus, still read.
DATA_KINDS = ("image", "translation", "corpus", "glue", "span_corruption")


@dataclass
class ModelConfig:
    family: str = "vit"  # vit | swin | timm (vision, timm) | t5 | gpt2 | llama (text, Hugging Face)
    name: str = "vit_tiny_patch16_224"  # timm architecture id, or the Hugging Face checkpoint's hub id
    # vision: true loads timm's hub weights. text: a hub id or a local directory (true = model.name);
    # false/null trains from scratch. Needs internet or a local copy.
    pretrained: Any = False
    kwargs: Dict[str, Any] = field(default_factory=dict)  # timm.create_model arguments / T5Config fields
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)  # text models only
    layer_map: Optional[str] = None  # built-in map (vit | swin | t5 | gpt2 | llama); None = detect from the model class
    layer_patterns: Optional[Dict[str, List[str]]] = None  # {location: [regex of module names]} for other models
    # Start from a pgf-train run's weights: its run dir or checkpoint.pt (a sparse run gives its strict N:M
    # weights), any family; vision also takes a timm weights file (.safetensors/.pth).
    checkpoint: Optional[str] = None


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


def recipe_config_nodes() -> Dict[str, Any]:
    """The recipe group's options, built from the recipe classes: one place for every knob's default.

    recipe=<name> for each registered recipe (plug-ins included) is a typed node
    holding its name and knobs; `decay` and `auto` are mdgf_exp's knobs under
    those names; `custom` takes recipe.target=path/file.py:Class (or module:Class)
    and any +recipe.<knob>=..., which the class then checks.
    """
    from dataclasses import fields, make_dataclass
    from typing import get_type_hints

    from pgfsparse.sparsity.recipes import registered

    def node(recipe_class, name: str):
        hints = get_type_hints(recipe_class)
        knobs = [(f.name, _hydra_type(hints[f.name]), field(default=f.default)) for f in fields(recipe_class)]
        return make_dataclass(f"{recipe_class.__name__}Config", [("name", str, field(default=name)), *knobs])

    classes = registered()
    nodes = {name: node(cls, name) for name, cls in classes.items()}
    nodes["decay"] = node(classes["mdgf_exp"], "decay")
    nodes["auto"] = node(classes["mdgf_exp"], "auto")
    nodes["custom"] = {"name": "custom", "target": "???"}
    return nodes


def _hydra_type(annotation) -> Any:
    """The annotation if OmegaConf can check it (int, float, str, bool, Optional of one), else Any."""
    simple = (int, float, str, bool)
    if annotation in simple:
        return annotation
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    if getattr(annotation, "__origin__", None) is Union and len(args) == 1 and args[0] in simple:
        return annotation
    return Optional[Any]


ONESHOT_METHODS = ("none", "magnitude", "wanda", "sparsegpt")  # oneshot.method values (conf/oneshot/*.yaml)


@dataclass
class OneShotConfig:
    """A one-shot N:M prune of the starting weights before the first step (pgfsparse.oneshot; docs/one-shot.md)."""

    method: str = "none"  # none | magnitude | wanda | sparsegpt
    samples: int = 128  # calibration examples from the training split (text: data.block_size tokens each), seeded
    blocksize: int = 128  # sparsegpt: columns per lazy update block; every M must divide it
    damp: float = 0.01  # sparsegpt: dampening, a fraction of the mean diagonal of the Hessian


@dataclass
class BudgetConfig:
    """Run length: set at most one of steps, epochs, train_flops; none -> default_epochs."""

    steps: Optional[int] = None  # optimizer steps (0: evaluate a one-shot prune untrained; oneshot only)
    epochs: Optional[float] = None  # passes over the training split
    train_flops: Optional[float] = None  # smallest step count whose training FLOPs reach this
    default_epochs: Optional[float] = None  # None = data.default_epochs (each dataset's ~15-minute CPU run)


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
    name: str = "cifar10"  # image: cifar10 | imagenet | imagefolder | digits; text: multi30k | wmt16 | c4 | text | glue
    kind: str = "image"  # image | translation | corpus | glue: picks the task (set by each data/*.yaml)
    hub_id: Optional[str] = None  # used when no local copy is found (cifar10: uoft-cs/cifar10)
    hub_config: Optional[str] = None  # the hub dataset's config (wmt16: de-en, c4: en)
    streaming: bool = False  # stream the hub dataset instead of downloading it (c4)
    path: Optional[str] = None  # one explicit local folder (Parquet files, text files or an image-folder tree)
    image_column: Optional[str] = None  # None = detect (img, image, ...)
    label_column: Optional[str] = None  # None = detect (label, labels, fine_label, ...)
    train_split: str = "train"
    eval_split: Optional[str] = None  # None = first of validation, val, test
    image_size: Optional[int] = None  # None = the data's native size
    batch_size: int = 128  # per process and micro-batch: global batch = batch_size x processes x optim.accumulate
    eval_batch_size: int = 256
    # Evaluate on at most this many examples (None = all): a fixed seeded sample, sorted, the same for every run
    # and seed (never a class-ordered split's first classes); a streamed split's first ones. summary.json's
    # data_source says so.
    eval_limit: Optional[int] = None
    num_workers: int = 0
    default_epochs: float = 2.0  # run length when no budget.* is set (docs/training.md: ~15 min on a 2-core CPU)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # --- text ---
    source_lang: Optional[str] = None  # translation: the source text column (en), or a key of a `translation` column
    target_lang: Optional[str] = None  # translation: the target text column (de)
    source_prefix: str = ""  # prepended to every source text (pretrained T5: "translate English to German: ")
    text_column: str = "text"  # corpus: the column (Parquet/hub) holding documents
    # corpus: None = each row is a document (EOS between documents); a string = the rows are lines of one
    # text, joined with it (wikitext: "", its rows keep their own newlines)
    row_separator: Optional[str] = None
    block_size: int = 64  # corpus, causal LM: tokens per training example (targets are the next tokens)
    glue_task: Optional[str] = None  # glue: cola | sst2 | mrpc | qqp | stsb | mnli | qnli | rte | wnli
    max_source_length: int = 128  # tokens, EOS included (longer texts are truncated)
    max_target_length: int = 128
    generate_limit: Optional[int] = 1000  # eval examples decoded greedily for BLEU / GLUE (None = all)


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
    mlflow: bool = False  # also log to MLflow (logger=mlflow)
    # MLflow's tracking URI; None = a SQLite store mlflow.db in the run dir's parent folder (a sweep: one store)
    tracking_uri: Optional[str] = None


@dataclass
class LmEvalConfig:
    """lm-evaluation-harness on the final strict model of a causal-LM run (the `lm_eval` extra)."""

    tasks: List[str] = field(default_factory=list)  # lm-eval task names; empty = off
    num_fewshot: Optional[int] = None  # None = each task's default
    limit: Optional[int] = None  # examples per task (None = all)
    batch_size: int = 8
    include_path: Optional[str] = None  # a folder of task YAMLs (local tasks); only it is scanned when given


@dataclass
class EvalConfig:
    lm_eval: LmEvalConfig = field(default_factory=LmEvalConfig)


DISTRIBUTED_STRATEGIES = ("ddp", "fsdp")  # distributed.strategy values


@dataclass
class DistributedConfig:
    """How the processes of one run (torchrun, srun, the SLURM launcher) share the model."""

    # ddp: every process holds the whole model and optimizer | fsdp: FSDP2 (fully_shard per transformer block,
    # then the model): parameters, gradients and optimizer state sharded across processes
    strategy: str = "ddp"


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    recipe: Any = field(default_factory=lambda: {"name": "auto"})  # a node of recipe_config_nodes()
    oneshot: OneShotConfig = field(default_factory=OneShotConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
    # Peak FLOP/s of one device, for train/mfu; None = peak_flops.py's table (CUDA), else no MFU (CPU)
    peak_flops: Optional[float] = None
    compile: bool = False  # run the model under torch.compile, sparsity parametrization in place (eval stays eager)
    log_every: int = 20  # optimizer steps between metric lines
    eval_every: Optional[int] = None  # steps between evaluations; None = at the end only
    checkpoint_every: Optional[int] = 200  # steps between checkpoints (and one at the end)
    diagnostics_every: int = 100  # steps between sparsity diagnostics; 0 = off (no diagnostics events)
    resume: Optional[str] = None  # a run dir to continue in place
    output_dir: Optional[str] = None  # None = Hydra's run dir
    threads: Optional[int] = None  # torch threads; None = usable cores / parallel jobs (joblib n_jobs, torchrun ranks)
    sweep: str = "default"  # multirun folder name under multirun/; pgf-train sets it from the command's overrides
