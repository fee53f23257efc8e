"""The 2:4 inference part of benchmarks/gpu_check.py: export a 2:4 FF model, load it with kernels="dense" and
kernels="semi_structured", and time both per FF layer and for the whole model, interleaved.

Every function takes the running gpu_check.Check (device, prototypes, budget, report); see gpu_check.py's
docstring for what is measured and how.
"""

from __future__ import annotations

import copy
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List

from gpu_plan import MODELS, Config, Group, config_estimate
from gpu_report import median, ms_per_call, one_line, round_ratios, summarize


def run_inference(check, group: Group) -> None:
    """Each dtype of the group in turn, within the budget; one report entry each, errors recorded, not raised."""
    for (config,) in group.units:
        if not check.budget.fits(config_estimate(config, check.est)):
            check.skip(config, "skipped: time budget")
            continue
        start = time.perf_counter()
        entry = {**check.describe(config), "status": "ok"}
        try:
            measure(check, config, entry)
        except Exception as error:  # noqa: BLE001 - recorded, the run goes on
            entry["status"] = f"error: {one_line(error)}"
            entry["traceback"] = traceback.format_exc(limit=4)[-2000:]
        finally:
            check.release()
        entry["seconds"] = time.perf_counter() - start
        check.est["infer"][config.model] = max(entry["seconds"], 1.0)
        check.report.add("inference", entry)


def measure(check, config: Config, entry: Dict[str, Any]) -> None:
    """Export the 2:4 model, load it both ways and time it into `entry` (a refused kernel times dense alone)."""
    import pgfsparse
    from pgfsparse.export import export_compressed, load_compressed, timm_builder
    from pgfsparse.export.builders import builder_for
    from pgfsparse.export.semi_structured import plan as semi_plan

    torch, key, spec = check.torch, config.model, check.spec(config.model)
    dtype = getattr(torch, config.dtype)
    model = copy.deepcopy(check.proto(key)).eval()
    sparsifier = pgfsparse.sparsify(model, "2:4", recipe="ste", total_steps=1)
    sparsifier.step(0)
    if key == "vit_b16":
        builder = timm_builder("vit_base_patch16_224", num_classes=1000, **spec.get("timm_kwargs", {}))
    else:
        builder = builder_for(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{key}.nm.safetensors"
        sizes = export_compressed(sparsifier, path, builder, dtype=config.dtype)
        del model, sparsifier
        check.release()
        entry["export"] = {"file_bytes": sizes.file, "dense_bytes": sizes.dense}
        base = check.allocated()
        dense = load_compressed(path, kernels="dense", device=check.device)
        entry["dense_model_bytes"] = check.allocated() - base if check.cuda else None
        decided = semi_plan(dense, dtype)
        entry["plan"] = {
            "converts": sum(not why for why in decided.values()),
            "refused": {name: why for name, why in decided.items() if why},
        }
        base = check.allocated()
        try:
            sparse = load_compressed(path, kernels="semi_structured")
        except Exception as error:  # noqa: BLE001 - no CUDA, no kernel for this GPU or dtype: recorded
            entry["status"] = f"refused: {one_line(error)}"
            sparse = None
        entry["sparse_model_bytes"] = check.allocated() - base if (check.cuda and sparse is not None) else None
    if sparse is None:
        timings(check, entry, {"dense": dense}, key, spec, dtype)  # the dense side alone, for reference
        return
    converted = [
        n
        for n, m in sparse.named_modules()
        if isinstance(m, torch.nn.Linear) and type(m.weight).__name__.startswith("SparseSemiStructured")
    ]
    entry["converted_layers"] = len(converted)
    entry["backend"] = semi_structured_backend(torch)
    timings(check, entry, {"dense": dense, "sparse": sparse}, key, spec, dtype)


def timings(check, entry, models, key, spec, dtype) -> None:
    """Per FF layer and whole model: dense vs semi-structured, at the training batch and at batch 1."""
    torch = check.torch
    entry["layers"], entry["whole_model"] = [], []
    for batch in (spec["batch"], 1):
        if key == "vit_b16":
            x = torch.randn(batch, 3, spec["image_size"], spec["image_size"], device=check.device, dtype=dtype)
            vit = models["dense"]
            tokens = batch * (vit.patch_embed.num_patches + vit.num_prefix_tokens)

            def whole(m, x=x):
                return m(x)
        else:
            x = torch.randint(0, check.proto(key).config.vocab_size, (batch, spec["context"]), device=check.device)
            tokens = batch * spec["context"]

            def whole(m, x=x):
                return m(input_ids=x, use_cache=False).logits

        for name in MODELS[key]["ff_layers"]:
            layers = {side: m.get_submodule(name) for side, m in models.items()}
            width = layers["dense"].in_features
            h = torch.randn(tokens, width, device=check.device, dtype=dtype)
            row = {"layer": name, "shape": list(layers["dense"].weight.shape), "rows": tokens, "batch": batch}
            calls = {side: (lambda lay=lay, h=h: lay(h)) for side, lay in layers.items()}
            row.update(compare(check, calls, iters=10))
            entry["layers"].append(row)
            check.report.write()
        row = {"batch": batch, "tokens": tokens}
        row.update(compare(check, {side: (lambda m=m: whole(m)) for side, m in models.items()}, iters=3))
        entry["whole_model"].append(row)


def compare(check, fns: Dict[str, Callable], iters: int, rounds: int = 7) -> Dict[str, Any]:
    """Interleaved timing of 'dense' and 'sparse' (when present): ms each, speed-up dense/sparse, error, peaks."""
    torch = check.torch
    out: Dict[str, Any] = {}
    with torch.no_grad():
        outputs = {}
        for side, fn in fns.items():  # warm-up, and the outputs for the error and the memory
            check.sync()
            if check.cuda:
                torch.cuda.reset_peak_memory_stats()
            base = check.allocated()
            outputs[side] = fn()
            check.sync()
            if check.cuda:
                out[f"{side}_transient_bytes"] = torch.cuda.max_memory_allocated() - base
        if "sparse" in outputs:
            a, b = outputs["sparse"].float(), outputs["dense"].float()
            out["relative_error"] = ((a - b).norm() / b.norm().clamp_min(1e-30)).item()
        del outputs
        times: Dict[str, List[float]] = {side: [] for side in fns}
        names = list(fns)
        for r in range(rounds):
            for side in names if r % 2 == 0 else names[::-1]:
                times[side].append(ms_per_call(fns[side], iters, torch, check.cuda))
    for side, ms in times.items():
        out[f"{side}_ms"] = median(ms)
    if "sparse" in times:
        out["speedup"] = summarize(round_ratios(times["dense"], times["sparse"]))  # dense time / sparse time
    return out


def semi_structured_backend(torch) -> Dict[str, Any]:
    info: Dict[str, Any] = {}
    try:
        from torch.sparse import SparseSemiStructuredTensor

        info["force_cutlass"] = bool(getattr(SparseSemiStructuredTensor, "_FORCE_CUTLASS", False))
    except ImportError as error:
        info["error"] = one_line(error)
    cusparselt = getattr(torch.backends, "cusparselt", None)
    if cusparselt is not None:
        info["cusparselt_available"] = bool(cusparselt.is_available())
        try:
            info["cusparselt_version"] = cusparselt.version()
        except Exception:  # noqa: BLE001
            pass
    return info
