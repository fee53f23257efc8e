"""A single run's folder: nothing is left in it, or changed, until the run is accepted.

Hydra creates the run dir (and would write `.hydra/*.yaml` into it) before
pgf-train's checks run. So for a single run pgf-train

- turns `resume=DIR` into the run's own command: DIR's recorded overrides first,
  then the new ones, with `hydra.run.dir=DIR` (no stray `outputs/...` folder);
- tells Hydra not to write `.hydra/` (`hydra.output_subdir=null`) and writes it
  itself once the run is accepted, and only if absent: a resumed run's record of
  how it was started is never rewritten;
- on a refusal, removes what Hydra created: a run dir that did not exist before
  (and its new empty parents), if it holds nothing but Hydra's own log; in a
  folder that existed, only a log file Hydra added. Nothing else is ever deleted.

A multirun is left to Hydra: each point keeps its folder with its status.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Optional, Set

from pgfsparse.run.resume import saved_overrides
from pgfsparse.rundir.layout import RunDir

DEFAULT_RUNS_ROOT = Path("outputs")  # the root of conf/train.yaml's hydra.run.dir


def _override_value(argv: Iterable[str], key: str) -> Optional[str]:
    """The value of the last `key=value` among the command's overrides (quotes stripped), or None."""
    value = None
    for arg in argv:
        if not arg.startswith("-") and arg.lstrip("+~").split("=", 1)[0] == key and "=" in arg:
            value = arg.split("=", 1)[1].strip("'\"")
    return value


class RunDirGuard:
    """What a single run's command found on disk before Hydra started, to undo Hydra's part on refusal."""

    def __init__(self, argv: List[str]):
        self.argv = list(argv)
        resume = _override_value(argv, "resume")
        self.resume_dir = Path(resume) if resume and Path(resume).is_dir() else None
        explicit = _override_value(argv, "hydra.run.dir")
        self.run_dir = Path(explicit) if explicit else self.resume_dir
        watched = self.run_dir if self.run_dir is not None else DEFAULT_RUNS_ROOT
        self.existing: Set[Path] = {p for p in (watched.resolve(), *watched.resolve().parents) if p.is_dir()}
        if self.run_dir is None and DEFAULT_RUNS_ROOT.is_dir():  # outputs/<date>/: which dates exist already
            self.existing |= {p.resolve() for p in DEFAULT_RUNS_ROOT.iterdir() if p.is_dir()}
        self.entries = {p.name for p in self.run_dir.iterdir()} if self.run_dir and self.run_dir.is_dir() else set()

    def overrides(self) -> List[str]:
        """Overrides to put before the command's own."""
        added = ["hydra.output_subdir=null"]
        if self.resume_dir is not None:
            added = saved_overrides(self.resume_dir) + added
            if _override_value(self.argv, "hydra.run.dir") is None:
                added.append(f"hydra.run.dir={self.resume_dir}")
        return added

    def accepted(self, task_cfg, hydra_cfg) -> None:
        """Record the run as Hydra would have (.hydra/config.yaml, hydra.yaml, overrides.yaml), unless it has."""
        from omegaconf import OmegaConf

        run_dir = RunDir(hydra_cfg.runtime.output_dir)
        if run_dir.hydra_config.exists():
            return
        run_dir.hydra.mkdir(parents=True, exist_ok=True)
        files = {
            run_dir.hydra_config: task_cfg,
            run_dir.hydra / "hydra.yaml": OmegaConf.create({"hydra": hydra_cfg}),
            run_dir.saved_overrides: hydra_cfg.overrides.task,
        }
        for path, value in files.items():
            path.write_text(OmegaConf.to_yaml(value), encoding="utf-8")

    def refused(self, hydra_cfg) -> None:
        """Remove what Hydra created for a run that is refused."""
        run_dir = Path(hydra_cfg.runtime.output_dir).resolve()
        log = run_dir / f"{hydra_cfg.job.name}.log"
        if log.name not in self.entries:  # (a new run dir's entries are empty)
            log.unlink(missing_ok=True)
        for folder in (run_dir, *run_dir.parents):
            if folder in self.existing or not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()
