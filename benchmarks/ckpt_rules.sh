#!/usr/bin/env bash
# The lease behind BENCHMARKS.md "Session 25": benchmarks/ckpt_rules.py on a GPU machine, after
# `gpu_sweep.sh prepare`, with the folders of `ckpt_rules.py build` in $CKR (carried by the lease's first call).
# Six jobs of two exoplanets halves each and two jobs of twelve devsuite halves, side by side on GPU $GPU;
# their runs go to $SWEEP_DIR/out/ckr, which `gpu_sweep.sh wait` collects (adapters' weights left out).
#
#   CKR=/root/keep/ckr bash benchmarks/ckpt_rules.sh [RECIPE]
set -eu
cd "$(dirname "$0")/.."
CKR="${CKR:-/root/keep/ckr}"; GPU="${GPU:-0}"; RECIPE="${1:-default}"
J=${SWEEP_DIR:-/root/jobs}
B="$J/bench"; mkdir -p "$B"
cp benchmarks/ckpt_rules.py benchmarks/crossfit.py "$B/"  # the jobs run a snapshot (with gpu_sweep.sh's $J/src)
S=benchmarks/gpu_sweep.sh
R="python3 $B/ckpt_rules.py run --recipe $RECIPE --work $J/out/ckr"
for s in $(ls "$CKR" | sed -n 's/^exo_s\([0-9]*\)a$/\1/p'); do
  bash $S launch "exo$s" "$GPU" "$R $CKR/exo_s${s}a $CKR/exo_s${s}b"
done
ds=$(ls "$CKR" | grep -v '^exo_' | sed "s|^|$CKR/|")
half=$(( ($(echo "$ds" | wc -l) + 1) / 2 ))
bash $S launch ds1 "$GPU" "$R $(echo "$ds" | head -n "$half" | tr '\n' ' ')"
bash $S launch ds2 "$GPU" "$R $(echo "$ds" | tail -n +"$((half + 1))" | tr '\n' ' ')"
