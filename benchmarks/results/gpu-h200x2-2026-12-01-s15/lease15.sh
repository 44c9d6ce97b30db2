# session 15 lease: the last call (after every weight part has been received). Not committed until archived.
# GPU 0: the shipped qwen1.5b-gpu end to end (its own synth) on 5 DBs; GPU 1 (x2 only): the same with rl.join_floor=0.3
set -u
python3 scripts/gpu_weights.py join --dest /root/weights || exit 1
export PYTHONPATH=$PWD/src:/tmp/site SQLTUNE_HOME=/root/sqh HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python3 scripts/gpu_weights.py materialize --dest /root/weights --home /root/sqh > /root/keep/mat15.log 2>&1
tail -n 2 /root/keep/mat15.log; ls /root/sqh/models
mkdir -p /root/jobs
cp -r /root/keep/devsuite /root/jobs/devsuite
python3 -c "import transformers, torch, trl; print('transformers', transformers.__version__, 'torch', torch.__version__, 'trl', trl.__version__)"
DBS="singer orchestra tvshow poker_player employee_hire_evaluation"
A='n15:rl.gradient_checkpointing=true'
B='n15j:rl.gradient_checkpointing=true;rl.join_floor=0.3'
SEED_FROM=/root/keep/s15seed SETTING="$A" bash benchmarks/gpu_sweep.sh devsuite 0 $DBS
if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
  SEED_FROM=/root/keep/s15seed SETTING="$B" bash benchmarks/gpu_sweep.sh devsuite 1 $DBS
  echo "SETTINGS='$A $B'" > /root/keep/settings.sh
else
  echo "SETTINGS='$A'" > /root/keep/settings.sh
fi
. /root/keep/settings.sh; SETTING="$A" SETTINGS="$SETTINGS" bash benchmarks/gpu_sweep.sh wait ${1:-420}
