"""Each path of nm_mask (the compiled kernel; the pure-torch selection network, argmax/amin and
tie repair) against a simple reference.

The reference is a stable sort of each group by (-|w|, index): the documented
tie rule. Inputs are random and heavily tied, in float32/bfloat16/float16, in
the row, col and 3-D conv layouts, at every pattern the paths serve. Every test
runs twice: with the compiled kernel (skipped where it cannot be built) and
with the pure-torch paths alone.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgfsparse.sparsity import kernel, masks
from pgfsparse.sparsity.masks import nm_mask


@pytest.fixture(autouse=True, params=["kernel", "torch"])
def implementation(request, monkeypatch):
    """Run the test on the compiled kernel, then on the pure-torch paths."""
    if request.param == "kernel":
        if kernel.library() is None:
            pytest.skip("the compiled mask kernel cannot be built here")
    else:
        monkeypatch.setattr(masks, "_kernel_library", lambda: None)
    return request.param

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
PATTERNS = ((2, 4), (1, 4), (3, 4), (1, 8), (3, 8), (4, 8), (7, 8), (1, 16), (8, 16), (15, 16),
            (1, 32), (16, 32), (31, 32), (5, 32), (1, 128), (127, 128), (5, 128), (40, 96), (2, 6), (1, 6), (5, 6))


def simple_row_mask(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Stable sort of (-|w|) per group: among equals the lowest index comes first."""
    g = w.detach().double().abs().reshape(-1, m)
    order = torch.sort(-g, dim=1, stable=True).indices[:, :n]
    return torch.zeros_like(g, dtype=torch.bool).scatter_(1, order, True).reshape(w.shape)


def tied(shape, generator):
    """Few distinct magnitudes, both signs and signed zeros: ties everywhere."""
    levels = torch.tensor([0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.0, 1e-3])
    return levels[torch.randint(len(levels), shape, generator=generator)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m", PATTERNS)
@pytest.mark.parametrize("kind", ["random", "tied", "rounded"])
def test_row_layout_every_path_matches_simple_reference(n, m, dtype, kind):
    gen = torch.Generator().manual_seed(n * 1000 + m)
    shape = (12, 4 * m)
    if kind == "random":
        w = torch.randn(shape, generator=gen)
    elif kind == "tied":
        w = tied(shape, gen)
    else:  # coarse rounding: ties at the threshold in some groups only
        w = (torch.randn(shape, generator=gen) * 4).round() / 4
    w = w.to(dtype)
    assert torch.equal(nm_mask(w, n, m), simple_row_mask(w, n, m))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8), (8, 16), (15, 16), (16, 32)])
def test_col_and_conv_layouts_match_simple_reference(n, m, dtype):
    gen = torch.Generator().manual_seed(7)
    for w in (torch.randn(4 * m, 6, generator=gen), tied((4 * m, 6), gen)):
        w = w.to(dtype)
        assert torch.equal(nm_mask(w, n, m, layout="col"), simple_row_mask(w.t(), n, m).t())
    for w in (torch.randn(5, m, 3, 2, generator=gen), tied((5, m, 3, 2), gen)):
        w = w.to(dtype)
        expected = simple_row_mask(w.movedim(1, -1).reshape(5, -1), n, m).reshape(5, 3, 2, m).movedim(-1, 1)
        assert torch.equal(nm_mask(w, n, m, layout="conv"), expected)
    w = torch.randn(3, 2, 4 * m, generator=gen).to(dtype)  # 3-D weight, row layout: the last dim
    assert torch.equal(nm_mask(w, n, m), simple_row_mask(w, n, m))


def test_non_contiguous_weight_and_no_side_effects():
    w = torch.randn(64, 32, requires_grad=True)
    before = w.detach().clone()
    view = w.t()  # non-contiguous
    assert torch.equal(nm_mask(view, 2, 4), simple_row_mask(view, 2, 4))
    assert torch.equal(w.detach(), before)


@pytest.mark.parametrize("m", [4, 8, 16, 32])
def test_selection_network_finds_every_rank(m):
    gen = torch.Generator().manual_seed(m)
    keys = torch.randint(0, 5, (200, m), generator=gen, dtype=torch.int32)  # many ties
    ordered = keys.sort(dim=1).values
    for rank in range(m):
        (value,) = masks._rank_values(keys, (rank,))
        assert torch.equal(value, ordered[:, rank]), rank


VALUES = st.one_of(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, width=32),
                   st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.0, 2.0]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(PATTERNS), st.sampled_from(DTYPES), st.integers(1, 5), st.data())
def test_property_paths_match_simple_reference(pattern, dtype, groups, data):
    n, m = pattern
    rows = data.draw(st.integers(1, 4))
    values = data.draw(st.lists(VALUES, min_size=rows * groups * m, max_size=rows * groups * m))
    w = torch.tensor(values, dtype=torch.float32).reshape(rows, groups * m).to(dtype)
    assert torch.equal(nm_mask(w, n, m), simple_row_mask(w, n, m))
    assert torch.equal(nm_mask(w.t().contiguous(), n, m, layout="col"), simple_row_mask(w, n, m).t())
