"""Names of runs and sweeps: one rule, used for run folders, W&B run names and sweep folders.

    run:    vit-n1m32-mdgf_exp-s0              model, sparsity slug, canonical recipe, seed
            gpt2-n2m4-srste-s0-oneshot=wanda   + the one-shot method that pruned the start, if any
            vit-n1m32-mdgf_exp-s0-depth=3      + each other key the sweep varies
    sweep:  recipe=srste,mdgf_exp__sparsity=n1m16,n1m32   the command's overrides, sorted (last key part)

Names are colon-free (W&B refuses ':'; '1:16' is written 'n1m16') and depend
only on the settings, so re-launching the same command finds the same folders.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from pgfsparse.sparsity.pattern import NM
from pgfsparse.sparsity.recipes import canonical_recipe_name

# Overrides that name a point's identity already (in the base name), or that change
# where and how fast it runs but not its result: they never enter a name.
_IN_BASE_NAME = ("model", "sparsity", "recipe", "recipe.name", "seed", "oneshot", "oneshot.method")
_NOT_RESULTS = (
    "hydra",
    "sweep",
    "threads",
    "logger",
    "resume",
    "output_dir",
    "device",
    "log_every",
    "checkpoint_every",
    "data.num_workers",
    "peak_flops",
    "compile",
    "distributed",
)  # compile, distributed (ddp | fsdp): same within float error
_MAX_NAME = 100


def describe_sparsity(patterns: Mapping[str, NM]) -> str:
    """A run label: '1:16' for FF only, 'ff=1:8,q=1:4,k=1:4' for mixes, 'dense' for none."""
    if not patterns:
        return "dense"
    if set(patterns) == {"ff"}:
        return str(patterns["ff"])
    return ",".join(f"{loc}={p}" for loc, p in patterns.items())


def slug(text: str) -> str:
    """File- and W&B-safe form of a label ('1:16' -> 'n1m16', 'ff=1:8,qk=1:4' -> 'ff-n1m8_qk-n1m4')."""
    out = []
    for part in text.split(","):
        loc, _, pat = part.rpartition("=")
        if ":" in pat:
            n, m = pat.split(":")
            pat = f"n{n}m{m}"
        out.append(f"{loc}-{pat}" if loc else pat)
    return "_".join(out)


def run_name(
    model: str,
    patterns: Dict[str, NM],
    recipe: str,
    seed: int,
    extra: Sequence[Tuple[str, str]] = (),
    oneshot: str = "none",
) -> str:
    """'vit-n1m32-mdgf_exp-s0', '-oneshot=<method>' unless `oneshot` is none, then '-<key>=<value>' per `extra`."""
    name = base_run_name(model, describe_sparsity(patterns), recipe, seed)
    if oneshot not in (None, "none"):
        name += f"-oneshot={oneshot}"
    for key, value in extra:
        name += f"-{key.rsplit('.', 1)[-1]}={_safe(value)}"
    return name


def base_run_name(model: str, sparsity: str, recipe: str, seed: Any) -> str:
    """'vit-n1m32-mdgf_exp-s0' from a sparsity label ('1:32', 'ff=1:8,q=1:4' or 'dense')."""
    try:
        recipe = canonical_recipe_name(recipe)
    except ValueError:  # a recipe this install does not know (a plug-in): its name as written
        pass
    return f"{model}-{slug(sparsity)}-{recipe}-s{seed}"


def sweep_name(overrides: Iterable[str]) -> str:
    """The default name of a sweep: its command's result-changing overrides, sorted, '__'-joined.

    Dotted keys keep their last part (model.kwargs.depth=3 -> depth=3) unless two share it.
    Long names keep their first 80 characters and a hash of the whole, so two
    different commands never share a sweep folder.
    """
    kept = sorted(o for o in overrides if not _ignored(_key(o)))
    if not kept:
        return "default"
    short = [_key(o).rsplit(".", 1)[-1] for o in kept]  # model.kwargs.depth=3 -> depth=3, unless ambiguous
    name = "__".join(_safe(f"{s}={o.split('=', 1)[1]}" if short.count(s) == 1 else o) for s, o in zip(short, kept))
    if len(name) > _MAX_NAME:
        name = f"{name[:80]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return name


def naming_overrides(overrides: Iterable[str], varying: Iterable[str]) -> List[Tuple[str, str]]:
    """The (key, value) pairs of a job's overrides that its run name must add: keys the sweep varies."""
    varying = set(varying)
    pairs = []
    for override in overrides:
        key = _key(override)
        if key in varying and key not in _IN_BASE_NAME and not key.startswith("sparsity.") and not _ignored(key):
            pairs.append((key, override.split("=", 1)[1]))
    return pairs


_RUN_NAME = re.compile(
    r"^(?P<model>[^-]+)-(?P<slug>dense|n\d+m\d+|[a-z_]+-n\d+m\d+(?:_[a-z_]+-n\d+m\d+)*)"
    r"-(?P<recipe>[a-z0-9_]+)-s(?P<seed>\d+)(?:-oneshot=(?P<oneshot>[a-z0-9_]+))?(?:-(?P<variant>.+))?$"
)


def parse_run_name(name: str) -> Optional[Dict[str, Any]]:
    """Inverse of `run_name`: {'model', 'sparsity', 'recipe', 'seed', 'oneshot', 'variant'}, None if not one.

    Anything after the seed names the other keys a sweep varies ('depth=3') and is the `variant`.
    """
    match = _RUN_NAME.match(name)
    if not match:
        return None
    return {
        "model": match["model"],
        "sparsity": unslug(match["slug"]),
        "recipe": match["recipe"],
        "seed": int(match["seed"]),
        "oneshot": match["oneshot"] or "none",
        "variant": match["variant"] or "",
    }


def unslug(text: str) -> str:
    """Inverse of `slug`: 'n1m32' -> '1:32'; 'ff-n1m8_attn_out-n1m4' -> 'ff=1:8,attn_out=1:4'."""
    if text == "dense":
        return text
    parts = re.findall(r"(?:^|_)([a-z_]+?)-n(\d+)m(\d+)", text)
    if parts:
        return ",".join(f"{loc}={n}:{m}" for loc, n, m in parts)
    return re.sub(r"^n(\d+)m(\d+)$", r"\1:\2", text)


def _key(override: str) -> str:
    """'+recipe.x=3' -> 'recipe.x'; 'hydra/launcher=joblib' -> 'hydra/launcher'."""
    return override.split("=", 1)[0].lstrip("+~")


def _ignored(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") or key.startswith(k + "/") for k in _NOT_RESULTS)


def _safe(text: str) -> str:
    """N:M -> nNmM; no path separators, colons or spaces."""
    text = re.sub(r"(\d+):(\d+)", r"n\1m\2", str(text))
    return re.sub(r"[/\\:\s'\"${}]+", "-", text)
