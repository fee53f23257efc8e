"""The compiled mask kernel's build: cached, and a one-line fallback to the pure-torch path."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pgfsparse.sparsity import kernel

FALLBACK_CHECK = """
import torch
from pgfsparse.sparsity import kernel
from pgfsparse.sparsity.masks import nm_mask
print("library:", kernel.library())
w = torch.tensor([[0.1, -3.0, 2.0, 0.5, 1.0, 1.0, -1.0, 0.0]])
print("mask:", nm_mask(w, 2, 4).int().tolist())
"""


def run_check(env_extra, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PGF_KERNEL_CACHE": str(tmp_path / "cache"), **env_extra}
    return subprocess.run([sys.executable, "-c", FALLBACK_CHECK], capture_output=True, text=True, env=env, check=True)


def test_no_compiler_is_one_line_and_the_same_masks(tmp_path):
    result = run_check({"CXX": "no-such-compiler"}, tmp_path)
    assert "library: None" in result.stdout
    assert "mask: [[0, 1, 1, 0, 1, 1, 0, 0]]" in result.stdout  # ties 1.0, 1.0, -1.0: the lowest indices win
    notices = [line for line in result.stderr.splitlines() if "pgfsparse" in line]
    assert notices == ["pgfsparse: the compiled mask kernel is unavailable (no C++ compiler found: "
                       "no-such-compiler; set CXX); using the pure-torch path (same masks, slower)"]


def test_turned_off_says_nothing(tmp_path):
    result = run_check({"PGF_MASK_KERNEL": "0"}, tmp_path)
    assert "library: None" in result.stdout and "mask: [[0, 1, 1, 0, 1, 1, 0, 0]]" in result.stdout
    assert "pgfsparse" not in result.stderr


def test_built_once_then_loaded_from_the_cache(tmp_path, monkeypatch):
    if kernel._compiler() is None:
        pytest.skip("no C++ compiler here")
    monkeypatch.setenv("PGF_KERNEL_CACHE", str(tmp_path))
    first = kernel._build(kernel._compiler())
    assert first.parent == tmp_path and first.suffix == ".so"
    stamp = first.stat().st_mtime_ns
    monkeypatch.setattr(kernel.subprocess, "run", lambda *a, **k: pytest.fail("rebuilt a cached library"))
    assert kernel._build(kernel._compiler()) == first and first.stat().st_mtime_ns == stamp
    assert list(tmp_path.iterdir()) == [first]  # the temporary build folder is gone


def test_kernel_uses_every_thread_it_is_given():
    """Same mask whatever the thread count (the groups are split between threads, not the work in a group)."""
    if kernel.library() is None:
        pytest.skip("the compiled mask kernel cannot be built here")
    from pgfsparse.sparsity.masks import nm_mask

    w = torch.randn(512, 256, generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = nm_mask(w, 3, 8)
        torch.set_num_threads(max(2, threads))
        assert torch.equal(nm_mask(w, 3, 8), one)
    finally:
        torch.set_num_threads(threads)
