"""Text datasets as rows of strings: local Parquet or text files, or the hub (optionally streamed).

Lookup order, as for images (lookup.py): `data.path` (a folder, or one .parquet/.txt
file), then `$PGF_DATA_DIR/<name>/` (GLUE: `$PGF_DATA_DIR/glue/<task>/`), then the hub id.
A folder holds Parquet splits (`train.parquet`, `validation-*.parquet`, the hub's
layouts) or text files named by split (`train.txt`, one document per line).
Local files are read with pyarrow into memory; hub splits stay memory-mapped and
are read row by row. With no eval split, the last 5% of the training rows (at
least one) are held out, so a single file works.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from pgfsparse.data.images.sources import find_parquet_splits
from pgfsparse.data.lookup import Place, find_data, load_hub
from pgfsparse.errors import DataConfigError, DataNotFoundError

LAYOUTS = "Parquet <split>.parquet files, or <split>.txt with one text per line"  # for the fix hint
EVAL_SPLITS = ("validation", "val", "valid", "dev", "test")
HELD_OUT_FRACTION = 0.05
TEXT_SUFFIXES = (".txt", ".text")


class Rows:
    """A split as `len()` and `rows[i] -> {column: value}` over in-memory columns."""

    def __init__(self, columns: Dict[str, list]):
        self.columns = columns
        self.length = len(next(iter(columns.values()))) if columns else 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return {name: values[index] for name, values in self.columns.items()}

    def slice(self, start: int, stop: Optional[int] = None) -> "Rows":
        return Rows({name: values[start:stop] for name, values in self.columns.items()})

    def select(self, indices: List[int]) -> "Rows":
        return Rows({name: [values[i] for i in indices] for name, values in self.columns.items()})


@dataclass
class TextSplits:
    train: Union[Rows, HubRows, StreamedRows]  # StreamedRows exactly when streaming
    eval: Union[Rows, HubRows, List[dict]]  # a bounded list of rows when streaming
    source: str  # where the data came from, for the run summary
    streaming: bool = False


def load_text_splits(
    cfg, columns: Sequence[str], *, folder_name: Optional[str] = None, eval_split: Optional[str] = None
) -> TextSplits:
    """Train and eval rows holding `columns` (a missing column is a one-line error naming those present).

    `folder_name` is the sub-folder under $PGF_DATA_DIR (default data.name);
    `eval_split` forces a split name (GLUE's mnli: validation_matched).
    """
    place = find_data(cfg.name, cfg.path, cfg.hub_id, layouts=LAYOUTS, folder=folder_name)
    if place.local is None:
        return _hub(cfg, columns, eval_split, place)
    return _local(place.local, place, columns, eval_split)


def column_values(rows: Union[Rows, HubRows, List[dict]], column: str) -> list:
    """Every value of `column`, at once: a hub split reads its Arrow column instead of row by row
    (WikiText-103's 1.8 million rows in seconds)."""
    if isinstance(rows, Rows):
        return rows.columns[column]
    if isinstance(rows, HubRows):
        return list(rows.dataset[column])
    return [row[column] for row in rows]


# --- local files -------------------------------------------------------------------------------


def _local(path: Path, place: Place, columns, eval_split) -> TextSplits:
    label, fix = place.label, place.fix
    splits: Dict[str, Tuple[Path, ...]]
    if path.is_file():
        splits = {"train": (path,)}
    elif path.is_dir():
        splits = find_parquet_splits(path) or _text_file_splits(path)
    else:
        raise DataNotFoundError(f"{label} does not exist; {fix}")
    if "train" not in splits:
        found = ", ".join(sorted(splits)) or "no Parquet or .txt files"
        raise DataNotFoundError(f"{label} has no train split ({found}); {fix}")
    train = _read_split(splits["train"], columns)
    eval_name = eval_split or next((s for s in EVAL_SPLITS if s in splits), None)
    if eval_split and eval_split not in splits:
        raise DataNotFoundError(f"{label} has no {eval_split} split (found {', '.join(sorted(splits))}); add it")
    if eval_name is None:
        train, held_out = _hold_out(train)
        return TextSplits(train, held_out, f"{path} (last {len(held_out)} train rows held out for eval)")
    return TextSplits(train, _read_split(splits[eval_name], columns), f"{path} ({eval_name} for eval)")


def _text_file_splits(folder: Path) -> Dict[str, Tuple[Path, ...]]:
    return {f.stem: (f,) for f in sorted(folder.iterdir()) if f.suffix in TEXT_SUFFIXES}


def _read_split(files: Sequence[Path], columns: Sequence[str]) -> Rows:
    if files[0].suffix in TEXT_SUFFIXES:
        lines = [line.strip() for f in files for line in f.read_text(encoding="utf-8").splitlines()]
        texts = [line for line in lines if line]
        if len(columns) != 1:
            raise DataConfigError(f"{files[0]} is plain text (one column) but this task needs columns {list(columns)}")
        return Rows({columns[0]: texts})
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = pq.read_schema(files[0]).names
    table = pa.concat_tables([pq.read_table(f) for f in files])
    return Rows({c: _column(table, names, c, files[0]) for c in columns})


def _column(table, names: List[str], column: str, where: Path) -> list:
    if column in names:
        return table.column(column).to_pylist()
    if "translation" in names:  # WMT's layout: one struct column {de: ..., en: ...}
        pairs = table.column("translation").to_pylist()
        if pairs and column in pairs[0]:
            return [pair[column] for pair in pairs]
    raise DataConfigError(
        f"{where} has no column {column!r} (columns: {', '.join(names)}); set data.source_lang/target_lang "
        "or data.text_column to one of them"
    )


def _hold_out(train):
    count = max(1, round(len(train) * HELD_OUT_FRACTION))
    if len(train) <= count:
        raise DataConfigError(f"{len(train)} training rows leave none after holding out {count} for eval; add data")
    return train.slice(0, len(train) - count), train.slice(len(train) - count)


# --- the hub -----------------------------------------------------------------------------------


def _hub(cfg, columns, eval_split, place: Place) -> TextSplits:
    loaded = load_hub(place, cfg.hub_config, streaming=cfg.streaming)
    names = list(loaded)
    eval_name = eval_split or next((s for s in EVAL_SPLITS if s in names), None)
    if "train" not in names or eval_name is None:
        raise DataConfigError(
            f"hub dataset {cfg.hub_id!r} has splits {', '.join(names)}; it needs train and "
            f"{eval_split or 'validation'} (set data.path to a local copy that has them)"
        )
    where = f"hub {cfg.hub_id}" + (f" ({cfg.hub_config})" if cfg.hub_config else "")
    if cfg.streaming:
        limit = cfg.eval_limit or 1000
        eval_rows = [_hub_row(row, columns, where) for row in loaded[eval_name].take(limit)]
        return TextSplits(
            StreamedRows(loaded["train"], columns, where), eval_rows, f"{where}, streamed", streaming=True
        )
    for name in ("train", eval_name):
        present = loaded[name].column_names
        missing = [c for c in columns if c not in present and "translation" not in present]
        if missing:
            raise DataConfigError(f"{where} split {name} has no column(s) {missing} (columns: {', '.join(present)})")
    return TextSplits(HubRows(loaded["train"], columns), HubRows(loaded[eval_name], columns), where)


def _hub_row(row: dict, columns, where: str) -> dict:
    if "translation" in row and not all(c in row for c in columns):
        row = {**row, **row["translation"]}
    missing = [c for c in columns if c not in row]
    if missing:
        raise DataConfigError(f"{where} rows have no column(s) {missing} (columns: {', '.join(row)})")
    return {c: row[c] for c in columns}


class HubRows:
    """A memory-mapped `datasets.Dataset` split, read row by row (WMT's `translation` struct unpacked)."""

    def __init__(self, dataset, columns):
        self.dataset, self.columns = dataset, list(columns)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return _hub_row(self.dataset[int(index)], self.columns, "the hub dataset")

    def slice(self, start: int, stop: Optional[int] = None) -> "HubRows":
        return HubRows(self.dataset.select(range(len(self))[start:stop]), self.columns)

    def select(self, indices: List[int]) -> "HubRows":
        return HubRows(self.dataset.select(indices), self.columns)


class StreamedRows:
    """A streamed hub split, read from its start on every `iterate()`."""

    def __init__(self, dataset, columns, where: str):
        self.dataset, self.columns, self.where = dataset, list(columns), where

    def iterate(self) -> Iterable[dict]:
        for row in self.dataset:
            yield _hub_row(row, self.columns, self.where)
