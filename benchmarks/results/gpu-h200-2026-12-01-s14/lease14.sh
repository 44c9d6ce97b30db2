# session 14 lease: the last call (after every weight part has been received). Not committed until archived.
set -u
python3 scripts/gpu_weights.py join --dest /root/weights || exit 1
export PYTHONPATH=$PWD/src:/tmp/site SQLTUNE_HOME=/root/sqh HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python3 scripts/gpu_weights.py materialize --dest /root/weights --home /root/sqh > /root/keep/mat15.log 2>&1
tail -n 2 /root/keep/mat15.log; ls /root/sqh/models
mkdir -p /root/jobs
cp -r /root/keep/devsuite /root/jobs/devsuite
cat > /root/keep/env.sh <<'E2'
export PYTHONPATH=/root/jobs/src:/tmp/site SQLTUNE_HOME=/root/sqh HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
E2
python3 -c "import transformers, torch, trl; print('transformers', transformers.__version__, 'torch', torch.__version__, 'trl', trl.__version__)"
SEED_FROM=/root/keep/s14seed SETTING='s300:rl.gradient_checkpointing=true' bash benchmarks/gpu_sweep.sh devsuite 0 \
  tvshow orchestra singer employee_hire_evaluation poker_player cre_Doc_Template_Mgt flight_2 network_1
SETTING='s300:rl.gradient_checkpointing=true' bash benchmarks/gpu_sweep.sh wait ${1:-420}
