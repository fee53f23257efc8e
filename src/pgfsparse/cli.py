"""pgf-train: Hydra composes conf/ into a run; the shared Trainer executes it.

    pgf-train model=vit sparsity=1:16 recipe=decay
    pgf-train -m sparsity=2:4,1:16 recipe=srste,decay

Exit codes: 0 done; 1 crash; 2 bad input (one line); 4 the loss diverged. A
multirun records each point's outcome (sweep.py), goes on past failures and
exits with the highest code of its points.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Optional

import hydra
from omegaconf import DictConfig

from .sweep import EXIT_BAD_INPUT, EXIT_CRASH, EXIT_DIVERGED, Point, default_sweep_override, register_resolvers

register_resolvers()


def main() -> None:
    """The console script: names a multirun's sweep; under torchrun, ranks > 0 get a throwaway Hydra dir."""
    from .distributed import export_slurm_env

    added = default_sweep_override(sys.argv[1:])  # the same command finds the same sweep folder
    export_slurm_env()  # srun --ntasks=K pgf-train ...: ranks from the SLURM step
    rank = int(os.environ.get("RANK", "0"))
    if rank > 0 and not {"-m", "--multirun"} & set(sys.argv):
        added += [f"hydra.run.dir={tempfile.mkdtemp(prefix=f'pgf-rank{rank}-')}", "hydra.output_subdir=null"]
    # next to the command's own overrides: argparse takes them as one run of positionals
    at = next((i for i, arg in enumerate(sys.argv) if i and "=" in arg and not arg.startswith("-")), len(sys.argv))
    sys.argv[at:at] = added
    train()


@hydra.main(version_base="1.3", config_path="pkg://pgfsparse.conf", config_name="train")
def train(cfg: DictConfig) -> Optional[float]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from . import distributed
    from .checkpoint import CheckpointError
    from .data import DataError
    from .sweep import RunDirInUse
    from .trainer import Divergence, Trainer, resume_settings
    from .validation import ConfigError, Contradiction, to_train_config

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    run_dir = Path(cfg.get("output_dir") or cfg.get("resume") or hydra_cfg.runtime.output_dir)
    sweep_dir = Path(hydra_cfg.sweep.dir) if multirun else None
    overrides = [o.replace("\\:", ":") for o in hydra_cfg.overrides.task if not o.startswith("sweep=")]
    point = Point(run_dir, run_dir.name if multirun else None, sweep_dir, overrides)
    distributed.export_slurm_env()  # tasks of a SLURM job step (submitit's tasks_per_node > 1) are ranks
    is_main_rank = int(os.environ.get("RANK", "0")) == 0
    started = False
    try:
        train_cfg = to_train_config(cfg)
        import torch

        torch.set_num_threads(_threads(train_cfg.threads, hydra_cfg))
        if not is_main_rank:  # ranks > 0: rank 0 holds the lock and writes every record
            return Trainer(train_cfg, run_dir, choices=dict(hydra_cfg.runtime.choices)).fit()["eval_value"]
        settings = hashlib.sha1(json.dumps(resume_settings(train_cfg), sort_keys=True).encode()).hexdigest()
        with point.lock():
            if point.is_finished(settings):
                print(f"pgf-train: {run_dir} already finished: skipped (delete its summary.json to train again)",
                      file=sys.stderr)
                return json.loads((run_dir / "summary.json").read_text())["eval_value"]
            trainer = Trainer(train_cfg, run_dir, choices=dict(hydra_cfg.runtime.choices),
                              sweep_name=sweep_dir.name if multirun else None, name=point.name)
            point.name = trainer.run_name()
            started = True
            point.mark("running", settings=settings)
            summary = trainer.fit()
            point.mark("finished", settings=settings, step=summary["steps"], resumed_from=trainer.resumed_from)
    except Contradiction as error:
        if multirun:  # a grid's impossible corner: not a failure, and never a duplicate run
            print(f"pgf-train: skipping {run_dir.name}: {error}", file=sys.stderr)
            point.mark("skipped", error=error)
            return None
        _fail(error, EXIT_BAD_INPUT)
    except RunDirInUse as error:  # another live process is training this point: leave its records alone
        if not multirun:
            _fail(error, EXIT_BAD_INPUT)
        print(f"pgf-train: skipping {run_dir.name}: {error}", file=sys.stderr)
        return None
    except (ConfigError, CheckpointError, DataError) as error:
        _record_or_fail(point, error, EXIT_BAD_INPUT, multirun or started)
        return None
    except Divergence as error:
        _record_or_fail(point, error, EXIT_DIVERGED, True, traceback.format_exc())
        return None
    except Exception as error:  # noqa: BLE001 - one crashed point must not stop a grid
        if not (multirun or started):
            raise
        point.mark("failed", error=error, exit_code=EXIT_CRASH, traceback_text=traceback.format_exc())
        if not multirun:
            raise
        print(f"pgf-train: {run_dir.name} crashed: {type(error).__name__}: {error} (see {run_dir / 'error.log'})",
              file=sys.stderr)
        return None
    if trainer.process.is_main:
        bleu = summary["eval"].get("eval/bleu")
        also = f" (BLEU {bleu:.2f} / {summary['eval']['eval_strict/bleu']:.2f})" if bleu is not None else ""
        print(f"pgf-train: {summary['eval_metric']} {summary['eval_value']:.2f} as trained, "
              f"{summary['eval_value_strict']:.2f} strict N:M{also}; {summary['steps']} steps, "
              f"{summary['train_flops']:.3g} training FLOPs, {summary['wall_seconds']:.0f}s -> {summary['run_dir']}")
    return summary["eval_value"]


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


def _fail(error: Exception, code: int) -> None:
    print(f"pgf-train: error: {error}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
