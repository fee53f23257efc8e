"""Resuming (exactly the uninterrupted run), diagnostics on hand-worked cases, and
the sparsifier state's safety checks."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pgfsparse

# -- resume --------------------------------------------------------------------------------
TOTAL = 12
SPARSE_OPTIONS = dict(dense_fraction=0.2, finetune_fraction=0.25)  # dense steps 0-1, sparse 2-8, fine-tune 9-11
LAYER_MAP = {"ff": [r"^fc1$", r"^fc2$"]}


class MLP(nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(torch.relu(self.fc2(F.gelu(self.fc1(x)))))


def batch(step: int):
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(8, 16, generator=g), torch.randint(0, 4, (8,), generator=g)


def build(recipe, options, seed=0):
    model = MLP(seed)
    sp = pgfsparse.sparsify(model, pattern="1:8", recipe=recipe, total_steps=TOTAL, layer_map=LAYER_MAP,
                            **SPARSE_OPTIONS, **options)
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.01)
    return model, sp, opt


def train(model, sp, opt, start, end, log):
    for step in range(start, end):
        sp.step(step)
        sp.step(step)  # a second micro-batch call: must not matter
        x, y = batch(step)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        log.append(sp.diagnostics(opt))


def snapshot(model, sp, opt):
    layers = {
        name: (param.mask.clone(), param.decay, param.multiplier.clone(), param.active)
        for name, param in sp.layers.items()
    }
    return layers, {k: v.clone() for k, v in model.state_dict().items()}, opt.state_dict()


RESUME_CASES = [
    ("ste", {}),
    ("ste", {"mask_interval": 3}),
    ("srste", {"srste_lambda": 0.05}),
    ("mdgf_linear", {}),
    ("mdgf_exp", {}),
    ("mdgf_exp", {"mask_interval": 3}),
    ("mdgf_step", {}),
    ("mdgf_step", {"step_weight": 0.25, "step_interval": 3}),
    ("sdgf_step", {}),
    ("sdgf_geo", {}),
    ("sdgf_custom", {"ladder": "6:8,2:8,1:8"}),
]


@pytest.mark.parametrize("split", [1, 6, 10])  # resume in the dense warm-up, mid mask interval, in the fine-tune
@pytest.mark.parametrize("recipe, options", RESUME_CASES,
                         ids=[f"{r}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for r, o in RESUME_CASES])
def test_resume_equals_the_uninterrupted_run(recipe, options, split, tmp_path):
    model, sp, opt = build(recipe, options)
    full_log = []
    train(model, sp, opt, 0, TOTAL, full_log)
    want_layers, want_state, want_opt = snapshot(model, sp, opt)
    assert sum(entry.get("fc1/sad", 0) + entry.get("fc2/sad", 0) for entry in full_log) > 0  # masks do move

    model, sp, opt = build(recipe, options)
    log = []
    train(model, sp, opt, 0, split, log)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sparsifier": sp.state_dict()}, path)
    del model, sp, opt

    ckpt = torch.load(path, weights_only=True)
    model, sp, opt = build(recipe, options, seed=123)  # other initial weights: everything must come from the file
    model.load_state_dict(ckpt["model"], strict=True)
    opt.load_state_dict(ckpt["opt"])
    sp.load_state_dict(ckpt["sparsifier"])
    train(model, sp, opt, split, TOTAL, log)

    got_layers, got_state, got_opt = snapshot(model, sp, opt)
    assert set(got_layers) == set(want_layers) == {"fc1", "fc2"}
    for name, (mask, decay, multiplier, active) in want_layers.items():
        assert torch.equal(got_layers[name][0], mask), name
        assert got_layers[name][1] == decay, name
        assert torch.equal(got_layers[name][2], multiplier), name
        assert got_layers[name][3] == active
    for key, value in want_state.items():
        assert torch.equal(got_state[key], value), key
    for index, state in want_opt["state"].items():
        for key, value in state.items():
            assert torch.equal(got_opt["state"][index][key], value), (index, key)
    # the diagnostics after the split (SAD against the logged mask included) are the same too
    assert log[split:] == full_log[split:]


def test_resume_needs_the_sparsifier_state_when_masks_are_stale():
    """Control for the test above: with mask_interval=3, resuming mid-interval without the
    sparsifier's state recomputes the mask from the current weights and the run diverges."""
    recipe, options, split = "ste", {"mask_interval": 3}, 6  # step 6 is j = 4, inside mask epoch j = 3..5
    model, sp, opt = build(recipe, options)
    train(model, sp, opt, 0, TOTAL, [])
    want = {name: param.mask.clone() for name, param in sp.layers.items()}
    want_fc1 = model.fc1.parametrizations.weight.original.detach().clone()

    model, sp, opt = build(recipe, options)
    train(model, sp, opt, 0, split, [])
    saved_mask = sp.layers["fc1"].mask.clone()
    state = {"model": model.state_dict(), "opt": opt.state_dict()}
    fresh_model, fresh_sp, fresh_opt = build(recipe, options, seed=123)
    fresh_model.load_state_dict(state["model"])
    fresh_opt.load_state_dict(state["opt"])
    fresh_sp.step(split)
    assert not torch.equal(fresh_sp.layers["fc1"].mask, saved_mask)  # the stale mask is what the run used
    train(fresh_model, fresh_sp, fresh_opt, split, TOTAL, [])
    assert not torch.equal(fresh_model.fc1.parametrizations.weight.original, want_fc1)
    del want


def test_sparsifier_state_is_small_and_loads_with_weights_only(tmp_path):
    model, sp, opt = build("mdgf_exp", {})
    train(model, sp, opt, 0, 4, [])
    state = sp.state_dict()
    assert state["step"] == 3 and state["recipe"] == "mdgf_exp" and state["total_steps"] == TOTAL
    # masks are packed 8 per byte
    assert state["layers"]["fc1"]["mask"].dtype == torch.uint8
    assert state["layers"]["fc1"]["mask"].numel() == 32 * 16 // 8
    torch.save(state, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    _, sp2, _ = build("mdgf_exp", {}, seed=5)
    sp2.load_state_dict(loaded)
    for name in ("fc1", "fc2"):
        assert torch.equal(sp2.layers[name].mask, sp.layers[name].mask)
        assert sp2.layers[name].decay == sp.layers[name].decay
    assert sp2.current_step == 3


@pytest.mark.parametrize(
    "other",
    [
        dict(recipe="ste", options={}),
        dict(recipe="mdgf_exp", options={}, total=TOTAL + 1),
        dict(recipe="decay", options={}, total=2 * TOTAL),  # 'decay' is mdgf_exp: the step count differs
    ],
)
def test_load_state_dict_with_other_settings_raises(other):
    _, sp, _ = build("mdgf_exp", {})
    sp.step(3)
    state = sp.state_dict()
    model = MLP(0)
    other_sp = pgfsparse.sparsify(model, pattern="1:8", recipe=other["recipe"], total_steps=other.get("total", TOTAL),
                                  layer_map=LAYER_MAP, **SPARSE_OPTIONS)
    with pytest.raises(ValueError) as error:
        other_sp.load_state_dict(state)
    text = str(error.value)
    assert "\n" not in text
    assert "mdgf_exp" in text and str(TOTAL) in text


def test_load_state_dict_with_other_layers_raises():
    _, sp, _ = build("ste", {})
    sp.step(3)
    state = sp.state_dict()
    model = MLP(0)
    other = pgfsparse.sparsify(model, pattern="1:8", recipe="ste", total_steps=TOTAL, layer_map={"ff": r"^fc1$"},
                               **SPARSE_OPTIONS)
    with pytest.raises(ValueError) as error:
        other.load_state_dict(state)
    assert "\n" not in str(error.value)


# -- diagnostics on hand-worked cases ------------------------------------------------------------
W = torch.tensor(
    [
        [1.0, -2.0, 3.0, -4.0, 5.0, -6.0, 7.0, -8.0],
        [0.5, 0.1, -0.2, 0.3, -0.9, 0.8, 0.05, -0.06],
    ]
)
W_OTHER = torch.tensor([[0.3, 0.2, 0.1, 0.4, 9.0, 1.0, 2.0, 3.0], [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 5.0]])
X = torch.tensor([[1.0, 2, 3, 4, 5, 6, 7, 8]])
G = torch.tensor([[1.0, -1.0]])  # dL/dW~ of lin: row 0 = x, row 1 = -x
G_OTHER = torch.tensor([[10.0, 0.0]])  # dL/dW~ of other: row 0 = 10 x, row 1 = 0


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 2)
        self.other = nn.Linear(8, 2)
        with torch.no_grad():
            self.lin.weight.copy_(W)
            self.other.weight.copy_(W_OTHER)

    def loss(self):
        return (self.lin(X) * G).sum() + (self.other(X) * G_OTHER).sum()


def diag_model(pattern="1:4", recipe="ste", **options):
    model = TwoLayers()
    options.setdefault("dense_fraction", 0.0)
    options.setdefault("finetune_fraction", 0.0)
    sp = pgfsparse.sparsify(model, pattern={"ff": pattern, "q": "1:2"}, recipe=recipe, total_steps=10,
                            layer_map={"ff": r"^lin$", "q": r"^other$"}, **options)
    return model, sp


def test_diagnostics_hand_worked_1_4():
    model, sp = diag_model("1:4")
    sp.step(0)
    model.loss().backward()
    d = sp.diagnostics()
    # kept (1:4): row 0 -4, -8 -> grads 4, 8; row 1 .5, -.9 -> grads -1, -5
    assert d["lin/grad_norm_kept"] == pytest.approx(math.sqrt(16 + 64 + 1 + 25), rel=1e-6)
    # all grads: 2 * (1 + 4 + ... + 64) = 408; pruned = 408 - 106
    assert d["lin/grad_norm_pruned"] == pytest.approx(math.sqrt(408 - 106), rel=1e-6)
    assert d["lin/density"] == 0.25
    assert d["lin/nonzero"] == 0.25  # D = 0 and W has no zeros
    assert d["lin/decay"] == 0.0
    assert d["lin/rung"] == 0
    assert d["lin/sad"] == 0  # first call: nothing to compare with
    assert d["other/density"] == 0.5
    # |grad| of the FF layer only: 1..8 twice; mean 4.5, sum of squared deviations 2 * 42 = 84, n - 1 = 15
    assert d["ff/grad_abs_var"] == pytest.approx(84 / 15, rel=1e-6)
    assert "ff/exp_avg_sq_var" not in d  # no optimizer given


def test_diagnostics_hand_worked_2_4_norms():
    model, sp = diag_model("2:4")
    sp.step(0)
    model.loss().backward()
    d = sp.diagnostics()
    # kept (2:4): row 0 idx 2,3,6,7 -> 3,4,7,8; row 1 idx 0,3,4,5 -> 1,4,5,6
    kept = 9 + 16 + 49 + 64 + 1 + 16 + 25 + 36
    assert d["lin/grad_norm_kept"] == pytest.approx(math.sqrt(kept), rel=1e-6)
    assert d["lin/grad_norm_pruned"] == pytest.approx(math.sqrt(408 - kept), rel=1e-6)
    assert d["lin/density"] == 0.5


def test_diagnostics_sad_counts_flipped_entries():
    model, sp = diag_model("1:4")
    sp.step(0)
    assert sp.diagnostics()["lin/sad"] == 0
    with torch.no_grad():
        w = model.lin.parametrizations.weight.original
        w[0, 0] = 10.0  # row 0, group (10, -2, 3, -4): keep moves from -4 to 10 -> 2 flips
        w[1, 5] = 2.0  # row 1, group (-.9, 2, .05, -.06): keep moves from -.9 to 2 -> 2 flips
        w[1, 2] = -0.15  # row 1, group (.5, .1, -.15, .3): .5 still wins -> no flip
        model.other.parametrizations.weight.original[1, 7] = 4.5  # other: (4, 5 -> 4.5) still keeps index 7
    sp.step(1)
    d = sp.diagnostics()
    assert d["lin/sad"] == 4
    assert d["other/sad"] == 0
    with torch.no_grad():
        model.other.parametrizations.weight.original[0, 0] = -0.25  # (-.25, .2): still keeps index 0
        model.other.parametrizations.weight.original[0, 3] = 0.35  # (.1, .35): still keeps index 3
        model.other.parametrizations.weight.original[0, 5] = 10.0  # (9, 10): keep moves -> 2 flips
    sp.step(2)
    d = sp.diagnostics()
    assert d["lin/sad"] == 0
    assert d["other/sad"] == 2


def test_diagnostics_exp_avg_sq_variance_after_one_adamw_step():
    model, sp = diag_model("1:4")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    sp.step(0)
    model.loss().backward()
    opt.step()
    d = sp.diagnostics(opt)
    # after one step exp_avg_sq = (1 - 0.999) * g^2 with |g| = 1..8 in both rows of the FF weight
    values = [0.001 * i * i for i in range(1, 9)] * 2
    mean = sum(values) / len(values)
    want = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    assert d["ff/exp_avg_sq_var"] == pytest.approx(want, rel=1e-4)
    assert d["ff/grad_abs_var"] == pytest.approx(84 / 15, rel=1e-6)


def test_diagnostics_dense_phase_and_decay():
    model, sp = diag_model("1:4", recipe="mdgf_exp", dense_fraction=0.2, beta=0.5)
    sp.step(1)  # dense
    model.loss().backward()
    d = sp.diagnostics()
    assert d["lin/density"] == 1.0 and d["lin/decay"] == 1.0 and d["lin/rung"] == -1 and d["lin/nonzero"] == 1.0
    sp.step(4)  # j = 2: D = exp(-1)
    d = sp.diagnostics()
    assert d["lin/decay"] == pytest.approx(math.exp(-1.0))
    assert d["lin/density"] == 0.25
    assert d["lin/nonzero"] == 1.0  # a decaying mask is dense
    assert d["lin/rung"] == 0


def test_diagnostics_fused_qkv_keys(tiny_vit):
    sp = pgfsparse.sparsify(tiny_vit, pattern={"ff": "1:4", "qk": "1:8"}, recipe="sdgf_step", total_steps=10,
                            dense_fraction=0.0, finetune_fraction=0.5)
    sp.step(5)  # fine-tune: the target patterns
    tiny_vit(torch.randn(2, 3, 32, 32)).sum().backward()
    d = sp.diagnostics()
    assert d["blocks.0.mlp.fc1/density"] == 0.25
    assert d["blocks.0.attn.qkv[q]/density"] == 0.125
    assert d["blocks.1.attn.qkv[k]/density"] == 0.125
    assert not any("qkv[v]" in key for key in d)
    assert "blocks.0.attn.qkv/density" not in d
    grads = [tiny_vit.get_submodule(f"blocks.{i}.mlp.{fc}").parametrizations.weight.original.grad.abs().flatten()
             for i in range(2) for fc in ("fc1", "fc2")]
    assert d["ff/grad_abs_var"] == pytest.approx(torch.cat(grads).var().item(), rel=1e-5)


def test_load_state_dict_refuses_other_recipe_settings():
    from torch import nn

    import pgfsparse

    def build(**options):
        model = nn.Sequential(nn.Linear(8, 2))
        return pgfsparse.sparsify(model, "1:4", "mdgf_exp", total_steps=10, layer_map={"ff": [r"^0$"]}, **options)

    saved = build(decay_epsilon=1e-3)
    saved.step(3)
    with pytest.raises(ValueError, match="decay_epsilon") as info:
        build(decay_epsilon=1e-2).load_state_dict(saved.state_dict())
    assert "\n" not in str(info.value)
    other_pattern = pgfsparse.sparsify(nn.Sequential(nn.Linear(8, 2)), "2:4", "mdgf_exp", total_steps=10,
                                       layer_map={"ff": [r"^0$"]}, decay_epsilon=1e-3)
    with pytest.raises(ValueError, match="patterns"):
        other_pattern.load_state_dict(saved.state_dict())
