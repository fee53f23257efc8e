"""benchmarks/gpu_check.sh and gpu_check.py without a GPU: the printed plan, the planner, the ratios, the wheels.

The measuring itself needs CUDA (the script refuses nothing here: it prints its plan and exits 0);
`python benchmarks/gpu_check.py --smoke` runs every code path on tiny models on any device, by hand (minutes).
"""
from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def load_gpu_check():
    """benchmarks/gpu_check.py as a module, with its sibling modules importable (as when the script runs)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module("gpu_check"), importlib.import_module("gpu_plan")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


gpu, gpu_plan = load_gpu_check()


def no_cuda_env(**extra) -> dict:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHON=sys.executable, **extra)
    env.pop("OUT", None)
    return env


# -- the dry run --------------------------------------------------------------------------------------------
def test_without_cuda_the_script_prints_the_plan_and_exits_0(tmp_path):
    out = tmp_path / "never.json"
    done = subprocess.run(["bash", str(SCRIPT), str(out)], env=no_cuda_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "no CUDA device here" in text and not out.exists()
    assert "ViT-B/16" in text and "vit_base_patch16_224, batch 256, 224 px" in text
    assert "Llama 125M preset" in text and "batch 16 x 1024" in text and "conf/model/llama_125m.yaml" in text
    lines = text.splitlines()
    sparse = [r for r in gpu.built_in_recipes() if r != "dense"]
    assert len(sparse) >= 8
    for pattern in ("2:4", "1:16"):
        for model in ("ViT-B/16", "Llama 125M preset"):
            for recipe in sparse:
                rule = re.compile(rf"^\s*\d+ training {re.escape(model)}\s+FF {pattern}\s+{recipe}\s+compile off")
                assert any(rule.search(line) for line in lines), f"no line for {model} {recipe} at {pattern}"
    assert any(" compile on " in line for line in lines) and any(" compile off " in line for line in lines)
    for model in ("ViT-B/16", "Llama 125M preset"):
        assert any(line.split()[1:2] == ["infer"] and model in line and "semi-structured" in line for line in lines)
    assert "peak memory" in text and "torch.cuda.max_memory_allocated" in text
    assert re.search(r"estimated: \d+ s for everything, \d+ s for what fits the budget of \d+ s", text)
    # the GPU machine has no hydra, omegaconf, wandb or datasets: the library modules the check uses need none
    assert "of hydra, omegaconf, wandb, datasets: none loaded" in text
    configurations = [line for line in lines if re.match(r"^\s*\d+ ", line)]
    assert len(configurations) == len(gpu.groups(gpu.built_in_recipes())[0].units) * 4 + 2 * 2 + 3 * 2 * 2


def test_an_import_failure_installs_the_wheels_and_runs_again(tmp_path):
    """gpu_check.py exits 3 on a missing import; the script then pip-installs benchmarks/wheels/*.whl, once."""
    tree = tmp_path / "repo"
    (tree / "benchmarks" / "wheels").mkdir(parents=True)
    (tree / "benchmarks" / "gpu_check.sh").write_text(SCRIPT.read_text())
    (tree / "benchmarks" / "gpu_check.py").write_text(
        "import sys\n"
        "try:\n    import gpu_check_fake_pkg\nexcept ImportError:\n    print('missing'); sys.exit(3)\n"
        "print('ran with', gpu_check_fake_pkg.VALUE, sys.argv[1:])\n"
    )
    with zipfile.ZipFile(tree / "benchmarks" / "wheels" / "gpu_check_fake_pkg-0.1-py3-none-any.whl", "w") as wheel:
        info = "gpu_check_fake_pkg-0.1.dist-info"
        wheel.writestr("gpu_check_fake_pkg/__init__.py", "VALUE = 42\n")
        wheel.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: gpu-check-fake-pkg\nVersion: 0.1\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")
    done = subprocess.run(["bash", str(tree / "benchmarks" / "gpu_check.sh"), "x.json"], env=no_cuda_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("missing") == 1 and "ran with 42 ['x.json']" in done.stdout
    assert (tree / "benchmarks" / ".gpu_site" / "gpu_check_fake_pkg").is_dir()
    assert (tree / "benchmarks" / ".gpu_site" / ".gitignore").read_text() == "*\n"  # never committed


def test_wheels_are_ignored_and_the_wheel_list_says_why_it_is_empty():
    assert "benchmarks/wheels/" in (ROOT / ".gitignore").read_text().splitlines()
    listed = [line.split("#")[0].strip() for line in (ROOT / "benchmarks" / "gpu_wheels.txt").read_text().splitlines()]
    assert not any(listed)  # nothing is missing on the GPU machine: see the file's comment
    text = (ROOT / "benchmarks" / "gpu_wheels.txt").read_text()
    assert "hydra" in text and "pip download --only-binary=:all: --python-version 3.12" in text


# -- pure helpers ---------------------------------------------------------------------------------------------
def test_the_llama_preset_copy_matches_the_config_file():
    pytest.importorskip("yaml")
    preset = gpu.llama_preset()
    assert preset["source"] == "conf/model/llama_125m.yaml"
    assert preset["kwargs"] == gpu_plan.LLAMA_125M["kwargs"]
    assert preset["vocab_size"] == gpu_plan.LLAMA_125M["vocab_size"] == 32000
    assert gpu.MODELS["llama_125m"]["context"] <= preset["kwargs"]["max_position_embeddings"]


def test_groups_cover_every_recipe_pattern_compile_pair_and_inference_dtype():
    recipes = gpu.built_in_recipes()
    groups = gpu.groups(recipes)
    training = [c for g in groups for u in g.units for c in u if c.section == "training"]
    for model in gpu.MODELS:
        for pattern in gpu.PATTERNS:
            assert {c.recipe for c in training if c.model == model and c.pattern == pattern} == set(recipes) - {"dense"}
        assert sum(c.recipe == "dense" for c in training if c.model == model) == len(gpu.PATTERNS)
    compiles = [g for g in groups if g.name.startswith("compile")]
    assert [g.name for g in compiles[:2]] == ["compile vit_b16 dense", "compile llama_125m dense"]
    for group in compiles:
        (eager,), (compiled,) = group.units
        assert (eager.recipe, eager.compiled, compiled.recipe, compiled.compiled) == (
            compiled.recipe, False, eager.recipe, True)
        assert not group.reference_alone
    order = [g.name.split()[0] for g in groups]
    assert order == ["training"] * 4 + ["inference"] * 2 + ["compile"] * 6 + ["inference"] * 2
    assert [g.units[0][0].dtype for g in groups if g.name.startswith("inference")] == [
        "bfloat16", "bfloat16", "float16", "float16"]


EST = {
    "build": {"vit_b16": 1.0, "llama_125m": 2.0},
    "step": {"vit_b16": 0.5, "llama_125m": 0.25},
    "compile": {"vit_b16": 10.0, "llama_125m": 20.0},
    "infer": {"vit_b16": 4.0, "llama_125m": 3.0},
}


def test_config_estimates_by_hand():
    assert (gpu.WARMUP, gpu.STEPS) == (3, 8)  # the hand-computed figures below assume these
    assert gpu.config_estimate(gpu.Config("training", "vit_b16", "2:4", "ste"), EST) == 1.0 + 11 * 0.5  # 6.5
    assert gpu.config_estimate(gpu.Config("training", "llama_125m", "", "dense"), EST) == 2.0 + 11 * 0.25  # 4.75
    assert gpu.config_estimate(gpu.Config("compile", "vit_b16", "2:4", "srste", True), EST) == 6.5 + 10.0
    assert gpu.config_estimate(gpu.Config("inference", "llama_125m", "2:4", "semi_structured"), EST) == 3.0


def test_plan_is_greedy_by_unit_and_a_skipped_reference_skips_its_group():
    C = gpu.Config
    training = gpu.Group("t", ((C("training", "vit_b16", "", "dense"),), (C("training", "vit_b16", "2:4", "ste"),),
                              (C("training", "vit_b16", "2:4", "srste"),)))
    compile_ = gpu.Group("c", ((C("compile", "vit_b16", "", "dense"),), (C("compile", "vit_b16", "", "dense", True),)),
                        reference_alone=False)
    infer = gpu.Group("i", ((C("inference", "vit_b16", "2:4", "semi_structured"),),), has_reference=False)
    # budget 30, startup 5: 5 + 6.5 = 11.5, 18, 24.5 run; the compile reference needs 6.5 + 16.5 = 23 more
    # (47.5 > 30): both skipped; inference 24.5 + 4 = 28.5 runs
    rows, spent = gpu.plan([training, compile_, infer], EST, budget_s=30, startup_s=5)
    assert [runs for _, _, runs in rows] == [True, True, True, False, False, True]
    assert [e for _, e, _ in rows] == [6.5, 6.5, 6.5, 6.5, 16.5, 4.0]
    assert spent == 28.5
    # budget 47.5 fits the compile pair exactly (24.5 + 23), then not the inference
    rows, spent = gpu.plan([training, compile_, infer], EST, budget_s=47.5, startup_s=5)
    assert [runs for _, _, runs in rows] == [True, True, True, True, True, False] and spent == 47.5
    # budget 10: the training reference (11.5) does not fit, so nothing of its group runs; inference 9 does
    rows, spent = gpu.plan([training, infer], EST, budget_s=10, startup_s=5)
    assert [runs for _, _, runs in rows] == [False, False, False, True] and spent == 9.0
    # a unit that does not fit does not stop a later, cheaper one of a group whose reference ran
    cheap = gpu.Group("t2", ((C("training", "llama_125m", "", "dense"),), (C("compile", "vit_b16", "", "dense", True),),
                            (C("training", "llama_125m", "2:4", "ste"),)))
    rows, spent = gpu.plan([cheap], EST, budget_s=15, startup_s=0)  # 4.75, (16.5: no), 4.75
    assert [runs for _, _, runs in rows] == [True, False, True] and spent == 9.5


def test_budget_with_a_hand_clock():
    now = [100.0]
    budget = gpu.Budget(10.0, clock=lambda: now[0])
    assert budget.elapsed() == 0.0 and budget.left() == 10.0 and budget.fits(10.0) and not budget.fits(10.01)
    now[0] = 107.5
    assert budget.elapsed() == 7.5 and budget.left() == 2.5 and budget.fits(2.5) and not budget.fits(3.0)


def test_ratios_by_hand():
    # per round: 2/1, 3/2; a missing side (None) or an empty reference round is dropped
    assert gpu.round_ratios([2.0, 3.0, None, 4.0], [1.0, 2.0, 2.0, 0.0]) == [2.0, 1.5]
    assert gpu.round_ratios([1.0, 1.0], [None, 0.5]) == [2.0]
    assert gpu.summarize([1.0, 2.0, 3.0, 4.0]) == {"median": 2.5, "p10": 1.0, "p90": 4.0, "n": 4}
    ratios = [1.10, 0.90, 1.00, 1.30, 0.95, 1.05, 1.20, 0.85, 1.15, 1.02, 0.98]  # 11: nearest ranks 1 and 9
    assert gpu.summarize(ratios) == {"median": 1.02, "p10": 0.90, "p90": 1.20, "n": 11}
    assert gpu.summarize([]) is None
    assert gpu.median([3.0, 1.0, 2.0]) == 2.0
    assert gpu.compile_seconds([10.0, 1.25, 1.25], 1.0) == 9.5  # 12.5 s of warm-up - 3 steady steps


def test_output_path(monkeypatch, tmp_path):
    monkeypatch.setenv("OUT", str(tmp_path))
    assert gpu.default_output() == tmp_path / "gpu_check.json"
    monkeypatch.delenv("OUT")
    path = gpu.default_output()
    assert path.parent == ROOT / "benchmarks" / "results"
    assert re.fullmatch(r"gpu_check-\d{4}-\d{2}-\d{2}\.json", path.name)


def test_the_report_is_rewritten_whole_after_every_entry(tmp_path):
    import json

    report = gpu.Report(tmp_path / "r" / "check.json", {"status": "running", "training": []}, gpu.Budget(10.0))
    report.add("training", {"recipe": "ste", "status": "skipped: time budget"})
    data = json.loads((tmp_path / "r" / "check.json").read_text())
    assert data["training"] == [{"recipe": "ste", "status": "skipped: time budget"}] and "elapsed_s" in data
    assert not list((tmp_path / "r").glob("*.tmp"))
