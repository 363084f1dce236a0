#!/usr/bin/env bash
# The GPU check for a machine with a MAX-supported GPU: parity against the float64 reference,
# then the throughput table (demo model and a 4-layer full-width slice, float32 and bfloat16)
# with --use-gpu, MAX only (the llama.cpp wheel here is a CPU build). On an H200 with empty
# compile caches: parity about 3 minutes, then about 4 minutes per model; results go to
# bench/results/gpu/. A run cut short keeps results.json with every model measured so far, and
# `python -m bench.report bench/results/gpu` draws its tables from it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE=1
"$PYTHON" -m bench.gpu_check
"$PYTHON" -m bench.suite --use-gpu --no-llama --stages throughput --repeats 3 \
    --out bench/results/gpu "$@"
