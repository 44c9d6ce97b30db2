#!/usr/bin/env bash
# Hyper-parameter search on the GPU (docs/gpu.md): one benchmarks/train_search.py run per line of
# a plan file ("NAME KEY=VALUE ..."), dev = every 5th train item + valid, never test.
#   MODEL=qwen2.5-coder-0.5b bash benchmarks/gpu_search.sh benchmarks/search/gpu-05b.txt
# Results: $OUT/search/NAME.json and NAME.log.
set -u
mkdir -p "$OUT/search"
while read -r name sets; do
  case "$name" in ""|\#*) continue ;; esac
  echo "== $name $sets"
  python3 benchmarks/train_search.py "$name" --set model=$MODEL $sets --baseline "/root/baseline-$MODEL.json" \
    --results "$OUT/search" --work /root/search > "$OUT/search/$name.log" 2>&1 || tail -3 "$OUT/search/$name.log"
  grep -E "epoch [0-9.]+: dev" "$OUT/search/$name.log" | cut -c1-160
done < "$1"
