"""N:M patterns: parsing and validation.

A pattern "N:M" keeps N of every M consecutive weights. It is written as a
string everywhere a user types one (CLI, YAML, Python) and carried around as an
immutable `NM` value inside the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True, order=True)
class NM:
    """An N:M pattern: keep `n` of every `m` consecutive weights."""

    n: int
    m: int

    def __post_init__(self) -> None:
        if not (isinstance(self.n, int) and isinstance(self.m, int)):
            raise TypeError(f"N:M pattern needs integers, got {self.n!r}:{self.m!r}")
        if not 1 <= self.n < self.m:
            raise ValueError(
                f"impossible N:M pattern {self.n}:{self.m}: need 1 <= N < M "
                f"(e.g. '2:4' or '1:16'); use 'dense' for no sparsity"
            )

    @property
    def density(self) -> float:
        return self.n / self.m

    @property
    def slug(self) -> str:
        """File- and W&B-safe name, e.g. 'n1m16' (':' is refused in artifact names)."""
        return f"n{self.n}m{self.m}"

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


PatternLike = Union[str, NM, tuple]


def parse_pattern(value: PatternLike) -> NM:
    """Parse '1:16', (1, 16) or an `NM` into an `NM`; raise a one-line error otherwise."""
    if isinstance(value, NM):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return NM(int(value[0]), int(value[1]))
    if isinstance(value, str):
        parts = value.strip().split(":")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            return NM(int(parts[0]), int(parts[1]))
    if isinstance(value, int):
        # YAML reads an unquoted 1:16 as the base-60 integer 76.
        raise ValueError(f"N:M pattern arrived as the integer {value}: quote it in YAML ('1:16')")
    raise ValueError(f"cannot read N:M pattern {value!r}: write it as 'N:M', e.g. '1:16'")


def is_dense(value) -> bool:
    """True for the spellings of 'no sparsity here'."""
    return value is None or (isinstance(value, str) and value.strip().lower() in ("dense", "none", ""))
