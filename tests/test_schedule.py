"""Schedules: phases, decay factor D, pattern ladders, rungs and mask refreshes.

Expected values are written out by hand or in closed form (math.exp, ...),
never by calling the schedule under test.
"""
from __future__ import annotations

import math
import random

import pytest

from pgfsparse.sparsity import (
    NM,
    Schedule,
    geometric_ladder,
    make_recipe,
    stepwise_ladder,
)
from pgfsparse.sparsity.recipes import fit_rung


def sched(name, total, **options):
    return Schedule(make_recipe(name, **options), total)


def nms(text):
    """'7:8,4:8' -> [NM(7, 8), NM(4, 8)] (test-side parsing, independent of parse_pattern)."""
    out = []
    for item in text.split(","):
        n, m = item.split(":")
        out.append(NM(int(n), int(m)))
    return out


# ---------------------------------------------------------------------------
# phases
# ---------------------------------------------------------------------------
# (total, dense_fraction, finetune_fraction, dense_steps, finetune_start), worked by hand:
# dense_steps = floor(d * T), finetune = ceil(f * T), finetune_start = T - finetune.
PHASES = [
    # defaults 0.05 / 0.15
    (1, 0.05, 0.15, 0, 0),  # floor(.05)=0, ceil(.15)=1
    (2, 0.05, 0.15, 0, 1),  # floor(.1)=0, ceil(.3)=1
    (5, 0.05, 0.15, 0, 4),  # floor(.25)=0, ceil(.75)=1
    (20, 0.05, 0.15, 1, 17),  # 1, 3
    (100, 0.05, 0.15, 5, 85),  # 5, 15
    # 0.1 / 0.2
    (1, 0.1, 0.2, 0, 0),
    (2, 0.1, 0.2, 0, 1),
    (5, 0.1, 0.2, 0, 4),  # floor(.5)=0, ceil(1)=1
    (20, 0.1, 0.2, 2, 16),
    (100, 0.1, 0.2, 10, 80),
    # 0.5 / 0.5: no sparse phase at all
    (1, 0.5, 0.5, 0, 0),
    (2, 0.5, 0.5, 1, 1),
    (5, 0.5, 0.5, 2, 2),  # floor(2.5)=2, ceil(2.5)=3
    (20, 0.5, 0.5, 10, 10),
    (100, 0.5, 0.5, 50, 50),
    # no dense phase, no fine-tune
    (1, 0.0, 0.0, 0, 1),
    (5, 0.0, 0.0, 0, 5),
    (100, 0.0, 0.0, 0, 100),
    # only dense
    (5, 1.0, 0.0, 5, 5),
    # fractions whose float product is not exact: 0.29 * 100 = 28.999..., 0.07 * 100 = 7.000...1
    (100, 0.29, 0.07, 29, 93),
    (800, 0.0125, 0.1, 10, 720),
    (10, 0.3, 0.1, 3, 9),
]


@pytest.mark.parametrize("total, dense_fraction, finetune_fraction, dense_steps, finetune_start", PHASES)
def test_phase_boundaries(total, dense_fraction, finetune_fraction, dense_steps, finetune_start):
    s = sched("ste", total, dense_fraction=dense_fraction, finetune_fraction=finetune_fraction)
    assert s.dense_steps == dense_steps
    assert s.finetune_start == finetune_start
    assert s.sparse_steps == finetune_start - dense_steps
    for step in range(total):
        expected = "dense" if step < dense_steps else ("finetune" if step >= finetune_start else "sparse")
        assert s.phase(step) == expected, step
        assert s.sparse_step(step) == step - dense_steps  # j = 0 at the first sparse step


@pytest.mark.parametrize("total", [1, 2, 5, 20, 100])
def test_phase_boundaries_are_the_same_for_every_sparse_recipe(total):
    expected = {1: (0, 0), 2: (0, 1), 5: (0, 4), 20: (1, 17), 100: (5, 85)}[total]
    for name in ("ste", "srste", "mdgf_linear", "mdgf_exp", "mdgf_step", "sdgf_step", "sdgf_geo"):
        s = sched(name, total)
        assert (s.dense_steps, s.finetune_start) == expected, name
    s = sched("sdgf_custom", total, ladder="3:4,2:4")
    assert (s.dense_steps, s.finetune_start) == expected


def test_one_step_run_ends_sparse():
    s = sched("mdgf_exp", 1)
    assert s.phase(0) == "finetune"
    assert s.decay(0) == 0.0


def test_dense_recipe_is_dense_throughout():
    s = sched("dense", 20)
    assert s.dense_steps == 20
    for step in range(20):
        assert s.phase(step) == "dense"
        assert s.decay(step) == 1.0
        state = s.state(step, NM(1, 8))
        assert state.pattern is None and state.rung == -1 and not s.refreshes(step, NM(1, 8))


def test_total_steps_must_be_positive():
    with pytest.raises(ValueError, match="total_steps"):
        sched("ste", 0)


# ---------------------------------------------------------------------------
# decay factor D
# ---------------------------------------------------------------------------
# T = 100 with the defaults: dense steps 0..4, sparse 5..84 (j = step - 5), fine-tune 85..99.
@pytest.mark.parametrize(
    "step, expected",
    [(0, 1.0), (4, 1.0), (5, 1.0), (6, 0.99), (55, 0.5), (84, 0.21), (85, 0.0), (99, 0.0)],
)
def test_mdgf_linear_given_beta(step, expected):
    assert sched("mdgf_linear", 100, beta=0.01).decay(step) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("step, expected", [(5, 1.0), (30, 0.5), (55, 0.0), (70, 0.0), (84, 0.0)])
def test_mdgf_linear_clamps_at_zero(step, expected):
    assert sched("mdgf_linear", 100, beta=0.02).decay(step) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 1.0),
        (4, 1.0),
        (5, 1.0),  # j = 0: not already decayed after the dense phase
        (6, math.exp(-0.05)),
        (25, math.exp(-1.0)),
        (84, math.exp(-0.05 * 79)),
        (85, 0.0),  # fine-tune: exactly 0
        (99, 0.0),
    ],
)
def test_mdgf_exp_given_beta(step, expected):
    s = sched("mdgf_exp", 100, beta=0.05)
    assert s.beta == 0.05
    assert s.decay(step) == pytest.approx(expected, rel=1e-12, abs=0.0)


def test_mdgf_exp_never_reaches_zero_before_finetune():
    s = sched("mdgf_exp", 100, beta=0.5)
    assert all(s.decay(step) > 0.0 for step in range(85))
    assert all(s.decay(step) == 0.0 for step in range(85, 100))


def test_mdgf_exp_derived_beta_defaults():
    # T = 100, dense 5, f = 0.7 -> the step at fraction f is 70 (from step 0), j = 65 there.
    s = sched("mdgf_exp", 100)
    beta = math.log(1000.0) / 65
    assert s.beta == pytest.approx(beta, rel=1e-12)
    assert s.decay(70) == pytest.approx(1e-3, rel=1e-9)
    assert s.decay(5) == 1.0
    assert s.decay(40) == pytest.approx(math.exp(-beta * 35), rel=1e-12)


def test_mdgf_exp_derived_beta_other_settings():
    # T = 1000, dense 100, f = 0.5 -> step 500, j = 400; eps = 0.01; halfway (j = 200) D = 0.1.
    s = sched("mdgf_exp", 1000, dense_fraction=0.1, decay_end_fraction=0.5, decay_epsilon=0.01)
    assert s.dense_steps == 100
    assert s.decay(500) == pytest.approx(0.01, rel=1e-9)
    assert s.decay(300) == pytest.approx(0.1, rel=1e-9)
    assert s.decay(100) == 1.0


def test_mdgf_linear_derived_beta():
    # D = 1 - beta * j reaches eps = 1e-3 at step 70 (j = 65): beta = 0.999 / 65.
    s = sched("mdgf_linear", 100)
    assert s.beta == pytest.approx(0.999 / 65, rel=1e-12)
    assert s.decay(70) == pytest.approx(1e-3, rel=1e-6)
    assert s.decay(71) == 0.0
    assert s.decay(38) == pytest.approx(1 - 0.999 * 33 / 65, rel=1e-12)


@pytest.mark.parametrize(
    "step, expected",
    [
        (4, 1.0),  # dense
        (5, 0.75),  # j = 0: k = 1
        (8, 0.75),  # j = 3: k = 1
        (9, 0.5),  # j = 4: k = 2
        (13, 0.25),  # j = 8: k = 3
        (16, 0.25),
        (17, 0.0),  # j = 12: k = 4, 1 - 4 * 0.25 = 0
        (84, 0.0),
        (85, 0.0),
    ],
)
def test_mdgf_step_given_weight_and_interval(step, expected):
    s = sched("mdgf_step", 100, step_weight=0.25, step_interval=4)
    assert s.decay(step) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("j, expected", [(0, 0.95), (1, 0.95), (2, 0.9), (3, 0.9), (4, 0.0), (10, 0.0)])
def test_mdgf_step_forced_to_zero_from_max_updates(j, expected):
    # k = j // 2 + 1; k = 3 = max_updates -> 0, not 1 - 3 * 0.05 = 0.85
    s = sched("mdgf_step", 100, step_weight=0.05, step_interval=2, max_updates=3)
    assert s.decay(5 + j) == pytest.approx(expected, abs=1e-12)


def test_mdgf_step_defaults():
    # w = 1/16; D reaches 0 at update 16, i.e. after 15 intervals spanning decay_steps = 70 - 5 = 65:
    # interval = ceil(65 / 15) = 5.
    s = sched("mdgf_step", 100)
    assert s.step_interval == 5
    assert s.step_weight == 1 / 16
    expected = {5: 15 / 16, 9: 15 / 16, 10: 14 / 16, 74: 2 / 16, 79: 1 / 16, 80: 0.0, 84: 0.0, 85: 0.0}
    for step, d in expected.items():
        assert s.decay(step) == pytest.approx(d, abs=1e-12), step


@pytest.mark.parametrize("name", ["ste", "srste", "sdgf_step", "sdgf_geo"])
def test_binary_recipes_have_d_zero_after_dense_phase(name):
    s = sched(name, 20)  # dense step 0 only
    assert s.decay(0) == 1.0
    assert [s.decay(step) for step in range(1, 20)] == [0.0] * 19


# ---------------------------------------------------------------------------
# ladders
# ---------------------------------------------------------------------------
STEPWISE = {
    (2, 4): "3:4,2:4",
    (1, 4): "3:4,2:4,1:4",
    (1, 2): "1:2",
    (3, 8): "7:8,4:8,3:8",
    (1, 8): "7:8,4:8,2:8,1:8",
    (1, 16): "15:16,8:16,4:16,2:16,1:16",
    (1, 32): "31:32,16:32,8:32,4:32,2:32,1:32",
    (1, 128): "127:128,64:128,32:128,16:128,8:128,4:128,2:128,1:128",
}

GEOMETRIC_8 = {
    (2, 4): "16:32,8:16,4:8,2:4",
    (3, 8): "24:64,12:32,6:16,3:8",
    (1, 8): "8:64,4:32,2:16,1:8",
    (1, 16): "8:128,4:64,2:32,1:16",
    (1, 32): "8:256,4:128,2:64,1:32",
    (1, 128): "8:1024,4:512,2:256,1:128",
}

GEOMETRIC_16 = {
    (2, 4): "32:64,16:32,8:16,4:8,2:4",
    (3, 8): "48:128,24:64,12:32,6:16,3:8",
    (1, 8): "16:128,8:64,4:32,2:16,1:8",
    (1, 16): "16:256,8:128,4:64,2:32,1:16",
    (1, 32): "16:512,8:256,4:128,2:64,1:32",
    (1, 128): "16:2048,8:1024,4:512,2:256,1:128",
}


@pytest.mark.parametrize("target, ladder", sorted(STEPWISE.items()))
def test_stepwise_ladders(target, ladder):
    target = NM(*target)
    assert stepwise_ladder(target) == nms(ladder)
    assert sched("sdgf_step", 100).ladder(target) == nms(ladder)


@pytest.mark.parametrize("target, ladder", sorted(GEOMETRIC_8.items()))
def test_geometric_ladders_k8(target, ladder):
    target = NM(*target)
    assert geometric_ladder(target, 8) == nms(ladder)
    assert sched("sdgf_geo", 100).ladder(target) == nms(ladder)  # k = 8 is the default
    assert all(r.density == target.density for r in nms(ladder))


@pytest.mark.parametrize("target, ladder", sorted(GEOMETRIC_16.items()))
def test_geometric_ladders_k16(target, ladder):
    target = NM(*target)
    assert geometric_ladder(target, 16) == nms(ladder)
    assert sched("sdgf_geo", 100, geo_k=16).ladder(target) == nms(ladder)


def test_geometric_ladder_k1_is_the_target_alone():
    assert sched("sdgf_geo", 100, geo_k=1).ladder(NM(1, 8)) == [NM(1, 8)]


@pytest.mark.parametrize("name", ["ste", "srste", "mdgf_linear", "mdgf_exp", "mdgf_step"])
def test_non_laddered_recipes_have_a_single_rung(name):
    assert sched(name, 100).ladder(NM(1, 16)) == [NM(1, 16)]


@pytest.mark.parametrize(
    "rung, target, group_len, expected",
    [
        ("8:128", "1:16", 192, "4:64"),  # 192 % 128 = 64; 192 % 64 = 0
        ("8:128", "1:16", 256, "8:128"),  # fits
        ("8:1024", "1:128", 768, "2:256"),  # 768 % 1024, 768 % 512 = 256, 768 % 256 = 0
        ("8:64", "1:8", 96, "4:32"),  # 96 % 64 = 32; 96 % 32 = 0
        ("8:64", "1:8", 40, "1:8"),  # 40 % 32 = 8, 40 % 16 = 8 -> down to the target
        ("16:32", "2:4", 24, "4:8"),  # 24 % 32, 24 % 16 = 8, 24 % 8 = 0
        ("4:32", "1:8", 32, "4:32"),
    ],
)
def test_fit_rung(rung, target, group_len, expected):
    (rung,), (target,), (expected,) = nms(rung), nms(target), nms(expected)
    assert fit_rung(rung, target, group_len) == expected


def test_fit_rung_whole_geometric_ladder_on_192_inputs():
    target = NM(1, 16)
    fitted = [fit_rung(r, target, 192) for r in nms("8:128,4:64,2:32,1:16")]
    assert fitted == nms("4:64,4:64,2:32,1:16")


def test_fit_rung_refuses_a_rung_that_is_not_geometric():
    with pytest.raises(ValueError, match="does not fit"):
        fit_rung(NM(7, 8), NM(1, 8), 12)


# ---------------------------------------------------------------------------
# rungs
# ---------------------------------------------------------------------------
def _rungs(s, total, n_rungs):
    return [s.rung(step, n_rungs) for step in range(total)]


@pytest.mark.parametrize(
    "total, n_rungs, expected",
    [
        (1, 4, [3]),  # the only step is fine-tune: final rung
        (2, 4, [0, 3]),  # S = 1: j = 0 -> rung 0; then fine-tune
        (5, 4, [0, 1, 2, 3, 3]),  # S = 4: one step per rung
        (5, 5, [0, 1, 2, 3, 4]),  # S = 4, R = 5: j * 5 // 4 = 0, 1, 2, 3; fine-tune 4
        (5, 2, [0, 0, 1, 1, 1]),  # j * 2 // 4 = 0, 0, 1, 1
        (5, 1, [0, 0, 0, 0, 0]),
        # T = 20: dense step 0, S = 16, R = 3: j * 3 // 16 -> j 0..5: 0, 6..10: 1, 11..15: 2
        (20, 3, [-1] + [0] * 6 + [1] * 5 + [2] * 5 + [2] * 3),
    ],
)
def test_rung_boundaries_tiny_totals(total, n_rungs, expected):
    assert _rungs(sched("sdgf_step", total), total, n_rungs) == expected


def test_rung_boundaries_normal_total_stepwise_1_8():
    # T = 100: dense 0..4, S = 80 over 4 rungs of 20 steps, fine-tune 85..99 keeps rung 3.
    s = sched("sdgf_step", 100)
    expected = [-1] * 5 + [0] * 20 + [1] * 20 + [2] * 20 + [3] * 20 + [3] * 15
    assert _rungs(s, 100, 4) == expected
    patterns = {4: None, 5: "7:8", 24: "7:8", 25: "4:8", 44: "4:8", 45: "2:8", 65: "1:8", 84: "1:8", 99: "1:8"}
    for step, pattern in patterns.items():
        state = s.state(step, NM(1, 8))
        assert state.pattern == (None if pattern is None else nms(pattern)[0]), step
        assert state.rung == expected[step]


def test_rung_boundaries_geometric_k16_uses_five_rungs():
    s = sched("sdgf_geo", 100, geo_k=16)  # S = 80 over 5 rungs of 16 steps
    expected_rung = {5: 0, 20: 0, 21: 1, 37: 2, 53: 3, 68: 3, 69: 4, 84: 4, 90: 4}
    ladder = nms("16:256,8:128,4:64,2:32,1:16")
    for step, rung in expected_rung.items():
        state = s.state(step, NM(1, 16))
        assert (state.rung, state.pattern) == (rung, ladder[rung]), step


def test_custom_ladder_rungs():
    s = sched("sdgf_custom", 100, ladder="15:16,8:16,4:16,2:16,1:16")
    ladder = nms("15:16,8:16,4:16,2:16,1:16")
    assert s.ladder(NM(1, 16)) == ladder
    # S = 80, R = 5: rung = j // 16 -> steps 5-20, 21-36, 37-52, 53-68, 69-84; fine-tune keeps 1:16
    expected = [-1] * 5 + [0] * 16 + [1] * 16 + [2] * 16 + [3] * 16 + [4] * 16 + [4] * 15
    assert _rungs(s, 100, 5) == expected
    assert s.state(36, NM(1, 16)).pattern == NM(8, 16)
    assert s.state(37, NM(1, 16)).pattern == NM(4, 16)
    assert s.state(99, NM(1, 16)).pattern == NM(1, 16)


def test_custom_ladder_must_end_on_the_target():
    s = sched("sdgf_custom", 100, ladder="15:16,8:16,4:16,2:16,1:16")
    with pytest.raises(ValueError, match="must end on the target") as info:
        s.ladder(NM(2, 16))
    assert "2:16" in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------
# mask refresh
# ---------------------------------------------------------------------------
def _refresh_steps(s, total, target, ladder=None):
    return [step for step in range(total) if s.refreshes(step, target, ladder)]


def test_mask_interval_1_refreshes_every_non_dense_step():
    s = sched("ste", 20)  # dense step 0
    assert _refresh_steps(s, 20, NM(2, 4)) == list(range(1, 20))
    assert s.refreshes(0, NM(2, 4)) is False


def test_first_step_refreshes_without_a_dense_phase():
    s = sched("ste", 10, dense_fraction=0.0, mask_interval=4)
    assert _refresh_steps(s, 10, NM(2, 4)) == [0, 4, 8]


def test_mask_interval_3_refreshes_every_third_step():
    s = sched("ste", 20, mask_interval=3)  # j = step - 1
    assert _refresh_steps(s, 20, NM(2, 4)) == [1, 4, 7, 10, 13, 16, 19]
    assert [s.state(step, NM(2, 4)).refresh_index for step in (1, 3, 4, 19)] == [0, 0, 1, 6]


def test_mask_interval_3_also_refreshes_at_rung_changes():
    # 3:8 stepwise: rungs 7:8, 4:8, 3:8 change at steps 7 and 12 (see the T = 20 rung table)
    s = sched("sdgf_step", 20, mask_interval=3)
    assert _refresh_steps(s, 20, NM(3, 8)) == [1, 4, 7, 10, 12, 13, 16, 19]


def test_mdgf_step_refreshes_at_each_decay_update():
    s = sched("mdgf_step", 100, step_weight=0.05, step_interval=4)
    refresh = _refresh_steps(s, 100, NM(1, 16))
    assert [step for step in refresh if step < 85] == list(range(5, 85, 4))
    # every change of D inside the sparse phase comes with a fresh mask
    # (k = j // 4 + 1 reaches max_updates = 16 at j = 60, step 65: D is 0 from there on)
    changes = [step for step in range(6, 85) if s.decay(step) != s.decay(step - 1)]
    assert changes == list(range(9, 66, 4))
    assert s.decay(64) == pytest.approx(0.25) and s.decay(65) == 0.0
    assert set(changes) <= set(refresh)


# ---------------------------------------------------------------------------
# purity
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, options",
    [
        ("mdgf_exp", {}),
        ("mdgf_step", {"step_interval": 3}),
        ("sdgf_step", {"mask_interval": 3}),
        ("sdgf_geo", {"geo_k": 16}),
    ],
)
def test_schedule_is_pure_out_of_order_queries_agree(name, options):
    total, target = 60, NM(1, 16)
    forward = [sched(name, total, **options).state(step, target) for step in range(total)]
    s = sched(name, total, **options)
    order = list(range(total))
    random.Random(0).shuffle(order)
    shuffled = {step: s.state(step, target) for step in order}
    backward = {step: s.state(step, target) for step in reversed(range(total))}
    assert [shuffled[step] for step in range(total)] == forward
    assert [backward[step] for step in range(total)] == forward
    assert [s.decay(step) for step in order] == [forward[step].decay for step in order]


# ---------------------------------------------------------------------------
# sdgf_cubic: N_j = min(M - 1, ceil(N + (M - N)(1 - j/S)^3)), worked by hand
# ---------------------------------------------------------------------------
def _cubic_n(s, step, target):
    ladder = s.ladder(target)
    return ladder[s.rung(step, len(ladder))].n


def test_cubic_ladder_holds_every_n_from_m_minus_1_to_the_target():
    s = sched("sdgf_cubic", 100)
    assert s.ladder(NM(1, 8)) == nms("7:8,6:8,5:8,4:8,3:8,2:8,1:8")
    assert s.ladder(NM(2, 4)) == nms("3:4,2:4")
    assert s.ladder(NM(3, 4)) == nms("3:4")


@pytest.mark.parametrize("j, n", [
    (0, 7),    # 1 + ceil(7 * 1)       = 8 -> capped at M - 1
    (10, 6),   # 1 + ceil(7 * 0.875^3) = 1 + ceil(4.689) = 6
    (20, 4),   # 1 + ceil(7 * 0.75^3)  = 1 + ceil(2.953) = 4
    (40, 2),   # 1 + ceil(7 * 0.5^3)   = 1 + ceil(0.875) = 2
    (79, 2),   # 1 + ceil(7 * (1/80)^3) = 2: the target only in the fine-tune
])
def test_cubic_rungs_at_1_8(j, n):
    s = sched("sdgf_cubic", 100)  # dense steps 5, sparse steps S = 80, fine-tune from 85
    assert _cubic_n(s, 5 + j, NM(1, 8)) == n


def test_cubic_rungs_at_1_4_change_where_the_cube_crosses_one_third():
    s = sched("sdgf_cubic", 100)
    # 1 + ceil(3 x^3) <= 2 once x = 1 - j/80 <= 3^(-1/3) = 0.6934, i.e. from j = 25 (x = 0.6875)
    assert [_cubic_n(s, step, NM(1, 4)) for step in range(5, 100)] == [3] * 25 + [2] * 55 + [1] * 15
    assert s.decay(50) == 0.0 and s.phase(4) == "dense"


def test_cubic_an_exact_integer_boundary_is_not_missed_by_rounding():
    # 1:28 over S = 3 sparse steps, j = 2: 27 * (1/3)^3 = 1 exactly, so N = 1 + 1 = 2. In floats
    # (1 - 2/3)^3 * 27 = 1.0000000000000004, whose ceil would give N = 3.
    s = sched("sdgf_cubic", 3, dense_fraction=0.0, finetune_fraction=0.0)
    assert [_cubic_n(s, step, NM(1, 28)) for step in range(3)] == [27, 1 + 8, 2]  # j=1: 27 * (2/3)^3 = 8
