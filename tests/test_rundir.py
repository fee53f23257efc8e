"""The run-dir contract: file names spelled once, typed records that round-trip and read old files."""
import ast
import json
from pathlib import Path

import pytest

from pgfsparse.rundir import layout
from pgfsparse.rundir.records import SCHEMA_VERSION, RunStatus, RunSummary

SRC = Path(__file__).resolve().parents[1] / "src" / "pgfsparse"
FILE_NAMES = (layout.SUMMARY, layout.RUN_STATUS, layout.ERROR_LOG, layout.LOCK, layout.METRICS, layout.CHECKPOINT,
              layout.CURVES, layout.DIAGNOSTICS, layout.SWEEP_FILE, layout.SWEEP_STATUS, layout.HYDRA_SUBDIR,
              layout.MLFLOW_DB)


def _code_strings(path: Path):
    """String constants of a module that are not docstrings (file names in prose are fine)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_run_dir_file_names_are_spelled_only_in_the_rundir_package():
    found = []
    for path in SRC.rglob("*.py"):
        if path.parent.name == "rundir":
            continue
        for line, text in _code_strings(path):
            # a file name as a path component: the whole string, or '/name', or quoted inside a message
            if any(text == name or text.endswith("/" + name) for name in FILE_NAMES):
                found.append(f"{path.relative_to(SRC)}:{line}: {text!r}")
    assert not found, "run-dir file names outside pgfsparse.rundir:\n" + "\n".join(found)


def test_the_report_imports_nothing_of_the_sweep_or_run_machinery():
    for path in (SRC / "report").glob("*.py"):
        imported = {node.module for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.ImportFrom) and node.module}
        assert not {m for m in imported if m.startswith(("pgfsparse.sweeps", "pgfsparse.run.", "pgfsparse.cli"))}, path


def _summary(**changes):
    values = dict(run_name="vit-n1m16-srste-s0", model="vit", sparsity="1:16", recipe="srste", seed=0, steps=10,
                  train_flops=1e12, inference_flops=1e7, eval_metric="top1", eval_value=60.5, eval_value_strict=60.25,
                  eval={"eval/top1": 60.5, "eval_strict/top1": 60.25}, wall_seconds=12.0)
    values.update(changes)
    return values


def test_a_summary_round_trips_with_its_schema_version_and_keeps_unknown_keys(tmp_path):
    record = RunSummary.from_dict({**_summary(), "from_the_future": [1, 2]})
    record.write(tmp_path)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["schema"] == SCHEMA_VERSION == 2
    assert written["from_the_future"] == [1, 2] and written["eval_value_strict"] == 60.25
    again = RunSummary.read(tmp_path)
    assert again == record and again.to_dict() == written


def test_a_summary_written_by_0_1_0_reads_as_schema_1_with_its_missing_fields_none(tmp_path):
    old = {k: v for k, v in _summary().items() if k != "run_name"}  # the earliest summaries had no run_name
    (tmp_path / "summary.json").write_text(json.dumps(old))
    record = RunSummary.read(tmp_path)
    assert (record.schema, record.run_name, record.eval_value, record.mfu) == (1, None, 60.5, None)


def test_writing_a_summary_without_a_required_field_fails_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="summary.json needs eval_value_strict"):
        RunSummary.from_dict(_summary(eval_value_strict=None)).write(tmp_path)
    assert not (tmp_path / "summary.json").exists()
    assert RunSummary.read(tmp_path) is None


def test_a_status_drops_unset_fields_and_reads_back(tmp_path):
    RunStatus(status="failed", run_name="x", error="bad", exit_code=2).write(tmp_path)
    written = json.loads((tmp_path / "status.json").read_text())
    assert "pid" not in written and written["exit_code"] == 2 and written["schema"] == 2
    assert RunStatus.read(tmp_path).error == "bad"
    (tmp_path / "status.json").write_text("{not json")
    assert RunStatus.read(tmp_path) is None
