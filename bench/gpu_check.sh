#!/usr/bin/env bash
# The whole GPU check for a lent GPU machine, as one command (docs/training.md § GPU). Prepare
# here first: `bench/gpu_vendor.sh X.Y` for the machine's Python (pydantic & co. into .vendor/),
# then run it there with .vendor carried, e.g. timeout ~540 s. Everything it writes goes to $OUT
# (default bench/out): nvidia-smi.csv, gpu_check.json and .log, pytest-gpu.log.
set -uo pipefail
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
python3 -V
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" 2>&1
cat "$OUT/nvidia-smi.csv"
python3 bench/gpu_check.py --out "$OUT/gpu_check.json" 2>&1 | tee "$OUT/gpu_check.log" | grep -v "it/s\]"
rc=${PIPESTATUS[0]}
if python3 -c "import pytest" 2>/dev/null; then  # the gpu-marked tests, when pytest is there
  timeout 180 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ray_jobs/test_precision.py \
    > "$OUT/pytest-gpu.log" 2>&1
  tail -3 "$OUT/pytest-gpu.log"
fi
exit "$rc"
