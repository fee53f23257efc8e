"""What benchmarks/gpu_check.py runs, in which order, and what it is expected to cost: the models, the
configurations and their groups, the time estimates and the greedy plan that fits them into the budget.

Pure Python (no torch): `python benchmarks/gpu_check.py --plan` prints this plan anywhere.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 450.0  # 7.5 minutes: gpu_check.sh gives the whole script 8
WARMUP = 3  # untimed rounds; the first one builds each side (and compiles it)
STEPS = 8  # timed rounds
LONG_RUN = 100_000  # total_steps of every sparsifier: the timed steps sit early in the sparse phase
PATTERNS = ("2:4", "1:16")
COMPILE_PATTERN = "2:4"
COMPILE_RECIPES = ("dense", "mdgf_exp", "srste")  # in this order of priority
CUSTOM_LADDERS = {"2:4": "3:4,2:4", "1:16": "15:16,8:16,4:16,2:16,1:16"}  # sdgf_custom needs one
INFER_DTYPES = ("bfloat16", "float16")
MISSING_IMPORT_EXIT = 3

MODELS: Dict[str, Dict[str, Any]] = {
    "vit_b16": {
        "label": "ViT-B/16",
        "describe": "timm vit_base_patch16_224, batch 256, 224 px random images, 1000 classes",
        "batch": 256,
        "image_size": 224,
        "num_classes": 1000,
        "ff_layers": ("blocks.0.mlp.fc1", "blocks.0.mlp.fc2"),
    },
    "llama_125m": {
        "label": "Llama 125M preset",
        "describe": "LlamaForCausalLM from a LlamaConfig, sdpa attention, batch 16 x 1024 random tokens",
        "batch": 16,
        "context": 1024,
        "ff_layers": ("model.layers.0.mlp.up_proj", "model.layers.0.mlp.down_proj"),
    },
}
LLAMA_PRESET = ROOT / "conf" / "model" / "llama_125m.yaml"
# conf/model/llama_125m.yaml's model kwargs and vocabulary, used when PyYAML is missing
# (tests/test_gpu_check.py checks that the two agree)
LLAMA_125M = {
    "kwargs": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "num_key_value_heads": 4,
        "intermediate_size": 2048,
        "max_position_embeddings": 2048,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
    },
    "vocab_size": 32000,
}
# --smoke: tiny shapes of the same families (input widths multiples of 128: every pattern fits)
SMOKE = {
    "vit_b16": {
        "batch": 8,
        "image_size": 32,
        "timm_kwargs": dict(img_size=32, patch_size=8, embed_dim=256, depth=2, num_heads=4, mlp_ratio=2.0),
    },
    "llama_125m": {
        "batch": 2,
        "context": 64,
        "vocab_size": 512,
        "kwargs": dict(
            hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=512
        ),
    },
}

# Seconds, guesses for an H100-class GPU before anything is measured; replaced as measurements come.
DEFAULT_ESTIMATES: Dict[str, Any] = {
    "startup": 30.0,  # imports, CUDA start, the two prototype models
    "build": {"vit_b16": 2.0, "llama_125m": 2.0},  # copy, sparsify, FLOP count, optimizer (not the first step)
    "step": {"vit_b16": 0.18, "llama_125m": 0.10},  # one eager training step, sparsifier.step included
    "compile": {"vit_b16": 60.0, "llama_125m": 60.0},  # extra seconds of a compiled side's first steps
    "infer": {"vit_b16": 15.0, "llama_125m": 15.0},  # export + 2 loads + timings, one dtype
}


@dataclasses.dataclass(frozen=True)
class Config:
    """One configuration: a training side, or one dtype of a 2:4 inference check."""

    section: str  # "training" | "compile" | "inference"
    model: str  # a key of MODELS
    pattern: str  # FF pattern ("2:4", "1:16"); "" for dense
    recipe: str = "dense"  # a recipe name; "semi_structured" for inference
    compiled: bool = False
    dtype: str = "bfloat16"  # inference only

    def describe(self) -> str:
        model = f"{MODELS[self.model]['label']:<17}"
        ff = f"FF {self.pattern or '-'}"
        if self.section == "inference":
            layers = " + ".join(
                name.rsplit(".", 2)[-2] + "." + name.rsplit(".", 1)[-1] for name in MODELS[self.model]["ff_layers"]
            )
            return f"{'infer':<8} {model} {ff:<7} semi-structured {self.dtype:<8} layers {layers}, whole model"
        mode = "compile on " if self.compiled else "compile off"
        return f"{self.section:<8} {model} {ff:<7} {self.recipe:<12} {mode}"


@dataclasses.dataclass(frozen=True)
class Group:
    """Configurations measured together; units are decided (run or skipped) as a whole.

    With a reference, units[0] is the dense eager side every other side is compared with in the same
    rounds: when it is skipped the whole group is.
    """

    name: str
    units: Tuple[Tuple[Config, ...], ...]
    has_reference: bool = True
    reference_alone: bool = True  # False: the reference runs only when the unit after it fits too


def built_in_recipes() -> List[str]:
    """The registered recipes that ship with pgfsparse (plug-ins left out), in the registry's order."""
    from pgfsparse.sparsity.recipes import registered

    return [name for name, cls in registered().items() if cls.__module__.startswith("pgfsparse.")]


def groups(recipes: Sequence[str]) -> List[Group]:
    """Every group in the order it runs: eager training, 2:4 inference, then compile (the costly part)."""
    sparse = [r for r in recipes if r != "dense"]
    out: List[Group] = []
    for pattern in PATTERNS:
        for model in MODELS:
            units = [(Config("training", model, "", "dense"),)]
            units += [(Config("training", model, pattern, r),) for r in sparse]
            out.append(Group(f"training {model} FF {pattern}", tuple(units)))
    inference = {
        d: [
            Group(
                f"inference {model} {d}",
                ((Config("inference", model, "2:4", "semi_structured", dtype=d),),),
                has_reference=False,
            )
            for model in MODELS
        ]
        for d in INFER_DTYPES
    }
    out += inference[INFER_DTYPES[0]]
    for recipe in COMPILE_RECIPES:  # dense first on both models, then one recipe on both, then another
        if recipe not in recipes:
            continue
        for model in MODELS:  # the eager twin is the reference: compiled / eager in the same rounds
            pattern = "" if recipe == "dense" else COMPILE_PATTERN
            units = ((Config("compile", model, pattern, recipe),), (Config("compile", model, pattern, recipe, True),))
            out.append(Group(f"compile {model} {recipe}", units, reference_alone=False))
    for dtype in INFER_DTYPES[1:]:  # the second dtype last: cheap, and least needed
        out += inference[dtype]
    return out


def config_estimate(config: Config, est: Dict[str, Any]) -> float:
    """Expected seconds of one configuration: build + its warm-up and timed steps (+ compile), or one inference."""
    if config.section == "inference":
        return float(est["infer"][config.model])
    seconds = est["build"][config.model] + (WARMUP + STEPS) * est["step"][config.model]
    return float(seconds + (est["compile"][config.model] if config.compiled else 0.0))


def plan(all_groups: Sequence[Group], est: Dict[str, Any], budget_s: float, startup_s: float):
    """[(config, estimate, runs)] and the estimated seconds of what runs (startup included).

    Greedy in order, unit by unit, as the run decides: a unit runs when the time so far plus its
    estimate stays within the budget; a group whose reference is skipped is skipped whole.
    """
    spent = startup_s
    rows = []
    for group in all_groups:
        reference_runs = True
        for i, unit in enumerate(group.units):
            cost = sum(config_estimate(c, est) for c in unit)
            needed = cost + (
                sum(config_estimate(c, est) for c in group.units[1])
                if i == 0 and not group.reference_alone and len(group.units) > 1
                else 0.0
            )
            runs = reference_runs and spent + needed <= budget_s
            if runs:
                spent += cost
            elif i == 0 and group.has_reference:
                reference_runs = False
            rows += [(c, config_estimate(c, est), runs) for c in unit]
    return rows, spent


def llama_preset() -> Dict[str, Any]:
    """conf/model/llama_125m.yaml's kwargs and vocabulary (the built-in copy when PyYAML is missing)."""
    try:
        import yaml

        data = yaml.safe_load(LLAMA_PRESET.read_text())
        return {
            "kwargs": dict(data["kwargs"]),
            "vocab_size": int(data["tokenizer"]["vocab_size"]),
            "source": str(LLAMA_PRESET.relative_to(ROOT)),
        }
    except (ImportError, OSError, KeyError, TypeError):
        return {**copy.deepcopy(LLAMA_125M), "source": "built-in copy of conf/model/llama_125m.yaml"}
