#!/usr/bin/env bash
# The devsuite sweep on a lent GPU machine (docs/gpu.md): long jobs run in the background (setsid), so
# they outlive one 10-minute command; later calls wait on them and copy the small results to $OUT.
#
#   bash benchmarks/gpu_sweep.sh start      # after the weights are materialised in /root/sqh
#   bash benchmarks/gpu_sweep.sh wait 560   # repeat (back to back: the machine goes cold after 30 s idle)
#   bash benchmarks/gpu_sweep.sh collect    # tables + a tarball of the small run files into $OUT
#
# With 2 GPUs: GPU 0 runs benchmarks/vote.py (untuned, greedy vs vote 8), then benchmarks/transfer.py's
# `seeds` setting with GRPO after SFT (rl.enabled=true; falls back to seeds alone if the rl stage fails);
# GPU 1 runs transfer.py's `synth` setting. With one GPU the two chains run one after the other.
set -u
cd "$(dirname "$0")/.."
J=/root/jobs
mkdir -p "$J"
export PYTHONPATH="$PWD/src:/tmp/site" SQLTUNE_HOME=/root/sqh HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
MODEL="${MODEL:-qwen2.5-coder-1.5b}"
RECIPE="${RECIPE:-qwen1.5b-gpu}"
DBS="${DBS:-flight_2 cre_Doc_Template_Mgt tvshow network_1 poker_player orchestra employee_hire_evaluation course_teach singer museum_visit battle_death voter_1}"
T="python3 benchmarks/transfer.py --recipe $RECIPE --model $MODEL --devsuite $J/devsuite --work $J/transfer"

case "${1:-}" in
start)
  [ -d "$J/devsuite" ] || cp -r .gpu/devsuite "$J/devsuite" || exit 1
  chain0="python3 benchmarks/vote.py gpu --model $MODEL --vote 8 --devsuite $J/devsuite --out $J/vote_gpu.json > $J/vote.log 2>&1;
    $T --settings 'seeds:synth.enabled=false;rl.enabled=true' --dbs $DBS > $J/seeds.log 2>&1 ||
    $T --settings 'seeds:synth.enabled=false' --dbs $DBS >> $J/seeds.log 2>&1; touch $J/gpu0.done"
  chain1="$T --settings synth --dbs $DBS > $J/synth.log 2>&1; touch $J/gpu1.done"
  ngpu=$(python3 -c 'import torch; print(torch.cuda.device_count())')
  echo "GPUs: $ngpu"
  if [ "$ngpu" -ge 2 ]; then
    CUDA_VISIBLE_DEVICES=0 setsid nohup bash -c "$chain0" > /dev/null 2>&1 < /dev/null &
    CUDA_VISIBLE_DEVICES=1 setsid nohup bash -c "$chain1" > /dev/null 2>&1 < /dev/null &
  else
    setsid nohup bash -c "$chain0; $chain1" > /dev/null 2>&1 < /dev/null &
  fi
  sleep 5; echo started
  ;;
wait)
  limit="${2:-560}"; t0=$(date +%s)
  while [ $(( $(date +%s) - t0 )) -lt "$limit" ]; do
    { [ -f "$J/gpu0.done" ] && [ -f "$J/gpu1.done" ]; } && break
    sleep 10
  done
  for f in "$J"/*.log; do echo "== $f"; grep -v "it/s\]\|s/it\]\|Warning\|warn" "$f" | tail -n 12; done
  nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader
  { [ -f "$J/gpu0.done" ] && [ -f "$J/gpu1.done" ]; } && echo "all done"
  ;;
collect)
  out="${OUT:-/tmp/out}"; mkdir -p "$out"
  $T --no-run --settings seeds synth --dbs $DBS --out "$out/transfer" > "$out/transfer_print.txt" 2>&1
  cp "$J/vote_gpu.json" "$out/" 2>/dev/null
  (cd "$J" && tar czf "$out/runs.tgz" --exclude='*.safetensors' --exclude='*.bin' --exclude='*.pt' \
      --exclude='checkpoint-*' --exclude='devsuite' --exclude='optimizer*' .)
  ls -la "$out"
  ;;
*)
  echo "usage: $0 start | wait [SECONDS] | collect" >&2; exit 2 ;;
esac
