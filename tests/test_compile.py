"""compile=true: the same training as eager, the checkpoint unchanged, a one-line refusal when it cannot run.

Each case trains a tiny ViT on digits for 5 steps twice (eager, then compiled) from the same seed and
compares every step's loss and the final weights. Compiling takes ~20-30 s per case on a cold
inductor cache (a few seconds once warm), hence `slow`.
"""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("hydra")
pytest.importorskip("timm")

from test_cli import TINY_VIT, events, train  # noqa: E402

RUN = ["data=digits", "budget.steps=5", "data.batch_size=16", "log_every=1", *TINY_VIT]
CASES = {
    "dense": ["sparsity=dense", "recipe=dense"],
    "srste": ["sparsity=1:4", "recipe=srste"],
    # two dense steps, then decaying masks: the graph changes once mid-run (one recompile)
    "decay_after_dense": ["sparsity=1:4", "recipe=decay", "recipe.dense_fraction=0.4"],
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_compiled_training_matches_eager(tmp_path, case):
    eager = train(tmp_path / "eager", *RUN, *CASES[case], "compile=false")
    compiled = train(tmp_path / "compiled", *RUN, *CASES[case], "compile=true")
    losses = {run: [e["train/loss"] for e in events(tmp_path / run, "train")] for run in ("eager", "compiled")}
    assert len(losses["eager"]) == 5
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-4, abs=1e-5)
    assert compiled["eval_value"] == pytest.approx(eager["eval_value"], abs=1e-6 + 100 / 360)  # one eval image at most
    weights = {run: torch.load(tmp_path / run / "checkpoint.pt", weights_only=True)["model"]
               for run in ("eager", "compiled")}
    assert list(weights["compiled"]) == list(weights["eager"])  # plain keys: no _orig_mod. prefix
    for key, value in weights["eager"].items():
        torch.testing.assert_close(weights["compiled"][key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_a_machine_that_cannot_compile_is_refused_in_one_line(monkeypatch):
    from pgfsparse.errors import ConfigError
    from pgfsparse.run import parts as run_parts

    def no_compiler(fn, *args, **kwargs):
        def fails(*a, **k):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")
        return fails

    monkeypatch.setattr(torch, "compile", no_compiler)
    with pytest.raises(ConfigError) as refused:
        run_parts.compiled(torch.nn.Linear(2, 2), torch.device("cpu"))
    message = str(refused.value)
    assert "\n" not in message and message.startswith("compile=true: torch.compile cannot build kernels here")
    assert "No working C++ compiler found" in message and message.endswith("or set compile=false")


def test_the_loop_calls_the_compiled_model_and_saves_the_plain_one(tmp_path):
    from hydra import compose, initialize_config_module

    from pgfsparse.config.schema import TrainConfig
    from pgfsparse.config.validation import to_train_config
    from pgfsparse.run import distributed
    from pgfsparse.run.parts import build_run_parts
    from pgfsparse.run.trainer import Trainer

    with initialize_config_module(config_module="pgfsparse.conf", version_base="1.3"):
        cfg = to_train_config(compose(config_name="train", overrides=[*RUN, *CASES["srste"], "logger=local",
                                                                       "compile=true"]))
    assert TrainConfig().compile is False  # off by default
    trainer = Trainer(cfg, tmp_path)
    process, device = distributed.start("cpu")
    parts = build_run_parts(cfg, trainer.task, trainer.spec, process, device)
    assert isinstance(parts.ddp_model, torch._dynamo.eval_frame.OptimizedModule)
    assert parts.ddp_model._orig_mod is parts.model and parts.sparsifier.layers  # compiled after sparsify
    assert not any(key.startswith("_orig_mod") for key in parts.model.state_dict())

