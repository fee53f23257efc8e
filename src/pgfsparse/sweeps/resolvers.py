"""Folder names of a multirun: the sweep's (fixed on the command line) and each point's (a Hydra resolver).

The naming rule itself lives in rundir/naming.py; this module only feeds it from Hydra's state.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

from pgfsparse.rundir.files import read_json
from pgfsparse.rundir.layout import SWEEP_FILE
from pgfsparse.rundir.naming import naming_overrides, sweep_name


# -- Hydra resolvers: the sweep folder and each point's subfolder ---------------------------------
def default_sweep_override(argv: List[str]) -> List[str]:
    """`sweep=<name from the command's overrides>` to add to a multirun command that names no sweep.

    Hydra resolves the sweep dir again inside every job, from the job's own
    overrides, so the name is fixed once here, on the command line, before Hydra starts.
    """
    if not {"-m", "--multirun"} & set(argv):
        return []
    overrides, skip_next = [], False
    for arg in argv:
        if skip_next:
            skip_next = False
        elif arg in _FLAGS_WITH_VALUE:
            skip_next = True
        elif "=" in arg and not arg.startswith("-"):
            overrides.append(arg)
    if any(o.lstrip("+~").startswith(("sweep=", "hydra.sweep.dir=")) for o in overrides):
        return []
    return [f"sweep='{sweep_name(overrides)}'"]  # quoted: the name holds '=' and ','


_FLAGS_WITH_VALUE = {
    "-cd",
    "--config-dir",
    "-cn",
    "--config-name",
    "-cp",
    "--config-path",
    "-p",
    "--package",
    "-c",
    "--cfg",
    "--info",
    "--experimental-rerun",
}


def _point_dir_name(*, _root_) -> str:
    """The run name of this job, plus the other keys its sweep varies (read from sweep.json)."""
    from pgfsparse.config.spec import point_name

    overrides = list(_root_.hydra.overrides.task)
    varying = read_json(Path(str(_root_.hydra.sweep.dir)) / SWEEP_FILE, {}).get("varying", [])
    try:
        return point_name(_root_, _root_.hydra.runtime.choices.get("model"), naming_overrides(overrides, varying))
    except Exception:  # noqa: BLE001 - an impossible point still needs a stable folder; its job reports why
        return "job-" + "-".join(sorted(o.replace("/", "-").replace(":", "x") for o in overrides))[:90]


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("pgf_run_name"):
        OmegaConf.register_new_resolver("pgf_run_name", _point_dir_name)
