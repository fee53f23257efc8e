"""lm-evaluation-harness on a causal-LM run (`eval.lm_eval.*`): checked before training, run after it.

`check_lm_eval` refuses, in one line and before any training, what would fail at the end of a run:
lm-eval tasks on a model that is not a causal LM, lm_eval not installed, a missing `include_path`, or
a task name lm-eval does not know. `run_lm_eval` evaluates the model in memory (lm-eval's Python API on
the wrapper in lm.py) and returns flat, numeric metrics `lm_eval/<task>/<metric>` (with
`<metric>_stderr` where lm-eval gives one) for metrics.jsonl, W&B and summary.json.

lm_eval is an optional dependency (the `lm_eval` extra), imported only when tasks are asked for.
"""

from __future__ import annotations

import difflib
import importlib.util
import numbers
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Mapping, Optional

from torch import nn

from pgfsparse.config.schema import DECODER_FAMILIES, LmEvalConfig, TrainConfig
from pgfsparse.errors import ConfigError

INSTALL = 'pip install "pgfsparse[lm_eval]"'
PREFIX = "lm_eval"  # metric names: lm_eval/<task>/<metric>


def check_lm_eval(cfg: TrainConfig) -> None:
    """One-line ConfigErrors for `eval.lm_eval` settings a run could not honour at its end."""
    settings = cfg.eval.lm_eval
    if not settings.tasks:
        return
    family = cfg.model.family
    if family not in DECODER_FAMILIES:
        raise ConfigError(
            f"eval.lm_eval.tasks needs a causal language model but model.family={family}: "
            f"choose model={' or model='.join(DECODER_FAMILIES)}, or drop eval.lm_eval.tasks"
        )
    if settings.include_path is not None and not Path(settings.include_path).expanduser().is_dir():
        raise ConfigError(
            f"eval.lm_eval.include_path={settings.include_path}: no such folder (give a folder of task YAMLs)"
        )
    _require_lm_eval()
    known = set(_task_manager(settings.include_path).all_tasks)
    for name in settings.tasks:
        if name not in known and not Path(name).expanduser().is_file():
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            where = f"in {settings.include_path}" if settings.include_path else "among lm-eval's tasks"
            raise ConfigError(
                f"eval.lm_eval.tasks: no task {name!r} {where}: {hint}(`lm-eval ls tasks` lists them; "
                "local tasks need eval.lm_eval.include_path=FOLDER)"
            )


def run_lm_eval(
    model: nn.Module,
    tokenizer: Any,
    settings: LmEvalConfig,
    device: Any,
    autocast: Optional[Callable[[], ContextManager[Any]]] = None,
) -> Dict[str, float]:
    """lm-eval's `settings.tasks` on `model` as it is (the caller picks eval mode and strict N:M).

    `tokenizer` follows the causal-LM tokenizer protocol. lm-eval seeds Python's, NumPy's and torch's
    global generators; they are restored afterwards, so evaluating changes nothing else in the process.
    """
    lm_eval = _require_lm_eval()
    from pgfsparse.evaluation.lm import HarnessLM
    from pgfsparse.run.checkpoint import rng_state, set_rng_state

    lm = HarnessLM(model, tokenizer, batch_size=settings.batch_size, device=device, autocast=autocast)
    saved = rng_state()
    try:
        results = lm_eval.simple_evaluate(
            model=lm,
            tasks=list(settings.tasks),
            num_fewshot=settings.num_fewshot,
            limit=settings.limit,
            task_manager=_task_manager(settings.include_path),
            log_samples=False,
        )
    finally:
        set_rng_state(saved)
    if results is None:  # lm-eval reports on LOCAL_RANK 0 only: a sharded run's other ranks ran the forwards
        return {}
    return flat_metrics(results["results"])


def flat_metrics(results: Mapping[str, Mapping[str, Any]]) -> Dict[str, float]:
    """lm-eval's per-task results as `lm_eval/<task>/<metric>`: finite numbers only.

    lm-eval names a metric `<metric>,<filter>`; the default filter `none` is dropped, any other is kept
    (`exact_match,strict-match`). Strings (an alias, a stderr of "N/A") and NaNs are left out.
    """
    out: Dict[str, float] = {}
    for task, values in results.items():
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
                continue
            if abs(float(value)) == float("inf") or "," not in key:
                continue
            metric, filter_name = key.split(",", 1)
            name = metric if filter_name == "none" else key
            out[f"{PREFIX}/{task}/{name}"] = float(value)
    return out


def _require_lm_eval():
    """The lm_eval module, or a one-line ConfigError naming the extra to install."""
    if importlib.util.find_spec("lm_eval") is None:
        raise ConfigError(
            f"eval.lm_eval.tasks needs lm-evaluation-harness, which is not installed: {INSTALL} (Python >= 3.10)"
        )
    import lm_eval

    return lm_eval


@lru_cache(maxsize=4)
def _task_manager(include_path: Optional[str]):
    """lm-eval's task index: only `include_path` when given (no scan of the built-in tasks), else the built-ins.

    Cached: the built-in scan reads thousands of YAMLs (seconds), and the check and the run share it.
    """
    from lm_eval.tasks import TaskManager

    if include_path is None:
        return TaskManager()
    return TaskManager(include_path=str(Path(include_path).expanduser()), include_defaults=False)
