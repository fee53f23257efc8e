"""One prepared GPU check (issue 27): training throughput, MFU, recipe overhead, torch.compile, 2:4 inference, memory.

    bash benchmarks/gpu_check.sh [OUT.json]          # the way to run it (it sets PYTHONPATH, installs wheels)
    python benchmarks/gpu_check.py --plan            # print the plan and the time estimate, measure nothing
    python benchmarks/gpu_check.py --smoke --budget 300 /tmp/smoke.json   # tiny models, any device: the code paths

Without CUDA it prints the plan (one line per configuration) and exits 0. On a CUDA machine it measures,
within a global time budget (default 450 s = 7.5 min, less when gpu_check.sh's deadline is nearer), and
writes ONE JSON file, rewritten after every configuration (a kill still leaves what was measured):

- training, bf16 autocast, torch.optim.AdamW(fused=True): ViT-B/16 (timm vit_base_patch16_224, batch 256,
  224 px random images, 1000 classes) and the Llama 125M preset (conf/model/llama_125m.yaml: LlamaForCausalLM
  from a LlamaConfig, sdpa attention as pgf-train, batch 16 x 1024 random tokens, next-token loss), dense and
  every built-in recipe at FF 2:4 and FF 1:16. The recipes of one model and pattern live side by side in one
  process, each on its own copy of the same initial weights, and run one step each per round, the order
  rotating every round (3 warm-up rounds, the first of which builds the side, then 8 timed rounds);
  torch.cuda.synchronize() brackets every timed step. Steps lie in the sparse phase of a 100,000-step run
  (dense_fraction=0, masks refreshed every step). Reported per configuration: median step time, the
  median / p10 / p90 over rounds of (recipe step / dense step in the same round), examples/s (and tokens/s
  for the LM), the training FLOPs of a step as pgf-train charges them (pgfsparse.flops.counter.FlopCounter:
  3x the measured forward, sparse segments at their charged density), achieved FLOP/s, MFU against
  pgfsparse.flops.peak.peak_flops(device, "bf16"), and MFU of the dense model's FLOPs in the recipe's time.
- torch.compile on and off: per model, dense, mdgf_exp and srste at FF 2:4; the model the step calls is
  torch.compile(model) after the sparsifier is attached (as pgf-train's compile=true), side by side with
  the eager twin (the group's reference); compile time = the warm-up steps' time beyond steady steps, and the
  graphs compiled during the timed rounds are counted (> 0: it recompiles).
- 2:4 inference: a 2:4 FF model is exported with pgfsparse.export.export_compressed (bf16, then fp16) and
  loaded twice, kernels="dense" and kernels="semi_structured"; per FF Linear of block 0 and for the whole
  model, dense time / semi-structured time (CUDA events, interleaved) at the training batch and at batch 1.
  What the kernels refuse (dtype, shape, no cuSPARSELt/CUTLASS kernel) is recorded, not raised.
- memory per configuration: the sides share the GPU, so each one's peak alone is reconstructed from
  torch.cuda.memory_allocated / max_memory_allocated: its persistent bytes (model, masks, AdamW state: the
  allocation growth over its build and first step) + the largest transient of its own timed steps
  (max_memory_allocated - memory_allocated before the step, after reset_peak_memory_stats) + the shared
  input batch. The raw max_memory_allocated during its steps (other sides resident) is recorded too.

Budget: every configuration has an estimate (guesses for an H100-class GPU, replaced by measured step,
build and compile times as they come); a configuration that would end past the budget is recorded as
"skipped: time budget", and timed rounds stop early ("partial: time budget") when the budget runs out.

Files: this one has the dry run, the training sides and main; gpu_plan.py what runs and its estimates,
gpu_report.py the budget, the ratios and the JSON file, gpu_inference.py the 2:4 inference part.

Imports: torch, timm, transformers, safetensors, yaml (a dependency of timm and transformers) and the
pgfsparse modules of import_library(), which import none of hydra, omegaconf, wandb or datasets (the plan's
last lines say so; tests/test_gpu_check.py checks it; see benchmarks/gpu_wheels.txt). A missing import exits
with code 3, which gpu_check.sh answers by installing benchmarks/wheels/*.whl into benchmarks/.gpu_site and
running again.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import gc
import importlib.util
import os
import platform
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

# the sibling modules: this folder is sys.path[0] when the script runs
from gpu_inference import run_inference
from gpu_plan import (
    BUDGET_S,
    COMPILE_PATTERN,
    COMPILE_RECIPES,
    CUSTOM_LADDERS,
    DEFAULT_ESTIMATES,
    LONG_RUN,
    MISSING_IMPORT_EXIT,
    MODELS,
    PATTERNS,
    SMOKE,
    STEPS,
    WARMUP,
    Config,
    Group,
    built_in_recipes,
    config_estimate,
    groups,
    llama_preset,
    plan,
)
from gpu_report import Budget, Report, default_output, median, one_line, round_ratios, summarize


def missing_modules(names: Sequence[str]) -> List[str]:
    """Which of `names` cannot be found (without importing them)."""
    return [n for n in names if importlib.util.find_spec(n) is None]


NEEDED = ("torch", "timm", "transformers", "safetensors", "yaml")
UNWANTED = ("hydra", "omegaconf", "wandb", "datasets")  # not on the GPU machine: the check must not need them


def import_library() -> None:
    """Every pgfsparse module the check uses (torch only, checked by tests/test_gpu_check.py)."""
    import pgfsparse  # noqa: F401 - the engine: sparsify
    import pgfsparse.export  # noqa: F401 - export_compressed, load_compressed, builders
    import pgfsparse.export.semi_structured  # noqa: F401
    import pgfsparse.flops.counter  # noqa: F401
    import pgfsparse.flops.peak  # noqa: F401
    import pgfsparse.sparsity.recipes  # noqa: F401


# -- the dry run ------------------------------------------------------------------------------------------------
def print_plan(budget_s: float, out: Path, reason: str) -> None:
    recipes = built_in_recipes()
    rows, spent = plan(groups(recipes), DEFAULT_ESTIMATES, budget_s, DEFAULT_ESTIMATES["startup"])
    full = DEFAULT_ESTIMATES["startup"] + sum(e for _, e, _ in rows)
    preset = llama_preset()
    print(f"gpu_check: {reason}: nothing is measured. On a CUDA GPU it would run, in this order:")
    print(f"  ViT-B/16: {MODELS['vit_b16']['describe']}")
    print(
        f"  Llama 125M preset: {MODELS['llama_125m']['describe']} ({preset['source']}: "
        f"width {preset['kwargs']['hidden_size']}, {preset['kwargs']['num_hidden_layers']} layers, "
        f"FF {preset['kwargs']['intermediate_size']}, vocabulary {preset['vocab_size']})"
    )
    print(f"  recipes: {', '.join(recipes)} (dense is each group's reference, not run at a sparse pattern)")
    print(
        f"  every training side: bf16 autocast, fused AdamW, {WARMUP} warm-up + {STEPS} timed rounds interleaved "
        "with its group's dense side; step time, ratio to dense, examples/s (tokens/s), FLOP/s, MFU, "
        "peak memory (torch.cuda.max_memory_allocated)"
    )
    print(
        "  every inference line: 2:4 export loaded with kernels='dense' and 'semi_structured'; speed-up per FF layer "
        "and whole model at the training batch and at batch 1, peak memory"
    )
    for i, (config, estimate, runs) in enumerate(rows, 1):
        print(f"{i:>3} {config.describe():<72} ~{estimate:5.1f} s  {'runs' if runs else 'skipped: time budget'}")
    skipped = sum(not runs for _, _, runs in rows)
    print(
        f"estimated: {full:.0f} s for everything, {spent:.0f} s for what fits the budget of {budget_s:.0f} s "
        f"({len(rows) - skipped} configurations run, {skipped} skipped: time budget); estimates are guesses for an "
        "H100-class GPU, replaced by measured times as the run goes"
    )
    missing = missing_modules(NEEDED)
    print(f"imports: {'all found' if not missing else 'missing ' + ', '.join(missing)} ({', '.join(NEEDED)})")
    import_library()
    loaded = [m for m in UNWANTED if m in sys.modules]
    print(f"pgfsparse modules of the check imported; of {', '.join(UNWANTED)}: {', '.join(loaded) or 'none loaded'}")
    print(f"output: {out}")


# -- measuring ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Side:
    config: Config
    model: Any
    call: Any  # what the step calls: the model or torch.compile(model)
    sparsifier: Any
    optimizer: Any
    counter: Any  # FlopCounter
    fused: bool
    build_s: float = 0.0
    step_index: int = 0
    warmup_s: List[float] = dataclasses.field(default_factory=list)
    times: List[Optional[float]] = dataclasses.field(default_factory=list)  # per timed round of its chunk
    transient: List[int] = dataclasses.field(default_factory=list)
    raw_peak: int = 0
    first_transient: int = 0  # the build's first step (AdamW state is allocated there): an upper bound
    persistent: Optional[int] = None
    error: str = ""


class Check:
    """The whole measurement: device, prototypes, groups, the report."""

    def __init__(self, args, budget: Budget, report: Report, device):
        import torch

        self.torch = torch
        self.args, self.budget, self.report, self.device = args, budget, report, device
        self.cuda = device.type == "cuda"
        self.smoke = args.smoke
        self.warmup, self.steps = (1, 2) if self.smoke else (WARMUP, STEPS)
        self.est = copy.deepcopy(DEFAULT_ESTIMATES)
        self.protos: Dict[str, Any] = {}
        self._dense_flops: Dict[str, float] = {}
        self.measured: Dict[str, List[float]] = {}  # eager median step times so far, per model
        self.current_reference_times: List[Optional[float]] = []
        self.graphs_in_timed_rounds: Optional[int] = None
        self.batches: Dict[str, Any] = {}
        from pgfsparse.flops.peak import peak_flops

        self.peak = peak_flops(device, "bf16")

    # -- device helpers
    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def allocated(self) -> int:
        return self.torch.cuda.memory_allocated() if self.cuda else 0

    def room(self) -> Optional[int]:
        """Bytes the next allocations can still get: the driver's free memory + the cache's unused part."""
        if not self.cuda:
            return None
        free, _ = self.torch.cuda.mem_get_info()
        return free + self.torch.cuda.memory_reserved() - self.torch.cuda.memory_allocated()

    def release(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()

    def autocast(self):
        return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16)

    # -- models and inputs
    def spec(self, key: str) -> Dict[str, Any]:
        spec = dict(MODELS[key])
        if self.smoke:
            spec.update(SMOKE[key])
        return spec

    def proto(self, key: str):
        """The model's initial weights, built once on the device (every side copies them)."""
        torch = self.torch
        if key not in self.protos:
            torch.manual_seed(0)
            spec = self.spec(key)
            with torch.device(self.device):
                if key == "vit_b16":
                    import timm

                    model = timm.create_model(
                        "vit_base_patch16_224", pretrained=False, num_classes=1000, **spec.get("timm_kwargs", {})
                    )
                else:
                    from transformers import LlamaConfig, LlamaForCausalLM

                    preset = llama_preset()
                    kwargs = dict(preset["kwargs"], **spec.get("kwargs", {}))
                    vocab = spec.get("vocab_size", preset["vocab_size"])
                    config = LlamaConfig(vocab_size=vocab, use_cache=False, **kwargs)
                    model = LlamaForCausalLM(config)
                    model.config.use_cache = False
                    model.set_attn_implementation("sdpa")  # pgf-train's (pgfsparse.models.causal_lm.ATTENTION)
            self.protos[key] = model.train()
        return self.protos[key]

    def batch(self, key: str):
        torch = self.torch
        if key not in self.batches:
            spec = self.spec(key)
            gen = torch.Generator(device=self.device).manual_seed(0)
            if key == "vit_b16":
                size = spec["image_size"]
                images = torch.randn(spec["batch"], 3, size, size, device=self.device, generator=gen)
                labels = torch.randint(0, 1000, (spec["batch"],), device=self.device, generator=gen)
                self.batches[key] = (images, labels)
            else:
                vocab = self.proto(key).config.vocab_size
                ids = torch.randint(0, vocab, (spec["batch"], spec["context"] + 1), device=self.device, generator=gen)
                self.batches[key] = (ids[:, :-1].contiguous(), ids[:, 1:].contiguous())
        return self.batches[key]

    def batch_bytes(self, key: str) -> int:
        return sum(t.numel() * t.element_size() for t in self.batch(key))

    def example(self, key: str):
        """(args, kwargs) of one example, as the FLOP counter wants it (pgf-train's task.example_inputs)."""
        torch, spec = self.torch, self.spec(key)
        if key == "vit_b16":
            return (torch.zeros(1, 3, spec["image_size"], spec["image_size"], device=self.device),), {}
        return (), {
            "input_ids": torch.zeros(1, spec["context"], dtype=torch.long, device=self.device),
            "use_cache": False,
        }

    def loss(self, key: str, call, batch):
        F = self.torch.nn.functional
        inputs, targets = batch
        if key == "vit_b16":
            return F.cross_entropy(call(inputs).float(), targets)
        logits = call(input_ids=inputs, use_cache=False).logits  # as pgfsparse.tasks.causal_lm's loss
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())

    # -- one training side
    def build_side(self, config: Config) -> Side:
        """Copy the prototype, attach the recipe, count FLOPs, make the optimizer; then its first step, alone."""
        import pgfsparse
        from pgfsparse.flops.counter import FlopCounter

        torch = self.torch
        self.sync()
        base = self.allocated()
        start = time.perf_counter()
        model = copy.deepcopy(self.proto(config.model)).train()
        options: Dict[str, Any] = {} if config.recipe == "dense" else {"dense_fraction": 0.0}
        if config.recipe == "sdgf_custom":
            options["ladder"] = CUSTOM_LADDERS[config.pattern]
        sparsifier = pgfsparse.sparsify(
            model, config.pattern or "2:4", recipe=config.recipe, total_steps=LONG_RUN, **options
        )
        args, kwargs = self.example(config.model)
        batch = self.spec(config.model)["batch"]
        counter = FlopCounter(model, args, kwargs, sparsifier=sparsifier, examples_per_step=batch)
        try:
            optimizer, fused = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True), True
        except (RuntimeError, TypeError, ValueError):  # a device without the fused kernel (only --smoke can hit this)
            optimizer, fused = torch.optim.AdamW(model.parameters(), lr=1e-4), False
        call = torch.compile(model) if config.compiled else model
        side = Side(config, model, call, sparsifier, optimizer, counter, fused)
        side.build_s = time.perf_counter() - start
        seconds, transient = self.timed_step(side)  # round 0 of the warm-up: allocations, autotuning, compilation
        side.warmup_s.append(seconds)
        side.first_transient = transient or 0
        self.sync()
        side.persistent = self.allocated() - base if self.cuda else None
        return side

    def train_step(self, side: Side) -> None:
        side.sparsifier.step(side.step_index)  # before the forward of every optimizer step
        side.step_index += 1
        with self.autocast():
            loss = self.loss(side.config.model, side.call, self.batch(side.config.model))
        loss.backward()
        side.optimizer.step()
        side.optimizer.zero_grad(set_to_none=True)

    def timed_step(self, side: Side) -> Tuple[float, Optional[int]]:
        torch = self.torch
        self.sync()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        base = self.allocated()
        start = time.perf_counter()
        self.train_step(side)
        self.sync()
        seconds = time.perf_counter() - start
        if not self.cuda:
            return seconds, None
        peak = torch.cuda.max_memory_allocated()
        side.raw_peak = max(side.raw_peak, peak)
        return seconds, peak - base

    def dense_flops(self, key: str) -> float:
        """Training FLOPs of one dense step of the model: what the GPU computes whatever the recipe is charged."""
        from pgfsparse.flops.counter import FlopCounter

        if key not in self._dense_flops:
            args, kwargs = self.example(key)
            counter = FlopCounter(self.proto(key), args, kwargs, examples_per_step=self.spec(key)["batch"])
            self._dense_flops[key] = counter.step_train_flops(0)
        return self._dense_flops[key]

    # -- a group of training sides
    def unit_cost(self, unit: Sequence[Config]) -> float:
        return sum(config_estimate(c, self.est) for c in unit)

    def skip(self, config: Config, status: str) -> None:
        self.report.add(config.section, {**self.describe(config), "status": status})

    def describe(self, config: Config) -> Dict[str, Any]:
        entry = {
            "model": config.model,
            "pattern": config.pattern or "dense",
            "recipe": config.recipe,
            "compile": config.compiled,
        }
        if config.section == "inference":
            entry = {
                "model": config.model,
                "pattern": config.pattern,
                "kernels": "semi_structured",
                "dtype": config.dtype,
            }
        return entry

    def run_group(self, group: Group) -> None:
        units = list(group.units)
        reference_config = units.pop(0)[0]
        partner = self.unit_cost(units[0]) if units and not group.reference_alone else 0.0
        if not self.budget.fits(self.unit_cost([reference_config]) + partner):
            for unit in [(reference_config,)] + units:
                for config in unit:
                    self.skip(config, "skipped: time budget")
            return
        try:
            reference = self.build_side(reference_config)
        except Exception as error:  # noqa: BLE001 - recorded; the other groups still run
            self.release()
            for unit in [(reference_config,)] + units:
                for config in unit:
                    self.skip(config, f"error: reference side failed: {one_line(error)}")
            return
        rounds_left = self.warmup - 1 + self.steps  # after each side's first step, made while building it
        reference_rounds: List[Optional[float]] = []
        while units:
            chunk: List[Side] = []
            while units:
                unit = units[0]
                # what the sides built so far still have to run, then this unit's own cost
                committed = rounds_left * sum(self.est["step"][s.config.model] for s in [reference] + chunk)
                if not self.budget.fits(committed + self.unit_cost(unit)):
                    for u in units:
                        for config in u:
                            self.skip(config, "skipped: time budget")
                    units = []
                    break
                if chunk and not self.memory_fits(reference, chunk, len(unit)):
                    break  # measure this chunk first, then build the rest beside the reference
                built = []
                try:
                    for config in unit:
                        built.append(self.build_side(config))
                except Exception as error:  # noqa: BLE001 - out of memory, or a recipe that fails here
                    del built
                    self.release()
                    if chunk and isinstance(error, self.torch.cuda.OutOfMemoryError):
                        break  # no room beside this chunk: measure it first, then try again beside the reference
                    units.pop(0)
                    for config in unit:
                        self.skip(config, f"error: {one_line(error)}")
                    continue
                units.pop(0)
                chunk += built
            if not chunk:
                continue
            reference_rounds += self.run_rounds(reference, chunk)
            for side in chunk:
                self.report.add(side.config.section, {"group": group.name, **self.side_entry(side, reference)})
                self.learn(side)
            del chunk
            self.release()
        if not reference_rounds:  # a group whose every other unit was skipped: the reference alone
            reference_rounds = self.run_rounds(reference, [])
        reference.times = reference_rounds
        self.current_reference_times = reference_rounds
        self.report.add(reference.config.section, {"group": group.name, **self.side_entry(reference, reference)})
        self.learn(reference)
        del reference
        self.release()

    def memory_fits(self, reference: Side, chunk: List[Side], new_sides: int) -> bool:
        room = self.room()
        if room is None:
            return True
        sides = [reference] + chunk
        persistent = max((s.persistent or 0) for s in sides)
        transient = max(max(s.transient + [s.first_transient]) for s in sides)
        return room >= 1.25 * persistent * new_sides + 1.1 * transient

    def run_rounds(self, reference: Side, chunk: List[Side]) -> List[Optional[float]]:
        """Rounds 1.. of the warm-up (round 0 was each side's build), then the timed rounds; the reference's times."""
        sides = [reference] + chunk
        reference_times: List[Optional[float]] = []
        round_guess = sum(self.est["step"][s.config.model] for s in sides)
        graphs_before = dynamo_graphs() if self.warmup <= 1 else None
        for r in range(1, self.warmup + self.steps):
            timed = r >= self.warmup
            if not self.budget.fits(round_guess):
                for side in sides:
                    side.error = side.error or "partial: time budget"
                break
            order = sides[r % len(sides) :] + sides[: r % len(sides)]
            seconds: Dict[int, Optional[float]] = {}
            for side in order:
                if side.error and not side.error.startswith("partial"):
                    seconds[id(side)] = None
                    continue
                try:
                    took, transient = self.timed_step(side)
                except Exception as error:  # noqa: BLE001 - this side stops; the others go on
                    side.error = f"error: {one_line(error)}"
                    side.optimizer.zero_grad(set_to_none=True)
                    self.release()
                    seconds[id(side)] = None
                    if side is reference:
                        for other in chunk:
                            other.error = other.error or "error: the dense reference failed"
                    continue
                seconds[id(side)] = took
                if timed and transient is not None:
                    side.transient.append(transient)
                if not timed:
                    side.warmup_s.append(took)
            if timed:
                for side in chunk:
                    side.times.append(seconds.get(id(side)))
                reference_times.append(seconds.get(id(reference)))
            if r == self.warmup - 1:
                graphs_before = dynamo_graphs()
        self.graphs_in_timed_rounds = None if graphs_before is None else dynamo_graphs() - graphs_before
        self.current_reference_times = reference_times
        return reference_times

    def side_entry(self, side: Side, reference: Side) -> Dict[str, Any]:
        config, spec = side.config, self.spec(side.config.model)
        times = [t for t in side.times if t is not None]
        entry: Dict[str, Any] = {**self.describe(config)}
        entry["status"] = side.error or "ok"
        if side.error.startswith("error") or not times:
            entry["status"] = side.error or "error: no timed step"
            entry["warmup_step_s"] = side.warmup_s
            return entry
        step = median(times)
        flops = side.counter.step_train_flops(self.warmup)  # as charged at the first timed step
        dense_flops = self.dense_flops(config.model)
        entry.update(
            {
                "step_s": step,
                "step_s_timed": times,
                "warmup_step_s": side.warmup_s,
                "examples_per_s": spec["batch"] / step,
            }
        )
        if config.model == "llama_125m":
            entry["tokens_per_s"] = spec["batch"] * spec["context"] / step
        if side is not reference:  # the reference: dense in a training group, the eager twin in a compile group
            key = "compiled_over_eager" if config.compiled else "ratio_to_dense"
            entry[key] = summarize(round_ratios(side.times, self.current_reference_times))
        if config.compiled:
            entry["graphs_compiled_in_timed_rounds"] = self.graphs_in_timed_rounds  # > 0: it recompiles
            entry["first_step_s"] = side.warmup_s[0]
            entry["compile_s"] = compile_seconds(side.warmup_s, step)
        entry.update(
            {
                "flops_per_step": flops,
                "achieved_flop_s": flops / step,
                "mfu": flops / step / self.peak if self.peak else None,
                "dense_flops_per_step": dense_flops,
                "mfu_dense_equivalent": dense_flops / step / self.peak if self.peak else None,
                "fused_adamw": side.fused,
                "build_s": side.build_s,
            }
        )
        if self.cuda:
            transient = max(side.transient) if side.transient else 0
            entry["memory"] = {
                "peak_bytes": (side.persistent or 0) + transient + self.batch_bytes(config.model),
                "persistent_bytes": side.persistent,
                "step_transient_bytes": transient,
                "input_bytes": self.batch_bytes(config.model),
                "max_memory_allocated_shared": side.raw_peak,
            }
        return entry

    def learn(self, side: Side) -> None:
        """Better estimates from what was measured (the largest seen, to stay on the safe side)."""
        times = [t for t in side.times if t is not None]
        key = side.config.model
        if not times:
            return
        step = median(times)
        seen = self.measured.setdefault(f"{key} compile" if side.config.compiled else key, [])
        if side.config.compiled:
            seen.append(compile_seconds(side.warmup_s, step))
            self.est["compile"][key] = max(max(seen), 1.0)
            return
        seen.append(step)
        self.est["step"][key] = max(seen)
        builds = self.measured.setdefault(f"{key} build", [])
        builds.append(side.build_s)
        self.est["build"][key] = max(max(builds), 0.5)

    # -- 2:4 inference (gpu_inference.py)
    def run_inference(self, group: Group) -> None:
        run_inference(self, group)


def dynamo_graphs() -> int:
    """Graphs torch.compile has made in this process so far (0 when the counter is not there)."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
    except Exception:  # noqa: BLE001 - a private counter: absent or renamed in some torch
        return 0


def compile_seconds(warmup_s: Sequence[float], step_s: float) -> float:
    """Seconds the warm-up steps took beyond steady steps: compilation (and any recompilation) time."""
    return sum(warmup_s) - len(warmup_s) * step_s


def environment(torch, device, peak) -> Dict[str, Any]:
    import timm
    import transformers

    import pgfsparse

    env: Dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "timm": timm.__version__,
        "transformers": transformers.__version__,
        "pgfsparse": pgfsparse.__version__,
        "device": str(device),
        "peak_flops_bf16": peak,
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            {
                "device_name": torch.cuda.get_device_name(device),
                "capability": [props.major, props.minor],
                "total_memory_bytes": props.total_memory,
                "cudnn": torch.backends.cudnn.version(),
            }
        )
    return env


NOTES = {
    "ratio_to_dense": "per timed round: recipe step time / dense step time in the same round; median, p10, p90",
    "compiled_over_eager": "per timed round: compiled step / eager step of the same recipe in the same round",
    "flops_per_step": "training FLOPs of one step as pgf-train charges them (FlopCounter.step_train_flops): "
    "3x forward, sparse segments (2d+1)F at the recipe's charged density d",
    "mfu": "achieved_flop_s / peak_flops_bf16 (pgfsparse.flops.peak), one device",
    "mfu_dense_equivalent": "the dense model's training FLOPs / this side's step time / peak: the GPU computes "
    "dense matmuls on masked weights, whatever the recipe is charged",
    "memory.peak_bytes": "persistent (model, masks, AdamW state) + largest transient of a timed step + input "
    "batch: what max_memory_allocated would read with this side alone on the GPU",
    "memory.max_memory_allocated_shared": "raw torch.cuda.max_memory_allocated during this side's steps, with the "
    "other sides of its group resident",
    "inference.speedup": "dense time / semi-structured time, median over interleaved rounds (> 1: 2:4 faster)",
    "steps": "timed steps lie in the sparse phase of a 100,000-step run (dense_fraction=0); MDGF's D is still ~1",
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "out",
        nargs="?",
        default=None,
        help="the JSON file (default $OUT/gpu_check.json, else benchmarks/results/gpu_check-<date>.json)",
    )
    parser.add_argument("--budget", type=float, default=None, help=f"seconds for everything (default {BUDGET_S:.0f})")
    parser.add_argument("--plan", action="store_true", help="print the plan and exit, even on a GPU")
    parser.add_argument("--smoke", action="store_true", help="tiny models, 1+2 rounds, on any device (the code paths)")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else default_output()
    budget_s = args.budget if args.budget is not None else BUDGET_S
    deadline = os.environ.get("GPU_CHECK_DEADLINE")  # epoch seconds, from gpu_check.sh
    if deadline:
        budget_s = min(budget_s, float(deadline) - time.time())
    budget = Budget(budget_s)

    try:
        import torch

        import pgfsparse  # noqa: F401 - the engine
    except ImportError as error:
        print(f"gpu_check: cannot import {error.name or error}: {one_line(error)}", file=sys.stderr)
        return MISSING_IMPORT_EXIT
    if args.plan or (not args.smoke and not torch.cuda.is_available()):
        print_plan(budget_s, out, "--plan" if args.plan else "no CUDA device here")
        return 0
    missing = missing_modules(NEEDED)
    if missing:
        print(f"gpu_check: missing {', '.join(missing)}: see benchmarks/gpu_wheels.txt", file=sys.stderr)
        return MISSING_IMPORT_EXIT
    try:
        import safetensors  # noqa: F401
        import timm  # noqa: F401
        import transformers  # noqa: F401

        import_library()
    except ImportError as error:
        print(f"gpu_check: cannot import {one_line(error)}: see benchmarks/gpu_wheels.txt", file=sys.stderr)
        return MISSING_IMPORT_EXIT

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for limit in ("cache_size_limit", "recompile_limit"):  # every compiled side is another model instance
        if isinstance(getattr(torch._dynamo.config, limit, None), int):
            setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 64))
    from pgfsparse.flops.peak import peak_flops

    peak = peak_flops(device, "bf16")
    recipes = built_in_recipes()
    data = {
        "check": "pgfsparse benchmarks/gpu_check.py (issue 27)",
        "status": "running",
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "budget_s": budget_s,
        "smoke": args.smoke,
        "environment": environment(torch, device, peak),
        "settings": {
            "warmup_rounds": 1 if args.smoke else WARMUP,
            "timed_rounds": 2 if args.smoke else STEPS,
            "precision": "bf16 autocast",
            "optimizer": "torch.optim.AdamW(lr=1e-4, fused=True)",
            "total_steps": LONG_RUN,
            "patterns": list(PATTERNS),
            "recipes": recipes,
            "compile": {"pattern": COMPILE_PATTERN, "recipes": list(COMPILE_RECIPES)},
            "models": {k: MODELS[k]["describe"] for k in MODELS},
            "llama_preset": llama_preset(),
            "custom_ladders": CUSTOM_LADDERS,
        },
        "notes": NOTES,
        "training": [],
        "inference": [],
        "compile": [],
    }
    report = Report(out, data, budget)
    print(
        f"gpu_check: {data['environment'].get('device_name', device)}, budget {budget_s:.0f} s, writing {out}",
        flush=True,
    )

    def stop(signum, frame):  # timeout's SIGTERM: leave the file saying so
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    check = Check(args, budget, report, device)
    try:
        for key in MODELS:  # the prototypes and input batches: startup, not any configuration's build
            check.proto(key)
            check.batch(key)
        for group in groups(recipes):
            print(f"[{budget.elapsed():6.1f} s] {group.name}", flush=True)
            try:
                if group.has_reference:
                    check.run_group(group)
                else:
                    check.run_inference(group)
            except Exception as error:  # noqa: BLE001 - one group's failure must not lose the others
                report.data.setdefault("errors", []).append(
                    {"group": group.name, "error": one_line(error), "traceback": traceback.format_exc(limit=6)[-3000:]}
                )
                report.write()
                check.release()
        data["status"] = "done"
    except KeyboardInterrupt as interrupt:
        data["status"] = f"interrupted ({interrupt})"
    finally:
        data["estimates_at_end"] = check.est
        report.write()
    try:
        summary(data)
    except Exception as error:  # noqa: BLE001 - the JSON is written; the console lines are a courtesy
        print(f"(no summary: {one_line(error)})")
    return 0


def summary(data: Dict[str, Any]) -> None:
    """A few lines on the console; the JSON holds everything."""
    for section in ("training", "compile"):
        for e in data.get(section, []):
            ratio = f" /dense {e['ratio_to_dense']['median']:.3f}" if e.get("ratio_to_dense") else ""
            extra = f" compiled/eager {e['compiled_over_eager']['median']:.3f}" if e.get("compiled_over_eager") else ""
            mfu = f" MFU {e['mfu']:.3f}" if e.get("mfu") else ""
            what = f"{section:<8} {e['model']:<10} {e['pattern']:<5} {e['recipe']:<12} compile={e['compile']!s:<5}"
            if "step_s" in e:
                print(f"{what} step {e['step_s'] * 1000:8.1f} ms{ratio}{extra}{mfu}  {e['status']}")
            else:
                print(f"{what} {e['status']}")
    for e in data.get("inference", []):
        whole = [
            f"batch {w['batch']}: {w['speedup']['median']:.2f}x" for w in e.get("whole_model", []) if w.get("speedup")
        ]
        print(f"inference {e['model']:<10} {e['dtype']:<8} {e['status']} {'; '.join(whole)}")
    print(f"status: {data['status']}, {data.get('elapsed_s')} s")


if __name__ == "__main__":
    sys.exit(main())
