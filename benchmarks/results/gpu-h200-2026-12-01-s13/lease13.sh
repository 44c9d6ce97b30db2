# session 13 lease: the last call (after every weight part has been received). Not committed.
set -u
python3 scripts/gpu_weights.py join --dest /root/weights || exit 1
python3 scripts/gpu_weights.py join --dest /root/w05 || exit 1
export PYTHONPATH=$PWD/src:/tmp/site SQLTUNE_HOME=/root/sqh HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
( python3 scripts/gpu_weights.py materialize --dest /root/weights --home /root/sqh > /root/keep/mat15.log 2>&1 ) &
( python3 scripts/gpu_weights.py materialize --dest /root/w05 --home /root/sqh > /root/keep/mat05.log 2>&1 ) &
wait; tail -n 2 /root/keep/mat15.log; tail -n 2 /root/keep/mat05.log; ls /root/sqh/models
mkdir -p /root/jobs/out/synth /root/jobs/bench
cp -r /root/keep/devsuite /root/jobs/devsuite
cp benchmarks/synth_scale.sh benchmarks/distill.sh benchmarks/transfer.py /root/jobs/bench/
cat > /root/keep/env.sh <<'E2'
export PYTHONPATH=/root/jobs/src:/tmp/site SQLTUNE_HOME=/root/sqh HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
E2
. /root/keep/env.sh
python3 -c "import transformers, torch; print('transformers', transformers.__version__, 'torch', torch.__version__)"
S="SETTINGS=scale4 bash /root/jobs/bench/synth_scale.sh /root/jobs/devsuite /root/jobs/out/synth qwen2.5-coder-1.5b"
D="bash /root/jobs/bench/distill.sh /root/jobs/out/synth scale4 /root/jobs/devsuite /root/jobs/out/dist"
bash benchmarks/gpu_sweep.sh launch chain 0 "$S orchestra; $D orchestra; $S tvshow; $D tvshow"
bash benchmarks/gpu_sweep.sh wait ${1:-300}
