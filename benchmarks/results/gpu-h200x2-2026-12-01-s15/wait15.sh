# session 15 lease: every `wait` after the launch. Not committed until archived.
. /root/keep/settings.sh
SETTING='n15:rl.gradient_checkpointing=true' SETTINGS="$SETTINGS" bash benchmarks/gpu_sweep.sh wait ${1:-300}
