#!/usr/bin/env bash
# Long GPU work as background jobs (docs/gpu.md, section 6): a command is cut at 10 minutes, but a process
# started with setsid runs on while the machine stays warm (a call at least every 30 s), so later calls
# only wait on the jobs and copy their small results into $OUT.
#
#   bash benchmarks/gpu_sweep.sh prepare                # after the last weight part: join, dequantise, devsuite
#                                                       #   from $KEEP (/root/keep, carried by the lease's first call)
#   bash benchmarks/gpu_sweep.sh devsuite GPU DB...     # one job per devsuite DB: benchmarks/transfer.py
#                                                       #   --settings "$SETTING" (same --work for all)
#   PER_JOB=2 bash benchmarks/gpu_sweep.sh devsuite GPU DB...   # two DBs one after the other in each job
#   SEED_FROM=DIR bash benchmarks/gpu_sweep.sh devsuite GPU DB...   # first copy DIR/DB/* (an earlier sweep's
#                                                       #   synth.jsonl, base_*_report.json) into each run folder: `run
#                                                       #   --resume` then reuses them instead of making them again
#   bash benchmarks/gpu_sweep.sh launch NAME GPU CMD    # any command as a job (CUDA_VISIBLE_DEVICES=GPU;
#                                                       #   GPU may be a list such as 1,0); $J/out is for its files
#   bash benchmarks/gpu_sweep.sh stop 'NAME-GLOB'       # end those jobs (a job killed any other way counts as
#                                                       #   ended, exit 137, once its process is gone)
#   bash benchmarks/gpu_sweep.sh wait SECONDS           # until every job is done or SECONDS pass; prints the
#                                                       #   logs' tails and collects what is finished so far; a job
#                                                       #   that ran out of GPU memory is started once more (NAME-oom)
#                                                       #   when a GPU has OOM_RETRY_FREE_MIB free, one per OOM_RETRY_GAP s;
#                                                       #   exit 3 at once on a machine where no job was launched
#   SWEEP_DIRS="/root/jobs /root/j05" bash benchmarks/gpu_sweep.sh wait SECONDS   # two sweeps of one lease (the
#                                                       #   1.5B's and the 0.5B's, each its own SWEEP_DIR): wait on
#                                                       #   each in turn within SECONDS; the first collects into $OUT,
#                                                       #   every other into $OUT/<its folder's name>
#   bash benchmarks/gpu_sweep.sh collect                # $OUT/transfer.md + results.tgz (small files only)
#   SETTING=A:... bash benchmarks/gpu_sweep.sh devsuite 0 DB...; SETTING=B:... bash benchmarks/gpu_sweep.sh devsuite 1 DB...
#                                                       # two settings (a second one's jobs: db-DB-B); `wait` and
#                                                       #   `collect` put every launched setting in one table
#                                                       #   ($J/settings; SETTINGS="A:... B:..." to choose)
#
# Jobs run side by side on one GPU (a 1.5B run leaves most of an H200's compute idle while it decodes); each
# gets OMP_NUM_THREADS=2 so that a dozen of them share the CPUs. Memory: a GRPO job with gradient checkpointing
# peaks at 18-33 GB, so at most 5 per H200 (session 6: 6 per GPU, two of 12 jobs ran out of memory).
set -u
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."
if [ -n "${SWEEP_DIRS:-}" ] && [ -z "${SWEEP_DIR:-}" ]; then read -r SWEEP_DIR _ <<< "$SWEEP_DIRS"; fi
J=${SWEEP_DIR:-/root/jobs}
mkdir -p "$J/jobs" "$J/out"
# the jobs run a snapshot of the package taken at the first call: a later call re-sends the working tree,
# and a running job's lazy imports must not pick up code that changed under it
[ -d "$J/src" ] || cp -r src "$J/src"
export PYTHONPATH="$J/src:/tmp/site" SQLTUNE_HOME="${SQLTUNE_HOME:-/root/sqh}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 \
  TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
# the 0.5B's shipped pipeline: RECIPE=qwen0.5b-gpu MODEL=qwen2.5-coder-0.5b (the same as qwen1.5b-gpu but the pooled vote)
MODEL="${MODEL:-qwen2.5-coder-1.5b}"
RECIPE="${RECIPE:-qwen1.5b-gpu}"
# the recipe's training pipeline (synth -> SFT -> GRPO, 30 steps, probe 8, rule `last`; `qwen1.5b-gpu` trains nothing
# by default since session 38, so the sweeps, which measure training, turn it on); gradient checkpointing so that 5 jobs
# share one H200 (6 per GPU ran two of 12 out of memory in session 6)
SETTING="${SETTING:-grpo:train.enabled=true;rl.gradient_checkpointing=true}"
ALL_DBS="flight_2 cre_Doc_Template_Mgt tvshow network_1 poker_player orchestra employee_hire_evaluation course_teach singer museum_visit battle_death voter_1"
T="python3 benchmarks/transfer.py --recipe $RECIPE --model $MODEL --devsuite $J/devsuite --work $J/transfer"

launch() {  # NAME GPU CMD
  local name=$1 gpu=$2; shift 2
  echo "$*" > "$J/jobs/$name.cmd"
  echo "$gpu" > "$J/jobs/$name.gpu"
  # the exit code is written whole, then renamed: a reader never sees an empty .done file
  CUDA_VISIBLE_DEVICES=$gpu setsid nohup bash -c "( $* ); echo \$? > $J/jobs/$name.rc && mv $J/jobs/$name.rc $J/jobs/$name.done" \
    > "$J/jobs/$name.log" 2>&1 < /dev/null &
  echo $! > "$J/jobs/$name.pid"  # the job's process group (setsid): what `stop` ends
  echo "started $name on GPU $gpu"
}

ended() {  # a job is over when it wrote its exit code, or when its process is gone without one (killed: 137)
  local n=$1
  [ -f "$J/jobs/$n.done" ] && return 0
  [ -f "$J/jobs/$n.pid" ] || return 1
  local st; st=$(ps -o stat= -p "$(cat "$J/jobs/$n.pid")" 2> /dev/null)
  [ -n "$st" ] && [ "${st#Z}" = "$st" ] && return 1  # alive (a zombie nobody reaped is over)
  sleep 1; [ -f "$J/jobs/$n.done" ] && return 0  # it may have written its code as it ended
  echo 137 > "$J/jobs/$n.done"
}

oom_pending() {  # the jobs that ran out of GPU memory and wait for their one relaunch (none with OOM_RETRY=0)
  [ "${OOM_RETRY:-1}" = 0 ] && return
  for c in "$J"/jobs/*.cmd; do
    local n; n=$(basename "${c%.cmd}")
    [ -f "$J/jobs/$n.done" ] && [ "$(cat "$J/jobs/$n.done")" != 0 ] || continue
    case "$n" in *-oom) continue ;; esac
    [ -e "$J/jobs/$n.retried" ] && continue
    grep -aq "CUDA out of memory" "$J/jobs/$n.log" && echo "$n"
  done
}

jobs_left() {  # the jobs still running, plus the out-of-memory relaunches still to come
  local left; left=$(oom_pending | wc -l)
  for c in "$J"/jobs/*.cmd; do ended "$(basename "${c%.cmd}")" || left=$((left + 1)); done
  echo "$left"
}

retry_oom() {  # a job that died of CUDA out of memory starts once more as NAME-oom, on the GPU with the
  # most free memory (session 8: two of 14 jobs ran out at the start, when every job peaks at once); OOM_RETRY=0: off.
  # It waits until that GPU has OOM_RETRY_FREE_MIB free (default 40000: a GRPO job of the 1.5B peaks at 18-33 GB),
  # and one relaunch starts at most every OOM_RETRY_GAP seconds (default 90: a new job takes ~a minute to reach its
  # peak): session 14 put 8 jobs on one H200, 3 ran out, and each relaunch, started at once on the full GPU, ran out
  # again within seconds
  local need="${OOM_RETRY_FREE_MIB:-40000}" gap="${OOM_RETRY_GAP:-90}"
  for n in $(oom_pending); do
    local c="$J/jobs/$n.cmd" gpu; gpu=$(cat "$J/jobs/$n.gpu" 2>/dev/null || echo 0)
    if command -v nvidia-smi > /dev/null; then
      local best free
      best=$(nvidia-smi --query-gpu=index,memory.free --format=csv,noheader,nounits | tr -d ' ' | sort -t, -k2 -n -r | head -n 1)
      gpu=${best%%,*} free=${best##*,}
      if [ "${free:-0}" -lt "$need" ]; then
        [ -e "$J/jobs/$n.oomwait" ] || echo "$n ran out of GPU memory; its relaunch waits for $need MiB free (GPU $gpu has $free)"
        touch "$J/jobs/$n.oomwait"
        return
      fi
    fi
    local last=0; [ -f "$J/jobs/.last-relaunch" ] && last=$(cat "$J/jobs/.last-relaunch")
    [ $(( $(date +%s) - last )) -lt "$gap" ] && return
    date +%s > "$J/jobs/.last-relaunch"
    touch "$J/jobs/$n.retried"
    echo "relaunched $n as $n-oom (it ran out of GPU memory)"
    launch "$n-oom" "$gpu" "$(cat "$c")"
    return  # one at a time: the next waits for this one to reach its peak
  done
}

collect() {
  local out="${OUT:-/tmp/out}"
  mkdir -p "$out"
  if [ -d "$J/transfer" ]; then
    # the settings of one table: SETTINGS (space-separated), else every setting `devsuite` launched here, else SETTING
    local specs
    if [ -n "${SETTINGS:-}" ]; then read -ra specs <<< "$SETTINGS"
    elif [ -s "$J/settings" ]; then mapfile -t specs < "$J/settings"
    else specs=("$SETTING"); fi
    # the DBs of the table: the devsuite's 12 in their usual order where launched, then any other launched here
    # (a benchmarks/crossfit.py folder's <db>_a, <db>_b)
    local dbs=() d
    for d in $ALL_DBS; do [ -d "$J/transfer/$d" ] && dbs+=("$d"); done
    for d in $(ls "$J/transfer"); do case " $ALL_DBS " in *" $d "*) ;; *) [ -d "$J/transfer/$d" ] && dbs+=("$d") ;; esac; done
    $T --no-run --settings "${specs[@]}" --dbs "${dbs[@]}" --out "$J/out/transfer" > "$J/out/transfer_print.txt" 2>&1
    cp "$J/out/transfer.md" "$out/" 2>/dev/null
  fi
  (cd "$J" && tar czf "$out/results.tgz" --exclude='*.safetensors' --exclude='*.bin' --exclude='*.pt' \
      --exclude='*.pth' --exclude='checkpoint-*' --exclude='candidates' --exclude='devsuite' --exclude='optimizer*' \
      --exclude='tokenizer*' --exclude='*.png' --exclude='report.html' out jobs transfer exo 2>/dev/null)
  ls -la "$out"
}

case "${1:-}" in
devsuite)
  gpu=$2; shift 2
  [ -d "$J/devsuite" ] || cp -r .gpu/devsuite "$J/devsuite" || exit 1
  # every setting launched here, one per line: `wait` and `collect` put them all in one table
  grep -qxF -- "$SETTING" "$J/settings" 2>/dev/null || printf '%s\n' "$SETTING" >> "$J/settings"
  for db in "$@"; do
    if [ -n "${SEED_FROM:-}" ] && [ -d "$SEED_FROM/$db" ]; then
      dst="$J/transfer/$db/${SETTING%%:*}"; mkdir -p "$dst"
      for f in "$SEED_FROM/$db"/*; do [ -e "$dst/${f##*/}" ] || cp "$f" "$dst/"; done  # never over a run's own file
      echo "seeded $db from $SEED_FROM/$db: $(ls "$SEED_FROM/$db" | tr '\n' ' ')"
    fi
  done
  # PER_JOB=N: N DBs one after another in one job (fewer jobs side by side on a GPU, no idle gap between them)
  n=${PER_JOB:-1}; set -- "$@"
  while [ $# -gt 0 ]; do
    group=("${@:1:$n}"); shift $(( $# < n ? $# : n ))
    name="db-$(IFS=+; echo "${group[*]}")"
    # a second setting's sweep of the same DBs (another GPU): its own job files, or the two jobs would share one
    # log and one .done (session 15: the second launch truncated the first's logs)
    [ -e "$J/jobs/$name.cmd" ] && name="$name-${SETTING%%:*}"
    launch "$name" "$gpu" "$T --settings '$SETTING' --dbs ${group[*]}"
  done
  ;;
prepare)
  # the lease's setup after its last weight part: join the parts, dequantise into $SQLTUNE_HOME, and the devsuite
  # carried by the first call (KEEP/devsuite), so that the per-session lease script is one line of this file
  w="${WEIGHTS:-/root/weights}"; keep="${KEEP:-/root/keep}"
  python3 scripts/gpu_weights.py join --dest "$w" || exit 1
  python3 scripts/gpu_weights.py materialize --dest "$w" --home "$SQLTUNE_HOME" > "$J/materialize.log" 2>&1 \
    || { tail -n 5 "$J/materialize.log"; exit 1; }
  tail -n 1 "$J/materialize.log"
  [ -d "$J/devsuite" ] || cp -r "$keep/devsuite" "$J/devsuite" || exit 1
  python3 -c "import transformers, torch, trl; print('transformers', transformers.__version__, 'torch', torch.__version__, 'trl', trl.__version__)"
  ;;
launch)
  launch "$2" "$3" "${*:4}"
  ;;
wait)
  if [ -n "${SWEEP_DIRS:-}" ]; then
    # several sweeps in one lease (session 16: the 1.5B in /root/jobs, the 0.5B in /root/j05 on the same GPU): each
    # in turn within one limit, so that one call waits on all of them and the next call can follow at once (a job
    # that ran out of GPU memory is relaunched during its own folder's turn)
    limit="${2:-540}"; t0=$(date +%s); out0="${OUT:-/tmp/out}"; first=1; n=0; fresh=0
    for d in $SWEEP_DIRS; do
      n=$((n + 1))
      left=$(( limit - ($(date +%s) - t0) )); [ "$left" -lt 1 ] && left=1
      o="$out0"; [ "$first" = 1 ] || o="$out0/$(basename "$d")"; first=0
      echo "### $d"
      SWEEP_DIRS='' SWEEP_DIR="$d" OUT="$o" bash "$SELF" wait "$left"; [ $? = 3 ] && fresh=$((fresh + 1))
    done
    [ "$fresh" = "$n" ] && exit 3  # not one of them had a job: a fresh machine
    exit 0
  fi
  # no job was ever launched here: this is a fresh machine (the one that ran them went back after 30 s idle);
  # waiting would only spend device time on nothing (session 13: 400 s)
  if ! compgen -G "$J/jobs/*.cmd" > /dev/null; then
    echo "error: no jobs in $J/jobs: a fresh machine (the one that ran them was given back); launch them again" >&2
    exit 3
  fi
  limit="${2:-540}"; t0=$(date +%s)
  while [ $(( $(date +%s) - t0 )) -lt "$limit" ]; do
    retry_oom
    [ "$(jobs_left)" -eq 0 ] && break
    sleep 10
  done
  for c in "$J"/jobs/*.cmd; do
    n=$(basename "${c%.cmd}")
    st=running; [ -f "$J/jobs/$n.done" ] && st="exit $(cat "$J/jobs/$n.done")"
    echo "== $n ($st)"; grep -av "it/s\]\|s/it\]\|Warning\|warn\|^\s*$" "$J/jobs/$n.log" | tail -n 3 | cut -c1-300
  done
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader
  collect > /dev/null 2>&1
  echo "jobs left: $(jobs_left)"
  ;;
stop)
  # end the jobs whose names match the glob (their process groups), e.g. `stop 'top8e3-*'` to let the others have the
  # GPU (session 26: killing by command line also killed the job's wrapper, and `wait` then waited on it to the limit)
  [ -n "${2:-}" ] || { echo "usage: $0 stop 'NAME-GLOB'" >&2; exit 2; }
  for c in "$J"/jobs/$2.cmd; do
    [ -f "$c" ] || { echo "no job matches $2" >&2; exit 2; }
    n=$(basename "${c%.cmd}")
    [ -f "$J/jobs/$n.done" ] && continue
    [ -f "$J/jobs/$n.pid" ] && kill -TERM -- -"$(cat "$J/jobs/$n.pid")" 2> /dev/null
    [ -f "$J/jobs/$n.done" ] || echo 143 > "$J/jobs/$n.done"
    echo "stopped $n"
  done
  ;;
collect)
  collect
  ;;
*)
  echo "usage: $0 prepare | devsuite GPU DB... | launch NAME GPU CMD | wait [SECONDS] | stop 'NAME-GLOB' | collect" >&2; exit 2 ;;
esac
