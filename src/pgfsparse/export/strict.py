"""The strict N:M view of a sparsified model, as the export writes it: weights, keep-masks, segments."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from pgfsparse.export import format as fmt
from pgfsparse.export.compress import SegmentSpec


@torch.no_grad()
def strict_weights(sparsifier) -> Tuple[Dict[str, torch.Tensor], Dict[str, fmt.SparseWeight]]:
    """(the strict state_dict with plain keys, {weight key: SparseWeight}) of a Sparsifier's model.

    The masks are the sparsifier's own strict masks (target patterns of the latent weights), per segment.
    The state_dict holds every tensor as the model stores it; a SparseWeight is always (out, in): a layer
    whose output units run along dim 1 (GPT-2's Conv1D, out_dim=1) is handed over transposed (format.py).
    """
    state = sparsifier.export_state_dict("strict")
    sparse = {}
    for name, param in sparsifier.layers.items():
        latent = sparsifier.model.get_submodule(name).parametrizations.weight.original
        key = f"{name}.weight" if name else "weight"
        segments = [SegmentSpec(s.location, s.rows.start, s.rows.stop, s.target.n, s.target.m) for s in param.segments]
        mask = param.strict_multiplier(latent) != 0
        sparse[key] = fmt.SparseWeight.from_model(state[key], mask, param.layout, segments, param.out_dim)
    return state, sparse


def export_compressed(
    sparsifier, path, builder: Dict[str, Any], dtype: Optional[str] = None, source: str = ""
) -> fmt.Sizes:
    """Write the strict N:M model of `sparsifier` to `path` (compressed safetensors); returns the sizes."""
    state, sparse = strict_weights(sparsifier)
    return fmt.write(Path(path), state, sparse, builder, fmt.parse_dtype(dtype), source)
