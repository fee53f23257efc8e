"""Whole-model one-shot pruning (pgfsparse.oneshot.prune_model): block order, exact N:M everywhere, determinism.

The block-order test computes its expectation independently: it runs the tiny model's pieces by hand, prunes the first
block with the per-layer function, and accumulates X^T X of the second block's inputs itself. The N:M checks count
the kept weights of every group directly on the stored weights (Conv1D columns included), not through the engine.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from conftest import build_gpt2, build_llama
from pgfsparse.oneshot import block_key, prune_model, sparsegpt_nm, wanda_nm
from pgfsparse.sparsity.masked_weight import output_dim
from pgfsparse.sparsity.masks import nm_mask
from pgfsparse.sparsity.targets import find_layers, resolve_layer_map, resolve_patterns

FF_MAP = {"ff": [r"(^|\.)blocks\.\d+\.mlp\.fc[12]$"]}


class Block(nn.Module):
    """x + fc2(gelu(fc1(x))): a residual FF block, enough for the order of calibration to matter."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential()
        self.mlp.fc1 = nn.Linear(width, 2 * width)
        self.mlp.act = nn.GELU()
        self.mlp.fc2 = nn.Linear(2 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(x)


class TwoBlocks(nn.Module):
    """stem (dense) -> 2 blocks -> head (dense), on (batch, tokens, 6) inputs."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Linear(6, width)
        self.blocks = nn.ModuleList([Block(width), Block(width)])
        self.head = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def two_blocks(seed: int = 0) -> TwoBlocks:
    torch.manual_seed(seed)
    return TwoBlocks()


def calibration_batches(seed: int = 1, count: int = 3) -> list:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 5, 6, generator=g) for _ in range(count)]


def gram(inputs: list) -> torch.Tensor:
    """X^T X of all rows of the given (..., in) tensors, in float64."""
    rows = torch.cat([x.reshape(-1, x.shape[-1]) for x in inputs]).double()
    return rows.T @ rows


def assert_one_line(error: pytest.ExceptionInfo) -> None:
    message = str(error.value)
    assert message and "\n" not in message, message


# ---------------------------------------------------------------------------
# block order: the second block is calibrated on the already-pruned first block's output
# ---------------------------------------------------------------------------
def expected_second_block_hessians(model: TwoBlocks, batches: list, prune_first: bool) -> tuple:
    """(H of blocks.1.mlp.fc1, H of blocks.1.mlp.fc2), with block 0 pruned by SparseGPT 2:4 first or left dense."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        first = model.blocks[0].mlp
        inputs = [model.stem(x) for x in batches]
        if prune_first:
            h1 = gram(inputs)
            h2 = gram([torch.nn.functional.gelu(first.fc1(x)) for x in inputs])  # fc2 sees the dense fc1
            first.fc1.weight.copy_(sparsegpt_nm(first.fc1.weight, h1, 2, 4)[0])
            first.fc2.weight.copy_(sparsegpt_nm(first.fc2.weight, h2, 2, 4)[0])
        second_inputs = [x + first.fc2(torch.nn.functional.gelu(first.fc1(x))) for x in inputs]
        second = model.blocks[1].mlp
        return gram(second_inputs), gram([torch.nn.functional.gelu(second.fc1(x)) for x in second_inputs])


def test_second_block_is_calibrated_on_the_pruned_first_block():
    model, batches = two_blocks(), calibration_batches()
    dense = copy.deepcopy(model)
    report = prune_model(model, "2:4", "sparsegpt", batches, layer_map=FF_MAP)

    assert report.blocks == [["blocks.0.mlp.fc1", "blocks.0.mlp.fc2"], ["blocks.1.mlp.fc1", "blocks.1.mlp.fc2"]]
    pruned_h = expected_second_block_hessians(dense, batches, prune_first=True)
    dense_h = expected_second_block_hessians(dense, batches, prune_first=False)
    assert not torch.allclose(pruned_h[0], dense_h[0], rtol=1e-3)  # the order matters on this model
    second = dense.blocks[1].mlp
    for layer, h_pruned, h_dense in zip(("fc1", "fc2"), pruned_h, dense_h):
        got = getattr(model.blocks[1].mlp, layer).weight
        want = sparsegpt_nm(getattr(second, layer).weight, h_pruned, 2, 4)[0]
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(got, sparsegpt_nm(getattr(second, layer).weight, h_dense, 2, 4)[0], atol=1e-4)
    assert report.calibration_rows == dict.fromkeys(sum(report.blocks, []), 3 * 2 * 5)
    assert all(s.error is not None and 0 < s.error < 1 for s in report.segments)


def test_wanda_second_block_mask_and_early_stopped_forwards():
    """Wanda's mask of block 1 uses the pruned block 0's output norms; block 0's forwards stop at block 1."""
    model, batches = two_blocks(), calibration_batches()
    dense = copy.deepcopy(model)
    model.train()
    report = prune_model(model, "1:4", "wanda", batches, layer_map=FF_MAP)
    assert model.training and model.blocks[1].mlp.fc1.training  # train mode restored

    with torch.no_grad():
        inputs = [dense.stem(x) for x in batches]
        first = dense.blocks[0].mlp
        norms = gram(inputs).diagonal().sqrt()
        hidden_norms = gram([torch.nn.functional.gelu(first.fc1(x)) for x in inputs]).diagonal().sqrt()
        first.fc1.weight.mul_(wanda_nm(first.fc1.weight, norms, 1, 4))
        first.fc2.weight.mul_(wanda_nm(first.fc2.weight, hidden_norms, 1, 4))
        second_inputs = [first(x) + x for x in inputs]
        w = dense.blocks[1].mlp.fc1.weight
    expected = w * wanda_nm(w, gram(second_inputs).diagonal().sqrt(), 1, 4)
    torch.testing.assert_close(model.blocks[1].mlp.fc1.weight, expected, rtol=1e-6, atol=1e-7)

    # 1 order pass + 3 batches for each of the 2 blocks; block 0's run 2 of the 4 matched layers' calls
    assert report.forwards == 1 + 2 * 3
    assert report.forward_equivalents == pytest.approx(1 + 3 * 0.5 + 3 * 1.0)
    assert all(s.error is None for s in report.segments)


def test_block_key():
    assert block_key("blocks.3.mlp.fc1") == "blocks.3"
    assert block_key("layers.1.blocks.0.attn.qkv") == "layers.1.blocks.0"
    assert block_key("transformer.h.1.attn.c_attn") == "transformer.h.1"
    assert block_key("model.layers.0.self_attn.q_proj") == "model.layers.0"
    assert block_key("encoder.block.2.layer.0.SelfAttention.q") == "encoder.block.2.layer.0"
    assert block_key("blocks.1.mlp.0") == "blocks.1"  # the layer's own index does not split its block
    assert block_key("head") == "head"


# ---------------------------------------------------------------------------
# every sparse location of the real layouts ends exactly N:M
# ---------------------------------------------------------------------------
def build(family: str):
    torch.manual_seed(0)
    tokens = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(3))
    if family == "vit":
        import timm

        model = timm.create_model(
            "vit_tiny_patch16_224", img_size=16, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3
        )
        batches = [torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(s)) for s in (4, 5)]
    elif family == "swin":  # Swin-V2 applies attn.qkv's weight with F.linear: calibrated on the attention's input
        import timm

        model = timm.create_model(
            "swinv2_tiny_window8_256",
            img_size=32,
            window_size=2,
            embed_dim=32,
            depths=(1, 1),
            num_heads=(1, 2),
            num_classes=3,
        )
        batches = [torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(s)) for s in (4, 5)]
    elif family == "t5":
        from transformers import T5Config, T5ForConditionalGeneration

        config = T5Config(d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2, d_kv=16, vocab_size=50)
        model = T5ForConditionalGeneration(config)
        batches = [
            {"input_ids": tokens, "decoder_input_ids": tokens[:, :5]},
            {"input_ids": tokens.flip(0)[:, :6], "decoder_input_ids": tokens[:, 2:]},
        ]
    elif family == "gpt2":
        model = build_gpt2()
        batches = [tokens, tokens.flip(1)]
    else:
        model = build_llama()
        batches = [tokens, tokens.flip(1)]
    return model.eval(), batches


PATTERNS = {"ff": "2:4", "qkv": "1:4", "v": "1:8"}  # Q, K at 1:4 and V at 1:8: GPT-2's c_attn gets three patterns


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
@pytest.mark.parametrize("family", ["vit", "swin", "t5", "gpt2", "llama"])
def test_every_location_ends_exactly_nm_and_the_rest_is_unchanged(family, method):
    model, batches = build(family)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = prune_model(model, PATTERNS, method, batches)

    matches = find_layers(model, resolve_layer_map(model, None), resolve_patterns(PATTERNS))
    patterns = {"ff": (2, 4), "q": (1, 4), "k": (1, 4), "v": (1, 8)}
    changed = set()
    for match in matches:
        weight = match.module.weight.detach()
        stored = weight if output_dim(match.module) == 0 else weight.T  # (out, in), the test's own transpose
        for location, rows in match.blocks:
            n, m = patterns[location]
            groups = stored[rows].reshape(rows.stop - rows.start, -1, m)
            assert bool(((groups != 0).sum(dim=-1) == n).all()), (match.name, location)
        changed.add(f"{match.name}.weight")
    assert {(s.layer, s.location) for s in report.segments} == {(m.name, loc) for m in matches for loc, _ in m.blocks}
    assert len(matches) == {"vit": 6, "swin": 6, "t5": 26, "gpt2": 6, "llama": 12}[family]
    after = model.state_dict()
    for key, value in before.items():  # embeddings, heads, norms, biases, attn_out (not targeted): untouched
        if key not in changed:
            assert torch.equal(after[key], value), key
    if family == "gpt2":  # tied lm_head and wte: both untouched
        assert torch.equal(after["lm_head.weight"], before["lm_head.weight"])


def test_t5_blocks_follow_the_forward_encoder_then_decoder():
    model, batches = build("t5")
    report = prune_model(model, "2:4", "wanda", batches, targets=["ff", "qkv"])
    keys = [block_key(block[0]) for block in report.blocks]
    assert keys[:4] == [f"encoder.block.{b}.layer.{s}" for b in (0, 1) for s in (0, 1)]
    assert keys[4:] == [f"decoder.block.{b}.layer.{s}" for b in (0, 1) for s in (0, 1, 2)]
    encoder_tokens = 2 * 8 + 2 * 6
    assert report.calibration_rows["decoder.block.1.layer.1.EncDecAttention.k"] == encoder_tokens
    assert report.calibration_rows["decoder.block.1.layer.1.EncDecAttention.q"] == 2 * 5 + 2 * 6


# ---------------------------------------------------------------------------
# magnitude, determinism, bad input
# ---------------------------------------------------------------------------
def test_magnitude_is_nm_mask_applied_once_and_needs_no_calibration():
    model, _ = build("gpt2")
    dense = copy.deepcopy(model)
    report = prune_model(model, PATTERNS, "magnitude")
    assert report.forwards == 0 and report.forward_equivalents == 0
    matches = find_layers(dense, resolve_layer_map(dense, None), resolve_patterns(PATTERNS))
    patterns = {"ff": (2, 4), "q": (1, 4), "k": (1, 4), "v": (1, 8)}
    pruned = dict(model.named_modules())
    for match in matches:
        expected = match.module.weight.detach().clone()
        for location, rows in match.blocks:
            segment = expected[:, rows]  # Conv1D (in, out): groups of M run down a column ("col" layout)
            segment.mul_(nm_mask(segment, *patterns[location], "col"))
        assert torch.equal(pruned[match.name].weight, expected), match.name


def test_same_batches_give_identical_weights():
    first, batches = build("llama")
    second, _ = build("llama")
    prune_model(first, PATTERNS, "sparsegpt", batches)
    prune_model(second, PATTERNS, "sparsegpt", [b.clone() for b in batches])
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), key


def test_bad_input_is_refused_in_one_line():
    model, batches = two_blocks(), calibration_batches()
    dense = copy.deepcopy(model.state_dict())
    cases = [
        (dict(pattern="2:4", method="obs", batches=batches), "unknown one-shot method 'obs'"),
        (dict(pattern="2:4", method="wanda", batches=[]), "batches is empty"),
        (dict(pattern="2:4", method="sparsegpt", batches=None), "batches is empty"),
        (dict(pattern="1:4", method="sparsegpt", batches=batches, blocksize=6), "blocksize 6 is not a multiple of M=4"),
        (dict(pattern="1:5", method="wanda", batches=batches), "not a multiple of M=5"),
        (dict(pattern="dense", method="wanda", batches=batches), "every location is dense"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message) as error:
            prune_model(model, layer_map=FF_MAP, **kwargs)
        assert_one_line(error)
    for key, value in model.state_dict().items():  # refused before any pruning
        assert torch.equal(value, dense[key]), key
    with pytest.raises(ValueError, match="never ran in the calibration forward") as error:
        prune_model(model, "2:4", "wanda", batches, layer_map=FF_MAP, forward=lambda model, x: model.stem(x))
    assert_one_line(error)
