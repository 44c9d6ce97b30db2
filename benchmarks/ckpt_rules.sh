#!/usr/bin/env bash
# The lease behind BENCHMARKS.md "Session 25": benchmarks/ckpt_rules.py on a GPU machine, after
# `gpu_sweep.sh prepare`, with the folders of `ckpt_rules.py build` in $CKR (carried by the lease's first call).
# Six jobs of two exoplanets halves each and $DSJOBS (2) jobs of the devsuite halves, side by side on GPU $GPU;
# their runs go to $SWEEP_DIR/out/ckr, which `gpu_sweep.sh wait` collects (adapters' weights left out).
#
# TAG names a training setting (its work is $SWEEP_DIR/out/ckr_TAG, its jobs TAG-...) and SET its recipe overrides,
# e.g. the session 26 lease:
#
#   CKR=/root/keep/ckr bash benchmarks/ckpt_rules.sh [RECIPE]
#   TAG=top6 SET="train.top_layers=6" CKR=/root/keep/ckr bash benchmarks/ckpt_rules.sh default
#   bash benchmarks/gpu_sweep.sh stop 'top6-*'     # give the GPU to the other settings (12-16 jobs per H200 is enough)
#
# DEVEVAL adds evaluation settings every checkpoint is also scored under on dev (`ckpt_rules.py run --dev-eval`),
# e.g. the session 27 lease: DEVEVAL="fs2:fewshot=2 fs4:fewshot=4" (space-separated NAME:KEY=VALUE[,...]).
set -eu
cd "$(dirname "$0")/.."
CKR="${CKR:-/root/keep/ckr}"; GPU="${GPU:-0}"; RECIPE="${1:-default}"; TAG="${TAG:-}"; SET="${SET:-}"
J=${SWEEP_DIR:-/root/jobs}
B="$J/bench"; mkdir -p "$B"
cp benchmarks/ckpt_rules.py benchmarks/crossfit.py "$B/"  # the jobs run a snapshot (with gpu_sweep.sh's $J/src)
S=benchmarks/gpu_sweep.sh
P="${TAG:+$TAG-}"
R="python3 $B/ckpt_rules.py run --recipe $RECIPE --work $J/out/ckr${TAG:+_$TAG}"
for kv in $SET; do R="$R --set $kv"; done
for d in ${DEVEVAL:-}; do R="$R --dev-eval $d"; done
for s in $(ls "$CKR" | sed -n 's/^exo_s\([0-9]*\)a$/\1/p'); do
  bash $S launch "${P}exo$s" "$GPU" "$R $CKR/exo_s${s}a $CKR/exo_s${s}b"
done
ds=$(ls "$CKR" | grep -v '^exo_' | sed "s|^|$CKR/|")
n="${DSJOBS:-2}"  # the devsuite halves in n jobs, folder i in job i mod n
for i in $(seq 1 "$n"); do
  bash $S launch "${P}ds$i" "$GPU" "$R $(echo "$ds" | awk -v n="$n" -v i="$i" 'NR % n == i % n' | tr '\n' ' ')"
done
