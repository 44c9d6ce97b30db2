#!/usr/bin/env bash
# Prepare .whl/ (git-ignored): the pure-Python wheels sqltune needs on the lent GPU machine, plus a
# wheel of sqltune itself. The GPU image already has torch, transformers, peft, accelerate, tokenizers,
# safetensors, numpy, pyyaml, tqdm, typer, rich, click and matplotlib (see docs/gpu.md); it has no
# registry access, so what it lacks travels as wheels and is installed there with --no-deps (which keeps
# the image's torch). transformers travels too, at sqltune's pin: the image's 5.17 copies every key/value
# head of the cache once per query head at each decode step of a padded batch (`repeat_kv`), which 5.24
# no longer does for one query token (`pack_gqa`); a decode step of the 1.5B at 512 rows took 171 ms on
# 5.17 and 90-102 ms on 5.24 (BENCHMARKS.md, "Session 13 lease"). 5.24 needs huggingface-hub >= 1.31: the
# image has 1.33.
#
#   scripts/gpu_wheels.sh            # download into .whl/
#   scripts/gpu_wheels.sh --dry-run  # print the commands, run nothing
#   WHEEL_DIR=somewhere PYTHON=python3 scripts/gpu_wheels.sh
#
# On the device (carry: [".whl"]):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site || exit
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
WHEEL_DIR="${WHEEL_DIR:-.whl}"
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1

# name==version, one per line: what the image lacks (versions = the local venv's pins).
# trl needs datasets, which needs dill and multiprocess (the rest of datasets' needs are in the image).
MISSING=(
  "transformers==5.24.0"
  "sqlglot==30.30.0"
  "gguf==0.19.0"
  "trl==1.16.0"
  "datasets==5.2.0"
  "dill==0.4.1"
  "multiprocess==0.70.19"
  # `sqltune serve` (benchmarks/serve.py): FastAPI + uvicorn and what they import (pydantic-core is a
  # binary cp312 manylinux wheel; typing-extensions: pydantic needs >= 4.16, newer than torch's pin needs)
  "fastapi==0.165.0"
  "starlette==1.10.0"
  "uvicorn==0.54.0"
  "pydantic==2.14.4"
  "pydantic-core==2.50.5"
  "annotated-types==0.8.0"
  "annotated-doc==0.0.7"
  "typing-inspection==0.4.5"
  "typing-extensions==4.16.0"
  "opentelemetry-api==1.45.2"
  "anyio==4.16.0"
  "h11==0.16.0"
  "idna==3.20"
  # FastAPI's TestClient (tests/test_gpu.py serves a run on CUDA)
  "httpx==0.28.1"
  "httpcore==1.0.9"
  "certifi==2026.10.19.post1"
)

PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

run() {
  if [[ $DRY == 1 ]]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

download_cmd=("$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp)
for p in "${PLATFORMS[@]}"; do download_cmd+=(--platform "$p"); done
download_cmd+=(-d "$WHEEL_DIR")

run mkdir -p "$WHEEL_DIR"
# Drop stale sqltune wheels: two versions of one package stop the whole install there.
run find "$WHEEL_DIR" -maxdepth 1 -name 'sqltune-*.whl' -delete
run "${download_cmd[@]}" "${MISSING[@]}"
run "$PYTHON" -m pip wheel --no-deps --no-build-isolation -w "$WHEEL_DIR" .

if [[ $DRY == 0 ]]; then
  # One version per package, or pip refuses the whole folder there.
  dups=$(ls "$WHEEL_DIR"/*.whl | xargs -n1 basename | cut -d- -f1 | tr 'A-Z-' 'a-z_' | sort | uniq -d)
  if [[ -n "$dups" ]]; then
    echo "error: more than one wheel of: $dups (delete the old ones in $WHEEL_DIR)" >&2
    exit 1
  fi
  du -ch "$WHEEL_DIR"/*.whl | tail -1
  ls "$WHEEL_DIR"
fi
