"""pgf-train: Hydra composes conf/ into a run; the shared Trainer executes it.

    pgf-train model=vit sparsity=1:16 recipe=decay
    pgf-train -m sparsity=2:4,1:16 recipe=srste,decay
    pgf-train resume=DIR

Exit codes (sweep.py): 0 done; 1 crash; 2 bad input (one line: our checks and
Hydra's composition errors); 3 stopped by SIGTERM/SIGINT after a checkpoint;
4 divergence. A multirun records each point's outcome (sweep.py), goes on past
failures and exits with the highest code of its points. A refused single run
leaves no new folder (rundir.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import hydra
from omegaconf import DictConfig

from pgfsparse.errors import (
    EXIT_BAD_INPUT,
    EXIT_CRASH,
    EXIT_DIVERGED,
    EXIT_STOPPED,
    first_line,
)
from pgfsparse.rundir.layout import SUMMARY, RunDir
from pgfsparse.rundir.records import RunSummary
from pgfsparse.sweeps.point import Point
from pgfsparse.sweeps.resolvers import default_sweep_override, register_resolvers

if TYPE_CHECKING:
    from pgfsparse.cli.run_dir_guard import RunDirGuard

register_resolvers()


class _Launch:
    """This command's state between main() and the Hydra task: the run dir guard, and whether the task began."""

    guard: Optional[RunDirGuard] = None
    task_started = False


_LAUNCH = _Launch()


def main() -> None:
    """The console script: names a multirun's sweep; under torchrun, ranks > 0 get a throwaway Hydra dir."""
    from pgfsparse.cli.run_dir_guard import RunDirGuard
    from pgfsparse.run.distributed import export_slurm_env

    global _LAUNCH
    _LAUNCH = _Launch()
    added = default_sweep_override(sys.argv[1:])  # the same command finds the same sweep folder
    export_slurm_env()  # srun --ntasks=K pgf-train ...: ranks from the SLURM step
    rank = int(os.environ.get("RANK", "0"))
    multirun = bool({"-m", "--multirun"} & set(sys.argv))
    if rank > 0 and not multirun:
        # resume=DIR alone: the run's own overrides come first here too (rank 0's guard adds them below)
        own = [o for o in RunDirGuard(sys.argv[1:]).overrides() if not o.startswith("hydra.")]
        added = own + added
        added += [f"hydra.run.dir={tempfile.mkdtemp(prefix=f'pgf-rank{rank}-')}", "hydra.output_subdir=null"]
    elif not multirun:
        _LAUNCH.guard = RunDirGuard(sys.argv[1:])
        added = _LAUNCH.guard.overrides() + added  # resume=DIR: the run's own overrides come first
    # next to the command's own overrides: argparse takes them as one run of positionals
    at = next((i for i, arg in enumerate(sys.argv) if i and "=" in arg and not arg.startswith("-")), len(sys.argv))
    sys.argv[at:at] = added
    with _hydra_errors_raised():
        try:
            train()
        except Exception as error:
            if _LAUNCH.task_started:
                raise
            if _is_composition_error(error):  # (before OSError: Hydra's MissingConfigException is one)
                _fail(_composition_message(error), EXIT_BAD_INPUT)
            if isinstance(error, OSError):  # Hydra makes the run dir and opens its log before the task
                _fail(_run_dir_message(error, multirun), EXIT_BAD_INPUT)
            raise


def _run_dir_message(error: OSError, multirun: bool) -> str:
    """An unwritable hydra.run.dir (or sweep dir), in one line."""
    where = Path(error.filename) if error.filename else None
    if where is not None and where.suffix == ".log":  # the folder exists, Hydra's log cannot be written in it
        where = where.parent
    what, key = ("sweep dir", "hydra.sweep.dir") if multirun else ("run dir", "hydra.run.dir")
    return (
        f"cannot create the {what}{f' {where}' if where else ''} ({error.strerror or type(error).__name__}): "
        f"choose a writable {key}"
    )


@contextmanager
def _hydra_errors_raised():
    """Hydra prints its own errors in several lines and exits 1; raised instead, they become one line, exit 2."""
    before = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = before


def _is_composition_error(error: BaseException) -> bool:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return isinstance(error, (HydraException, OmegaConfBaseException))


def _composition_message(error: BaseException) -> str:
    """Hydra's message in one line: its first line, the cause's, and the options it lists."""
    text = str(error).strip()
    message = first_line(error).rstrip(".")
    cause = error.__cause__
    if cause is not None and first_line(cause) not in message:
        message += f": {first_line(cause)}"
    if "Available options" in text:  # a list of tab-indented lines after it
        listed = text.split("Available options", 1)[1].splitlines()[1:]
        options = [
            line.strip()
            for line in listed[: next((i for i, x in enumerate(listed) if not x.startswith("\t")), len(listed))]
        ]
        message += f" (choose one of: {', '.join(options)})"
    ambiguous = re.match(r"Ambiguous value for argument '([^=']+)=(.*)'$", first_line(error))
    if ambiguous and "quote the value" in text:  # Hydra's hint is on the lines the first one drops
        key, value = ambiguous.groups()
        message += f": quote it: '{key}=\"{value}\"' (a list: {key}=[...]; a sweep over it: add -m)"
    return message


@hydra.main(version_base="1.3", config_path="pkg://pgfsparse.conf", config_name="train")
def train(cfg: DictConfig) -> Optional[float]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from pgfsparse.config.validation import check_ranges, to_train_config
    from pgfsparse.errors import (
        CheckpointError,
        ConfigError,
        Contradiction,
        DataError,
        Divergence,
        RunDirInUse,
        Stopped,
    )
    from pgfsparse.run import distributed
    from pgfsparse.run.resume import resume_settings
    from pgfsparse.run.trainer import Trainer

    _LAUNCH.task_started = True  # from here on, an escaping exception is a crash
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    run_dir = Path(cfg.get("output_dir") or cfg.get("resume") or hydra_cfg.runtime.output_dir)
    sweep_dir = Path(hydra_cfg.sweep.dir) if multirun else None
    overrides = [o.replace("\\:", ":") for o in hydra_cfg.overrides.task if not o.startswith("sweep=")]
    point = Point(run_dir, run_dir.name if multirun else None, sweep_dir, overrides)
    distributed.export_slurm_env()  # tasks of a SLURM job step (submitit's tasks_per_node > 1) are ranks
    is_main_rank = int(os.environ.get("RANK", "0")) == 0
    started = False

    def on_start() -> None:  # every part built and the checkpoint restored: the run is accepted
        nonlocal started
        started = True
        if _LAUNCH.guard is not None:
            _LAUNCH.guard.accepted(cfg, hydra_cfg)
        point.mark("running", settings=settings)

    try:
        train_cfg = to_train_config(cfg)
        check_ranges(train_cfg)  # threads=-2 would reach torch before the Trainer's checks
        import torch

        torch.set_num_threads(_threads(train_cfg.threads, hydra_cfg))
        settings = hashlib.sha1(json.dumps(resume_settings(train_cfg), sort_keys=True).encode()).hexdigest()
        if not is_main_rank:  # ranks > 0: rank 0 holds the lock and writes every record
            if point.is_finished(settings):  # rank 0 skips it (below): no process group would ever form
                return None
            return Trainer(train_cfg, run_dir, choices=dict(hydra_cfg.runtime.choices)).fit()["eval_value"]
        if point.is_finished(settings):
            print(
                f"pgf-train: {run_dir} already finished: skipped (delete its {SUMMARY} to train again)", file=sys.stderr
            )
            if multirun:  # counted in this launch's summary line
                done = point.status
                if done is None:  # is_finished() has just read it
                    raise RuntimeError(f"{run_dir}: its run status vanished while it was read")
                point.recount(done)
            finished = RunSummary.read(run_dir)
            if finished is None:  # is_finished() saw the file; it cannot be read
                raise RuntimeError(f"{run_dir}: its {SUMMARY} cannot be read")
            return finished.eval_value
        # checks, the task and the checkpoint (read-only) before the lock, which creates the run dir
        trainer = Trainer(
            train_cfg,
            run_dir,
            choices=dict(hydra_cfg.runtime.choices),
            sweep_name=sweep_dir.name if sweep_dir is not None else None,
            name=point.name,
        )
        point.name = trainer.spec.name
        with point.lock():
            summary = trainer.fit(on_start=on_start)
            point.mark("finished", settings=settings, step=summary["steps"], resumed_from=trainer.resumed_from)
    except Contradiction as error:
        if multirun:  # a grid's impossible corner: not a failure, and never a duplicate run
            print(f"pgf-train: skipping {run_dir.name}: {error}", file=sys.stderr)
            point.mark("skipped", error=error)
            return None
        _refuse(error, hydra_cfg)
    except RunDirInUse as error:  # another live process is training this point: leave its records alone
        if not multirun:
            _refuse(error, hydra_cfg)
        print(f"pgf-train: skipping {run_dir.name}: {error}", file=sys.stderr)
        return None
    except (ConfigError, CheckpointError, DataError) as error:
        if not (multirun or started):
            _refuse(error, hydra_cfg)
        _record_or_fail(point, error, EXIT_BAD_INPUT, True)
        return None
    except Stopped as error:  # preempted: the checkpoint is written; the whole command stops, sweep included
        point.mark("stopped", error=error, exit_code=EXIT_STOPPED, step=error.step)
        _fail(error, EXIT_STOPPED, prefix="pgf-train: ")
    except Divergence as error:
        _record_or_fail(point, error, EXIT_DIVERGED, True, traceback.format_exc())
        return None
    except Exception as error:  # noqa: BLE001 - one crashed point must not stop a grid
        if not (multirun or started):
            if _LAUNCH.guard is not None:  # it never began: no folder holding only Hydra's empty log
                _LAUNCH.guard.refused(hydra_cfg)
            raise
        point.mark("failed", error=error, exit_code=EXIT_CRASH, traceback_text=traceback.format_exc())
        if not multirun:
            raise
        print(
            f"pgf-train: {run_dir.name} crashed: {type(error).__name__}: {error} (see {RunDir(run_dir).error_log})",
            file=sys.stderr,
        )
        return None
    if trainer.process.is_main:
        print(f"pgf-train: {trainer.task.headline(summary)}")
    return summary["eval_value"]


def _refuse(error: Exception, hydra_cfg) -> None:
    """A single run refused before it began: no record, and no folder that was not there before."""
    if _LAUNCH.guard is not None:
        _LAUNCH.guard.refused(hydra_cfg)
    _fail(error, EXIT_BAD_INPUT)


def _record_or_fail(point: Point, error: Exception, code: int, record: bool, traceback_text=None) -> None:
    """A multirun point (or a started run) records its failure; a single run then exits with `code`."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if record:
        point.mark("failed", error=error, exit_code=code, traceback_text=traceback_text)
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        _fail(error, code)
    print(f"pgf-train: {point.run_dir.name} failed: {error}", file=sys.stderr)


def _threads(given: Optional[int], hydra_cfg) -> int:
    """torch threads: `threads=` if set, else this process's share of the usable cores.

    Parallel training processes on shared cores must split them: two 2-thread
    processes on 2 cores ran 10-20x slower than one (spinning OpenMP threads).
    """
    if given:
        return int(given)
    if os.environ.get("SLURM_STEP_ID") is not None and os.environ.get("SLURM_CPUS_PER_TASK"):
        return int(os.environ["SLURM_CPUS_PER_TASK"])  # srun pins each task to its own cores
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    sharing = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    launcher = hydra_cfg.launcher
    if "joblib" in str(launcher.get("_target_", "")):
        n_jobs = int(launcher.get("n_jobs") or 1)
        sharing *= cores if n_jobs < 0 else n_jobs
    return max(1, cores // sharing)


def _fail(error, code: int, prefix: str = "pgf-train: error: ") -> None:
    print(prefix + first_line(error) if isinstance(error, BaseException) else prefix + str(error), file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
