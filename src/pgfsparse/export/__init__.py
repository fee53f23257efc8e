"""Sparse artifacts: compressed N:M export, plain-library exports, sparse inference.

    sizes = export_compressed(sparsifier, "model.nm.safetensors", builder)   # or: pgf-export RUN_DIR
    model = load_compressed("model.nm.safetensors")                           # plain timm / HF model

Files: packing (index bits), compress (weight <-> values + indices), format (the safetensors file),
builders (rebuilding the model), strict (the sparsifier's strict view), load, nm_linear (the M > 4
inference linear), semi_structured (2:4 on CUDA), plain (timm / HF exports), run (a run dir), cli.
"""

from pgfsparse.export.builders import build, builder_for, timm_builder
from pgfsparse.export.format import ExportFileError, Sizes
from pgfsparse.export.load import load_compressed
from pgfsparse.export.nm_linear import NMLinear
from pgfsparse.export.strict import export_compressed, strict_weights

__all__ = [
    "ExportFileError",
    "NMLinear",
    "Sizes",
    "build",
    "builder_for",
    "export_compressed",
    "load_compressed",
    "strict_weights",
    "timm_builder",
]
