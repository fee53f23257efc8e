"""pgf-train with a one-shot start (oneshot=magnitude | wanda | sparsegpt): the prune before the first step, the
zero-step evaluation, the FLOP charge, the recipes' first masks and an exact resume that never calibrates again.

The per-layer algorithms and the block-by-block order are tested in test_oneshot.py and test_oneshot_model.py;
the refusals (dense sparsity, samples < 1, M not dividing the block size, a split too short) in test_hardening.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import pgfsparse.oneshot as oneshot_package
from conftest import build_vit
from pgfsparse.oneshot import prune_model
from pgfsparse.sparsity import sparsify
from test_causal_lm import SAMPLES, write_corpus
from test_cli import TINY_VIT, _interrupt_after, train, without_wall_time

pytest.importorskip("hydra")

TINY_GPT2 = ["model=gpt2", "model.tokenizer.kind=byte", "data.block_size=16", "data.batch_size=4",
             "model.kwargs.n_layer=2", "model.kwargs.n_embd=32", "model.kwargs.n_head=2", "threads=1"]


def gpt2_corpus(tmp_path: Path) -> list:
    corpus = write_corpus(tmp_path / "corpus", "\n".join(SAMPLES * 20) + "\n", "\n".join(SAMPLES) + "\n")
    return [*TINY_GPT2, "data=text", f"data.path={corpus}"]


def groups_over(weight: torch.Tensor, n: int, m: int) -> tuple:
    """(groups of M consecutive inputs with more than N non-zeros, groups) of an (out, in) weight."""
    kept = (weight.reshape(weight.shape[0], -1, m) != 0).sum(-1)
    return int((kept > n).sum()), kept.numel()


def ff_weights(checkpoint: Path) -> dict:
    """The GPT-2 FF weights of a run's checkpoint as (out, in): a Conv1D stores (in, out)."""
    state = torch.load(checkpoint, weights_only=True)["model"]
    return {k: w.t() for k, w in state.items() if (".mlp.c_fc." in k or ".mlp.c_proj." in k) and k.endswith("weight")}


@pytest.mark.parametrize("method, pattern", [("sparsegpt", "2:4"), ("wanda", "1:8"), ("magnitude", "1:4")])
def test_zero_steps_evaluates_the_pruned_start_and_checkpoints_exact_nm_weights(method, pattern, tmp_path, capsys):
    n, m = map(int, pattern.split(":"))
    run = tmp_path / "run"
    summary = train(run, *gpt2_corpus(tmp_path), f"sparsity={pattern}", f"oneshot={method}", "budget.steps=0",
                    "oneshot.samples=6")
    assert (summary["steps"], summary["recipe"], summary["oneshot"]) == (0, "none", method)
    assert summary["run_name"] == f"gpt2-n{n}m{m}-none-s0-oneshot={method}"
    # no step ran: the model as trained is the pruned start, and already exactly N:M
    assert summary["eval_value"] == summary["eval_value_strict"]
    weights = ff_weights(run / "checkpoint.pt")
    assert len(weights) == 4  # c_fc and c_proj of 2 blocks
    for name, weight in weights.items():
        assert groups_over(weight, n, m)[0] == 0, name
        assert (weight != 0).sum() == weight.numel() * n // m, name  # exactly N kept (none of them was 0)
    calibration = summary["oneshot_calibration"]
    assert summary["train_flops"] == calibration["flops"]  # no step: the whole charge is the calibration
    if method == "magnitude":
        assert calibration["forwards"] == 0 and calibration["flops"] == 0
    else:  # 6 samples in batches of 4 and 2; each block's forwards, the last one whole
        assert calibration["samples"] == 6 and calibration["examples_per_forward"] == 3
        assert calibration["forwards"] == 1 + 2 * 2  # the order pass, then 2 batches for each of 2 blocks
        assert calibration["flops"] > 0
    if method == "sparsegpt":  # the zero-step run exports like any other
        from pgfsparse.cli.pgf_export import main

        assert main([str(run), "--format", "hf", "--check"]) == 0
        assert "check passed" in capsys.readouterr().out


def test_the_calibration_is_charged_at_the_dense_forward_flops_and_a_flop_budget_includes_it(tmp_path):
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import GPT2Config, GPT2LMHeadModel

    from pgfsparse.data.text import lm_tokenizer
    from pgfsparse.rundir.layout import RunDir

    common = [*gpt2_corpus(tmp_path), "sparsity=1:4", "oneshot=wanda", "oneshot.samples=8", "recipe=srste"]
    pruned = train(tmp_path / "zero", *common, "budget.steps=0")
    calibration = pruned["oneshot_calibration"]
    # the dense forward of one example (16 tokens), counted by torch on the run's own model class and shapes
    vocab = lm_tokenizer.load(RunDir(tmp_path / "zero").tokenizer).vocab_size
    config = GPT2Config(vocab_size=vocab, n_positions=16, n_embd=32, n_layer=2, n_head=2, activation_function="gelu")
    model = GPT2LMHeadModel(config).eval()
    model.set_attn_implementation("eager")  # torch's counter sees attention's matmuls only outside SDPA
    with FlopCounterMode(display=False) as counter:
        model(input_ids=torch.zeros((1, 16), dtype=torch.long), use_cache=False)
    dense_forward = counter.get_total_flops()
    # 2 blocks, FF and attention: an early stop after block 1 costs about half a forward, block 2 a whole one
    assert calibration["forward_equivalents"] == pytest.approx(1 + 2 * (0.5 + 1.0))
    assert calibration["flops"] == pytest.approx(calibration["forward_equivalents"] * 4 * dense_forward, rel=1e-6)
    one = train(tmp_path / "one", *common, "budget.steps=1")
    step = one["train_flops"] - calibration["flops"]
    budget = calibration["flops"] + 2.5 * step  # SR-STE's steps all cost the same
    fitted = train(tmp_path / "budget", *common, f"budget.train_flops={budget}")
    assert fitted["steps"] == 3 and fitted["train_flops"] == pytest.approx(calibration["flops"] + 3 * step)


@pytest.mark.parametrize("recipe", ["srste", "ste", "fixed_mask"])
def test_the_first_masks_of_srste_ste_and_fixed_mask_are_the_one_shot_masks(recipe):
    model = build_vit()
    torch.manual_seed(1)
    batches = [torch.randn(4, 3, 32, 32) for _ in range(2)]
    prune_model(model, "2:4", "wanda", batches)
    pruned = {name: module.weight.detach().clone() for name, module in model.named_modules()
              if name.endswith(("fc1", "fc2"))}
    sparsifier = sparsify(model, "2:4", recipe, total_steps=10, dense_fraction=0.0)
    sparsifier.step(0)
    assert set(sparsifier.layers) == set(pruned)
    for name, masked in sparsifier.layers.items():
        assert torch.equal(masked.mask.bool(), pruned[name] != 0), name


def test_a_one_shot_composition_has_no_dense_warm_up_and_decay_reopens_by_design():
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="pgfsparse.conf", version_base="1.3"):
        for recipe in ("srste", "mdgf_exp", "sdgf_step"):
            cfg = compose(config_name="train", overrides=["sparsity=1:8", f"recipe={recipe}", "oneshot=sparsegpt"])
            assert cfg.recipe.dense_fraction == 0.0 and cfg.oneshot.method == "sparsegpt"
        assert compose(config_name="train", overrides=["sparsity=1:8", "recipe=srste"]).recipe.dense_fraction > 0


@pytest.mark.parametrize("at", [0, 4])
def test_a_one_shot_run_resumes_bit_identically_and_never_calibrates_again(at, tmp_path, monkeypatch):
    calls = []
    original = oneshot_package.prune_model

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(oneshot_package, "prune_model", counted)
    common = ["data=digits", *TINY_VIT, "sparsity=1:4", "recipe=srste", "oneshot=sparsegpt", "oneshot.samples=16",
              "budget.steps=5", "threads=1", "data.batch_size=8"]
    train(tmp_path / "straight", *common)
    half = tmp_path / "halves"
    with pytest.raises(KeyboardInterrupt):  # at=0: killed right after the checkpoint the prune writes before step 1
        _interrupt_after(half, at, *common, "checkpoint_every=4")
    train(half, *common)
    assert len(calls) == 2  # the straight run and the interrupted one: never the resumed one
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(half / "checkpoint.pt", weights_only=True)
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    untimed = [{k: v for k, v in run["oneshot"].items() if k != "seconds"} for run in (straight, resumed)]
    assert untimed[0] == untimed[1] and untimed[0]["flops"] > 0 and resumed["train_flops"] == straight["train_flops"]
    assert without_wall_time(tmp_path / "straight") == without_wall_time(half)
