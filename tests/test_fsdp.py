"""distributed.strategy=fsdp: FSDP2 on two CPU processes (gloo) against one process, and across kills and resumes.

Most two-process runs fork two ranks from this process (torchrun's variables set by hand) and take
the command's path in process (compose -> Trainer.fit), so they pay for no imports; the kill and
`resume=DIR` go through torchrun and the installed pgf-train. data.batch_size is per process: two
ranks at batch B see, step by step, the examples one process sees at batch 2B (data/loader.py cuts
each global batch into one contiguous block per rank).

Tolerance: FSDP2 reduce-scatters the two ranks' gradients (each a mean over B) in another order than
one backward over 2B sums them, so runs agree within float error, not bit for bit: final weights
within 1e-5 (measured: 2e-6 at most), Adam moments within 1e-6, eval losses within 1e-5, the N:M
masks (refreshed every step by srste, from the gathered weights) equal.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch

pytest.importorskip("hydra")
pytest.importorskip("timm")
pytest.importorskip("transformers")

from pgfsparse.run import distributed  # noqa: E402
from test_cli import PGF_TRAIN, QUIET, _interrupt_after, events, train, without_wall_time  # noqa: E402

VIT = ["data=digits", "model.kwargs.embed_dim=32", "model.kwargs.depth=2", "model.kwargs.num_heads=2",
       "data.augment.random_crop=false", "data.augment.hflip=0", "sparsity=1:4", "recipe=srste", "budget.steps=6",
       "threads=1", "optim.accumulate=2"]  # accumulation: FSDP2's set_requires_gradient_sync
STEPS = 6
FSDP = "distributed.strategy=fsdp"


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """A tiny GPT-2 (Conv1D weights: N:M groups along dim 0, across FSDP2's shards) on a byte-level corpus."""
    from test_causal_lm import SAMPLES, write_corpus

    corpus = write_corpus(tmp_path_factory.mktemp("corpus"), "\n".join(SAMPLES * 20) + "\n", "\n".join(SAMPLES) + "\n")
    return ["model=gpt2", "data=text", f"data.path={corpus}", "model.tokenizer.kind=byte", "data.block_size=16",
            "model.kwargs.n_layer=2", "model.kwargs.n_embd=32", "model.kwargs.n_head=2", "sparsity=1:4",
            "recipe=srste", f"budget.steps={STEPS}", "threads=1"]


# -- two ranks, forked --------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, run_dir: Path, overrides, stop_at, sigterm_at) -> None:
    """One rank: the in-process command; exit 0 done, 3 stopped (KeyboardInterrupt or SIGTERM), 1 crashed."""
    from pgfsparse.errors import Stopped

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    code = 0
    try:
        if sigterm_at is not None and rank == 1:  # one rank alone gets the signal: both must stop at that step
            import signal

            from pgfsparse.run.recorder import Recorder

            original = Recorder.step_done

            def step_done(self, done, *args):
                original(self, done, *args)
                if done == sigterm_at:
                    os.kill(os.getpid(), signal.SIGTERM)

            Recorder.step_done = step_done
        if stop_at is None:
            train(run_dir, *overrides)
        else:
            _interrupt_after(run_dir, stop_at, *overrides)
    except (KeyboardInterrupt, Stopped):
        code = 3
    except BaseException:  # noqa: BLE001 - reported, then the exit code says it
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no pytest teardown in a forked child


def two_ranks(run_dir: Path, *overrides: str, stop_at=None, sigterm_at=None, expect: int = 0) -> None:
    """The run on two forked ranks under FSDP2."""
    context = torch.multiprocessing.get_context("fork")
    port = _free_port()
    ranks = [context.Process(target=_rank, args=(r, port, run_dir, [*overrides, FSDP], stop_at, sigterm_at))
             for r in range(2)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=240)
    codes = [process.exitcode for process in ranks]
    for process in ranks:
        if process.is_alive():
            process.kill()
    assert codes == [expect, expect], codes


def checkpoint_of(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)


def assert_same_training(fsdp: Path, single: Path) -> None:
    """FSDP on two ranks at batch B vs one process at 2B: the tolerances of the module docstring."""
    a, b = checkpoint_of(fsdp), checkpoint_of(single)
    assert a["model"].keys() == b["model"].keys() and a["step"] == b["step"] == STEPS
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], atol=1e-5, rtol=0, msg=key)
    # the gathered optimizer state has a one-process run's layout: same numbering, groups and moments
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for index, state in b["optimizer"]["state"].items():
        assert a["optimizer"]["state"][index].keys() == state.keys()
        for key, value in state.items():
            torch.testing.assert_close(a["optimizer"]["state"][index][key], value, atol=1e-6, rtol=0)
    layers = b["sparsifier"]["layers"]
    assert layers and a["sparsifier"]["layers"].keys() == layers.keys()
    for name, saved in layers.items():
        assert torch.equal(a["sparsifier"]["layers"][name]["mask"], saved["mask"]), name
    evals = [[e for e in events(d, "eval")][-1] for d in (fsdp, single)]
    for key in ("eval/loss", "eval_strict/loss"):
        assert evals[0][key] == pytest.approx(evals[1][key], abs=1e-5), key
    summaries = [json.loads((d / "summary.json").read_text()) for d in (fsdp, single)]
    for key in ("steps", "examples_per_step", "train_flops"):
        assert summaries[0][key] == summaries[1][key], key
    # the masks moved under sharding (srste refreshes every step): mask flips were counted
    flips = [v for e in events(fsdp, "diagnostics") if e["step"] > 2 for k, v in e.items() if k.endswith("/sad")]
    assert flips and max(flips) > 0


def with_batch(overrides, batch: int):
    return [*overrides, f"data.batch_size={batch}"]


@pytest.fixture(scope="module")
def gpt2_runs(tmp_path_factory, gpt2):
    """GPT-2 trained straight through: on two FSDP ranks at batch 4, and on one process at batch 8."""
    root = tmp_path_factory.mktemp("gpt2")
    two_ranks(root / "fsdp", *with_batch(gpt2, 4))
    train(root / "single", *with_batch(gpt2, 8))
    return root / "fsdp", root / "single"


# -- (a) the same steps as one process ----------------------------------------------------------------------
def test_fsdp_trains_a_conv1d_gpt2_as_one_process_at_the_same_global_batch(gpt2_runs):
    assert_same_training(*gpt2_runs)


def test_fsdp_trains_a_vit_as_one_process_at_the_same_global_batch(tmp_path):
    two_ranks(tmp_path / "fsdp", *with_batch(VIT, 8))
    train(tmp_path / "single", *with_batch(VIT, 16))
    assert_same_training(tmp_path / "fsdp", tmp_path / "single")


# -- (b) kills and resumes -----------------------------------------------------------------------------------
def test_sigterm_on_one_rank_stops_both_with_a_checkpoint_and_the_resume_is_exact(gpt2_runs, gpt2, tmp_path):
    straight = gpt2_runs[0]
    run_dir = tmp_path / "run"
    two_ranks(run_dir, *with_batch(gpt2, 4), sigterm_at=4, expect=3)  # at a log_every=2 line: the same windows
    assert checkpoint_of(run_dir)["step"] == 4 and not (run_dir / "summary.json").exists()
    two_ranks(run_dir, *with_batch(gpt2, 4))
    want, got = checkpoint_of(straight), checkpoint_of(run_dir)
    for key, value in want["model"].items():
        assert torch.equal(value, got["model"][key]), key
    assert without_wall_time(run_dir) == without_wall_time(straight)


def test_a_killed_fsdp_command_resumes_exactly_with_resume_dir_alone(gpt2_runs, gpt2, tmp_path):
    """torchrun and the installed pgf-train: both ranks die right after the step-4 checkpoint (no clean-up, the
    run lock left behind), then `torchrun ... pgf-train resume=DIR` ends where the uninterrupted run ends."""
    if not PGF_TRAIN.exists():
        pytest.skip("pgf-train is not installed next to this Python")
    straight, run_dir = gpt2_runs[0], tmp_path / "run"
    argv = [*QUIET, *with_batch(gpt2, 4), FSDP, "checkpoint_every=4", f"hydra.run.dir={run_dir}"]
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import os, sys\nimport torch\nfrom pgfsparse.run.trainer import Trainer\n"
        "from pgfsparse.cli.pgf_train import main\n"
        "original = Trainer._save\n"
        "def save(self, step, wall):\n    original(self, step, wall)\n    if step == 4:\n"
        "        torch.distributed.barrier()  # rank 0 has written it\n        os._exit(9)\n"
        f"Trainer._save = save\nsys.argv = ['pgf-train', *{argv!r}]\nmain()\n")
    scratch = tmp_path / "tmp"  # TMPDIR: torchrun's and rank 1's throwaway folders
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in distributed.TORCHRUN_VARIABLES}
    env.update(WANDB_MODE="disabled", TMPDIR=str(scratch), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")

    def torchrun(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    killed = torchrun(str(driver))
    assert killed.returncode != 0 and checkpoint_of(run_dir)["step"] == 4, killed.stderr[-3000:]
    assert not (run_dir / "summary.json").exists()
    resumed = torchrun(str(PGF_TRAIN), f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {run_dir} from step 4 of {STEPS}" in resumed.stderr
    want, got = checkpoint_of(straight), checkpoint_of(run_dir)
    for key, value in want["model"].items():
        assert torch.equal(value, got["model"][key]), key
    assert without_wall_time(run_dir) == without_wall_time(straight)
    # one run dir: rank 1 wrote nothing anywhere (its Hydra dir is a throwaway under TMPDIR)
    holders = {p.parent for name in ("metrics.jsonl", "checkpoint.pt", "summary.json") for p in tmp_path.rglob(name)}
    assert holders == {run_dir}


# -- (c) across process counts --------------------------------------------------------------------------------
def adam_steps(run_dir: Path) -> set:
    """Every parameter's AdamW step count in the run's checkpoint."""
    return {int(state["step"]) for state in checkpoint_of(run_dir)["optimizer"]["state"].values()}


def test_one_process_resumes_a_two_rank_fsdp_run_and_back(gpt2, tmp_path):
    """The checkpoint is one whole file in a one-process run's layout: either side resumes the other's.

    A resumed optimizer that had started afresh would count STEPS - 3 steps, not STEPS.
    """
    fsdp_first, single_first = tmp_path / "fsdp_first", tmp_path / "single_first"
    two_ranks(fsdp_first, *with_batch(gpt2, 4), "checkpoint_every=3", stop_at=3, expect=3)
    assert adam_steps(fsdp_first) == {3}
    train(fsdp_first, *with_batch(gpt2, 4))  # one process (data.batch_size must stay: it is a resume key)
    assert adam_steps(fsdp_first) == {STEPS} and json.loads((fsdp_first / "summary.json").read_text())["steps"] == STEPS

    with pytest.raises(KeyboardInterrupt):
        _interrupt_after(single_first, 3, *with_batch(gpt2, 4), "checkpoint_every=3")
    two_ranks(single_first, *with_batch(gpt2, 4))
    assert adam_steps(single_first) == {STEPS} and checkpoint_of(single_first)["step"] == STEPS


# -- units ------------------------------------------------------------------------------------------------------
def test_the_blocks_fsdp_shards_in_every_family(tiny_vit, tiny_swin, tiny_t5):
    from conftest import build_gpt2, build_llama

    def names(model):
        return [name for name, _ in distributed.blocks(model)]

    assert names(tiny_vit) == ["blocks.0", "blocks.1"]
    assert names(tiny_swin) == ["layers.0.blocks.0", "layers.1.blocks.0"]  # the innermost: blocks, not stages
    assert names(tiny_t5) == ["encoder.block.0", "encoder.block.1", "decoder.block.0", "decoder.block.1"]
    assert names(build_gpt2()) == ["transformer.h.0", "transformer.h.1"]
    assert names(build_llama()) == ["model.layers.0", "model.layers.1"]
    # a sparsified model: the parametrizations' own lists are no blocks
    from pgfsparse.sparsity import sparsify

    model = build_gpt2()
    sparsify(model, "1:4", "srste")
    assert names(model) == ["transformer.h.0", "transformer.h.1"]


def test_fsdp_on_one_process_is_the_one_process_run(tmp_path):
    """No process group, nothing to shard: distributed.strategy=fsdp alone trains bit for bit as ddp."""
    overrides = [o for o in VIT if o != "optim.accumulate=2"] + ["budget.steps=2"]
    train(tmp_path / "fsdp", *overrides, FSDP)
    train(tmp_path / "ddp", *overrides)
    a, b = checkpoint_of(tmp_path / "fsdp"), checkpoint_of(tmp_path / "ddp")
    assert all(torch.equal(value, b["model"][key]) for key, value in a["model"].items())
