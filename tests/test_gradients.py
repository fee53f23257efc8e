"""Forward values and gradients of every recipe on a hand-worked 2x8 Linear.

docs/paper.md's table: every recipe uses W~ = W * (mask + D (1 - mask)); the dense W
receives dL/dW~ unchanged (straight-through, also for the pruned weights and
also while D > 0), except SR-STE, which adds lambda * (1 - mask) * W inside
backward. All expectations below are written out by hand.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import pgfsparse
from pgfsparse.sparsity import masked_weight

# -- the hand-worked layer ------------------------------------------------------------
W = torch.tensor(
    [
        [1.0, -2.0, 3.0, -4.0, 5.0, -6.0, 7.0, -8.0],
        [0.5, 0.1, -0.2, 0.3, -0.9, 0.8, 0.05, -0.06],
    ]
)
B = torch.tensor([0.5, -1.5])

# Keep-masks by magnitude, worked out by hand for W (groups of M along each row).
MASK = {
    # 1:4  row 0: |-4| of (1,-2,3,-4), |-8| of (5,-6,7,-8); row 1: 0.5 of (.5,.1,-.2,.3), |-.9| of (-.9,.8,.05,-.06)
    "1:4": [[0, 0, 0, 1, 0, 0, 0, 1], [1, 0, 0, 0, 1, 0, 0, 0]],
    # 2:4  row 0: 3,-4 | 7,-8; row 1: .5,.3 | -.9,.8
    "2:4": [[0, 0, 1, 1, 0, 0, 1, 1], [1, 0, 0, 1, 1, 1, 0, 0]],
    # 3:4  drops the smallest of each group: 1 and 5; .1 and .05
    "3:4": [[0, 1, 1, 1, 0, 1, 1, 1], [1, 0, 1, 1, 1, 1, 0, 1]],
    # 2:8  one group per row: 7,-8; -.9,.8
    "2:8": [[0, 0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 1, 1, 0, 0]],
}
MASK = {k: torch.tensor(v, dtype=torch.bool) for k, v in MASK.items()}

# A batch of two inputs and a fixed upstream gradient G = dL/dy for loss = (y * G).sum().
X = torch.tensor([[1.0, 2, 3, 4, 5, 6, 7, 8], [1.0, 0, -1, 0, 2, 0, 0, 1]])
G = torch.tensor([[1.0, -2.0], [3.0, 1.0]])
# dL/dW~ = G^T X, by hand: row 0 = 1*x0 + 3*x1, row 1 = -2*x0 + 1*x1
GRAD = torch.tensor(
    [
        [4.0, 2, 0, 4, 11, 6, 7, 11],
        [-1.0, -4, -7, -8, -8, -12, -14, -15],
    ]
)
BIAS_GRAD = torch.tensor([4.0, -1.0])  # column sums of G

TOTAL, DENSE_FRACTION, FINETUNE_FRACTION = 10, 0.2, 0.2
DENSE_STEPS, FINETUNE_START = 2, 8  # floor(0.2 * 10), 10 - ceil(0.2 * 10); sparse phase j = step - 2 in 0..5


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 2)
        with torch.no_grad():
            self.lin.weight.copy_(W)
            self.lin.bias.copy_(B)

    def forward(self, x):
        return self.lin(x)


def attach(recipe, pattern="1:4", total=TOTAL, **options):
    model = Net()
    options.setdefault("dense_fraction", DENSE_FRACTION)
    options.setdefault("finetune_fraction", FINETUNE_FRACTION)
    sp = pgfsparse.sparsify(
        model, pattern=pattern, recipe=recipe, total_steps=total, layer_map={"ff": [r"^lin$"]}, **options
    )
    return model, sp


def latent(model):
    return model.lin.parametrizations.weight.original


def backward(model, x=X, g=G):
    model.zero_grad(set_to_none=True)
    y = model(x)
    (y * g).sum().backward()
    return y


def expected_weight(mask, decay):
    m = mask.float()
    return W * (m + decay * (1 - m))


# (recipe, options, step, pattern in force, D) -- D from the closed forms, j = step - 2
CASES = [
    ("ste", {}, 4, "1:4", 0.0),
    ("ste", {}, FINETUNE_START, "1:4", 0.0),
    ("mdgf_linear", {"beta": 0.15}, 5, "1:4", max(1 - 0.15 * 3, 0.0)),
    ("mdgf_linear", {"beta": 0.15}, 2, "1:4", 1.0),  # j = 0: D = 1, the mask is there but W~ = W
    ("mdgf_linear", {"beta": 0.3}, 7, "1:4", max(1 - 0.3 * 5, 0.0)),  # clipped at 0
    ("mdgf_exp", {"beta": 0.5}, 5, "1:4", math.exp(-0.5 * 3)),
    ("mdgf_exp", {"beta": 0.5}, 7, "1:4", math.exp(-0.5 * 5)),
    ("mdgf_exp", {"beta": 0.5}, FINETUNE_START, "1:4", 0.0),  # fine-tune: binary mask
    # Kao et al.: k = j // interval + 1 updates so far, D = max(1 - k w, 0)
    ("mdgf_step", {"step_weight": 0.25, "step_interval": 2}, 3, "1:4", 1 - 1 * 0.25),
    ("mdgf_step", {"step_weight": 0.25, "step_interval": 2}, 5, "1:4", 1 - 2 * 0.25),
    ("mdgf_step", {"step_weight": 0.25, "step_interval": 2}, 7, "1:4", 1 - 3 * 0.25),
    # ladder 3:4, 2:4, 1:4 over the 6 sparse steps: two steps each
    ("sdgf_step", {}, 2, "3:4", 0.0),
    ("sdgf_step", {}, 5, "2:4", 0.0),
    ("sdgf_step", {}, 6, "1:4", 0.0),
    # ladder 8:32, 4:16, 2:8, 1:4 fitted to rows of 8: 2:8, 2:8, 2:8, 1:4; rung = j * 4 // 6
    ("sdgf_geo", {}, 3, "2:8", 0.0),
    ("sdgf_geo", {}, 6, "2:8", 0.0),
    ("sdgf_geo", {}, 7, "1:4", 0.0),
    ("sdgf_custom", {"ladder": "3:4,1:4"}, 4, "3:4", 0.0),
    ("sdgf_custom", {"ladder": "3:4,1:4"}, 5, "1:4", 0.0),
    ("srste", {}, 4, "1:4", 0.0),
]


def case_id(case):
    recipe, options, step, pattern, _ = case
    extra = ",".join(f"{k}={v}" for k, v in options.items())
    return f"{recipe}[{extra}]@{step}:{pattern}"


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_forward_is_w_times_mask_plus_decay(case):
    recipe, options, step, pattern, decay = case
    model, sp = attach(recipe, **options)
    sp.step(step)
    param = model.lin.parametrizations.weight[0]
    assert param.decay == pytest.approx(decay, rel=1e-12, abs=0)
    assert torch.equal(param.mask, MASK[pattern])
    want = expected_weight(MASK[pattern], decay)
    assert torch.allclose(model.lin.weight, want, rtol=1e-6, atol=0)
    # the latent weight itself is untouched by the forward rule
    assert torch.equal(latent(model), W)
    y = backward(model)
    assert torch.allclose(y, X @ want.T + B, rtol=1e-6, atol=1e-6)


STRAIGHT_THROUGH = [c for c in CASES if c[0] != "srste"]


@pytest.mark.parametrize("case", STRAIGHT_THROUGH, ids=[case_id(c) for c in STRAIGHT_THROUGH])
def test_straight_through_gradient_is_identity(case):
    recipe, options, step, pattern, decay = case
    model, sp = attach(recipe, **options)
    sp.step(step)
    backward(model)
    grad = latent(model).grad
    # exactly dL/dW~: pruned entries get the full gradient, not D * dL/dW~ (the product rule)
    assert torch.equal(grad, GRAD)
    pruned = ~MASK[pattern]
    assert (grad[pruned] != 0).any()
    if decay < 1.0:
        product_rule = GRAD * expected_weight(MASK[pattern], decay) / W
        assert not torch.allclose(grad, product_rule)
    assert torch.equal(model.lin.bias.grad, BIAS_GRAD)


@pytest.mark.parametrize("step", [4, FINETUNE_START, TOTAL - 1])
@pytest.mark.parametrize("lam", [None, 0.5, 1e-3])
def test_srste_gradient_adds_lambda_times_pruned_weights(step, lam):
    options = {} if lam is None else {"srste_lambda": lam}
    lam_used = 2e-4 if lam is None else lam  # the default of both public codes
    model, sp = attach("srste", **options)
    sp.step(step)
    assert torch.equal(model.lin.weight, W * MASK["1:4"].float())  # D = 0
    backward(model)
    pruned = (~MASK["1:4"]).float()
    want = GRAD + (lam_used * pruned) * W
    torch.testing.assert_close(latent(model).grad, want, rtol=1e-6, atol=1e-9)
    # the extra term sits exactly on the pruned weights; kept weights get dL/dW~
    kept = MASK["1:4"]
    assert torch.equal(latent(model).grad[kept], GRAD[kept])
    assert not torch.equal(latent(model).grad, GRAD)
    assert torch.equal(model.lin.bias.grad, BIAS_GRAD)


@pytest.mark.parametrize("recipe", ["ste", "mdgf_linear", "mdgf_exp", "mdgf_step", "sdgf_step", "sdgf_geo"])
def test_no_srste_term_in_other_recipes(recipe):
    # srste_lambda is SR-STE's own knob: the others refuse it and send the plain straight-through gradient
    with pytest.raises(ValueError, match="has no knob.s. srste_lambda"):
        pgfsparse.make_recipe(recipe, srste_lambda=0.5)
    model, sp = attach(recipe)
    sp.step(FINETUNE_START)  # D = 0 for all of them here
    backward(model)
    assert torch.equal(latent(model).grad, GRAD)


@pytest.mark.parametrize("recipe", ["ste", "srste", "mdgf_linear", "mdgf_exp", "mdgf_step", "sdgf_step", "sdgf_geo"])
@pytest.mark.parametrize("step", [0, DENSE_STEPS - 1])
def test_dense_phase_weight_is_the_latent_tensor(recipe, step):
    model, sp = attach(recipe, **({"srste_lambda": 0.5} if recipe == "srste" else {}))
    sp.step(step)
    assert model.lin.weight is latent(model)
    assert torch.equal(model.lin.weight, W)
    y = backward(model)
    assert torch.allclose(y, X @ W.T + B, rtol=1e-6, atol=1e-6)
    assert torch.equal(latent(model).grad, GRAD)  # ordinary gradient; no SR-STE term in the warm-up
    assert torch.equal(model.lin.bias.grad, BIAS_GRAD)


def test_dense_recipe_attaches_nothing():
    model = Net()
    weight = model.lin.weight
    sp = pgfsparse.sparsify(model, pattern="1:4", recipe="dense", total_steps=TOTAL, layer_map={"ff": [r"^lin$"]})
    for step in range(TOTAL):
        sp.step(step)
    assert sp.layers == {}
    assert not parametrize.is_parametrized(model.lin)
    assert model.lin.weight is weight
    assert isinstance(model.lin.weight, nn.Parameter)
    assert list(model.state_dict()) == ["lin.weight", "lin.bias"]
    assert sp.summary()["layers"] == []
    backward(model)
    assert torch.equal(model.lin.weight.grad, GRAD)


# -- SR-STE's term lives in .grad: clipping and the optimizer see it ------------------
def test_srste_term_passes_through_gradient_clipping_and_optimizer():
    lam = 2e-4
    model, sp = attach("srste")
    sp.step(4)
    backward(model, g=torch.zeros(2, 2))  # dL/dW~ = 0: the gradient is the SR-STE term alone
    # ||lambda * W[pruned]||, pruned entries of the 1:4 mask:
    # row 0: 1, -2, 3, 5, -6, 7 -> 124; row 1: .1, -.2, .3, .8, .05, -.06 -> .7861
    want_norm = lam * math.sqrt(124 + 0.7861)
    total = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e9)
    assert total.item() == pytest.approx(want_norm, rel=1e-5)
    # clipping rescales it like any gradient
    clipped = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=want_norm / 4)
    assert clipped.item() == pytest.approx(want_norm, rel=1e-5)
    scale = (want_norm / 4) / (want_norm + 1e-6)  # clip_grad_norm_'s coefficient (its eps is 1e-6)
    want_grad = lam * (~MASK["1:4"]).float() * W * scale
    torch.testing.assert_close(latent(model).grad, want_grad, rtol=1e-4, atol=1e-12)
    # and the optimizer applies it: SGD(lr=1) shrinks only the pruned weights
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    opt.step()
    torch.testing.assert_close(latent(model), W - want_grad, rtol=1e-6, atol=1e-9)
    assert torch.equal(latent(model)[MASK["1:4"]], W[MASK["1:4"]])


# -- views ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "recipe, options, step, as_trained",
    [
        ("mdgf_exp", {"beta": 0.5}, 0, None),  # dense phase: as trained W~ = W
        ("mdgf_exp", {"beta": 0.5}, 5, expected_weight(MASK["1:4"], math.exp(-1.5))),  # D > 0
        ("sdgf_step", {}, 2, W * MASK["3:4"].float()),  # rung 3:4 in force, target 1:4
        ("ste", {}, 9, W * MASK["1:4"].float()),
    ],
)
def test_views_strict_latent_and_back(recipe, options, step, as_trained):
    as_trained = W if as_trained is None else as_trained
    model, sp = attach(recipe, **options)
    sp.step(step)
    assert torch.allclose(model.lin.weight, as_trained, rtol=1e-6, atol=0)
    with sp.strict():
        assert torch.equal(model.lin.weight, W * MASK["1:4"].float())  # binary target mask
        backward(model)
        assert torch.equal(latent(model).grad, GRAD)
    with sp.view("latent"):
        assert torch.equal(model.lin.weight, W)
    with sp.view("as_trained"):
        assert torch.allclose(model.lin.weight, as_trained, rtol=1e-6, atol=0)
    assert torch.allclose(model.lin.weight, as_trained, rtol=1e-6, atol=0)
    # the view restores even when the body raises
    with pytest.raises(RuntimeError):
        with sp.strict():
            raise RuntimeError("boom")
    assert torch.allclose(model.lin.weight, as_trained, rtol=1e-6, atol=0)


def test_strict_view_uses_the_current_latent_weights():
    model, sp = attach("ste", pattern="2:4")
    sp.step(4)
    with torch.no_grad():
        latent(model)[0, 0] = 10.0  # now 10 and -4 lead group (10, -2, 3, -4)
    with sp.strict():
        got = model.lin.weight.detach()
    want_mask = MASK["2:4"].clone()
    want_mask[0, :4] = torch.tensor([True, False, False, True])
    want = latent(model).detach() * want_mask.float()
    assert torch.equal(got, want)


def test_unknown_view_is_refused():
    model, sp = attach("ste")
    with pytest.raises(ValueError, match="unknown view"):
        with sp.view("bogus"):
            pass


# -- gradient accumulation ---------------------------------------------------------------
def test_repeated_step_is_a_no_op(monkeypatch):
    calls = []
    real = masked_weight.nm_mask

    def counting(*args, **kwargs):
        calls.append(args[1:3])
        return real(*args, **kwargs)

    monkeypatch.setattr(masked_weight, "nm_mask", counting)
    model, sp = attach("mdgf_exp", beta=0.5)
    sp.step(4)
    assert len(calls) == 1
    mask_before = model.lin.parametrizations.weight[0].mask.clone()
    # change W so that a recomputed 1:4 mask would differ in row 0, group 0
    with torch.no_grad():
        latent(model)[0, 0] = 10.0
    for _ in range(3):  # micro-batches of the same optimizer step
        sp.step(4)
        backward(model)
    assert len(calls) == 1
    assert torch.equal(model.lin.parametrizations.weight[0].mask, mask_before)
    assert model.lin.parametrizations.weight[0].decay == pytest.approx(math.exp(-0.5 * 2))
    # the next optimizer step recomputes the mask (mask_interval = 1)
    sp.step(5)
    assert len(calls) == 2
    want = MASK["1:4"].clone()
    want[0, :4] = torch.tensor([True, False, False, False])
    assert torch.equal(model.lin.parametrizations.weight[0].mask, want)
    assert model.lin.parametrizations.weight[0].decay == pytest.approx(math.exp(-0.5 * 3))


def test_accumulated_micro_batches_sum_straight_through_gradients():
    model, sp = attach("ste")
    sp.step(4)
    model.zero_grad(set_to_none=True)
    for _ in range(3):
        sp.step(4)
        (model(X) * G).sum().backward()
    assert torch.equal(latent(model).grad, 3 * GRAD)


# -- biases -------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe", ["ste", "srste", "mdgf_exp", "sdgf_step"])
def test_bias_is_kept_and_untouched(recipe):
    model = Net()
    bias = model.lin.bias
    sp = pgfsparse.sparsify(
        model, pattern="1:4", recipe=recipe, total_steps=TOTAL, layer_map={"ff": [r"^lin$"]},
        dense_fraction=DENSE_FRACTION, finetune_fraction=FINETUNE_FRACTION,
    )
    assert not parametrize.is_parametrized(model.lin, "bias")
    for step in range(TOTAL):
        sp.step(step)
        assert model.lin.bias is bias
        assert torch.equal(model.lin.bias, B)
    y = backward(model)
    assert torch.allclose(y, X @ (W * MASK["1:4"].float()).T + B, rtol=1e-6, atol=1e-6)
    assert torch.equal(model.lin.bias.grad, BIAS_GRAD)
    assert "lin.bias" in model.state_dict()
    assert torch.equal(sp.export_state_dict("strict")["lin.bias"], B)
    sp.remove("strict")
    assert model.lin.bias is bias
    assert torch.equal(model.lin.bias, B)
