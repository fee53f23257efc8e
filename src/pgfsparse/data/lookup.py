"""Where a dataset lives: `data.path`, else `$PGF_DATA_DIR/<folder>/`, else a hub id.

`data.path` never falls back (an explicit place that holds no data is an
error); `$PGF_DATA_DIR/<folder>` is used when something is there; the hub comes
last. Only names are checked here, so a missing dataset fails in one line,
saying where it looked and what to set, before anything is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pgfsparse.errors import DataNotFoundError, DataUnreachableError, first_line

DATA_DIR_ENV = "PGF_DATA_DIR"


@dataclass(frozen=True)
class Place:
    local: Optional[Path]  # the file or folder to read; None: load `hub_id`
    label: str  # the place as messages name it
    looked: str  # every place checked, for messages
    fix: str  # what to set when the data is not there, for messages
    hub_id: Optional[str] = None


def find_data(
    name: str, path: Optional[str], hub_id: Optional[str], *, layouts: str, folder: Optional[str] = None
) -> Place:
    """The place of dataset `name`; `folder` is its sub-folder under $PGF_DATA_DIR (default `name`).

    `layouts` says, for the fix hint, which files a local copy holds.
    """
    folder = folder or name
    fix = f"set {DATA_DIR_ENV}=DIR (holding {folder}/) or data.path=DIR ({layouts})"
    if path:
        return Place(Path(path).expanduser(), f"data.path={path}", f"data.path={path}", fix)
    env_dir = os.environ.get(DATA_DIR_ENV)
    if env_dir:
        local = Path(env_dir).expanduser() / folder
        if local.exists():
            label = f"{DATA_DIR_ENV}/{folder} ({local})"
            return Place(local, label, label, fix)
        looked = f"{local} (absent)"
    else:
        looked = f"{DATA_DIR_ENV} (unset)"
    if not hub_id:
        raise DataNotFoundError(f"no local data for {name}: looked in {looked} and {name} has no hub id; {fix}")
    return Place(None, f"hub {hub_id}", f"{looked}, then hub {hub_id}", fix, hub_id)


def load_hub(place: Place, *args, **kwargs):
    """`datasets.load_dataset(place.hub_id, *args, **kwargs)`; any failure (offline, unknown id, gated) in one line."""
    try:
        import datasets

        return datasets.load_dataset(place.hub_id, *args, **kwargs)
    except Exception as error:  # noqa: BLE001 - offline shows up as many exception types
        reason = f"{type(error).__name__}: {first_line(error)}"[:300]
        raise DataUnreachableError(
            f"could not load hub dataset {place.hub_id!r} ({reason}); looked in {place.looked}; {place.fix}"
        ) from error
