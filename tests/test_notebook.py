"""notebooks/compare.ipynb: committed without outputs, and runs end to end on tiny hand-written runs.

The notebook is executed the way `jupyter execute` does it (nbclient, kernel
python3, started in notebooks/), reading the runs from $PGF_RUNS.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "compare.ipynb"


def write_run(sweep: Path, recipe: str, seed: int, value: float, noise: float) -> None:
    """A finished ViT 1:16 run: summary.json and metrics.jsonl with train, eval and diagnostics lines."""
    run = sweep / f"vit-n1m16-{recipe}-s{seed}"
    run.mkdir(parents=True)
    flops = 1e12 if recipe == "srste" else 1.2e12
    (run / "summary.json").write_text(json.dumps({
        "model": "vit", "sparsity": "1:16", "recipe": recipe, "seed": seed, "steps": 30, "train_flops": flops,
        "inference_flops": 1e8, "eval_metric": "top1", "eval_value": value, "eval_value_strict": value - 1,
        "eval": {"eval/top1": value, "eval_strict/top1": value - 1}, "wall_seconds": 90.0,
        "budget": {"kind": "steps", "value": 30}, "run_name": run.name, "status": "finished"}))
    lines = []
    for step in (10, 20, 30):
        lines += [{"event": "train", "step": step, "train_flops": flops * step / 30, "train/loss": 2.0 / step},
                  {"event": "diagnostics", "step": step, "train_flops": flops * step / 30,
                   "sparsity/ff/grad_abs_var": noise / step, "sparsity/ff/exp_avg_sq_var": noise / step ** 2}]
    lines.append({"event": "eval", "step": 30, "train_flops": flops, "eval/top1": value, "eval_strict/top1": value})
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_committed_notebook_has_no_outputs_and_opens_with_its_command():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("`PGF_RUNS=")


def test_notebook_runs_end_to_end(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        write_run(sweep, "srste", seed, 60.0 + 2 * seed, noise=8.0)
        write_run(sweep, "mdgf_exp", seed, 66.0 + 2 * seed, noise=1.0)
    monkeypatch.setenv("PGF_RUNS", str(sweep))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError, naming the cell, if one fails
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    tables = [out.data["text/markdown"] for out in outputs if "text/markdown" in out.get("data", {})]
    assert len(tables) == 2  # the table, then each recipe against SR-STE
    assert "| vit | 1:16 | srste | steps=30 | top1 | 61.00 | 1.41 | 2 |" in tables[0]
    assert "| vit | 1:16 | mdgf_exp | steps=30 | top1 | 67.00 | 1.41 | 2 |" in tables[0]
    assert "| vit | 1:16 | mdgf_exp | steps=30 | top1 | steps=30 | +6.00 | 1.41 | 2 vs 2 |" in tables[1]
    assert tables[1].rstrip().endswith("| better |")
    figures = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(figures) == 2  # accuracy vs FLOPs, gradient noise
    printed = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert f"4 runs under {sweep}" in printed
