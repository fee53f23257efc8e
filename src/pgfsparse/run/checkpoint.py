"""Checkpoints: written atomically, loaded safely (`weights_only=True`), resumable exactly.

A file whose pickle needs more than tensors and plain containers (i.e. could run
code) is refused with the reason; it is never loaded with `weights_only=False`.

One file, `<run dir>/checkpoint.pt`, holds the model (plain timm/HF keys), the
optimizer, the LR scheduler, the sparsifier state (step, bit-packed masks),
every RNG state and the trainer's counters. It is written to a temporary file
and renamed, so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path
from typing import Any, Dict

import torch

from pgfsparse.errors import CheckpointError, first_line
from pgfsparse.rundir.files import atomic_path
from pgfsparse.rundir.layout import CHECKPOINT


def rng_state() -> Dict[str, Any]:
    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": _to_lists(random.getstate()),
        "numpy": [kind, torch.from_numpy(np.asarray(keys).astype("int64")), pos, has_gauss, cached],
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
    payload = _safe_torch_load(path, "checkpoint")
    missing = [k for k in ("model", "optimizer", "scheduler", "step", "rng") if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}: not a pgf-train checkpoint")
    return payload


def check_weights_file(path: Path, key: str) -> None:
    """A weights file (`model.checkpoint`) exists and holds only tensors: refused in one line otherwise.

    Checked before timm reads it, so a file whose pickle would run code is never unpickled.
    """
    if not path.is_file():
        raise CheckpointError(f"{key}={path}: no such file (give a local .safetensors or .pth weights file)")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt"):
                return
        except Exception as error:  # noqa: BLE001 - any unreadable header
            raise CheckpointError(
                f"{key}={path} is not a readable .safetensors file ({first_line(error)[:160]})"
            ) from None
    if not isinstance(_safe_torch_load(path, key), dict):
        raise CheckpointError(f"{key}={path} holds no state dict: save model.state_dict() to it")


def _safe_torch_load(path: Path, what: str) -> Any:
    """torch.load with weights_only=True; a file that needs arbitrary unpickling is refused, never run."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - corrupt, truncated, not a torch file, or unsafe
        # torch's message advises loading with weights_only=False: never passed on
        unsafe = re.search(r"GLOBAL ([\w.]+)", str(error))  # "Unsupported global: GLOBAL os.system", ...
        if isinstance(error, pickle.UnpicklingError) and unsafe:
            raise CheckpointError(_unsafe_pickle_message(path, what, unsafe.group(1))) from None
        reason = "not a pickle torch can read" if isinstance(error, pickle.UnpicklingError) else _gist(error)
        fix = (
            "delete it to start afresh or restore a copy"
            if what == "checkpoint"
            else f"point {what} at an intact .safetensors or .pth file"
        )
        raise CheckpointError(
            f"{what} {path} cannot be read: it is damaged, truncated or not a torch file ({reason}): {fix}"
        ) from None


def _gist(error: BaseException, limit: int = 120) -> str:
    """The first sentence of `error`'s first line, cut at a word boundary (torch's messages run on for lines)."""
    text = first_line(error).split(". ", 1)[0].rstrip(". ")
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",:;") + " ..."


def _unsafe_pickle_message(path: Path, what: str, name: str) -> str:
    """Why an unsafe file is refused, in one line."""
    return (
        f"{what} {path} is refused: unpickling it needs arbitrary code (it would import {name}), and a file "
        "that can run "
        "code when loaded is never loaded; nothing in it was run. Use a file of plain tensors "
        "(a state_dict saved with torch.save, or .safetensors) from a source you trust"
    )


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _to_tuples(value):
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value
