"""MLflow: a run per pgf-train run, in an experiment named after the sweep; a local store when no server answers.

`logger=mlflow` logs to `logger.tracking_uri` (else $MLFLOW_TRACKING_URI), or by default to a SQLite
store in the run dir's parent folder (rundir/layout.py): a sweep's points share one file and one
experiment, which `mlflow ui --backend-store-uri sqlite:///multirun/<sweep>/mlflow.db` shows.
A server that cannot be reached falls back to that local store in one line, within seconds.

What MLflow receives is what W&B does: the run's name, its tags ('model:vit' -> model=vit), the
canonical config as flat parameters ('recipe.name'), every metrics.jsonl value as a metric at its
optimizer step, `train_flops` included (beside each eval: the FLOPs axis), and the summary under
'summary/'. A resumed launch continues its MLflow run: found by the checkpoint's run id (a tag).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

from pgfsparse.errors import ConfigError, first_line
from pgfsparse.network import unreachable
from pgfsparse.run.tracker import TrackedRun
from pgfsparse.rundir.files import locked
from pgfsparse.rundir.layout import MLFLOW_DB, RunDir

INSTALL = "pip install 'pgfsparse[mlflow]' (Python >= 3.10)"

# MLflow's client retries a failed HTTP request 7 times with exponential backoff and waits 120 s for
# each answer: minutes before a run whose server is down could start. These limits hold while pgf-train
# talks to MLflow (environment variables MLflow reads on each request; a user's own settings win). The
# first request, which finds the experiment, is the reachability check: it fails at once.
PROBE_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
RUN_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
RUN_ID_TAG = "pgf_run_id"  # the checkpoint's run id: a resumed launch finds its MLflow run by it
SUMMARY_PREFIX = "summary/"  # summary.json's numbers (metrics) and strings (tags), apart from the curves

# MLflow's limits (mlflow.utils.validation): names of letters, digits, '_', '-', '.', ' ' and '/'
# (':' not on Windows), up to 250 characters; 500 characters a parameter value on servers before
# MLflow 2.x (6000 since); 8000 a tag value; 100 parameters or tags and 1000 metrics a request.
_BAD_NAME_CHARACTERS = re.compile(r"[^\w./\- ]")
MAX_NAME, MAX_PARAM_VALUE, MAX_TAG_VALUE = 250, 500, 8000
PARAMS_PER_BATCH, METRICS_PER_BATCH = 100, 1000


class MlflowRun:
    """The MLflow tracker (run/tracker.py). Logging errors never stop the run: one line, then no more MLflow."""

    def __init__(self, cfg, run: TrackedRun):
        from mlflow.tracking import MlflowClient

        self.finished = False
        self.experiment = cfg.group or run.group or cfg.project
        local = RunDir(run.run_dir)
        self.local_uri = f"sqlite:///{local.mlflow_db.resolve()}"
        uri = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if uri and uri != self.local_uri:
            problem = unreachable(uri) if uri.startswith(("http://", "https://")) else None
            if problem is None:
                try:
                    self.client, self.run_id = self._start(MlflowClient(tracking_uri=uri), run, probe=True)
                    self.uri = uri
                    return
                except Exception as error:  # noqa: BLE001 - down, not MLflow, no access: log locally instead
                    problem = first_line(error)[:160]
            print(
                f"pgf-train: MLflow at {uri} is unavailable ({problem}): logging to {self.local_uri} instead "
                f"(mlflow ui --backend-store-uri {self.local_uri})",
                file=sys.stderr,
            )
        with locked(local.mlflow_lock), _quiet_store_creation():  # a sweep's parallel points create it once
            self.client, self.run_id = self._start(MlflowClient(tracking_uri=self.local_uri), run, probe=False)
        self.uri = self.local_uri

    # -- the tracker interface -----------------------------------------------------------
    def log(self, event: Dict[str, Any]) -> None:
        step, now = int(event["step"]), _now_ms()
        metrics = [(safe_name(k), float(v), now, step) for k, v in event.items() if k != "step" and _is_number(v)]
        self._guarded(lambda client: _log_batches(client, self.run_id, metrics=metrics))

    def summary(self, summary: Dict[str, Any]) -> None:
        self.finished = True
        step, now = int(summary.get("steps") or 0), _now_ms()
        metrics = [(safe_name(SUMMARY_PREFIX + k), float(v), now, step) for k, v in summary.items() if _is_number(v)]
        tags = {SUMMARY_PREFIX + k: str(v) for k, v in summary.items() if isinstance(v, (str, bool))}
        self._guarded(lambda client: _log_batches(client, self.run_id, metrics=metrics, tags=tags))

    def finish(self) -> None:
        status = "FINISHED" if self.finished else "FAILED"  # FAILED: stopped or crashed (status.json says which)
        self._guarded(lambda client: client.set_terminated(self.run_id, status))
        self.client = None

    # -- MLflow ------------------------------------------------------------------------------
    def _start(self, client, run: TrackedRun, probe: bool):
        """(client, MLflow run id): the experiment found or created, and this run found (resumed) or created."""
        with _limits(PROBE_LIMITS if probe else RUN_LIMITS):
            experiment_id = _experiment(client, self.experiment)
        with _limits(RUN_LIMITS):
            found = client.search_runs([experiment_id], filter_string=f"tags.{RUN_ID_TAG} = '{run.run_id}'")
            params = flat_params(run.config)
            tags = {**run_tags(run.tags), "sweep": run.group or "", RUN_ID_TAG: run.run_id}
            if found:  # a resumed launch: the same MLflow run, running again
                run_id = found[0].info.run_id
                client.update_run(run_id, status="RUNNING")
                params = {k: v for k, v in params.items() if k not in found[0].data.params}  # params are immutable
            else:
                run_id = client.create_run(experiment_id, run_name=run.name).info.run_id
            _log_batches(client, run_id, params=params, tags=tags)
        return client, run_id

    def _guarded(self, action: Callable[[Any], None]) -> None:
        """`action(client)`; a failure (the server went down) ends MLflow logging for this launch, in one line."""
        if self.client is None:
            return
        try:
            with _limits(RUN_LIMITS):
                action(self.client)
        except Exception as error:  # noqa: BLE001 - the run goes on; the local files have every value
            self.client = None
            print(
                f"pgf-train: MLflow logging to {self.uri} stopped ({first_line(error)[:160]}): the run goes on; "
                "metrics.jsonl and summary.json hold every value",
                file=sys.stderr,
            )


def _experiment(client, experiment: str) -> str:
    """The id of the experiment named `experiment`, created if absent (by this point or a parallel one)."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        try:
            return client.create_experiment(experiment)
        except Exception:  # another point of the sweep created it first
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise
    if found.lifecycle_stage != "active":
        raise ConfigError(
            f"the MLflow experiment {experiment!r} is deleted: restore it (mlflow experiments restore "
            f"--experiment-id {found.experiment_id}) or log elsewhere (logger.group=NAME)"
        )
    return found.experiment_id


def _log_batches(client, run_id: str, metrics=(), params: Optional[Dict[str, str]] = None, tags=None) -> None:
    """log_batch within MLflow's per-request limits."""
    from mlflow.entities import Metric, Param, RunTag

    metrics = [Metric(key, value, timestamp, step) for key, value, timestamp, step in metrics]
    params_list = [Param(key, value) for key, value in (params or {}).items()]
    tags_list = [RunTag(safe_name(key), str(value)[:MAX_TAG_VALUE]) for key, value in (tags or {}).items()]
    for start in range(0, len(metrics), METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + METRICS_PER_BATCH])
    for start in range(0, max(len(params_list), len(tags_list)), PARAMS_PER_BATCH):
        window = slice(start, start + PARAMS_PER_BATCH)
        client.log_batch(run_id, params=params_list[window], tags=tags_list[window])


def safe_name(key: str) -> str:
    """`key` as an MLflow metric, parameter or tag name: other characters become '_' ('acc,none' -> 'acc_none')."""
    return _BAD_NAME_CHARACTERS.sub("_", key)[:MAX_NAME]


def flat_params(config: Dict[str, Any], prefix: str = "") -> Dict[str, str]:
    """The nested config as MLflow parameters: dotted names ('recipe.name'), values as text."""
    params: Dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            params.update(flat_params(value, f"{prefix}{key}."))
        else:
            params[safe_name(f"{prefix}{key}")] = str(value)[:MAX_PARAM_VALUE]
    return params


def run_tags(tags: List[str]) -> Dict[str, str]:
    """W&B's tags as MLflow's key/value tags: 'sparsity:1:4' -> sparsity=1:4; a tag without ':' has value ''."""
    pairs = (tag.split(":", 1) if ":" in tag else (tag, "") for tag in tags)
    return {safe_name(key): value for key, value in pairs}


def check_mlflow(cfg) -> None:
    """One-line ConfigErrors, before the run, for logger.mlflow (`cfg`: a LoggerConfig)."""
    if not cfg.mlflow:
        return
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError(f"logger.mlflow=true needs MLflow, which is not installed: {INSTALL}")
    uri = cfg.tracking_uri
    if uri is not None and "://" not in uri and not uri.startswith("databricks"):
        raise ConfigError(
            f"logger.tracking_uri={uri!r}: give a URI with its scheme, e.g. http://{uri} for a server or "
            f"sqlite:////abs/path/{MLFLOW_DB} for a store (null: {MLFLOW_DB} beside the run dir)"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _now_ms() -> int:
    return int(time.time() * 1000)


@contextlib.contextmanager
def _limits(limits: Dict[str, str]) -> Iterator[None]:
    """MLflow's HTTP retry and timeout settings `limits` while in the block, where the user set none."""
    added = [key for key in limits if key not in os.environ]
    os.environ.update({key: limits[key] for key in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@contextlib.contextmanager
def _quiet_store_creation() -> Iterator[None]:
    """No INFO lines while MLflow creates a new store's tables (seconds, once per store)."""
    logger = logging.getLogger("mlflow.store.db.utils")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
