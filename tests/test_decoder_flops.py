"""FLOP accounting for decoder language models: GPT-2 (Conv1D layers, fused c_attn) and Llama (separate
q/k/v projections, grouped-query attention), against FlopCounterMode and against hand computations
from the layer shapes.

FlopCounterMode counts 0 FLOPs for scaled_dot_product_attention on CPU, so references run with
attn_implementation "eager"; the counter itself reads only shapes and must not care which one runs.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import pgfsparse
from conftest import build_gpt2, build_llama
from pgfsparse.flops.counter import FlopCounter, measure_forward_flops, steps_for_flop_budget

TOKENS = 8  # one sequence of 8 token ids
WIDTH, VOCAB = 32, 50


BUILDERS = {"gpt2": build_gpt2, "llama": build_llama}


def token_ids(batch=1):
    return {"input_ids": torch.randint(0, VOCAB, (batch, TOKENS), generator=torch.Generator().manual_seed(0))}


def reference_forward(model, kwargs):
    with FlopCounterMode(display=False) as mode, torch.no_grad():
        model(**kwargs)
    return mode.get_total_flops()


def reference_train_step(model, kwargs):
    model.train()
    with FlopCounterMode(display=False) as mode:
        model(**kwargs).logits.float().square().mean().backward()
    return mode.get_total_flops()


def relative_error(value, reference):
    return abs(value - reference) / reference


def matmul(n_in, n_out, rows=TOKENS):
    """Forward FLOPs of an (n_in -> n_out) projection over `rows` positions."""
    return 2 * n_in * n_out * rows


ATTENTION = 4 * TOKENS * TOKENS * WIDTH  # QK^T + AV over all heads; the causal mask does not shorten them
LM_HEAD = matmul(WIDTH, VOCAB)


# -- forward FLOPs ------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_forward_matches_flop_counter_mode_whichever_attention_runs(family):
    model = BUILDERS[family]()
    assert model.config._attn_implementation == "sdpa"
    with_sdpa = measure_forward_flops(model, (), token_ids())
    model.set_attn_implementation("eager")
    with_eager = measure_forward_flops(model, (), token_ids())
    reference = reference_forward(model, token_ids())
    assert relative_error(with_eager.total, reference) < 1e-3  # measured: 0.0%
    assert with_sdpa == with_eager


def test_gpt2_table_names_conv1d_layers_and_attention():
    flops = measure_forward_flops(build_gpt2(), (), token_ids())
    block = {
        "attn.c_attn": matmul(WIDTH, 3 * WIDTH),
        "attn.c_proj": matmul(WIDTH, WIDTH),
        "mlp.c_fc": matmul(WIDTH, 4 * WIDTH),
        "mlp.c_proj": matmul(4 * WIDTH, WIDTH),
    }
    expected = {f"transformer.h.{i}.{name}": value for i in range(2) for name, value in block.items()}
    assert flops.per_layer == {**expected, "lm_head": LM_HEAD}
    assert flops.per_attention == {"transformer.h.0.attn": ATTENTION, "transformer.h.1.attn": ATTENTION}


def test_llama_grouped_query_attention_costs_full_width():
    """K/V projections are half width (2 of 4 heads), but K and V are repeated to every query head."""
    flops = measure_forward_flops(build_llama(), (), token_ids())
    layer = {
        "self_attn.q_proj": matmul(WIDTH, WIDTH),
        "self_attn.k_proj": matmul(WIDTH, WIDTH // 2),
        "self_attn.v_proj": matmul(WIDTH, WIDTH // 2),
        "self_attn.o_proj": matmul(WIDTH, WIDTH),
        "mlp.gate_proj": matmul(WIDTH, 64),
        "mlp.up_proj": matmul(WIDTH, 64),
        "mlp.down_proj": matmul(64, WIDTH),
    }
    expected = {f"model.layers.{i}.{name}": value for i in range(2) for name, value in layer.items()}
    assert flops.per_layer == {**expected, "lm_head": LM_HEAD}
    assert flops.per_attention == {"model.layers.0.self_attn": ATTENTION, "model.layers.1.self_attn": ATTENTION}


def test_gpt2_cross_attention_reads_queries_from_q_attn():
    """With add_cross_attention, c_attn makes keys and values of the encoder states, q_attn the queries."""
    model = build_gpt2(add_cross_attention=True)
    model.set_attn_implementation("eager")
    kwargs = {**token_ids(), "encoder_hidden_states": torch.randn(1, 5, WIDTH)}
    flops = measure_forward_flops(model, (), kwargs)
    assert flops.per_attention["transformer.h.0.crossattention"] == 4 * TOKENS * 5 * WIDTH
    assert flops.per_layer["transformer.h.0.crossattention.c_attn"] == matmul(WIDTH, 2 * WIDTH, rows=5)
    assert relative_error(flops.total, reference_forward(model, kwargs)) < 1e-3  # measured: 0.0%


# -- training FLOPs -----------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_dense_train_step_matches_flop_counter_mode_forward_backward(family):
    """The first layers read embeddings, which need gradients: 3x forward is exact."""
    batch = 2
    model = BUILDERS[family]()
    model.set_attn_implementation("eager")
    counter = FlopCounter(model, (), token_ids(), examples_per_step=batch)
    assert relative_error(counter.step_train_flops(0), reference_train_step(model, token_ids(batch))) < 1e-3


def sparse_gpt2(pattern, examples_per_step=1):
    model = build_gpt2()
    # srste over 10 steps: floor(0.05 * 10) = 0 dense steps, so every step is sparse at N/M
    sparsifier = pgfsparse.sparsify(model, pattern, recipe="srste", total_steps=10)
    return FlopCounter(model, (), token_ids(), sparsifier=sparsifier, examples_per_step=examples_per_step)


def charged(density, forward):
    """d F forward + d F input gradient + F weight gradient."""
    return (2 * density + 1) * forward


def test_sparse_gpt2_step_follows_the_rule():
    counter = sparse_gpt2({"ff": "1:4", "qkv": "2:4"})
    third = matmul(WIDTH, WIDTH)  # each of c_attn's Q, K, V column blocks
    block = (
        3 * charged(2 / 4, third)  # c_attn
        + 3 * matmul(WIDTH, WIDTH)  # attn.c_proj: dense
        + charged(1 / 4, matmul(WIDTH, 4 * WIDTH))  # mlp.c_fc
        + charged(1 / 4, matmul(4 * WIDTH, WIDTH))  # mlp.c_proj
        + 3 * ATTENTION
    )
    assert counter.step_train_flops(0) == pytest.approx(2 * block + 3 * LM_HEAD, rel=1e-12)
    assert counter.step_train_flops(9) == counter.step_train_flops(0)
    inference = 3 * (2 / 4) * third + matmul(WIDTH, WIDTH) + (1 / 4) * 2 * matmul(WIDTH, 4 * WIDTH) + ATTENTION
    assert counter.inference_flops() == pytest.approx(2 * inference + LM_HEAD, rel=1e-12)


def test_sparse_gpt2_c_attn_is_split_by_columns():
    """Q and K sparse, V dense: each is a third of c_attn's FLOPs (its columns, not its rows)."""
    counter = sparse_gpt2({"qk": "2:4"})
    third = matmul(WIDTH, WIDTH)
    saved_per_block = 2 * third * 2 * (1 - 2 / 4)  # Q and K: forward and input gradient at 2/4
    assert counter.step_train_flops(0) == pytest.approx(3 * counter.forward.total - 2 * saved_per_block, rel=1e-12)


def test_train_flops_budget_on_a_sparse_gpt2():
    counter = sparse_gpt2({"ff": "1:4", "qkv": "2:4"}, examples_per_step=4)
    for budget in (1e7, 3.3e8, counter.run_train_flops(57), counter.run_train_flops(57) + 1):
        steps = steps_for_flop_budget(budget, counter)
        assert counter.run_train_flops(steps - 1) < budget <= counter.run_train_flops(steps)
    assert steps_for_flop_budget(counter.run_train_flops(57), counter) == 57
