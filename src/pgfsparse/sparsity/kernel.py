"""The compiled N:M selection kernel: built once per machine on first use, or None.

`kernels/nm_select.cpp` is a plain shared library (no Python or torch headers), built
with the system C++ compiler (``$CXX``, else ``c++``) in about a second, cached under
``$PGF_KERNEL_CACHE`` (default ``~/.cache/pgfsparse``) by a hash of its source and
flags, and called through ctypes on the weight's raw bits. It uses OpenMP, and torch's
own runtime when torch has one loaded, so it shares torch's intra-op threads.

Where it cannot be built (no compiler, a read-only cache) masks.py uses its pure-torch
path, which gives the same masks, after one line on stderr. ``PGF_MASK_KERNEL=0``
turns the kernel off.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

SOURCE = Path(__file__).with_name("kernels") / "nm_select.cpp"
FLAGS = ("-O3", "-std=c++17", "-fPIC", "-shared", "-fopenmp")
ABI_VERSION = 1

_library: Optional[ctypes.CDLL] = None
_tried = False


def cache_dir() -> Path:
    return Path(os.environ.get("PGF_KERNEL_CACHE") or Path.home() / ".cache" / "pgfsparse")


def _compiler() -> Optional[str]:
    """$CXX when set (and only it), else the first of c++, g++, clang++ on PATH."""
    if os.environ.get("CXX"):
        return shutil.which(os.environ["CXX"])
    return shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def _build(compiler: str) -> Path:
    """The library's path, compiling it first unless this source and these flags were built before."""
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join((compiler, *FLAGS)).encode()).hexdigest()[:16]
    target = cache_dir() / f"nm_select-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # built aside, then renamed: no half-written library
        built = Path(tmp) / target.name
        result = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(built)], capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError((result.stderr.strip().splitlines() or ["compiler failed"])[0])
        os.replace(built, target)
    return target


def _load() -> ctypes.CDLL:
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError(f"no C++ compiler found: {os.environ.get('CXX') or 'c++, g++, clang++'}; set CXX")
    library = ctypes.CDLL(str(_build(compiler)))
    if library.pgf_nm_select_version() != ABI_VERSION:
        raise RuntimeError("a stale library in the cache")
    for name in ("pgf_nm_select_u16", "pgf_nm_select_u32"):
        function = getattr(library, name)
        function.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_int,
        ]
        function.restype = None
    return library


def library() -> Optional[ctypes.CDLL]:
    """The loaded kernel, or None (disabled, or it could not be built: said once on stderr)."""
    global _library, _tried
    if not _tried:
        _tried = True
        if os.environ.get("PGF_MASK_KERNEL", "1") != "0":
            try:
                import torch  # noqa: F401 - torch's OpenMP runtime is loaded first, so the kernel shares it

                _library = _load()
            except Exception as error:  # any failure: the pure-torch path gives the same masks
                message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                print(
                    f"pgfsparse: the compiled mask kernel is unavailable ({message}); using the pure-torch "
                    "path (same masks, slower)",
                    file=sys.stderr,
                )
    return _library
