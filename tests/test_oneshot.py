"""One-shot N:M pruning (pgfsparse.oneshot): magnitude, Wanda, SparseGPT and their calibration statistics.

Every expectation is computed independently of the code under test: Wanda's mask is worked out by hand below, and
SparseGPT is checked against `reference_sparsegpt`, a direct column-by-column Optimal Brain Surgeon written here with
a dense inverse of the remaining columns' Hessian at every column (no lazy blocks, no Cholesky factor), and masks
picked by a stable sort (no nm_mask).
"""

from __future__ import annotations

import pytest
import torch

from pgfsparse.oneshot import LayerStatistics, magnitude_nm, sparsegpt_nm, wanda_nm
from pgfsparse.sparsity.masks import nm_mask

T, F = True, False
PATTERNS = [(2, 4), (1, 4), (1, 8), (3, 8), (1, 16)]


def correlated_inputs(rows: int, features: int, seed: int, dead: tuple = ()) -> torch.Tensor:
    """X = Z A, scaled per feature (a few loud features, as in transformers), with the `dead` features all 0."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, features, generator=g, dtype=torch.float64)
    mixing = torch.randn(features, features, generator=g, dtype=torch.float64) / features**0.5
    scales = torch.exp(torch.randn(features, generator=g, dtype=torch.float64))
    x = (z @ mixing) * scales
    x[:, list(dead)] = 0
    return x


def top_n_by_sort(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Keep-mask of one group per row: the first n of a stable sort by (-score, index): ties to the lowest index."""
    keep = torch.zeros(scores.shape, dtype=torch.bool)
    for r, row in enumerate(scores.tolist()):
        for i in sorted(range(len(row)), key=lambda i: (-row[i], i))[:n]:
            keep[r, i] = True
    return keep


def reference_sparsegpt(weight: torch.Tensor, hessian: torch.Tensor, n: int, m: int, damp: float):
    """Column-by-column OBS with N:M masks, in float64, straight from the definitions.

    Fixing column j removes it from the problem, so when column j is reached the inverse Hessian of the remaining
    columns is inv(H[j:, j:]). Column j's saliency is w_j^2 / [inv(H[j:, j:])]_00 (the value it has when it is
    reached); a group's mask is chosen when its first column is reached, from the current weights.
    """
    w = weight.double().clone()
    h = hessian.double().clone()
    columns = w.shape[1]
    dead = [j for j in range(columns) if h[j, j] == 0]
    for j in dead:
        h[j, j] = 1.0
        w[:, j] = 0.0
    h = h + damp * torch.diagonal(h).mean() * torch.eye(columns, dtype=torch.float64)
    reached = torch.tensor([float(torch.linalg.inv(h[j:, j:])[0, 0]) for j in range(columns)], dtype=torch.float64)
    mask = torch.zeros(w.shape, dtype=torch.bool)
    for j in range(columns):
        if j % m == 0:
            mask[:, j : j + m] = top_n_by_sort(w[:, j : j + m] ** 2 / reached[j : j + m], n)
        inverse = torch.linalg.inv(h[j:, j:])
        removed = torch.where(mask[:, j], torch.zeros_like(w[:, j]), w[:, j])
        w[:, j:] -= (removed / inverse[0, 0]).unsqueeze(1) * inverse[0].unsqueeze(0)
        w[:, j] = torch.where(mask[:, j], w[:, j], torch.zeros_like(w[:, j]))
    return w, mask


def group_counts(mask: torch.Tensor, m: int) -> torch.Tensor:
    return mask.reshape(mask.shape[0], -1, m).sum(dim=-1)


def assert_one_line(error: pytest.ExceptionInfo) -> None:
    message = str(error.value)
    assert message and "\n" not in message, message


# ---------------------------------------------------------------------------
# calibration statistics
# ---------------------------------------------------------------------------
def test_statistics_over_batches_equal_the_concatenated_inputs():
    x = correlated_inputs(60, 12, seed=1)
    stats = LayerStatistics(12)
    stats.add(x[:10].reshape(2, 5, 12))  # leading dims (batch, tokens)
    stats.add(x[10:10])  # an empty batch adds nothing
    stats.add(x[10:37])
    stats.add(x[37:].reshape(1, 23, 12))
    assert stats.rows == 60
    assert stats.hessian.dtype == torch.float64
    torch.testing.assert_close(stats.hessian, x.T @ x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stats.squared_norms, (x**2).sum(dim=0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stats.feature_norms(), torch.linalg.vector_norm(x, dim=0), rtol=1e-12, atol=1e-12)


def test_statistics_without_hessian_and_in_float32():
    x = correlated_inputs(20, 8, seed=2)
    norms_only = LayerStatistics(8, hessian=False, dtype=torch.float32)
    norms_only.add(x.float())
    torch.testing.assert_close(norms_only.feature_norms(), torch.linalg.vector_norm(x, dim=0).float())
    with pytest.raises(ValueError, match="hessian=False") as error:
        _ = norms_only.hessian
    assert_one_line(error)


def test_statistics_refuse_bad_inputs():
    stats = LayerStatistics(8)
    with pytest.raises(ValueError, match="no calibration inputs") as error:
        _ = stats.hessian
    assert_one_line(error)
    with pytest.raises(ValueError, match="in_features=8") as error:
        stats.add(torch.zeros(3, 7))
    assert_one_line(error)
    with pytest.raises(ValueError, match="float") as error:
        stats.add(torch.zeros(3, 8, dtype=torch.int64))
    assert_one_line(error)


# ---------------------------------------------------------------------------
# magnitude and Wanda, hand-worked
# ---------------------------------------------------------------------------
# Activations: 2 tokens x 8 features, chosen so that the feature norms are round numbers:
#   ||X_j||_2 = [5, 1, 1, 2, 1, 2, 5, sqrt(2)]   (3-4-5, and 4-3-5 for feature 6)
X_2x8 = [[3.0, 1.0, 0.0, 2.0, 1.0, 0.0, 4.0, 1.0], [4.0, 0.0, 1.0, 0.0, 0.0, 2.0, 3.0, 1.0]]
W_2x8 = [[1.0, 4.0, -3.0, 2.0, 2.0, -1.0, 0.5, 2.0], [-0.5, -6.0, 2.0, -1.0, 3.0, 1.0, -0.25, -1.0]]
# Wanda scores |W| * norm:
#   row 0: [5, 4, 3, 4 | 2, 2, 2.5, 2.83]     row 1: [2.5, 6, 2, 2 | 3, 2, 1.25, 1.41]
WANDA_2_4 = [
    [T, T, F, F, F, F, T, T],  # 5 and 4 (the 4 at index 1 beats the tie at index 3) | 2.5 and 2.83
    [T, T, F, F, T, T, F, F],  # 6 and 2.5 | 3 and 2
]
MAGNITUDE_2_4 = [
    [F, T, T, F, T, F, F, T],  # |4|, |-3| | |2| at 4 and |2| at 7
    [F, T, T, F, T, T, F, F],  # |-6|, |2| | |3| and |1| at 5 (beats the tie at 7)
]
WANDA_1_8 = [[T, F, F, F, F, F, F, F], [F, T, F, F, F, F, F, F]]  # 5 | 6


def test_wanda_hand_worked_2x8():
    stats = LayerStatistics(8)
    stats.add(torch.tensor([X_2x8]))  # (1, 2, 8): one sequence of 2 tokens
    torch.testing.assert_close(stats.feature_norms(), torch.tensor([5, 1, 1, 2, 1, 2, 5, 2**0.5], dtype=torch.float64))
    weight = torch.tensor(W_2x8)
    assert torch.equal(wanda_nm(weight, stats.feature_norms(), 2, 4), torch.tensor(WANDA_2_4))
    assert torch.equal(wanda_nm(weight, stats.feature_norms().float(), 1, 8), torch.tensor(WANDA_1_8))
    assert torch.equal(magnitude_nm(weight, 2, 4), torch.tensor(MAGNITUDE_2_4))


def test_wanda_with_equal_norms_is_magnitude():
    weight = torch.randn(6, 32, generator=torch.Generator().manual_seed(3))
    assert torch.equal(wanda_nm(weight, torch.full((32,), 3.0), 2, 8), magnitude_nm(weight, 2, 8))
    assert torch.equal(magnitude_nm(weight, 2, 8), nm_mask(weight, 2, 8))


# ---------------------------------------------------------------------------
# SparseGPT against the direct reference
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("n, m, blocksize", [(2, 4, 4), (2, 4, 8), (2, 4, 16), (1, 8, 8), (1, 8, 16)])
def test_sparsegpt_equals_direct_reference(n, m, blocksize):
    x = correlated_inputs(48, 16, seed=4, dead=(5,))
    weight = torch.randn(4, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    expected_weight, expected_mask = reference_sparsegpt(weight, x.T @ x, n, m, damp=0.01)
    new_weight, mask = sparsegpt_nm(weight, x.T @ x, n, m, blocksize=blocksize, damp=0.01)
    assert torch.equal(mask, expected_mask)
    torch.testing.assert_close(new_weight, expected_weight, rtol=0, atol=1e-9)
    assert torch.equal(new_weight[:, 5], torch.zeros(4, dtype=torch.float64))  # the dead input


def test_sparsegpt_in_float32_and_at_any_scale_of_h():
    """float32 weight and Hessian work in float32 (~1e-5); H, 2 H / rows (the public code's scale) agree."""
    x = correlated_inputs(64, 16, seed=6)
    weight = torch.randn(4, 16, generator=torch.Generator().manual_seed(7))
    expected_weight, expected_mask = reference_sparsegpt(weight, x.T @ x, 2, 4, damp=0.01)
    new_weight, mask = sparsegpt_nm(weight, (x.T @ x).float(), 2, 4, blocksize=8)
    assert new_weight.dtype == torch.float32
    assert torch.equal(mask, expected_mask)
    torch.testing.assert_close(new_weight.double(), expected_weight, rtol=0, atol=1e-5)
    scaled_weight, scaled_mask = sparsegpt_nm(weight.double(), 2 * (x.T @ x) / 64, 2, 4, blocksize=8)
    assert torch.equal(scaled_mask, expected_mask)
    torch.testing.assert_close(scaled_weight, expected_weight, rtol=0, atol=1e-9)


@pytest.mark.parametrize("n, m", [(2, 4), (1, 8)])
def test_sparsegpt_reconstructs_better_than_wanda_and_magnitude(n, m):
    x = correlated_inputs(512, 128, seed=8)
    weight = torch.randn(64, 128, generator=torch.Generator().manual_seed(9), dtype=torch.float64) / 128**0.5
    stats = LayerStatistics(128)
    for batch in x.split(100):
        stats.add(batch)

    def error(pruned: torch.Tensor) -> float:
        return float(torch.linalg.matrix_norm(weight @ x.T - pruned @ x.T))

    dense = float(torch.linalg.matrix_norm(weight @ x.T))
    sparsegpt = error(sparsegpt_nm(weight, stats.hessian, n, m)[0])
    wanda = error(weight * wanda_nm(weight, stats.feature_norms(), n, m))
    magnitude = error(weight * magnitude_nm(weight, n, m))
    print(
        f"\n{n}:{m} ||WX - W'X||_F (||WX||_F = {dense:.2f}): sparsegpt {sparsegpt:.2f}, wanda {wanda:.2f}, "
        f"magnitude {magnitude:.2f}"
    )
    assert sparsegpt <= wanda
    assert sparsegpt <= magnitude


# ---------------------------------------------------------------------------
# exactly N:M, every method, several patterns
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("n, m", PATTERNS)
def test_every_group_is_exactly_n_of_m(n, m):
    x = correlated_inputs(96, 64, seed=10, dead=(0, 1, 2, 3))  # a whole dead group too
    weight = torch.randn(8, 64, generator=torch.Generator().manual_seed(11))
    stats = LayerStatistics(64)
    stats.add(x)
    magnitude = magnitude_nm(weight, n, m)
    wanda = wanda_nm(weight, stats.feature_norms(), n, m)
    for dtype in (torch.float32, torch.bfloat16):
        new_weight, sparsegpt = sparsegpt_nm(weight.to(dtype), stats.hessian, n, m, blocksize=16)
        assert new_weight.dtype == dtype
        assert torch.equal(group_counts(sparsegpt, m), torch.full((8, 64 // m), n))
        assert not bool(new_weight[~sparsegpt].any())  # pruned entries exactly 0
        assert int(group_counts(new_weight != 0, m).max()) <= n
    for mask in (magnitude, wanda):
        assert mask.dtype == torch.bool and mask.shape == weight.shape
        assert torch.equal(group_counts(mask, m), torch.full((8, 64 // m), n))


# ---------------------------------------------------------------------------
# refusals, one line each
# ---------------------------------------------------------------------------
def test_m_not_dividing_the_block_size_is_refused():
    with pytest.raises(ValueError, match="blocksize 12 is not a multiple of M=8") as error:
        sparsegpt_nm(torch.randn(4, 16), torch.eye(16), 1, 8, blocksize=12)
    assert_one_line(error)


def test_m_not_dividing_in_features_is_refused_by_every_method():
    weight = torch.randn(4, 6)
    calls = [
        lambda: magnitude_nm(weight, 2, 4),
        lambda: wanda_nm(weight, torch.ones(6), 2, 4),
        lambda: sparsegpt_nm(weight, torch.eye(6), 2, 4),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"in_features \(6\) is not a multiple of M=4") as error:
            call()
        assert_one_line(error)


@pytest.mark.parametrize("n, m", [(4, 4), (5, 4), (0, 4)])
def test_impossible_patterns_are_refused(n, m):
    weight = torch.randn(4, 8)
    for call in (
        lambda: magnitude_nm(weight, n, m),
        lambda: wanda_nm(weight, torch.ones(8), n, m),
        lambda: sparsegpt_nm(weight, torch.eye(8), n, m),
    ):
        with pytest.raises(ValueError, match=f"impossible N:M pattern {n}:{m}") as error:
            call()
        assert_one_line(error)


def test_shape_mismatches_are_refused():
    weight = torch.randn(4, 8)
    with pytest.raises(ValueError, match=r"H has shape \(4, 4\) but the weight has in_features=8") as error:
        sparsegpt_nm(weight, torch.eye(4), 2, 4)
    assert_one_line(error)
    with pytest.raises(ValueError, match=r"feature_norms has shape \(4,\)") as error:
        wanda_nm(weight, torch.ones(4), 2, 4)
    assert_one_line(error)
    with pytest.raises(ValueError, match="2-D") as error:
        magnitude_nm(torch.randn(8), 2, 4)
    assert_one_line(error)
