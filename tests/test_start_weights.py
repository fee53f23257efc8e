"""model.checkpoint=RUN: a new run of any family starts from a pgf-train run's weights (strict N:M if sparse).

Tiny source runs (a ViT on digits, a T5 on a few sentence pairs) are trained for a few steps;
the new run's parts are built as pgf-train builds them, and its model, before the first step,
must hold exactly the source's weights: as trained for a dense run, and for a sparse one the
target pattern of its latent weights, recomputed here by hand from the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")
pytest.importorskip("hydra")

from hydra import compose, initialize_config_module  # noqa: E402

from pgfsparse.config.validation import to_train_config  # noqa: E402
from pgfsparse.errors import ConfigError  # noqa: E402
from pgfsparse.run.distributed import Process  # noqa: E402
from pgfsparse.run.parts import build_run_parts  # noqa: E402
from pgfsparse.run.trainer import Trainer  # noqa: E402
from test_cli import QUIET, TINY_VIT, train  # noqa: E402

VIT = ["data=digits", *TINY_VIT]


def new_run_parts(run_dir: Path, *overrides: str):
    """The parts of a new run (model sparsified, nothing trained), built as pgf-train builds them."""
    with initialize_config_module(config_module="pgfsparse.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*QUIET, *overrides])
    trainer = Trainer(to_train_config(cfg), run_dir)  # the config checks, the task
    return build_run_parts(trainer.cfg, trainer.task, trainer.spec, Process(), torch.device("cpu"))


def checkpoint_of(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)


def strict_by_hand(state: dict, n: int, m: int) -> dict:
    """The source's weights with each sparse layer kept at its N largest |w| of every M consecutive inputs."""
    expected = dict(state["model"])
    for layer in state["sparsifier"]["layers"]:
        weight = expected[f"{layer}.weight"]
        groups = weight.reshape(weight.shape[0], -1, m)
        keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, groups.abs().topk(n, dim=-1).indices, True)
        expected[f"{layer}.weight"] = (groups * keep).reshape(weight.shape)
    return expected


def assert_starts_with(model: torch.nn.Module, expected: dict) -> None:
    state = model.state_dict()  # plain keys; a sparsified layer's entry is its latent (trainable) weight
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


@pytest.fixture(scope="module")
def vit_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    train(root / "dense", *VIT, "budget.steps=3")
    train(root / "sparse", *VIT, "sparsity=1:4", "recipe=srste", "budget.steps=3")
    return root


def test_a_dense_run_starts_a_new_run_with_its_weights(tmp_path, vit_runs):
    source = checkpoint_of(vit_runs / "dense")
    parts = new_run_parts(
        tmp_path / "new", *VIT, "sparsity=1:8", "recipe=decay", f"model.checkpoint={vit_runs / 'dense'}"
    )
    assert_starts_with(parts.model, source["model"])
    assert parts.sparsifier.layers  # sparsified after loading: the new run's own pattern


def test_a_sparse_run_gives_its_strict_weights(tmp_path, vit_runs):
    source = checkpoint_of(vit_runs / "sparse")
    expected = strict_by_hand(source, 1, 4)
    assert set(source["sparsifier"]["layers"]) == {"blocks.0.mlp.fc1", "blocks.0.mlp.fc2"}
    for layer in source["sparsifier"]["layers"]:  # the as-trained weights are not N:M: the strict view is
        assert not torch.equal(expected[f"{layer}.weight"], source["model"][f"{layer}.weight"])
    parts = new_run_parts(tmp_path / "new", *VIT, f"model.checkpoint={vit_runs / 'sparse' / 'checkpoint.pt'}")
    assert_starts_with(parts.model, expected)
    fc1 = parts.model.state_dict()["blocks.0.mlp.fc1.weight"]
    assert ((fc1.reshape(fc1.shape[0], -1, 4) != 0).sum(-1) == 1).all()  # exactly 1 of every 4 inputs


def test_a_start_draws_the_same_random_numbers_as_no_start(tmp_path, vit_runs):
    """Rebuilding the source run initialises a model: the new run's RNG must not see it."""
    new_run_parts(tmp_path / "plain", *VIT, "sparsity=1:4")
    plain = torch.get_rng_state()
    new_run_parts(tmp_path / "started", *VIT, "sparsity=1:4", f"model.checkpoint={vit_runs / 'dense'}")
    assert torch.equal(torch.get_rng_state(), plain)


def test_another_model_size_fails_in_one_line_before_training(tmp_path, vit_runs):
    with pytest.raises(ConfigError) as info:
        new_run_parts(tmp_path / "new", *VIT, "model.kwargs.embed_dim=48", f"model.checkpoint={vit_runs / 'dense'}")
    message = str(info.value)
    source = checkpoint_of(vit_runs / "dense")["model"]
    first = next(iter(source))  # the ViT's first key (cls_token), 1x1x32 in the source, 1x1x48 here
    assert f"{first} is 1x1x32 there and 1x1x48 here" in message and "\n" not in message
    assert not (tmp_path / "new" / "checkpoint.pt").exists()


@pytest.mark.parametrize(
    "target, phrase",
    [
        ("folder", "is a folder without checkpoint.pt"),
        ("weights.pth", "is not a pgf-train checkpoint: model=t5 starts from a pgf-train run dir or its checkpoint.pt"),
    ],
)
def test_what_is_not_a_run_is_refused_in_one_line(tmp_path, target, phrase):
    (tmp_path / "folder").mkdir()
    torch.save({"shared.weight": torch.zeros(2, 2)}, tmp_path / "weights.pth")
    with pytest.raises(ConfigError) as info:
        new_run_parts(tmp_path / "new", "model=t5", f"model.checkpoint={tmp_path / target}")
    assert phrase in str(info.value) and "\n" not in str(info.value)


def test_vision_still_takes_a_timm_weights_file(tmp_path):
    from conftest import build_vit
    from pgfsparse.config.schema import ModelConfig
    from pgfsparse.models import build_vision_model

    kwargs = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2)
    source = build_vit(seed=3, **kwargs).state_dict()
    torch.save(source, tmp_path / "vit.pth")
    cfg = ModelConfig(family="vit", name="vit_tiny_patch16_224", kwargs=kwargs, checkpoint=str(tmp_path / "vit.pth"))
    model = build_vision_model(cfg, image_size=32, channels=3, num_classes=10)
    # timm loads the file as pretrained weights; the head of another class count than its hub config's (1000)
    # is re-initialised, as for any timm pretrained model
    loaded = model.state_dict()
    assert [k for k, v in source.items() if not torch.equal(loaded[k], v)] == ["head.weight"]


def test_t5_starts_from_a_sparse_t5_run(tmp_path, monkeypatch):
    from test_t5 import TINY_T5, sentence_pairs, write_parquet

    monkeypatch.setenv("PGF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("PGF_DATA_DIR", raising=False)
    pairs_dir = tmp_path / "pairs"
    for split, count, seed in (("train", 64, 0), ("validation", 8, 1)):
        pairs = sentence_pairs(count, seed)
        write_parquet(pairs_dir / f"{split}.parquet", {"en": [e for e, _ in pairs], "de": [d for _, d in pairs]})
    common = [*TINY_T5, f"data.path={pairs_dir}", "data.generate_limit=2"]
    train(tmp_path / "source", *common, "sparsity=1:4", "recipe=ste", "budget.steps=2")
    source = checkpoint_of(tmp_path / "source")
    expected = strict_by_hand(source, 1, 4)
    assert any("DenseReluDense.wi" in layer for layer in source["sparsifier"]["layers"])
    parts = new_run_parts(tmp_path / "new", *common, f"model.checkpoint={tmp_path / 'source'}")
    assert_starts_with(parts.model, expected)
