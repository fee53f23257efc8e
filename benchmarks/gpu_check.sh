#!/usr/bin/env bash
# The GPU check of issue 27, in one go: at most 8 minutes, one JSON file.
#
#   bash benchmarks/gpu_check.sh [OUT.json]
#
# OUT.json defaults to $OUT/gpu_check.json when $OUT is set, else benchmarks/results/gpu_check-<date>.json.
# It measures training throughput, FLOP/s and MFU (bf16 autocast, fused AdamW) of ViT-B/16 and the Llama
# 125M preset, dense and every built-in recipe at FF 2:4 and 1:16 (as ratios to dense, side by side),
# torch.compile on/off, 2:4 semi-structured inference per layer and per model, and peak memory: see
# benchmarks/gpu_check.py's docstring. The JSON is rewritten after every configuration, so a kill leaves
# what was measured. Without a CUDA device it prints the plan (one line per configuration and the
# estimated time) and exits 0.
#
# Python: $PYTHON, else the repository's .venv/bin/python when there is one, else python (python3).
# It runs with PYTHONPATH=src:benchmarks/.gpu_site (the library from this tree, no install needed) and
# imports only torch, timm, transformers, safetensors, yaml and pgfsparse modules that need nothing more.
#
# Packages the GPU machine lacks (offline, Python 3.12) travel as wheels, listed in benchmarks/gpu_wheels.txt
# (at present the list is empty: nothing is missing, see that file):
#   1. on a networked machine, from the repository root:
#        pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#            --no-deps -r benchmarks/gpu_wheels.txt -d benchmarks/wheels
#   2. copy the tree with benchmarks/wheels/ (git-ignored: a copy that skips ignored files must name it,
#      e.g. the device runner's carry=["benchmarks/wheels"]);
#   3. on the GPU machine this script installs them itself when an import fails (gpu_check.py exits 3):
#        pip install --no-index --no-deps --target benchmarks/.gpu_site benchmarks/wheels/*.whl
#      (benchmarks/.gpu_site gets a .gitignore of its own) and runs the check again.
#
# Environment: GPU_CHECK_LIMIT_S (default 480) is the whole script's limit; gpu_check.py's budget
# (7.5 min) shrinks to end 15 s before it, and `timeout` stops a run that overruns.
set -u
cd "$(dirname "$0")/.." || exit 1
start=$(date +%s)
limit=${GPU_CHECK_LIMIT_S:-480}

if [ -n "${PYTHON:-}" ]; then
    py=$PYTHON
elif [ -x .venv/bin/python ]; then
    py=.venv/bin/python
elif command -v python >/dev/null 2>&1; then
    py=python
else
    py=python3
fi
export PYTHONPATH="src:benchmarks/.gpu_site${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export GPU_CHECK_DEADLINE=$((start + limit - 15))

run_check() {
    local left=$((limit - ($(date +%s) - start)))
    if [ "$left" -le 20 ]; then
        echo "gpu_check: no time left of the ${limit} s limit" >&2
        return 124
    fi
    timeout -k 10 "$left" "$py" benchmarks/gpu_check.py "$@"
}

run_check "$@"
rc=$?
if [ "$rc" -eq 3 ]; then  # an import failed
    if compgen -G "benchmarks/wheels/*.whl" >/dev/null; then
        echo "gpu_check: installing benchmarks/wheels/*.whl into benchmarks/.gpu_site, then again"
        mkdir -p benchmarks/.gpu_site && printf '*\n' >benchmarks/.gpu_site/.gitignore
        "$py" -m pip install --no-index --no-deps --target benchmarks/.gpu_site benchmarks/wheels/*.whl || exit 3
        run_check "$@"
        rc=$?
    else
        echo "gpu_check: an import failed and benchmarks/wheels/ has no wheels: see benchmarks/gpu_wheels.txt" >&2
    fi
fi
exit "$rc"
