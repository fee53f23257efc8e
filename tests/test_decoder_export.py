"""Exports of decoder LMs (issue 23): GPT-2's (in, out) Conv1D weights and Llama's GQA Linears round-trip exactly.

GPT-2's Conv1D layers are compressed as their (out, in) transpose ("transposed": true in the file's layers);
the tests check the model's own tensors, the stored values against a hand-worked Conv1D, and the N:M structure
of the plain HF export along each output column's inputs.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

import pgfsparse
from conftest import build_gpt2, build_llama
from pgfsparse.export import NMLinear, builder_for, export_compressed, load_compressed
from pgfsparse.export import format as fmt
from pgfsparse.export.compress import SegmentSpec
from pgfsparse.export.plain import export_hf

pytest.importorskip("transformers")

PATTERNS = {"ff": "1:4", "qkv": "2:4"}
VOCAB, SEQ = 50, 12


BUILDERS = {"gpt2": build_gpt2, "llama": build_llama}


def _ids(seed: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, SEQ), generator=torch.Generator().manual_seed(seed))


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@functools.lru_cache(maxsize=None)
def _trained(kind: str):
    """(kind, model, sparsifier) after SR-STE's first two steps: weights moved, masks set (built once per kind)."""
    model = BUILDERS[kind]()
    sparsifier = pgfsparse.sparsify(model, PATTERNS, recipe="srste", total_steps=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(2):
        sparsifier.step(step)
        ids = _ids(step)
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return kind, model, sparsifier


@pytest.fixture(params=list(BUILDERS))
def trained(request):
    return _trained(request.param)


def _strict(model, sparsifier, ids):
    with sparsifier.strict():
        return _logits(model, ids)


def test_compressed_round_trip_is_bit_exact(trained, tmp_path):
    kind, model, sparsifier = trained
    ids = _ids(7)
    expected = _strict(model, sparsifier, ids)
    strict = sparsifier.export_state_dict("strict")
    sizes = export_compressed(sparsifier, tmp_path / "m.safetensors", builder_for(model))
    loaded = load_compressed(tmp_path / "m.safetensors")
    assert type(loaded) is type(model)
    assert not any(type(m).__module__.startswith("pgfsparse") for m in loaded.modules())
    state = loaded.state_dict()
    assert state.keys() == strict.keys()
    assert all(torch.equal(state[k], strict[k]) for k in strict)  # every weight, bit for bit, in the model's shape
    assert torch.equal(_logits(loaded, ids), expected)
    assert sizes.file < sizes.dense
    meta, _, _ = fmt.read(tmp_path / "m.safetensors")
    if kind == "gpt2":
        fc = meta["layers"]["transformer.h.0.mlp.c_fc.weight"]
        assert fc["transposed"] is True and fc["shape"] == [128, 32] and fc["layout"] == "row"
        qkv = meta["layers"]["transformer.h.1.attn.c_attn.weight"]
        assert [(s["location"], s["rows"], s["n"], s["m"]) for s in qkv["segments"]] == [
            ("q", [0, 32], 2, 4),
            ("k", [32, 64], 2, 4),
            ("v", [64, 96], 2, 4),
        ]
        assert meta["version"] == fmt.TRANSPOSED_VERSION
        assert torch.equal(loaded.lm_head.weight, loaded.transformer.wte.weight)  # still one tied tensor
    else:
        k = meta["layers"]["model.layers.0.self_attn.k_proj.weight"]
        assert k["transposed"] is False and k["shape"] == [16, 32]  # GQA: 2 KV heads of 8
        assert meta["version"] == fmt.VERSION


def test_nm_kernels_stand_in_for_conv1d_and_linear(trained, tmp_path):
    kind, model, sparsifier = trained
    ids = _ids(8)
    expected = _strict(model, sparsifier, ids)
    export_compressed(sparsifier, tmp_path / "m.safetensors", builder_for(model))
    nm = load_compressed(tmp_path / "m.safetensors", kernels="nm")
    names = (
        ["transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj", "transformer.h.1.attn.c_attn"]
        if kind == "gpt2"
        else ["model.layers.0.mlp.gate_proj", "model.layers.0.mlp.down_proj", "model.layers.1.self_attn.k_proj"]
    )
    for name in names:
        layer = nm.get_submodule(name)
        assert isinstance(layer, NMLinear)
        assert torch.equal(layer.dense_weight(), _as_out_in(kind, sparsifier.export_state_dict()[f"{name}.weight"]))
    dense_attn_out = "transformer.h.0.attn.c_proj" if kind == "gpt2" else "model.layers.0.self_attn.o_proj"
    assert not isinstance(nm.get_submodule(dense_attn_out), NMLinear)  # attn_out was not sparsified
    # NMLinear sums the kept products in another order than the dense GEMM: equal within fp32 rounding.
    assert torch.allclose(_logits(nm, ids), expected, rtol=1e-5, atol=1e-5)


def _as_out_in(kind, weight):
    return weight.t() if kind == "gpt2" else weight


def test_hf_export_keeps_n_m_along_each_output_units_inputs(trained, tmp_path):
    import transformers
    from safetensors.torch import load_file

    kind, model, sparsifier = trained
    ids = _ids(9)
    expected = _strict(model, sparsifier, ids)
    builder = builder_for(model)
    export_hf(sparsifier.export_state_dict("strict"), builder, tmp_path / "hf")
    reloaded = (
        getattr(transformers, builder["class"])
        .from_pretrained(str(tmp_path / "hf"), attn_implementation=builder["attn_implementation"])
        .eval()
    )
    assert torch.equal(_logits(reloaded, ids), expected)
    weights = load_file(str(tmp_path / "hf" / "model.safetensors"))  # plain HF keys
    for name, (n, m) in _sparse_weights(kind).items():
        # (out, in) with every group of m consecutive inputs of one output unit holding exactly n non-zeros
        w = _as_out_in(kind, weights[name])
        kept = (w.reshape(w.shape[0], -1, m) != 0).sum(-1)
        assert (kept == n).all(), name
    dense_key = "transformer.h.0.attn.c_proj.weight" if kind == "gpt2" else "model.layers.0.self_attn.o_proj.weight"
    assert bool((weights[dense_key] != 0).all())


def _sparse_weights(kind):
    if kind == "gpt2":
        prefix = "transformer.h.{}."
        names = {"mlp.c_fc": (1, 4), "mlp.c_proj": (1, 4), "attn.c_attn": (2, 4)}  # c_attn: Q, K, V column blocks
    else:
        prefix = "model.layers.{}."
        names = {f"mlp.{p}_proj": (1, 4) for p in ("gate", "up", "down")}
        names.update({f"self_attn.{p}_proj": (2, 4) for p in "qkv"})
    return {prefix.format(i) + f"{name}.weight": nm for i in range(2) for name, nm in names.items()}


def test_gpt2_c_fc_hf_export_has_one_non_zero_per_four_inputs_of_each_column(tmp_path):
    """The issue's acceptance, literally: in the (in, out) c_fc weight, inputs 4g..4g+3 of column j keep one."""
    from safetensors.torch import load_file

    _, model, sparsifier = _trained("gpt2")
    export_hf(sparsifier.export_state_dict("strict"), builder_for(model), tmp_path / "hf")
    c_fc = load_file(str(tmp_path / "hf" / "model.safetensors"))["transformer.h.0.mlp.c_fc.weight"]
    assert c_fc.shape == (32, 128)
    for column in range(128):
        for g in range(8):
            assert int((c_fc[4 * g : 4 * g + 4, column] != 0).sum()) == 1
    c_attn = load_file(str(tmp_path / "hf" / "model.safetensors"))["transformer.h.1.attn.c_attn.weight"]
    assert ((c_attn.reshape(8, 4, 96) != 0).sum(1) == 2).all()  # Q, K, V column blocks, all 2:4


# -- the transposed layer format on a hand-worked Conv1D (no sparsity engine needed) -------------
def _conv1d_weight():
    """(in=8, out=3) stored as GPT-2 does; 1:4 along the inputs of column 0 and 2, column 1 left dense.

    Column 0 keeps input 2 (-9) and input 5 (7); column 2 keeps input 3 (6) and input 4 (-8).
    """
    w = torch.tensor(
        [
            [1.0, 11.0, -2.0],
            [2.0, 12.0, 1.0],
            [-9.0, 13.0, 3.0],
            [3.0, 14.0, 6.0],
            [0.5, 15.0, -8.0],
            [7.0, 16.0, 2.0],
            [-1.0, 17.0, 1.0],
            [2.0, 18.0, 0.0],
        ]
    )
    keep = torch.zeros(8, 3, dtype=torch.bool)
    keep[[2, 5], 0] = True
    keep[:, 1] = True
    keep[[3, 4], 2] = True
    return w * keep, keep


def test_a_conv1d_weight_is_stored_per_output_and_read_back_in_its_own_shape(tmp_path):
    weight, keep = _conv1d_weight()
    segments = [SegmentSpec("ff", 0, 1, 1, 4), SegmentSpec("ff", 2, 3, 1, 4)]  # output units 0 and 2
    item = fmt.SparseWeight.from_model(weight, keep, "col", segments, out_dim=1)
    assert item.transposed and item.layout == "row" and item.weight.shape == (3, 8)
    fmt.write(tmp_path / "c.safetensors", {"c.weight": weight}, {"c.weight": item}, {"library": "test"})
    meta, state, stored = fmt.read(tmp_path / "c.safetensors")
    assert torch.equal(state["c.weight"], weight) and state["c.weight"].is_contiguous()
    assert meta["version"] == "2" and meta["layers"]["c.weight"]["transposed"] is True
    assert torch.equal(stored["nm/c.weight/0/values"], torch.tensor([[[-9.0], [7.0]]]))
    assert torch.equal(stored["nm/c.weight/2/values"], torch.tensor([[[6.0], [-8.0]]]))
    assert torch.equal(stored["nm/c.weight/1/dense"], torch.arange(11.0, 19.0).reshape(1, 8))  # column 1, dense


def test_files_written_before_transposed_layers_still_read(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    weight, keep = _conv1d_weight()
    linear, mask = weight.t().contiguous(), keep.t().contiguous()  # an (out, in) Linear with the same groups
    item = fmt.SparseWeight(linear, mask, "row", [SegmentSpec("ff", 0, 1, 1, 4), SegmentSpec("ff", 2, 3, 1, 4)])
    fmt.write(tmp_path / "new.safetensors", {"l.weight": linear}, {"l.weight": item}, {"library": "test"})
    with safe_open(str(tmp_path / "new.safetensors"), framework="pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    assert meta["version"] == "1"  # no transposed layer: older pgfsparse can still read it
    layers = json.loads(meta["layers"])
    del layers["l.weight"]["transposed"]
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata={**meta, "layers": json.dumps(layers)})
    _, state, _ = fmt.read(tmp_path / "old.safetensors")
    assert torch.equal(state["l.weight"], linear)


def test_a_weight_that_cannot_be_transposed_is_refused():
    with pytest.raises(ValueError, match="cannot be exported"):
        fmt.SparseWeight.from_model(torch.zeros(4, 2, 3, 3), torch.ones(4, 2, 3, 3), "conv", [], out_dim=1)


# -- pgf-export on decoder run dirs --------------------------------------------------------------
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_pgf_export_checks_every_format_of_a_decoder_run(tmp_path, capsys, family):
    pytest.importorskip("hydra")
    from pgfsparse.cli.pgf_export import main
    from test_cli import train

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = "the quick brown fox jumps over the lazy dog. " * 8
    (corpus / "train.txt").write_text("\n".join([text] * 6) + "\n")
    (corpus / "validation.txt").write_text(text + "\n")
    run_dir = tmp_path / "run"
    train(
        run_dir,
        f"model={family}",
        "data=text",
        f"data.path={corpus}",
        "data.block_size=16",
        "data.batch_size=4",
        "data.eval_batch_size=4",
        "model.tokenizer.kind=char",
        "sparsity=1:4",
        "sparsity.qkv=2:4",
        "recipe=srste",
        "budget.steps=2",
    )
    assert main([str(run_dir), "--check"]) == 0
    assert "check passed" in capsys.readouterr().out
    assert main([str(run_dir), "--format", "hf", "--check"]) == 0
    assert "check passed" in capsys.readouterr().out
    model = load_compressed(run_dir / "model.nm.safetensors")
    hf = Path(run_dir / "hf" / "model.safetensors")
    from safetensors.torch import load_file

    weights = load_file(str(hf))
    for name, (n, m) in _sparse_weights(family).items():
        assert torch.equal(weights[name], model.state_dict()[name]), name  # the two formats hold the same weights
        w = _as_out_in(family, weights[name])
        assert ((w.reshape(w.shape[0], -1, m) != 0).sum(-1) == n).all(), name
