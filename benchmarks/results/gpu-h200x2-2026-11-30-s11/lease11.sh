# session 11 lease: the last call (after every weight part has been received). Not committed.
set -u
python3 scripts/gpu_weights.py join --dest /root/weights || exit 1
python3 scripts/gpu_weights.py join --dest /root/w05 || exit 1
export PYTHONPATH=$PWD/src:/tmp/site SQLTUNE_HOME=/root/sqh HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
( python3 scripts/gpu_weights.py materialize --dest /root/weights --home /root/sqh > /root/keep/mat15.log 2>&1 ) &
( python3 scripts/gpu_weights.py materialize --dest /root/w05 --home /root/sqh > /root/keep/mat05.log 2>&1 ) &
wait; tail -2 /root/keep/mat15.log /root/keep/mat05.log; ls /root/sqh/models
mkdir -p /root/jobs/out/synth
cp -r /root/keep/devsuite /root/jobs/devsuite
cp benchmarks/synth_scale.sh /root/jobs/synth_scale.sh
cat > /root/keep/env.sh <<'E2'
export PYTHONPATH=/root/jobs/src:/tmp/site SQLTUNE_HOME=/root/sqh HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
E2
. /root/keep/env.sh
S="SETTINGS=scale2 bash /root/jobs/synth_scale.sh /root/jobs/devsuite /root/jobs/out/synth qwen2.5-coder-1.5b"
bash benchmarks/gpu_sweep.sh launch syn0 0 "$S tvshow flight_2 employee_hire_evaluation"
bash benchmarks/gpu_sweep.sh launch syn1 1 "$S orchestra cre_Doc_Template_Mgt singer"
bash benchmarks/gpu_sweep.sh wait ${1:-300}
