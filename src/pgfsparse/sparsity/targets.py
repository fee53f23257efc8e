"""Where sparsity goes: locations (FF, Q, K, V, attention output) and the layers behind them.

A *location* is a role inside a transformer block. A *layer map* lists, for
each location, the module names (regular expressions, matched with
`re.search` against `named_modules()` names) and, for fused projections, which
block of the weight's output units the location owns: timm's `attn.qkv` weight
is (3 * dim, dim) with Q, K, V as consecutive row blocks; GPT-2's `attn.c_attn`
is a `Conv1D` whose weight is stored (dim, 3 * dim), so Q, K, V are consecutive
column blocks (output units run along `output_dim(module)`, see masked_weight).

Built-in maps, detected from the model class (`detect_family`):

  vit    timm VisionTransformer
  swin   timm SwinTransformerV2
  t5     Hugging Face T5, T5 v1.1, mT5, UMT5
  gpt2   Hugging Face GPT-2 (GPT2LMHeadModel, GPT2Model, ...): mlp.c_fc/c_proj = ff,
         attn.c_attn = q, k, v (three column blocks), attn.c_proj = attn_out
  llama  Hugging Face Llama layout (Llama, Mistral, Qwen2, Qwen3): mlp.gate_proj/up_proj/down_proj = ff,
         self_attn.q_proj/k_proj/v_proj/o_proj (k/v narrower under grouped-query attention)

Patterns are given per location. The group names `qk` and `qkv` expand to
their letters; a more specific name wins: `q` beats `qk` beats `qkv`, so
``{"qkv": "1:4", "v": "1:8"}`` means Q, K at 1:4 and V at 1:8.
Embeddings, patch embeddings, heads (including a language model's lm_head),
norms, Swin's relative-position MLP and patch merging are never in a built-in
map: they stay dense unless a user map names them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Tuple, Union

from torch import nn
from torch.nn.utils import parametrize

from pgfsparse.sparsity.masked_weight import output_dim, weight_of
from pgfsparse.sparsity.pattern import NM, is_dense, parse_pattern

LOCATIONS = ("ff", "q", "k", "v", "attn_out")
LOCATION_GROUPS = {"qk": ("q", "k"), "qkv": ("q", "k", "v")}


@dataclass(frozen=True)
class Rule:
    """Modules whose name matches `regex`; `block=(i, n)` selects block i of n of the output units.

    Output units lie along the weight's output dimension: rows of a Linear
    weight, columns of a GPT-2 Conv1D weight.
    """

    regex: str
    block: Optional[Tuple[int, int]] = None


def _qkv(prefix: str) -> Dict[str, List[Rule]]:
    return {loc: [Rule(prefix, (i, 3))] for i, loc in enumerate(("q", "k", "v"))}


_GPT2 = r"(^|\.)h\.\d+\."  # GPT2Model.h.N (GPT2LMHeadModel: transformer.h.N)
_LLAMA = r"(^|\.)layers\.\d+\."  # LlamaModel.layers.N (LlamaForCausalLM: model.layers.N)


LAYER_MAPS: Dict[str, Dict[str, List[Rule]]] = {
    # timm VisionTransformer (and its SwiGLU/GLU MLP variants)
    "vit": {
        "ff": [Rule(r"(^|\.)blocks\.\d+\.mlp\.(fc1|fc2|fc1_g|fc1_x)$")],
        **_qkv(r"(^|\.)blocks\.\d+\.attn\.qkv$"),
        "attn_out": [Rule(r"(^|\.)blocks\.\d+\.attn\.proj$")],
    },
    # timm SwinTransformerV2: cpb_mlp (relative position) and downsample stay dense
    "swin": {
        "ff": [Rule(r"(^|\.)layers\.\d+\.blocks\.\d+\.mlp\.(fc1|fc2)$")],
        **_qkv(r"(^|\.)layers\.\d+\.blocks\.\d+\.attn\.qkv$"),
        "attn_out": [Rule(r"(^|\.)layers\.\d+\.blocks\.\d+\.attn\.proj$")],
    },
    # Hugging Face T5 / T5 v1.1 / mT5: encoder and decoder, self- and cross-attention
    "t5": {
        "ff": [Rule(r"(^|\.)(encoder|decoder)\.block\.\d+\.layer\.\d+\.DenseReluDense\.(wi|wi_0|wi_1|wo)$")],
        **{
            loc: [Rule(rf"(^|\.)(encoder|decoder)\.block\.\d+\.layer\.\d+\.(SelfAttention|EncDecAttention)\.{loc}$")]
            for loc in ("q", "k", "v")
        },
        "attn_out": [Rule(r"(^|\.)(encoder|decoder)\.block\.\d+\.layer\.\d+\.(SelfAttention|EncDecAttention)\.o$")],
    },
    # Hugging Face GPT-2: Conv1D layers, weights stored (in, out). The fused attn.c_attn holds Q, K, V as
    # column blocks; with add_cross_attention, crossattention.q_attn is Q and crossattention.c_attn holds K, V.
    "gpt2": {
        "ff": [Rule(_GPT2 + r"mlp\.(c_fc|c_proj)$")],
        "q": [Rule(_GPT2 + r"attn\.c_attn$", (0, 3)), Rule(_GPT2 + r"crossattention\.q_attn$")],
        "k": [Rule(_GPT2 + r"attn\.c_attn$", (1, 3)), Rule(_GPT2 + r"crossattention\.c_attn$", (0, 2))],
        "v": [Rule(_GPT2 + r"attn\.c_attn$", (2, 3)), Rule(_GPT2 + r"crossattention\.c_attn$", (1, 2))],
        "attn_out": [Rule(_GPT2 + r"(attn|crossattention)\.c_proj$")],
    },
    # Hugging Face Llama layout (Llama, Mistral, Qwen2, Qwen3): separate projections, no fused weights
    "llama": {
        "ff": [Rule(_LLAMA + r"mlp\.(gate_proj|up_proj|down_proj)$")],
        **{loc: [Rule(_LLAMA + rf"self_attn\.{loc}_proj$")] for loc in ("q", "k", "v")},
        "attn_out": [Rule(_LLAMA + r"self_attn\.o_proj$")],
    },
}

# Hugging Face families with the Llama layout, by `model_type` (model=llama loads their checkpoints): Llama's
# module names and shapes (Qwen2 adds Q/K/V biases, Qwen3 per-head Q/K norms; the projections are the same).
# Exact families only: MoE and multimodal relatives (Qwen2Moe, Qwen2VL, Llama4, Mixtral...) nest layers differently.
LLAMA_LAYOUT = ("llama", "mistral", "qwen2", "qwen3")
_LLAMA_CLASS = re.compile(
    "(" + "|".join(family.capitalize() for family in LLAMA_LAYOUT) + r")(Model|PreTrainedModel|For[A-Za-z]+)"
)
_GPT2_CLASS = re.compile(r"GPT2(Model|PreTrainedModel|LMHeadModel|DoubleHeadsModel|For[A-Za-z]+)")


def detect_family(model: nn.Module) -> Optional[str]:
    """Built-in map name for a timm ViT or Swin-V2, or an HF T5, GPT-2 or Llama-layout model; None if unknown."""
    for cls in type(model).__mro__:
        name, module = cls.__name__, cls.__module__
        if name == "VisionTransformer" and module.startswith("timm"):
            return "vit"
        if name == "SwinTransformerV2" and module.startswith("timm"):
            return "swin"
        if not module.startswith("transformers"):
            continue
        if name.startswith(("T5", "MT5", "UMT5")):
            return "t5"
        if _GPT2_CLASS.fullmatch(name):
            return "gpt2"
        if _LLAMA_CLASS.fullmatch(name):
            return "llama"
    return None


LayerMapLike = Union[str, Mapping[str, Iterable[Union[str, Rule, tuple]]]]


def resolve_layer_map(model: nn.Module, layer_map: Optional[LayerMapLike]) -> Dict[str, List[Rule]]:
    """A built-in map by name or detection, or a user map {location: [regex | (regex, (i, n))]}."""
    if layer_map is None:
        family = detect_family(model)
        if family is None:
            raise ValueError(
                f"no built-in layer map for {type(model).__name__}: pass layer_map="
                f"{{'ff': [r'regex of FF layer names'], ...}} or one of {', '.join(LAYER_MAPS)}"
            )
        return LAYER_MAPS[family]
    if isinstance(layer_map, str):
        if layer_map not in LAYER_MAPS:
            raise ValueError(f"unknown layer map {layer_map!r}: choose one of {', '.join(LAYER_MAPS)} or pass a dict")
        return LAYER_MAPS[layer_map]
    resolved = {}
    for location, rules in layer_map.items():
        rules = [rules] if isinstance(rules, (str, Rule)) else rules
        resolved[location] = [
            r if isinstance(r, Rule) else Rule(r) if isinstance(r, str) else Rule(r[0], tuple(r[1])) for r in rules
        ]
    return resolved


def resolve_patterns(pattern, targets: Optional[Iterable[str]] = None) -> Dict[str, NM]:
    """Location -> pattern, expanding `qk`/`qkv` with the more specific name winning.

    `pattern` is one pattern applied to `targets` (default: FF only), or a dict
    {location or group: pattern}. Dense entries are dropped.
    """
    if isinstance(pattern, Mapping):
        if targets is not None:
            raise ValueError("give either a per-location pattern dict or targets=..., not both")
        given = dict(pattern)
    else:
        if isinstance(targets, str):
            targets = [targets]
        given = {t: pattern for t in (targets or ["ff"])}

    def specificity(name: str) -> int:
        return len(LOCATION_GROUPS.get(name, (name,)))

    resolved: Dict[str, NM] = {}
    decided_by: Dict[str, int] = {}
    for name, value in sorted(given.items(), key=lambda kv: specificity(kv[0])):
        for location in LOCATION_GROUPS.get(name, (name,)):
            if location in decided_by and decided_by[location] < specificity(name):
                continue  # a more specific entry already set it
            decided_by[location] = specificity(name)
            if is_dense(value):
                resolved.pop(location, None)
            else:
                resolved[location] = parse_pattern(value)
    return {loc: resolved[loc] for loc in sorted(resolved, key=_location_order)}


def _location_order(location: str):
    return (LOCATIONS.index(location) if location in LOCATIONS else len(LOCATIONS), location)


@dataclass
class Match:
    """One module and the blocks of its output units that take each location's pattern."""

    name: str
    module: nn.Module
    blocks: List[Tuple[str, slice]]  # (location, output units along output_dim(module))


def find_layers(model: nn.Module, layer_map: Dict[str, List[Rule]], locations: Iterable[str]) -> List[Match]:
    """Modules (in model order) matched by the map for the wanted locations."""
    wanted = list(locations)
    unknown = [loc for loc in wanted if loc not in layer_map]
    if unknown:
        raise ValueError(
            f"location(s) {', '.join(unknown)} not in the layer map (it has {', '.join(layer_map)}); "
            f"known locations: {', '.join(LOCATIONS)}, groups: {', '.join(LOCATION_GROUPS)}"
        )
    matches: List[Match] = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter) and not _is_parametrized(module):
            continue
        blocks = []
        for location in wanted:
            for rule in layer_map[location]:
                if re.search(rule.regex, name):
                    blocks.append((location, _outputs(module, rule.block, name)))
                    break
        if blocks:
            blocks.sort(key=lambda b: b[1].start)
            for (loc_a, a), (loc_b, b) in zip(blocks, blocks[1:]):
                if b.start < a.stop:
                    raise ValueError(
                        f"layer {name!r}: locations {loc_a} (outputs {a.start}:{a.stop}) and {loc_b} "
                        f"(outputs {b.start}:{b.stop}) overlap: give each location its own block in the layer map"
                    )
            matches.append(Match(name, module, blocks))
    return matches


def _is_parametrized(module: nn.Module) -> bool:
    return parametrize.is_parametrized(module, "weight")


def _outputs(module: nn.Module, block: Optional[Tuple[int, int]], name: str) -> slice:
    """The output units (along output_dim(module)) that `block` selects; all of them for None."""
    out = weight_of(module).shape[output_dim(module)]
    if block is None:
        return slice(0, out)
    index, count = block
    if out % count:
        raise ValueError(f"layer {name!r}: its {out} output units cannot be split into {count} blocks")
    size = out // count
    return slice(index * size, (index + 1) * size)
