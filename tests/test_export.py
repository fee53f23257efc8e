"""Compressed N:M export (issue 10): packing, round trips, damaged files, sparse kernels, 2:4 planning."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import build_swin, build_t5, build_vit
from hypothesis import given, settings
from hypothesis import strategies as st

import pgfsparse
from pgfsparse.export import (
    ExportFileError,
    NMLinear,
    builder_for,
    export_compressed,
    load_compressed,
    semi_structured,
    timm_builder,
)
from pgfsparse.export.packing import (
    index_bits,
    pack_indices,
    packed_bytes,
    unpack_indices,
)

VIT_KWARGS = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10)
SWIN_KWARGS = dict(img_size=32, window_size=2, embed_dim=32, depths=(1, 1), num_heads=(1, 2), num_classes=10)


# -- index packing -------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(m=st.integers(2, 128), count=st.integers(0, 300), seed=st.integers(0, 2**16))
def test_index_packing_is_exact_for_every_m(m, count, seed):
    bits = index_bits(m)
    assert bits == math.ceil(math.log2(m)) and (1 << bits) >= m
    indices = torch.randint(0, m, (count,), generator=torch.Generator().manual_seed(seed))
    packed = pack_indices(indices, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == packed_bytes(count, bits) == (count * bits + 7) // 8
    assert torch.equal(unpack_indices(packed, bits, count), indices)


def test_every_m_up_to_128_round_trips_its_extreme_indices():
    for m in range(2, 129):
        indices = torch.tensor([0, m - 1, m // 2, m - 1, 0])
        assert torch.equal(unpack_indices(pack_indices(indices, index_bits(m)), index_bits(m), 5), indices)


# -- round trips -------------------------------------------------------------------------------
def _sparse(model, pattern):
    """FF, Q, K and attention-out at `pattern`, V at another one: a fused qkv gets per-segment patterns."""
    other = "1:4" if pattern != "1:4" else "2:4"
    return pgfsparse.sparsify(model, {"ff": pattern, "qk": pattern, "v": other, "attn_out": pattern}, recipe="ste")


def _inputs(kind):
    g = torch.Generator().manual_seed(1)
    if kind == "t5":
        ids = torch.randint(0, 64, (2, 7), generator=g)
        return {"input_ids": ids, "decoder_input_ids": torch.randint(0, 64, (2, 5), generator=g)}
    return torch.randn(2, 3, 32, 32, generator=g)


def _out(model, x):
    with torch.no_grad():
        return model(**x).logits if isinstance(x, dict) else model(x)


MODELS = {
    "vit": (build_vit, lambda m: timm_builder("vit_tiny_patch16_224", **VIT_KWARGS)),
    "swin": (build_swin, lambda m: timm_builder("swinv2_tiny_window8_256", **SWIN_KWARGS)),
    "t5": (build_t5, builder_for),
}


@pytest.mark.parametrize("pattern", ["2:4", "1:8", "1:32"])
@pytest.mark.parametrize("kind", list(MODELS))
def test_export_load_round_trip_equals_the_strict_model(tmp_path, kind, pattern):
    build, builder = MODELS[kind]
    model = build()
    sparsifier = _sparse(model, pattern)
    x = _inputs(kind)
    with sparsifier.strict():
        expected = _out(model, x)
    strict = sparsifier.export_state_dict("strict")
    sizes = export_compressed(sparsifier, tmp_path / "m.safetensors", builder(model))
    loaded = load_compressed(tmp_path / "m.safetensors")
    assert not any(type(m).__module__.startswith("pgfsparse") for m in loaded.modules())  # plain layers
    state = loaded.state_dict()
    assert state.keys() == strict.keys()
    assert all(torch.equal(state[k], strict[k]) for k in strict)
    assert torch.equal(_out(loaded, x), expected)
    assert sizes.file < sizes.dense and sizes.theoretical <= sizes.file


def test_rows_no_pattern_covers_stay_dense(tmp_path):
    model = build_vit()
    sparsifier = pgfsparse.sparsify(model, {"q": "1:8"}, recipe="ste")  # K, V rows of qkv stay dense
    export_compressed(sparsifier, tmp_path / "m.safetensors", timm_builder("vit_tiny_patch16_224", **VIT_KWARGS))
    strict = sparsifier.export_state_dict("strict")
    loaded = load_compressed(tmp_path / "m.safetensors")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in strict.items())
    nm = load_compressed(tmp_path / "m.safetensors", kernels="nm")
    x = _inputs("vit")
    assert torch.allclose(_out(nm, x), _out(loaded, x), rtol=1e-5, atol=1e-5)


def test_a_chosen_dtype_halves_the_file(tmp_path):
    model = build_vit()
    sparsifier = _sparse(model, "1:8")
    builder = timm_builder("vit_tiny_patch16_224", **VIT_KWARGS)
    full = export_compressed(sparsifier, tmp_path / "a.safetensors", builder)
    half = export_compressed(sparsifier, tmp_path / "b.safetensors", builder, dtype="bf16")
    loaded = load_compressed(tmp_path / "b.safetensors")
    assert next(loaded.parameters()).dtype == torch.bfloat16
    strict = sparsifier.export_state_dict("strict")
    assert torch.equal(loaded.state_dict()["blocks.0.mlp.fc1.weight"], strict["blocks.0.mlp.fc1.weight"].bfloat16())
    assert half.file < 0.6 * full.file


# -- damaged files -----------------------------------------------------------------------------
@pytest.fixture
def exported(tmp_path):
    sparsifier = _sparse(build_vit(), "1:8")
    path = tmp_path / "m.safetensors"
    export_compressed(sparsifier, path, timm_builder("vit_tiny_patch16_224", **VIT_KWARGS))
    return path


def _one_line_error(path, match):
    with pytest.raises(ExportFileError, match=match) as info:
        load_compressed(path)
    assert "\n" not in str(info.value)


def test_truncated_file_is_one_line(exported):
    data = exported.read_bytes()
    for cut in (len(data) - 100, 4, 20):
        exported.write_bytes(data[:cut])
        _one_line_error(exported, "damaged or truncated")


def test_corrupt_bytes_are_one_line(exported):
    data = bytearray(exported.read_bytes())
    data[-50] ^= 0xFF  # inside the tensor data: only the checksum can tell
    exported.write_bytes(bytes(data))
    _one_line_error(exported, "checksum")
    exported.write_bytes(b"not a safetensors file at all" * 10)
    _one_line_error(exported, "damaged or truncated")


def test_other_safetensors_and_missing_files_are_one_line(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    _one_line_error(tmp_path / "plain.safetensors", "not a pgfsparse compressed export")
    _one_line_error(tmp_path / "missing.safetensors", "no export file")


# -- the N:M inference linear ------------------------------------------------------------------
@pytest.mark.parametrize("method,rows", [("gather", 5), ("csr", 5), ("auto", 1), ("auto", 9), ("auto", 600)])
@pytest.mark.parametrize("m", [8, 16, 32])
def test_nm_linear_matches_the_dense_masked_layer(method, rows, m):
    g = torch.Generator().manual_seed(m)
    out, inp, n = 48, 64, 1 if m > 8 else 2
    idx = torch.rand(out, inp // m, m, generator=g).argsort(-1)[..., :n].sort(-1).values
    vals = torch.randn(out, inp // m, n, generator=g)
    dense = torch.zeros(out, inp // m, m).scatter_(-1, idx, vals).reshape(out, inp)
    bias = torch.randn(out, generator=g)
    layer = NMLinear.from_segments(inp, [("nm", vals, idx, m)], bias=bias, method=method)
    assert torch.equal(layer.dense_weight(), dense)
    x = torch.randn(rows, 3, inp, generator=g)  # any leading shape
    ref = F.linear(x, dense, bias)
    assert ((layer(x) - ref).norm() / ref.norm()).item() < 1e-5
    assert torch.allclose(layer(x), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


def test_auto_kernels_only_where_they_win(tmp_path):
    model = build_vit()
    sparsifier = pgfsparse.sparsify(model, {"ff": "1:16", "attn_out": "1:8"}, recipe="ste")
    x = _inputs("vit")
    with sparsifier.strict():
        expected = _out(model, x)
    export_compressed(sparsifier, tmp_path / "m.safetensors", timm_builder("vit_tiny_patch16_224", **VIT_KWARGS))
    auto = load_compressed(tmp_path / "m.safetensors", kernels="auto")
    assert isinstance(auto.blocks[0].mlp.fc1, NMLinear) and isinstance(auto.blocks[1].mlp.fc2, NMLinear)
    assert type(auto.blocks[0].attn.proj) is torch.nn.Linear  # 1:8 lost at batch 1: kept dense
    got = _out(auto, x)
    assert ((got - expected).norm() / expected.norm()).item() < 1e-5


# -- 2:4 semi-structured planning (conversion itself needs CUDA) -------------------------------
def test_semi_structured_plan_picks_2_4_layers_of_kernel_shape():
    torch.manual_seed(0)
    good = torch.nn.Linear(64, 32)
    with torch.no_grad():
        good.weight.mul_(pgfsparse.nm_mask(good.weight, 2, 4))
    dense = torch.nn.Linear(64, 32)
    odd = torch.nn.Linear(48, 32)
    with torch.no_grad():
        odd.weight.mul_(pgfsparse.nm_mask(odd.weight, 2, 4))
    model = torch.nn.Sequential(good, dense, odd)
    plan = semi_structured.plan(model, torch.float16)
    assert plan == {"0": "", "1": "weight is not 2:4", "2": "shape 32x48 is not a multiple of the 32x64 tile"}
    assert semi_structured.plan(model, torch.float32)["0"].startswith("dtype float32")
    assert semi_structured.plan(model, torch.bfloat16)["0"] == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_semi_structured_without_cuda_says_so_in_one_line(exported):
    with pytest.raises(semi_structured.NoCudaError, match="need a CUDA GPU") as info:
        load_compressed(exported, kernels="semi_structured")
    assert "\n" not in str(info.value)
