"""Checkpoints: written atomically, loaded safely (`weights_only=True`), resumable exactly.

One file, `<run dir>/checkpoint.pt`, holds the model (plain timm/HF keys), the
optimizer, the LR scheduler, the sparsifier state (step, bit-packed masks),
every RNG state and the trainer's counters. It is written to a temporary file
and renamed, so a crash mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Dict

import torch

from .files import atomic_path
from .messages import first_line

CHECKPOINT = "checkpoint.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used, explained in one line."""


def rng_state() -> Dict[str, Any]:
    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": _to_lists(random.getstate()),
        "numpy": [kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(_to_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, payload: Dict[str, Any]) -> None:
    """torch.save, atomically: a crash mid-write leaves the previous checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load(path: Path) -> Dict[str, Any]:
    """The checkpoint at `path`, or a one-line CheckpointError saying what is wrong and what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: resume a run dir that has written {CHECKPOINT}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt, truncated or not a torch file
        reason = first_line(error)[:200]
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({reason}): it is damaged; delete it to start over, "
            "or resume from a copy"
        ) from None
    missing = [k for k in ("model", "optimizer", "scheduler", "step", "rng") if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}: not a pgf-train checkpoint")
    return payload


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _to_tuples(value):
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value
