#!/usr/bin/env bash
# Wheels the training loop needs beyond torch/transformers/peft/accelerate/safetensors, for a GPU
# machine that has none of them and no network: pydantic (the loop's TrainConfig) and its
# dependencies, unpacked into .vendor/ at the repository root (git-ignored; carry it, ~8 MB).
# bench/gpu_check.py puts .vendor on sys.path when it exists.
#   usage: bench/gpu_vendor.sh 3.10        # the GPU machine's `python3 -V`, major.minor
# pydantic_core is compiled: the wheel must match that Python version and x86_64 Linux.
set -euo pipefail
PY=${1:?"the GPU machine's Python version, e.g. 3.10"}
HERE=$(cd "$(dirname "$0")" && pwd)
DEST="$HERE/../.vendor"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PIP=${PIP:-"$HERE/../.venv/bin/pip"}
# versions as pinned in requirements.txt / installed with pydantic==2.14.3
"$PIP" download -q --only-binary=:all: --no-deps --python-version "$PY" \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any -d "$TMP" \
  pydantic==2.14.3 pydantic_core==2.50.4 annotated-types==0.8.0 typing-extensions==4.16.0 \
  typing-inspection==0.4.5
rm -rf "$DEST" && mkdir -p "$DEST"
for wheel in "$TMP"/*.whl; do
  python3 -m zipfile -e "$wheel" "$DEST"
done
du -sh "$DEST"
