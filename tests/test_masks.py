"""N:M keep-masks: hand-worked examples, the tie rule, layouts, dtypes, errors, properties.

Every expected mask below was worked out by hand (or by the brute-force
reference `reference_mask`, which is written here independently of the code
under test: a stable sort of each group by (-|w|, index)).
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgfsparse.sparsity import masks
from pgfsparse.sparsity.masks import IndivisibleError, nm_mask, top_n_per_group

T, F = True, False
HALF_DTYPES = (torch.bfloat16, torch.float16)
ALL_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def mask_of(rows):
    return torch.tensor(rows, dtype=torch.bool)


def reference_row_mask(values, n, m):
    """Brute force on plain Python numbers: per group, keep the first n of a stable sort by (-|w|, index)."""
    keep = [False] * len(values)
    for start in range(0, len(values), m):
        order = sorted(range(m), key=lambda i: (-abs(values[start + i]), i))
        for i in order[:n]:
            keep[start + i] = True
    return keep


def reference_mask(rows, n, m):
    return [reference_row_mask(row, n, m) for row in rows]


# ---------------------------------------------------------------------------
# row layout, hand-worked
# ---------------------------------------------------------------------------
W_2x8 = [
    [1.0, -2.0, 3.0, -4.0, 0.5, -0.25, 0.125, -8.0],
    [-5.0, 0.5, 0.25, 6.0, 7.0, -7.5, 0.0, 1.0],
]


def test_docstring_example_2_4():
    w = torch.tensor([[0.1, -3.0, 2.0, 0.5]])
    assert torch.equal(nm_mask(w, 2, 4), mask_of([[F, T, T, F]]))


def test_row_2_4_two_groups_per_row():
    expected = [
        [F, F, T, T, T, F, F, T],  # |1,2,3,4| keeps 3,-4 ; |.5,.25,.125,8| keeps .5,-8
        [T, F, F, T, T, T, F, F],  # |5,.5,.25,6| keeps -5,6 ; |7,7.5,0,1| keeps 7,-7.5
    ]
    assert torch.equal(nm_mask(torch.tensor(W_2x8), 2, 4), mask_of(expected))


def test_row_2_4_negative_magnitude_beats_larger_positive_value():
    # -4 has the largest magnitude although it is the smallest value; -3 beats 2.
    w = torch.tensor([[2.0, -4.0, 1.0, -3.0]])
    assert torch.equal(nm_mask(w, 2, 4), mask_of([[F, T, F, T]]))


def test_row_1_4():
    w = torch.tensor([[0.5, -9.0, 2.0, 3.0, -1.0, 0.25, 0.75, -0.5]])
    assert torch.equal(nm_mask(w, 1, 4), mask_of([[F, T, F, F, T, F, F, F]]))


def test_row_3_8():
    expected = [
        [F, F, T, T, F, F, F, T],  # -8, -4, 3
        [F, F, F, T, T, T, F, F],  # -7.5, 7, 6
    ]
    assert torch.equal(nm_mask(torch.tensor(W_2x8), 3, 8), mask_of(expected))


def test_row_1_8():
    expected = [
        [F, F, F, F, F, F, F, T],  # -8
        [F, F, F, F, F, T, F, F],  # -7.5 beats 7
    ]
    assert torch.equal(nm_mask(torch.tensor(W_2x8), 1, 8), mask_of(expected))


def test_row_1_8_on_a_16_wide_row_two_groups():
    w = torch.tensor([[0, 0, 0, 0, 0, 0, 0, -1.0, 3, 0, 0, 0, 0, 0, 0, -3.5]])
    expected = [[F] * 7 + [T] + [F] * 7 + [T]]
    assert torch.equal(nm_mask(w, 1, 8), mask_of(expected))


def test_row_layout_on_3d_and_1d_weights_uses_the_last_dim():
    w = torch.tensor([[[1.0, 4.0, 2.0, 3.0]], [[-4.0, 1.0, 3.0, 2.0]]])  # (2, 1, 4)
    assert torch.equal(nm_mask(w, 2, 4), mask_of([[[F, T, F, T]], [[T, F, T, F]]]))
    v = torch.tensor([3.0, -1.0, 0.0, 2.0, 0.5, -6.0])
    assert torch.equal(nm_mask(v, 1, 2), mask_of([T, F, F, T, F, T]))


def test_mask_is_bool_same_shape_and_does_not_touch_weight_or_autograd():
    w = torch.tensor(W_2x8, requires_grad=True)
    before = w.detach().clone()
    mask = nm_mask(w, 2, 4)
    assert mask.dtype == torch.bool
    assert mask.shape == w.shape
    assert not mask.requires_grad
    assert torch.equal(w.detach(), before)


# ---------------------------------------------------------------------------
# tie rule: among equal |w| the lowest index in the group wins
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "row, expected",
    [
        ([2.0, -2.0, 1.0, 2.0], [T, F, F, F]),
        ([1.0, 3.0, -3.0, 3.0], [F, T, F, F]),
        ([-0.5, 0.5, 0.25, 0.0], [T, F, F, F]),  # sign does not matter, index does
        ([0.0, 0.0, 0.0, 0.0], [T, F, F, F]),  # all-zero group
        ([0.0, -0.0, 0.0, -0.0], [T, F, F, F]),  # signed zeros tie too
    ],
)
def test_tie_rule_n1_argmax_path(row, expected):
    for dtype in ALL_DTYPES:
        assert torch.equal(nm_mask(torch.tensor([row], dtype=dtype), 1, 4), mask_of([expected])), dtype


@pytest.mark.parametrize(
    "row, expected",
    [
        ([1.0, 1.0, 1.0, 1.0], [T, T, F, F]),
        ([0.5, -2.0, 2.0, -2.0], [F, T, T, F]),
        ([3.0, 1.0, -1.0, 1.0], [T, T, F, F]),
        ([0.0, 0.0, 5.0, 0.0], [T, F, T, F]),
        ([0.0, 0.0, 0.0, 0.0], [T, T, F, F]),  # all-zero group
        ([-1.0, 2.0, 1.0, -2.0], [F, T, F, T]),  # no tie at the cut: both 2s
    ],
)
def test_tie_rule_n2_m4(row, expected):
    for dtype in ALL_DTYPES:
        assert torch.equal(nm_mask(torch.tensor([row], dtype=dtype), 2, 4), mask_of([expected])), dtype


def _positions(m, kept):
    return [i in kept for i in range(m)]


@pytest.mark.parametrize(
    "row, kept",
    [
        ([0.0] * 16, {0, 1, 2}),  # all-zero group
        # 5 and -5 above the cut, then four 1s tie at the cut: the lowest index (2) wins
        ([5, 0, 1, 0, -1, 0, 1, 0, 0, 0, 0, 0, -5, 0, 0, 1], {0, 2, 12}),
        # four 3s, all at the cut
        ([0, 3, 3, -3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], {1, 2, 3}),
        # exactly three largest, no tie at the cut
        ([0, 1, 2, 0, -2, 0, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0], {2, 4, 6}),
        # ties at the very end of the group
        ([0.5] * 13 + [4, 4, 4], {13, 14, 15}),
    ],
)
def test_tie_rule_n3_m16(row, kept):
    for dtype in ALL_DTYPES:
        w = torch.tensor([row], dtype=dtype)
        assert torch.equal(nm_mask(w, 3, 16), mask_of([_positions(16, kept)])), dtype


def test_half_precision_ties_created_by_rounding_n1():
    # 1.0, 1.0001, 1.0002 are distinct in fp32 but all round to 1.0 in bf16 and fp16.
    w32 = torch.tensor([[0.5, 1.0, 1.0002, 1.0001]])
    assert torch.equal(nm_mask(w32, 1, 4), mask_of([[F, F, T, F]]))
    for dtype in HALF_DTYPES:
        assert torch.equal(nm_mask(w32.to(dtype), 1, 4), mask_of([[F, T, F, F]])), dtype


def test_half_precision_ties_created_by_rounding_n2_m4():
    w32 = torch.tensor([[1.0001, 0.25, 1.0, 1.0002]])
    assert torch.equal(nm_mask(w32, 2, 4), mask_of([[T, F, F, T]]))
    for dtype in HALF_DTYPES:
        assert torch.equal(nm_mask(w32.to(dtype), 2, 4), mask_of([[T, F, T, F]])), dtype


def test_half_precision_ties_created_by_rounding_n3_m16():
    row = [0.25] * 16
    row[3], row[7], row[9], row[14], row[15] = 1.0, -1.0001, 1.0002, -1.0003, 2.0
    w32 = torch.tensor([row])
    # fp32: 2.0 (15), 1.0003 (14), 1.0002 (9)
    assert torch.equal(nm_mask(w32, 3, 16), mask_of([_positions(16, {9, 14, 15})]))
    for dtype in HALF_DTYPES:
        # half: 2.0 (15), then four 1.0 at 3, 7, 9, 14 -> the two lowest indices
        assert torch.equal(nm_mask(w32.to(dtype), 3, 16), mask_of([_positions(16, {3, 7, 15})])), dtype


# ---------------------------------------------------------------------------
# column and conv layouts
# ---------------------------------------------------------------------------
def test_col_layout_groups_run_down_each_column():
    w = torch.tensor([[1.0, -4.0], [-3.0, 0.5], [2.0, 3.0], [0.25, -1.0]])  # (4, 2): rows not divisible by 4
    expected = [[F, T], [T, F], [T, T], [F, F]]
    assert torch.equal(nm_mask(w, 2, 4, layout="col"), mask_of(expected))


def test_col_layout_differs_from_row_layout():
    w = torch.tensor(
        [
            [9.0, 1.0, 2.0, 3.0],
            [0.0, 8.0, 1.0, 1.0],
            [1.0, 0.0, 7.0, 5.0],
            [6.0, 2.0, 0.0, 4.0],
        ]
    )
    col = [[T, F, F, F], [F, T, F, F], [F, F, T, T], [F, F, F, F]]
    row = [[T, F, F, F], [F, T, F, F], [F, F, T, F], [T, F, F, F]]
    assert torch.equal(nm_mask(w, 1, 4, layout="col"), mask_of(col))
    assert torch.equal(nm_mask(w, 1, 4, layout="row"), mask_of(row))
    assert torch.equal(nm_mask(w, 1, 4), mask_of(row))  # row is the default


def test_col_layout_two_groups_per_column_with_tie():
    w = torch.tensor([[2.0], [-2.0], [1.0], [0.0], [0.0], [0.0], [0.0], [0.0]])  # (8, 1), 1:4
    expected = [[T], [F], [F], [F], [T], [F], [F], [F]]
    assert torch.equal(nm_mask(w, 1, 4, layout="col"), mask_of(expected))


def test_conv_layout_groups_over_input_channels_first_innermost():
    # weight (out=1, in=2, kh=1, kw=2); with M=2 the channels-last groups pair in0/in1 at each kw.
    w = torch.tensor([[[[1.0, 4.0]], [[3.0, 5.0]]]])
    # kw=0: |1| vs |3| -> in1 ; kw=1: |4| vs |5| -> in1
    expected = [[[[F, F]], [[T, T]]]]
    assert torch.equal(nm_mask(w, 1, 2, layout="conv"), mask_of(expected))


def test_conv_layout_2x2_kernel_two_filters():
    # w[o, c, kh, kw]; per filter the order is (kh, kw, c): group 0 = kh 0, group 1 = kh 1 (for M = 4).
    w = torch.tensor(
        [
            [[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]],
            [[[-8.0, 1.0], [0.5, -2.0]], [[3.0, -0.25], [6.0, 7.0]]],
        ]
    )
    expected = [
        [[[F, F], [F, F]], [[T, T], [T, T]]],
        # kh0 group (c0 kw0, c1 kw0, c0 kw1, c1 kw1) = (-8, 3, 1, -.25) keeps -8, 3
        # kh1 group = (.5, 6, -2, 7) keeps 6, 7
        [[[T, F], [F, F]], [[T, F], [T, T]]],
    ]
    mask = nm_mask(w, 2, 4, layout="conv")
    assert mask.shape == w.shape and mask.dtype == torch.bool
    assert torch.equal(mask, mask_of(expected))


def test_conv_layout_conv1d_weight():
    w = torch.tensor([[[1.0, -6.0], [-2.0, 5.0]]])  # (out=1, in=2, k=2) -> order (k, c)
    # k=0: |1| vs |2| -> c1 ; k=1: |6| vs |5| -> c0
    assert torch.equal(nm_mask(w, 1, 2, layout="conv"), mask_of([[[F, T], [T, F]]]))


def test_conv_layout_1x1_equals_row_layout_over_inputs():
    w2d = torch.tensor([[0.5, -3.0, 2.0, 1.0, -1.0, 0.0, 0.25, 4.0]])
    w4d = w2d.reshape(1, 8, 1, 1)
    expected = [[F, T, T, F, T, F, F, T]]
    assert torch.equal(nm_mask(w2d, 2, 4), mask_of(expected))
    assert torch.equal(nm_mask(w4d, 2, 4, layout="conv"), mask_of(expected).reshape(1, 8, 1, 1))


# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("n, m", [(1, 4), (2, 4), (3, 8), (1, 8), (3, 16), (5, 32)])
def test_dtypes_agree_on_exactly_representable_values(n, m):
    g = torch.Generator().manual_seed(1000 * n + m)
    # quarters in [-16, 16]: exact in fp16, bf16, fp32 and fp64; ties are frequent
    w32 = torch.randint(-64, 65, (5, 2 * m), generator=g).float() / 4
    expected = mask_of(reference_mask(w32.tolist(), n, m))
    assert torch.equal(nm_mask(w32, n, m), expected)
    for dtype in ALL_DTYPES:
        w = w32.to(dtype)
        assert torch.equal(w.to(torch.float32), w32)  # the values really are exact
        mask = nm_mask(w, n, m)
        assert mask.dtype == torch.bool and mask.shape == w.shape
        assert torch.equal(mask, expected), dtype


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("n, m", [(0, 4), (4, 4), (5, 4), (-1, 4)])
def test_impossible_patterns_raise_value_error(n, m):
    with pytest.raises(ValueError, match="impossible") as info:
        nm_mask(torch.ones(2, 8), n, m)
    assert not isinstance(info.value, IndivisibleError)
    assert f"{n}:{m}" in str(info.value)


def test_indivisible_row_raises_naming_shape_and_pattern():
    with pytest.raises(IndivisibleError) as info:
        nm_mask(torch.ones(2, 6), 2, 4)
    message = str(info.value)
    assert "(2, 6)" in message and "2:4" in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)  # callers catching ValueError still catch it


def test_indivisible_col_and_conv_name_the_callers_shape():
    with pytest.raises(IndivisibleError) as info:
        nm_mask(torch.ones(6, 4), 1, 4, layout="col")  # 6 outputs per column
    assert "(6, 4)" in str(info.value) and "1:4" in str(info.value)
    with pytest.raises(IndivisibleError) as info:
        nm_mask(torch.ones(2, 3, 1, 2), 1, 4, layout="conv")  # 3 * 1 * 2 = 6 per filter
    assert "(2, 3, 1, 2)" in str(info.value) and "1:4" in str(info.value)


def test_other_shape_errors():
    with pytest.raises(IndivisibleError):
        nm_mask(torch.tensor(1.0), 1, 4)  # 0-d
    with pytest.raises(ValueError, match="col"):
        nm_mask(torch.ones(2, 4, 4), 1, 4, layout="col")
    with pytest.raises(ValueError, match="conv"):
        nm_mask(torch.ones(2, 4), 1, 4, layout="conv")
    with pytest.raises(ValueError, match="unknown mask layout"):
        nm_mask(torch.ones(2, 4), 1, 4, layout="rows")


def test_group_dim_size():
    assert masks.group_dim_size((3, 8), "row") == 8
    assert masks.group_dim_size((3, 8), "col") == 3
    assert masks.group_dim_size((5, 4, 3, 2), "conv") == 24
    with pytest.raises(ValueError):
        masks.group_dim_size((3, 8), "diag")


# ---------------------------------------------------------------------------
# properties (hypothesis)
# ---------------------------------------------------------------------------
FINITE = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_subnormal=False, width=32)
TIED = st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.0])


@st.composite
def weights(draw, values):
    m = draw(st.integers(2, 32))
    n = draw(st.integers(1, m - 1))
    rows = draw(st.integers(1, 6))
    groups = draw(st.integers(1, 6))
    data = draw(st.lists(st.lists(values, min_size=groups * m, max_size=groups * m), min_size=rows, max_size=rows))
    return data, n, m


def _check_invariants(rows, mask, n, m):
    for row, keep in zip(rows, mask):
        for start in range(0, len(row), m):
            kept = [abs(row[start + i]) for i in range(m) if keep[start + i]]
            pruned = [abs(row[start + i]) for i in range(m) if not keep[start + i]]
            assert len(kept) == n
            if pruned:
                assert min(kept) >= max(pruned)


@settings(max_examples=60, deadline=None)
@given(weights(FINITE))
def test_property_random_values(case):
    rows, n, m = case
    mask = nm_mask(torch.tensor(rows, dtype=torch.float32), n, m).tolist()
    _check_invariants(rows, mask, n, m)
    assert mask == reference_mask(rows, n, m)


@settings(max_examples=60, deadline=None)
@given(weights(TIED), st.sampled_from(ALL_DTYPES))
def test_property_heavily_tied_values_every_dtype(case, dtype):
    rows, n, m = case
    mask = nm_mask(torch.tensor(rows, dtype=dtype), n, m).tolist()
    _check_invariants(rows, mask, n, m)
    assert mask == reference_mask(rows, n, m)


@settings(max_examples=60, deadline=None)
@given(weights(st.one_of(FINITE, TIED)), st.sampled_from(ALL_DTYPES))
def test_property_every_internal_path_matches_reference(case, dtype):
    """top_n_per_group has an argmax path (n = 1), a path for 16/32-bit floats and one for
    float64 (n >= 2). Running every case for n = 1 and for its n, in its dtype and in
    float64, sends every input through all of them."""
    rows, n, m = case
    # the values as the dtype holds them, so that the Python reference sees the same numbers
    rows = torch.tensor(rows, dtype=torch.float32).to(dtype).to(torch.float64).tolist()
    for keep in sorted({1, n}):
        expected = reference_mask(rows, keep, m)
        for compute in (dtype, torch.float64):
            scores = torch.tensor(rows, dtype=compute).abs().reshape(len(rows), len(rows[0]) // m, m)
            mask = top_n_per_group(scores, keep)
            assert mask.dtype == torch.bool and mask.shape == scores.shape
            assert mask.reshape(len(rows), -1).tolist() == expected, (keep, compute)
