#!/usr/bin/env bash
# Issue 13's GPU measurements through the shipped code, in one call on a 2-GPU machine (~6 minutes, 1.5B):
#   1. benchmarks/gpu_train.py: `sqltune.train.train` LoRA and full (shortened: GPU_TRAIN_EPOCHS) on GPU 0,
#      then the one evaluator on valid + test            -> $OUT/gpu_train.json
#   2. benchmarks/decoder.py: batched model.generate with / without the prefix cache, StaticCache (30 questions)
#                                                        -> $OUT/decoder.json
#   3. `sqltune train` on GPU 0 (batch 16) and under `accelerate launch --num_processes 2` on GPUs 0,1
#      (batch 8 each: the same global batch), short (DDP_STEPS steps), then the train-loss curves compared
#                                                        -> $OUT/ddp.json, $OUT/ddp_compare.md
#   Every step's exit code and seconds                   -> $OUT/steps.tsv; the log (no progress bars) -> $OUT/log.txt
#
# On the GPU image (docs/gpu.md): after the wheel preamble of section 1 (sqltune's wheels in /tmp/site) and
# with the 1.5B materialised in /root/sqh/models/qwen2.5-coder-1.5b (section 2 / 3b), from the repo root:
#   bash benchmarks/gpu_issue13.sh      # writes into $OUT; step limits 240+80+90+110 s keep it under a 10-minute call
# Overrides (environment): MODEL (folder or name), OUT (default $OUT or ./gpu_issue13_out), PY (python3),
# DEVICE=cpu (a dry run: --device cpu, configs/accelerate/ddp-cpu.yaml over gloo), SET (extra recipe
# overrides for every run, e.g. "train.top_layers=null" for a 2-layer test model), GPU_TRAIN_EPOCHS (2),
# ONE_GPU_ID (0: the GPU of the single-GPU steps), DDP_STEPS (10), DDP_EVERY (5), DDP_BATCH (8: per process; one process gets twice as much),
# T_TRAIN / T_DECODER / T_ONE / T_DDP (per-step time limits, seconds).
# CPU dry run with the tests' tiny model (tests/tiny.py):
#   MODEL=/tmp/tiny DEVICE=cpu SET="train.top_layers=null eval.max_new_tokens=8" GPU_TRAIN_EPOCHS=0.05 \
#     DDP_STEPS=2 DDP_EVERY=1 DDP_BATCH=2 OUT=/tmp/i13 bash benchmarks/gpu_issue13.sh
set -u
cd "$(dirname "$0")/.."
MODEL=${MODEL:-/root/sqh/models/qwen2.5-coder-1.5b}
OUT=${OUT:-$PWD/gpu_issue13_out}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
SET=${SET:-}
GPU_TRAIN_EPOCHS=${GPU_TRAIN_EPOCHS:-2}
DDP_STEPS=${DDP_STEPS:-10}
DDP_EVERY=${DDP_EVERY:-5}
DDP_BATCH=${DDP_BATCH:-8}
T_TRAIN=${T_TRAIN:-240}
T_DECODER=${T_DECODER:-80}
T_ONE=${T_ONE:-90}
T_DDP=${T_DDP:-110}
WORK=${WORK:-/tmp/sqltune-issue13}

mkdir -p "$OUT" "$WORK" || exit 1
case ":${PYTHONPATH:-}:" in *":$PWD/src:"*) ;; *) export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" ;; esac
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TQDM_DISABLE=1 NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
LOG=$WORK/log.txt
: > "$LOG"
printf 'step\trc\tseconds\n' > "$OUT/steps.tsv"

kvs=($SET)
[ "$DEVICE" = cpu ] && kvs+=(device=cpu)
sets=()  # `sqltune train --set K=V --set K=V`; gpu_train.py takes `--set K=V K=V`
for kv in "${kvs[@]}"; do sets+=(--set "$kv"); done
if [ "$DEVICE" = cpu ]; then
  ACCEL_CONFIG=configs/accelerate/ddp-cpu.yaml
  ONE_GPU=() TWO_GPUS=()
else
  ACCEL_CONFIG=configs/accelerate/ddp.yaml
  ONE_GPU=(env CUDA_VISIBLE_DEVICES=${ONE_GPU_ID:-0}) TWO_GPUS=(env CUDA_VISIBLE_DEVICES=0,1)
fi

step() {  # step NAME LIMIT COMMAND...: run it, log it, record its exit code and seconds; never stop the script
  local name=$1 limit=$2; shift 2
  echo "=== $name: $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" | tee -a "$OUT/steps.tsv"
  tail -n 25 "$LOG"
}

echo "model $MODEL, device $DEVICE, out $OUT, $(date -u '+%F %T UTC')" | tee -a "$LOG"
"$PY" -c "import torch; print('torch', torch.__version__, [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])" \
  2>&1 | tee -a "$LOG"

# 1. LoRA and full through sqltune.train.train, then the evaluator on valid + test (GPU 0)
step gpu_train "$T_TRAIN" "${ONE_GPU[@]}" "$PY" benchmarks/gpu_train.py --model "$MODEL" --methods lora,full \
  --epochs "$GPU_TRAIN_EPOCHS" --work "$WORK/gpu_train" --out "$OUT/gpu_train.json" --set "${kvs[@]}"

# 2. the decoder comparison (what `gpu_train.py --decoder` runs)
step decoder "$T_DECODER" "${ONE_GPU[@]}" "$PY" benchmarks/decoder.py --model "$MODEL" --limit 30 --variants \
  --device "$DEVICE" --out "$OUT/decoder.json"

# 3. `sqltune train`: one GPU at batch 2B, two processes (DDP) at batch B each; dropout off (masks differ per rank)
common=(-m sqltune train --model "$MODEL" --force --set train.dropout=0 --set "train.max_steps=$DDP_STEPS"
        --set "train.eval_every=$DDP_EVERY" "${sets[@]}")
step train_one_gpu "$T_ONE" "${ONE_GPU[@]}" "$PY" "${common[@]}" --batch-size "$((2 * DDP_BATCH))" --out "$WORK/one"
step train_ddp_2 "$T_DDP" "${TWO_GPUS[@]}" "$PY" -m accelerate.commands.launch --config_file "$ACCEL_CONFIG" \
  --num_processes 2 "${common[@]}" --batch-size "$DDP_BATCH" --out "$WORK/ddp"
t0=$SECONDS
"$PY" benchmarks/gpu_train.py --compare "$WORK/one/metrics.jsonl" "$WORK/ddp/metrics.jsonl" --tol 0.02 \
  > "$OUT/ddp_compare.md" 2>&1
printf 'compare\t%s\t%s\n' "$?" "$((SECONDS - t0))" | tee -a "$OUT/steps.tsv"
cat "$OUT/ddp_compare.md" | tee -a "$LOG"

"$PY" - "$WORK" "$OUT/ddp.json" <<'EOF'
import json, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
res = {}
for name in ("one", "ddp"):
    d = work / name
    info = d / "sqltune_checkpoint.json"
    res[name] = {"info": json.loads(info.read_text()) if info.is_file() else None,
                 "metrics": [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if x.strip()]
                            if (d / "metrics.jsonl").is_file() else None}
    if res[name]["info"]:
        i = res[name]["info"]
        res[name]["summary"] = {"chosen_step": i["chosen"]["step"], "chosen_exact": i["chosen"]["exact"],
                                **{k: i["timing"][k] for k in ("wall_seconds", "train_seconds", "step_seconds", "eval_seconds")},
                                "tokens_per_s": i["tokens"]["tokens_per_s"], "shared_prefix_tokens": i["tokens"]["shared_prefix_tokens"]}
out.write_text(json.dumps(res, indent=1, default=str))
print({k: v.get("summary") for k, v in res.items()})
EOF

# the log, without progress bars, at most 2 MB
tr '\r' '\n' < "$LOG" | grep -v -E '[0-9]+%\|' | tail -c 2000000 > "$OUT/log.txt"
echo "=== done $(date -u '+%T UTC'); files in $OUT:"; ls -la "$OUT"; cat "$OUT/steps.tsv"
