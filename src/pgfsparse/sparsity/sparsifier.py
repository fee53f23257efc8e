"""The Sparsifier: attach a recipe to a model's layers and drive it step by step.

Lifecycle (the words `torch.ao.pruning` users know):

    sparsifier = sparsify(model, pattern="1:16", recipe="mdgf_exp", total_steps=T)
    for step in range(T):
        sparsifier.step(step)            # before the forward of each optimizer step
        loss = ...; loss.backward(); optimizer.step()
    with sparsifier.strict():            # evaluate the strictly N:M model
        evaluate(model)
    sparsifier.remove(view="strict")     # leave plain, masked weights ("squash")

The model's state_dict keeps its plain timm/HF keys while attached, so plain
checkpoints load into a sparsified model and back. The sparsifier's own
`state_dict()` holds what a resumed run needs (step, masks).
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.hooks import RemovableHandle

from pgfsparse.sparsity import diagnostics as _diagnostics
from pgfsparse.sparsity.masked_weight import (
    MaskedWeight,
    Segment,
    latent_weight,
    output_dim,
    storage_layout,
    weight_of,
)
from pgfsparse.sparsity.masks import group_dim_size
from pgfsparse.sparsity.pattern import NM, parse_pattern
from pgfsparse.sparsity.recipes import Recipe, make_recipe
from pgfsparse.sparsity.schedule import DENSE, Schedule
from pgfsparse.sparsity.targets import find_layers, resolve_layer_map, resolve_patterns

VIEWS = ("as_trained", "strict", "latent")


class Sparsifier:
    def __init__(
        self,
        model: nn.Module,
        patterns: Dict[str, NM],
        recipe: Recipe,
        total_steps: int,
        layer_map=None,
        layout: str = "row",
        allow_skip: bool = False,
    ):
        self.model = model
        self.recipe = recipe
        self.schedule = Schedule(recipe, total_steps)
        self.patterns = patterns if recipe.is_sparse else {}
        self.layout = layout
        self.layers: Dict[str, MaskedWeight] = {}
        self.locations: Dict[str, List[str]] = {}  # layer name -> its locations
        self.skipped: List[Dict[str, str]] = []
        self.current_step: Optional[int] = None
        self._hooks: List[RemovableHandle] = []
        self._logged_masks: Dict[str, torch.Tensor] = {}
        if self.patterns:
            self._attach(resolve_layer_map(model, layer_map), allow_skip)

    # -- attaching ---------------------------------------------------------------
    def _attach(self, layer_map, allow_skip: bool) -> None:
        matches = find_layers(self.model, layer_map, self.patterns)
        found = {loc for m in matches for loc, _ in m.blocks}
        missing = [loc for loc in self.patterns if loc not in found]
        if missing:
            raise ValueError(
                f"no layer of {type(self.model).__name__} matches location(s) {', '.join(missing)}: "
                "check the layer map's names against model.named_modules()"
            )
        # Plan every layer first, so an impossible shape raises before the model is touched.
        plans = []
        for match in matches:
            if _is_parametrized(match.module):
                raise ValueError(f"layer {match.name!r} already has a weight parametrization: remove it first")
            weight = weight_of(match.module)
            out_dim = output_dim(match.module)
            layout = storage_layout(self.layout, weight, out_dim)
            try:
                segments = [self._segment(match.name, weight, loc, rows, layout, out_dim) for loc, rows in match.blocks]
            except ValueError as error:
                if not allow_skip:
                    raise
                warnings.warn(f"pgfsparse: leaving layer dense: {error}", stacklevel=3)
                self.skipped.append({"layer": match.name, "reason": str(error)})
                continue
            plans.append((match, segments, layout, out_dim))
        for match, segments, layout, out_dim in plans:
            param = MaskedWeight(weight_of(match.module), segments, layout, out_dim)
            param.straight_through = self.recipe.straight_through
            parametrize.register_parametrization(match.module, "weight", param)
            self._hooks += [
                match.module.register_state_dict_post_hook(_plain_keys_on_save),
                match.module.register_load_state_dict_pre_hook(_plain_keys_on_load),
            ]
            self.layers[match.name] = param
            self.locations[match.name] = [loc for loc, _ in match.blocks]

    def _segment(
        self, name: str, weight: torch.Tensor, location: str, rows: slice, layout: str, out_dim: int
    ) -> Segment:
        target = self.patterns[location]
        shape = list(weight.shape)
        shape[out_dim] = rows.stop - rows.start  # the segment's block: its output units, all inputs
        group_len = group_dim_size(tuple(shape), layout)
        fix = "choose an M that divides it, or allow skipping (allow_skip=True) to leave the layer dense"
        if group_len % target.m:
            raise ValueError(
                f"layer {name!r} ({location}, weight {tuple(weight.shape)}) cannot take {target}: "
                f"its group dimension {group_len} is not a multiple of {target.m}; {fix}"
            )
        ladder = self.recipe.fit_ladder(self.schedule.ladder(target), target, group_len)
        for rung in ladder:
            if group_len % rung.m:
                raise ValueError(
                    f"layer {name!r} ({location}, weight {tuple(weight.shape)}) cannot take ladder rung {rung}: "
                    f"its group dimension {group_len} is not a multiple of {rung.m}; {fix}"
                )
        return Segment(location, rows, target, ladder)

    # -- stepping ----------------------------------------------------------------
    def step(self, step: int) -> None:
        """Set masks and D for optimizer step `step` (0-based). Repeated calls with the same step are free.

        Under FSDP2 every process calls it at every step: a mask refresh gathers the sharded weight.
        """
        step = int(step)
        if step == self.current_step:
            return
        for name, param in self.layers.items():
            weight = _latent(self.model, name)
            states = [self.schedule.state(step, seg.target, seg.ladder) for seg in param.segments]
            if states[0].phase == DENSE:
                param.deactivate()
                continue
            stale = [
                st.pattern if (seg.version != st.mask_version or seg.current != st.pattern) else None
                for seg, st in zip(param.segments, states)
            ]
            param.refresh_masks(weight, stale)
            for seg, st in zip(param.segments, states):
                seg.version = st.mask_version
            srste_lambda = self.recipe.extra_gradient(self.schedule.sparse_step(step), self.schedule)
            param.set_decay(states[0].decay, srste_lambda, mask_changed=any(p is not None for p in stale))
        self.current_step = step

    def set_total_steps(self, total_steps: int) -> None:
        """Re-plan the phases for a new run length (e.g. once a FLOP budget is converted).

        Before the first step only.
        """
        if self.current_step is not None:
            raise RuntimeError("set_total_steps() must come before the first step()")
        self.schedule = Schedule(self.recipe, total_steps)

    # -- views -------------------------------------------------------------------
    @contextmanager
    def view(self, name: str = "strict") -> Iterator[None]:
        """Evaluate under a view: 'as_trained' (current D and rung, the default state),
        'strict' (binary target N:M masks of the current weights), 'latent' (W, no mask)."""
        if name not in VIEWS:
            raise ValueError(f"unknown view {name!r}: choose one of {', '.join(VIEWS)}")
        if name == "as_trained":
            yield
            return
        for layer, param in self.layers.items():
            weight = _latent(self.model, layer)  # sharded under FSDP2: the multipliers are whole, like the masks
            param.override = (
                param.strict_multiplier(weight) if name == "strict" else torch.ones_like(param.mask, dtype=weight.dtype)
            )
        try:
            yield
        finally:
            for param in self.layers.values():
                param.override = None

    def strict(self):
        """Context manager: the strictly N:M model (binary masks at the target patterns)."""
        return self.view("strict")

    # -- detaching and export ----------------------------------------------------
    @torch.no_grad()
    def export_state_dict(self, view: str = "strict") -> Dict[str, torch.Tensor]:
        """A plain state_dict (the model's own keys) whose sparse weights are masked per `view`."""
        state = self.model.state_dict()
        with self.view(view):
            for name in self.layers:
                weight = weight_of(self.model.get_submodule(name))
                state[f"{name}.weight" if name else "weight"] = weight.detach().clone()
        return state

    def remove(self, view: str = "strict") -> nn.Module:
        """Detach from the model, leaving plain weights: masked per `view`, or the dense latent W ('latent')."""
        with self.view(view):
            for name in self.layers:
                module = self.model.get_submodule(name)
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        for hook in self._hooks:
            hook.remove()
        self._hooks, self.layers, self.locations = [], {}, {}
        return self.model

    # -- diagnostics -------------------------------------------------------------
    def diagnostics(self, optimizer: Optional[torch.optim.Optimizer] = None) -> Dict[str, float]:
        """Per-layer density, mask flips since the last call (SAD), D, rung, kept/pruned gradient
        norms; and over FF weights the variance of |grad| and, given an Adam-family
        `optimizer`, of its `exp_avg_sq`. Call after backward, before zero_grad."""
        values, self._logged_masks = _diagnostics.collect(self, self._logged_masks, optimizer)
        return values

    # -- state -------------------------------------------------------------------
    def state_dict(self) -> dict:
        layers = {}
        for name, param in self.layers.items():
            layers[name] = {
                "mask": _pack_bits(param.mask),
                "versions": [list(seg.version or (-2, -2)) for seg in param.segments],
                "current": [str(seg.current) if seg.current else "" for seg in param.segments],
            }
            if name in self._logged_masks:
                layers[name]["logged_mask"] = _pack_bits(self._logged_masks[name])
        return {
            "step": -1 if self.current_step is None else self.current_step,
            "total_steps": self.schedule.total_steps,
            "recipe": self.recipe.name,
            "settings": self._settings(),
            "layers": layers,
        }

    def _settings(self) -> Dict[str, str]:
        """Everything a resumed run must share with the saved one (strings: safe for weights_only loads)."""
        recipe = {name: repr(value) for name, value in self.recipe.knobs().items()}
        return {**recipe, "patterns": repr({k: str(v) for k, v in self.patterns.items()}), "layout": self.layout}

    def load_state_dict(self, state: dict) -> None:
        if state["recipe"] != self.recipe.name or state["total_steps"] != self.schedule.total_steps:
            raise ValueError(
                f"sparsifier state is for recipe {state['recipe']} over {state['total_steps']} steps, "
                f"this one is {self.recipe.name} over {self.schedule.total_steps}: resume with the same settings"
            )
        current = self._settings()
        # Only the knobs both know: 0.1.0 checkpoints written before recipes became plug-ins (52ea80b)
        # saved every recipe's knobs, used or not.
        differing = sorted(k for k, v in state.get("settings", {}).items() if k in current and current[k] != v)
        if differing:
            raise ValueError(
                f"sparsifier state was saved with other settings ({', '.join(differing)}): "
                "resume with the same settings"
            )
        if set(state["layers"]) != set(self.layers):
            raise ValueError(
                "sparsifier state names other layers than this model's sparse layers: same model and targets?"
            )
        for name, param in self.layers.items():
            saved = state["layers"][name]
            param.mask.copy_(_unpack_bits(saved["mask"], param.mask.shape).to(param.mask.device))
            for seg, version, current in zip(param.segments, saved["versions"], saved["current"]):
                seg.version = tuple(version) if version[0] != -2 else None
                seg.current = parse_pattern(current) if current else None
            if "logged_mask" in saved:
                self._logged_masks[name] = _unpack_bits(saved["logged_mask"], param.mask.shape).to(param.mask.device)
        step = state["step"]
        self.current_step = None if step < 0 else step
        if self.current_step is not None:
            decay = self.schedule.decay(step)
            for param in self.layers.values():
                if self.schedule.phase(step) == DENSE:
                    param.deactivate()
                else:
                    param.set_decay(
                        decay,
                        self.recipe.extra_gradient(self.schedule.sparse_step(step), self.schedule),
                        mask_changed=True,
                    )

    # -- reporting ---------------------------------------------------------------
    def summary(self) -> dict:
        """What was sparsified: recipe (canonical name), phases, and every layer with its ladder."""
        s = self.schedule
        return {
            "recipe": self.recipe.name,
            "patterns": {loc: str(p) for loc, p in self.patterns.items()},
            "total_steps": s.total_steps,
            "dense_steps": s.dense_steps,
            "finetune_start": s.finetune_start,
            "mask_interval": s.mask_interval,
            "layers": [
                {
                    "name": name,
                    "shape": list(param.mask.shape),
                    "out_dim": param.out_dim,
                    "segments": [
                        {
                            "location": seg.location,
                            "rows": [seg.rows.start, seg.rows.stop],  # output units along out_dim
                            "target": str(seg.target),
                            "ladder": [str(r) for r in seg.ladder],
                        }
                        for seg in param.segments
                    ],
                }
                for name, param in self.layers.items()
            ],
            "skipped": list(self.skipped),
        }

    def count(self) -> Dict[str, int]:
        """Number of sparse weight blocks per location (a fused qkv counts once each for Q, K, V)."""
        counts: Dict[str, int] = {}
        for locations in self.locations.values():
            for loc in locations:
                counts[loc] = counts.get(loc, 0) + 1
        return counts

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.count().items()) or "none"
        return (
            f"Sparsifier(recipe={self.recipe.name}, patterns={self.patterns}, layers: {counts}, "
            f"step={self.current_step})"
        )


def sparsify(
    model: nn.Module,
    pattern="1:16",
    recipe="mdgf_exp",
    total_steps: int = 1,
    targets=None,
    layer_map=None,
    layout: str = "row",
    allow_skip: bool = False,
    **recipe_options,
) -> Sparsifier:
    """Attach N:M sparsity with a training recipe to `model` (in place) and return the Sparsifier.

    pattern:     'N:M' for the `targets` locations (default FF only), or a dict
                 {location: pattern} over ff, q, k, v, attn_out and groups qk, qkv.
    recipe:      a name from pgfsparse.RECIPES ('decay' = 'mdgf_exp') or a Recipe.
    total_steps: optimizer steps of the whole run (phases are fractions of it).
    layer_map:   None (detect timm ViT / Swin-V2 / HF T5 / GPT-2 / Llama-layout), a built-in name, or
                 {location: [regex, (regex, (block, n_blocks)), ...]} for any model; a block
                 counts output units (rows of a Linear weight, columns of a GPT-2 Conv1D).
    layout:      'row' (groups of M consecutive inputs, the hardware layout) or 'col' (consecutive
                 outputs) for 2-D weights, whichever way they are stored (a GPT-2 Conv1D's (in, out)
                 weight takes 'row' along its dim 0); conv weights always group over (kh, kw, in).
    allow_skip:  leave layers whose shape cannot take the pattern dense (warned, listed in
                 summary()['skipped']) instead of raising.
    **recipe_options: Recipe fields, e.g. srste_lambda=2e-4, dense_fraction=0.1, geo_k=16.
    """
    recipe = make_recipe(recipe, **recipe_options)
    if not recipe.is_sparse:
        return Sparsifier(model, {}, recipe, total_steps)
    patterns = resolve_patterns(pattern, targets)
    if not patterns:
        raise ValueError(
            f"recipe {recipe.name} needs an N:M pattern, got {pattern!r}: "
            "give e.g. pattern='1:16' or use recipe='dense'"
        )
    return Sparsifier(model, patterns, recipe, total_steps, layer_map, layout, allow_skip)


# -- helpers ------------------------------------------------------------------------
def _is_parametrized(module: nn.Module) -> bool:
    return parametrize.is_parametrized(module, "weight")


def _latent(model: nn.Module, name: str) -> torch.Tensor:
    """The dense trainable W behind a parametrized weight."""
    return latent_weight(model.get_submodule(name))


_ORIGINAL = "parametrizations.weight.original"


def _plain_keys_on_save(module, state_dict, prefix, local_metadata) -> None:
    key = prefix + _ORIGINAL
    if key in state_dict:
        state_dict[prefix + "weight"] = state_dict.pop(key)


def _plain_keys_on_load(module, state_dict, prefix, *args) -> None:
    key = prefix + "weight"
    if key in state_dict:
        state_dict[prefix + _ORIGINAL] = state_dict.pop(key)


def _pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """Bool tensor -> uint8, 8 entries per byte (checkpoint masks at 1/32 of fp32 weight size)."""
    flat = mask.flatten().to(torch.uint8)
    flat = torch.nn.functional.pad(flat, (0, (-flat.numel()) % 8))
    weights = 1 << torch.arange(8, dtype=torch.uint8, device=mask.device)
    return (flat.view(-1, 8) * weights).sum(dim=1, dtype=torch.uint8).cpu()


def _unpack_bits(packed: torch.Tensor, shape) -> torch.Tensor:
    bits = (packed.unsqueeze(-1) >> torch.arange(8, dtype=torch.uint8)) & 1
    return bits.flatten()[: math.prod(shape)].bool().reshape(shape)
