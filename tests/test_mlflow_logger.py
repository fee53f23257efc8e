"""logger=mlflow: a sweep read back from a real MLflow server, the fallback to the local store, resume.

The runs go through pgf-train's entry point in process (as tests/test_sweeps.py and
tests/test_hardening.py run it) on digits with a 1-block, 32-wide ViT. MLflow's SQLite stores are
put on tmpfs when there is one: a new store takes ~100 schema steps, each synced to disk (~7 s on
a disk, ~1 s in memory); what is tested is the same.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import run_pgf_train
from pgfsparse.errors import ConfigError
from pgfsparse.run.mlflow_logger import PROBE_LIMITS, _limits, check_mlflow, flat_params, run_tags, safe_name

TINY = ["data=digits", "model.kwargs.depth=1", "model.kwargs.num_heads=2", "model.kwargs.embed_dim=32",
        "log_every=2", "diagnostics_every=2", "threads=1", "checkpoint_every=null", "hydra/job_logging=disabled"]
STORE = "mlflow.db"  # layout.MLFLOW_DB, spelled here as the docs spell it: the file a user points `mlflow ui` at


# -- what MLflow is given: names, parameters, tags, the one-line checks -------------------------
def test_names_mlflow_refuses_are_sanitised_and_others_kept():
    assert safe_name("lm_eval/arc_easy/acc,none") == "lm_eval/arc_easy/acc_none"
    assert safe_name("eval_strict/top1") == "eval_strict/top1" and safe_name("recipe.name") == "recipe.name"
    assert safe_name("a" * 300) == "a" * 250


def test_the_config_becomes_flat_text_parameters():
    config = {"recipe": {"name": "srste", "decay": 2e-4}, "optim": {"betas": [0.9, 0.999]}, "seed": 0,
              "sweep": None, "model": {"kwargs": {}}, "data": {"path": "x" * 600}}
    assert flat_params(config) == {"recipe.name": "srste", "recipe.decay": "0.0002", "optim.betas": "[0.9, 0.999]",
                                   "seed": "0", "sweep": "None", "model.kwargs": "{}", "data.path": "x" * 500}


def test_wandb_tags_become_key_value_tags():
    assert run_tags(["model:vit", "sparsity:1:4", "seed:0", "baseline"]) == {
        "model": "vit", "sparsity": "1:4", "seed": "0", "baseline": ""}


@pytest.mark.parametrize("uri, problem", [
    ("localhost:5000", "give a URI with its scheme, e.g. http://localhost:5000"),
    ("/tmp/runs/mlflow.db", "give a URI with its scheme"),
])
def test_a_tracking_uri_without_its_scheme_is_refused_in_one_line(uri, problem):
    if importlib.util.find_spec("mlflow") is None:
        pytest.skip("MLflow is not installed (the mlflow extra)")
    from pgfsparse.config.schema import LoggerConfig

    with pytest.raises(ConfigError, match=problem):
        check_mlflow(LoggerConfig(mlflow=True, tracking_uri=uri))
    check_mlflow(LoggerConfig(mlflow=True, tracking_uri="http://127.0.0.1:5000"))
    check_mlflow(LoggerConfig(mlflow=False, tracking_uri=uri))  # not used: not checked


def test_the_http_limits_hold_only_inside_and_never_override_the_users(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    with _limits(PROBE_LIMITS):
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"


def test_a_server_lost_mid_run_ends_mlflow_logging_in_one_line_and_the_run_goes_on(capsys):
    if importlib.util.find_spec("mlflow") is None:
        pytest.skip("MLflow is not installed (the mlflow extra)")
    from pgfsparse.run.mlflow_logger import MlflowRun

    class Gone:
        calls = 0

        def log_batch(self, *args, **kwargs):
            Gone.calls += 1
            raise ConnectionError("Connection refused")

        def set_terminated(self, *args):
            raise AssertionError("MLflow is not called again after a failure")

    tracker = MlflowRun.__new__(MlflowRun)  # as opened: a client, a run, not finished
    tracker.client, tracker.run_id, tracker.uri, tracker.finished = Gone(), "abc", "http://mlflow:5000", False
    tracker.log({"event": "train", "step": 2, "train_flops": 10.0, "train/loss": 2.5})
    tracker.log({"event": "eval", "step": 4, "train_flops": 20.0, "eval/top1": 50.0})
    tracker.finish()
    assert Gone.calls == 1
    assert capsys.readouterr().err.splitlines() == [
        "pgf-train: MLflow logging to http://mlflow:5000 stopped (Connection refused): the run goes on; "
        "metrics.jsonl and summary.json hold every value"]


# -- real runs --------------------------------------------------------------------------------
@contextlib.contextmanager
def scratch(tmp_path_factory, name: str):
    """A folder for runs that create an MLflow store: on tmpfs where there is room, else under pytest's tmp."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 32 << 20):
        yield tmp_path_factory.mktemp(name)
        return
    folder = Path(tempfile.mkdtemp(prefix=f"pgf-{name}-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def store_dir(tmp_path_factory):
    with scratch(tmp_path_factory, "mlflow") as folder:
        yield folder


@pytest.fixture(scope="module", autouse=True)
def mlflow_server(tmp_path_factory):
    """`mlflow server --workers 1` on 127.0.0.1 with a SQLite backend, started with the module's first test.

    It boots (5-15 s: two processes import MLflow) while the other tests run; the server test,
    last, waits until it answers (`wait_until_up`). None when MLflow is not installed.
    """
    if importlib.util.find_spec("mlflow") is None:
        yield None
        return
    with scratch(tmp_path_factory, "mlflow-server") as folder:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        log = folder / "server.log"
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--workers", "1", "--host", "127.0.0.1",
             "--port", str(port), "--backend-store-uri", f"sqlite:///{folder / STORE}",
             "--default-artifact-root", str(folder / "artifacts")],
            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job runner: starts faster
        )
        try:
            yield SimpleNamespace(url=f"http://127.0.0.1:{port}", process=server, log=log)
        finally:
            os.killpg(server.pid, signal.SIGKILL)  # the server and its uvicorn worker: nothing of theirs is kept
            server.wait()


def wait_until_up(server, timeout: float = 120.0) -> str:
    """The server's URL once /health answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return server.url
        except OSError:
            pass
        if server.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"mlflow server did not start:\n{server.log.read_text()[-3000:]}")
        time.sleep(0.2)


cli = run_pgf_train  # conftest.py


def events(run_dir: Path):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_an_unreachable_server_falls_back_to_the_local_store_at_once(store_dir, monkeypatch, capfd):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    run_dir = store_dir / "runs" / "run"
    began = time.monotonic()
    assert cli(store_dir, *TINY, "budget.steps=2", "sparsity=1:4", "recipe=srste", "logger=mlflow",
               "logger.tracking_uri=http://127.0.0.1:9", f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch) == 0
    took = time.monotonic() - began
    said = [line for line in capfd.readouterr().err.splitlines() if "MLflow" in line]
    store = (store_dir / "runs" / STORE).resolve()
    assert said == [f"pgf-train: MLflow at http://127.0.0.1:9 is unavailable (127.0.0.1:9: Connection refused): "
                    f"logging to sqlite:///{store} instead (mlflow ui --backend-store-uri sqlite:///{store})"]
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 2  # the run finished
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    (run,) = client.search_runs([client.get_experiment_by_name("pgfsparse").experiment_id])  # logger.project
    assert (run.info.run_name, run.info.status, run.data.params["recipe.name"]) == ("vit-n1m4-srste-s0", "FINISHED",
                                                                                   "srste")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval/top1")] == [2]
    assert took < 60, took


def test_a_resumed_run_continues_its_mlflow_run(mlflow_server, store_dir, monkeypatch):
    """A launch that fails after its last checkpoint, then `resume=`: one MLflow run, failed, then finished."""
    if mlflow_server is None:
        pytest.skip("MLflow is not installed (the mlflow extra)")
    from mlflow import MlflowClient

    from pgfsparse.run import recorder

    url = wait_until_up(mlflow_server)
    run_dir = store_dir / "runs" / "run"
    original = recorder.Recorder.summary
    monkeypatch.setattr(recorder.Recorder, "summary", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        cli(store_dir, *TINY, "budget.steps=2", "sparsity=1:4", "recipe=srste", "logger=mlflow",
            "logger.group=resumed", f"logger.tracking_uri={url}", f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch)
    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name("resumed").experiment_id  # logger.group names the experiment
    (failed,) = client.search_runs([experiment])
    assert failed.info.status == "FAILED" and "summary/eval_value" not in failed.data.metrics
    monkeypatch.setattr(recorder.Recorder, "summary", original)
    assert cli(store_dir, f"resume={run_dir}", monkeypatch=monkeypatch) == 0
    (resumed,) = client.search_runs([experiment])
    assert resumed.info.run_id == failed.info.run_id and resumed.info.status == "FINISHED"
    assert resumed.data.params == failed.data.params  # the resume's `resume=` is not a changed parameter
    summary = json.loads((run_dir / "summary.json").read_text())
    assert resumed.data.metrics["summary/eval_value"] == pytest.approx(summary["eval_value"])
    assert not (store_dir / "runs" / STORE).exists()


def test_a_sweep_logs_to_an_mlflow_server_and_reads_back(mlflow_server, store_dir, monkeypatch, capfd):
    """A 2-point grid against a real server: names, tags, parameters, the eval metric and its FLOPs."""
    if mlflow_server is None:
        pytest.skip("MLflow is not installed (the mlflow extra)")
    from mlflow import MlflowClient

    url = wait_until_up(mlflow_server)
    began = time.monotonic()
    code = cli(store_dir, "-m", *TINY, "budget.steps=3", "sparsity=1:4", "recipe=srste,mdgf_exp", "sweep=mlgrid",
               "logger=mlflow", f"logger.tracking_uri={url}", monkeypatch=monkeypatch)
    assert code == 0
    assert "MLflow" not in capfd.readouterr().err  # no fallback, no logging failure
    assert not (store_dir / "multirun" / "mlgrid" / STORE).exists(), "logged to the server, not locally"

    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name("mlgrid")  # named after the sweep
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"vit-n1m4-srste-s0", "vit-n1m4-mdgf_exp-s0"}
    for name, run in runs.items():
        run_dir = store_dir / "multirun" / "mlgrid" / name
        summary = json.loads((run_dir / "summary.json").read_text())
        recipe = name.split("-")[2]
        assert run.info.status == "FINISHED"
        assert {"model": "vit", "sparsity": "1:4", "recipe": recipe, "seed": "0", "sweep": "mlgrid"}.items() \
            <= run.data.tags.items()
        params = run.data.params
        assert (params["recipe.name"], params["sparsity.ff"], params["seed"], params["budget.steps"]) == \
            (recipe, "1:4", "0", "3")
        assert (params["run_name"], params["sweep"], params["model_choice"]) == (name, "mlgrid", "vit")
        # the eval metric at the last optimizer step, with the cumulative training FLOPs at that step
        (top1,) = client.get_metric_history(run.info.run_id, "eval/top1")
        assert (top1.step, top1.value) == (3, pytest.approx(summary["eval_value"]))
        flops = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train_flops")}
        assert flops[3] == summary["train_flops"] > flops[2] > 0
        # every number of metrics.jsonl, at its step
        logged = {(key, event["step"]) for event in events(run_dir) for key, value in event.items()
                  if key not in ("event", "step") and isinstance(value, (int, float))}
        assert any(key.startswith("sparsity/") for key, _ in logged)
        for key in {key for key, _ in logged}:
            steps = {m.step for m in client.get_metric_history(run.info.run_id, key)}
            assert steps == {step for k, step in logged if k == key}, key
        assert run.data.metrics["summary/wall_seconds"] == pytest.approx(summary["wall_seconds"])
        assert run.data.tags["summary/eval_metric"] == "top1"
    print(f"grid against the server: {time.monotonic() - began:.1f} s")
