"""The compressed N:M file: one safetensors file, sparse layers as kept values + packed indices.

Tensors:
    <key>                    every dense tensor of the model's state_dict, as it is (plain timm/HF keys)
    nm/<key>/<i>/values      segment i of a sparse weight: kept values (P, G, N), P rows of G groups
    nm/<key>/<i>/indices     their in-group indices, packed at ceil(log2(M)) bits (uint8 stream)
    nm/<key>/<i>/dense       a segment no pattern covers (rows of a fused qkv left dense), as it is
Metadata (strings; JSON where structured):
    format = "pgfsparse.nm", version, dtype, pgfsparse_version, source
    builder  how to rebuild the model (builders.py)
    layers   {key: {"shape": [...], "layout": row|col|conv, "segments": [{"location", "rows", "n", "m"}, ...],
                    "transposed": bool}}
    aliases  {key: stored key} for tied tensors (T5's and GPT-2's embeddings and LM head share one)
    sha256   of every tensor's bytes in key order: a corrupt file is refused instead of loading wrong weights

Output units are always rows. A weight the model stores as (in, out) (GPT-2's `Conv1D`, whose
parametrization says out_dim=1) is compressed as its transpose (out, in), so `shape`, `layout` and the
segments' `rows` describe that (out, in) matrix: N:M groups along the inputs are `row` layout there, and
Q, K, V column blocks of GPT-2's fused `c_attn` are row blocks. `"transposed": true` says so; reading
transposes back, so the model's own (in, out) tensor round-trips bit for bit, and every sparse weight's
values are laid out per output unit as an N:M kernel reads them. Files without the key (written before
it existed) mean false. Files with a transposed layer are version 2, the others stay version 1: a
pgfsparse that predates transposed layers refuses the former ("upgrade pgfsparse") instead of loading
transposed weights into a square layer, and still reads the latter.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from pgfsparse.errors import first_line
from pgfsparse.export.compress import SegmentSpec, compress, decompress, with_dense_gaps
from pgfsparse.export.packing import (
    index_bits,
    pack_indices,
    packed_bytes,
    unpack_indices,
)
from pgfsparse.rundir.files import atomic_path
from pgfsparse.sparsity.masked_weight import storage_layout

FORMAT = "pgfsparse.nm"
VERSION, TRANSPOSED_VERSION = "1", "2"  # a file with transposed layers is version 2 (see above)
READABLE = (VERSION, TRANSPOSED_VERSION)
DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


class ExportFileError(ValueError):
    """An export file that cannot be used, in one line: what is wrong and what to do."""


@dataclass
class SparseWeight:
    """A masked weight to compress: the strict weight and its keep-mask as (out, in), layout and sparse segments.

    `transposed`: the model stores this tensor as the transpose of `weight` (GPT-2's Conv1D: (in, out)).
    """

    weight: torch.Tensor
    mask: torch.Tensor
    layout: str
    segments: List[SegmentSpec]
    transposed: bool = False

    @classmethod
    def from_model(
        cls, weight: torch.Tensor, mask: torch.Tensor, layout: str, segments: List[SegmentSpec], out_dim: int = 0
    ) -> "SparseWeight":
        """The (out, in) view of a model's weight whose output units run along `out_dim` (0: rows, 1: columns).

        `layout` and `segments` are the model's (segments index output units along out_dim); for out_dim=1
        the groups' direction flips with the transpose: groups along the inputs are `col` in an (in, out)
        tensor and `row` in its (out, in) transpose.
        """
        if out_dim == 0:
            return cls(weight, mask, layout, segments)
        if out_dim != 1 or weight.dim() != 2 or layout not in ("row", "col"):
            raise ValueError(
                f"a weight of shape {tuple(weight.shape)} with outputs along dim {out_dim} and layout {layout!r} "
                "cannot be exported: only 2-D (in, out) weights with row or col groups can be transposed"
            )
        # The (out, in) transpose stores the logical layout; storage_layout maps it to the (in, out) one and back.
        flipped = storage_layout(layout, weight, out_dim)
        return cls(weight.t().contiguous(), mask.t().contiguous(), flipped, segments, transposed=True)


@dataclass
class Sizes:
    """Bytes: the file on disk, the dense model, the theoretical N:M model (values + index bits), per location."""

    file: int
    dense: int
    theoretical: float
    parts: Dict[str, Dict[str, float]] = field(default_factory=dict)  # location -> {stored, theoretical, dense}

    def to_json(self) -> Dict[str, Any]:
        return {"file": self.file, "dense": self.dense, "theoretical": self.theoretical, "parts": self.parts}


def parse_dtype(name: Optional[str]) -> Optional[torch.dtype]:
    if name is None:
        return None
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}: choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


def write(
    path: Path,
    state: Dict[str, torch.Tensor],
    sparse: Dict[str, SparseWeight],
    builder: Dict[str, Any],
    dtype: Optional[torch.dtype] = None,
    source: str = "",
) -> Sizes:
    """Write the model `state` (plain keys) with the weights in `sparse` compressed; returns the sizes."""
    from safetensors.torch import save_file

    from pgfsparse import __version__

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    tensors: Dict[str, torch.Tensor] = {}
    aliases: Dict[str, str] = {}
    seen: Dict[Tuple[Any, ...], str] = {}  # storage identity -> the key stored for it
    for key, value in state.items():
        if key in sparse:
            continue
        ident = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape), value.dtype)
        if value.numel() and ident in seen:  # a tied tensor: stored once
            aliases[key] = seen[ident]
            continue
        seen[ident] = key
        tensors[key] = cast(value.detach()).contiguous().cpu()
    layers: Dict[str, Any] = {}
    parts: Dict[str, Dict[str, float]] = {}
    for key, item in sparse.items():
        weight, mask = cast(item.weight.detach()).cpu(), item.mask.cpu().bool()
        segments = with_dense_gaps(item.segments, weight.shape[0])
        for i, seg in enumerate(segments):
            base = f"nm/{key}/{i}"
            part = parts.setdefault(seg.location, {"stored": 0, "theoretical": 0.0, "dense": 0})
            block_bytes = weight[seg.start : seg.stop].numel() * weight.element_size()
            part["dense"] += block_bytes
            if seg.dense:
                tensors[f"{base}/dense"] = weight[seg.start : seg.stop].contiguous()
                part["stored"] += block_bytes
                part["theoretical"] += block_bytes
                continue
            values, indices = compress(weight, mask, seg, item.layout)
            bits = index_bits(seg.nm[1])
            tensors[f"{base}/values"] = values
            tensors[f"{base}/indices"] = pack_indices(indices, bits)
            part["stored"] += values.numel() * values.element_size() + packed_bytes(indices.numel(), bits)
            part["theoretical"] += values.numel() * (values.element_size() + bits / 8)
        layers[key] = {
            "shape": list(weight.shape),
            "layout": item.layout,
            "segments": [s.to_json() for s in segments],
            "transposed": item.transposed,
        }
    value_dtype = dtype or next((t.dtype for t in tensors.values() if t.is_floating_point()), torch.float32)
    metadata = {
        "format": FORMAT,
        "version": TRANSPOSED_VERSION if any(item.transposed for item in sparse.values()) else VERSION,
        "dtype": str(value_dtype).replace("torch.", ""),
        "pgfsparse_version": __version__,
        "source": str(source),
        "builder": json.dumps(builder),
        "layers": json.dumps(layers),
        "aliases": json.dumps(aliases),
        "sha256": _digest(tensors),
    }
    with atomic_path(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    dense = sum(t.numel() * t.element_size() for k, t in tensors.items() if not k.startswith("nm/"))
    stored_dense = dense
    dense += int(sum(p["dense"] for p in parts.values()))  # whole bytes already: the dict is typed float
    theoretical = stored_dense + sum(p["theoretical"] for p in parts.values())
    return Sizes(os.path.getsize(path), dense, theoretical, parts)


def _digest(tensors: Dict[str, torch.Tensor]) -> str:
    sha = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        sha.update(key.encode())
        sha.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return sha.hexdigest()


def _damaged(path: Path, reason: str) -> ExportFileError:
    return ExportFileError(
        f"export file {path} cannot be read ({reason}): it is damaged or truncated; write it again with pgf-export"
    )


def read(path: Path) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """(metadata with builder/layers/aliases parsed, the state_dict with dense weights rebuilt, the stored tensors).

    Any damage is one ExportFileError line.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ExportFileError(f"no export file at {path}: give a file written by pgf-export")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            stored = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as error:  # safetensors raises its own errors for a bad header or a short file
        raise _damaged(path, first_line(error)[:200]) from None
    if meta.get("format") != FORMAT:
        raise ExportFileError(
            f"{path} is a safetensors file but not a pgfsparse compressed export "
            "(no format metadata): load it with safetensors.torch.load_file"
        )
    if meta.get("version") not in READABLE:
        raise ExportFileError(
            f"{path} is export format version {meta.get('version')}, this pgfsparse reads "
            f"{' and '.join(READABLE)}: upgrade pgfsparse or export again"
        )
    try:
        parsed = {k: json.loads(meta[k]) for k in ("builder", "layers", "aliases")}
    except (KeyError, ValueError) as error:
        raise _damaged(path, f"metadata: {first_line(error)[:100]}") from None
    if _digest(stored) != meta.get("sha256"):
        raise _damaged(path, "checksum mismatch")
    state = {k: v for k, v in stored.items() if not k.startswith("nm/")}
    try:
        for key, layer in parsed["layers"].items():
            state[key] = _rebuild(stored, key, layer)
    except (KeyError, RuntimeError, ValueError) as error:
        raise _damaged(path, f"layer data: {first_line(error)[:150]}") from None
    for alias, key in parsed["aliases"].items():
        state[alias] = state[key]
    return {**meta, **parsed}, state, stored


def _rebuild(stored: Dict[str, torch.Tensor], key: str, layer: Dict[str, Any]) -> torch.Tensor:
    """The model's tensor of one sparse layer: segments decompressed in place, transposed back if stored so."""
    shape = tuple(layer["shape"])
    parts = []
    segments = [SegmentSpec.from_json(s) for s in layer["segments"]]
    for i, seg in enumerate(segments):
        values, indices = segment_tensors(stored, key, i, seg)
        parts.append(values if seg.dense else decompress(values, indices, seg, shape, layer["layout"]))
    weight = torch.empty(shape, dtype=parts[0].dtype)
    for part, seg in zip(parts, segments):
        weight[seg.start : seg.stop] = part
    return weight.t().contiguous() if layer.get("transposed", False) else weight


def segment_tensors(stored: Dict[str, torch.Tensor], key: str, i: int, seg: SegmentSpec):
    """(values, unpacked int64 indices) of one segment; (the dense block, None) for a dense segment."""
    base = f"nm/{key}/{i}"
    if seg.dense:
        return stored[f"{base}/dense"], None
    n, m = seg.nm
    values = stored[f"{base}/values"]
    if values.dim() != 3 or values.shape[-1] != n:
        raise ValueError(f"{base}/values has shape {tuple(values.shape)}, expected (rows, groups, {n})")
    indices = unpack_indices(stored[f"{base}/indices"], index_bits(m), values.numel()).view(values.shape)
    if indices.numel() and int(indices.max()) >= m:
        raise ValueError(f"{base}/indices point outside groups of {m}")
    return values, indices
