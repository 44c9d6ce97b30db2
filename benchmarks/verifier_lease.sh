#!/usr/bin/env bash
# Session 40's lease job (BENCHMARKS.md, "Session 40"): the per-database verifier of `benchmarks/verifier.py`, trained
# and scored on one GPU, after `benchmarks/gpu_sweep.sh prepare` (the 1.5B in $SQLTUNE_HOME, the devsuite in
# /root/jobs/devsuite). Carry: .whl and .gpu/ver (the dev halves' rows, `verifier.py build` on the CPU).
#
#   bash benchmarks/gpu_sweep.sh launch ver 0 bash benchmarks/verifier_lease.sh
#
# 1. the dev halves: a verifier per folder, trained on its seeds' labelled answers, scores every answer of scheme C;
# 2. the untuned 1.5B's answers to every devsuite DB's train questions (U0: greedy + 15 samples, as session 32 decoded
#    the other splits), the rows for valid and test built from them here, and a verifier per DB trained and scored
#    (scores only: what is read of them waits on the rule).
#
# Session 41 (BENCHMARKS.md, "Session 41"): `cross GROUP...` trains and scores only the cross-database verifiers of
# those groups (rows from `verifier.py build-cross` on the CPU, carried in .gpu/ver/cross.jsonl.gz), each job its own
# file; two jobs side by side share the GPU:
#
#   bash benchmarks/gpu_sweep.sh launch xa 0 bash benchmarks/verifier_lease.sh cross g0 g1
set -euo pipefail
W=/root/jobs/out V=/root/v M=qwen2.5-coder-1.5b
mkdir -p "$W" "$V"
if [ "${1:-}" = cross ]; then
  shift
  python3 benchmarks/verifier.py train --data .gpu/ver/cross.jsonl.gz --model $M --epochs 2 --batch 16 \
    --folders "$@" --out "$W/verifier_cross_$1.json"
  echo "cross verifier job done: $*"
  exit 0
fi
[ -d "$V/ds" ] || tar xzf benchmarks/results/nvidia-h200-2026-12-03-s32-samples/answers.tgz -C "$V"
python3 benchmarks/verifier.py train --data .gpu/ver/xf.jsonl.gz --model $M --out "$W/verifier_xf.json"
[ -d "$V/tr/voter_1" ] || python3 benchmarks/untuned_answers.py --model $M --devsuite /root/jobs/devsuite --splits train --k 0 --vote 16 \
  --batch-size 512 --out "$V/tr"
mkdir -p "$W/train_answers" && cp -r "$V/tr/." "$W/train_answers/"
python3 benchmarks/verifier.py build --answers "$V/ds" --pool "$V/tr" --pool-split train --suite /root/jobs/devsuite \
  --split valid test --tokenizer $M --out "$V/ds.jsonl.gz"
python3 benchmarks/verifier.py train --data "$V/ds.jsonl.gz" --model $M --out "$W/verifier_ds.json"
echo "verifier lease job done"
