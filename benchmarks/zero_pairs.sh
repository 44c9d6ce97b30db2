#!/usr/bin/env bash
# A user with a database and no question/SQL pairs at all (issue 14: "zero seed pairs"): `sqltune synth` writes pairs
# from the database alone, `sqltune run` tunes on them (valid split off them; the recipe's own synth stage off, since
# the pairs already are synthetic), and every devsuite question of the DB is held out, none seen by any stage:
#   dev  = the devsuite's train + valid (the run's `--test`: the untuned model is its `base` stage, the pipeline its
#          last stage), where the decision is read (BENCHMARKS.md, "Session 23"),
#   test = the devsuite's test, read once after, with `sqltune eval` in the run's own evaluation setting.
#
#   bash benchmarks/zero_pairs.sh DEVSUITE DB OUT [RECIPE] [MODEL]     # e.g. /root/jobs/devsuite orchestra $J/out/zp/orchestra
#   SYNTH_ARGS='--template-questions' ...                                 # a CPU smoke run with a tiny model
#
# MODE=one (session 24): the one command a user with no pairs runs, `sqltune run RECIPE --db DB` (the run writes
# the pairs itself, run/synth_pairs.jsonl), with `--test` = dev + test together so that synthesis holds out both
# and one run scores both (the reader splits them by id: dev.jsonl, test.jsonl here); RUN_ARGS adds --set values.
set -eu
ds=$1 db=$2 out=$3 recipe=${4:-qwen0.5b-gpu} model=${5:-qwen2.5-coder-0.5b}
d=$ds/$db
mkdir -p "$out"
cat "$d/train.jsonl" "$d/valid.jsonl" > "$out/dev.jsonl"
if [ "${MODE:-}" = one ]; then
  cp "$d/test.jsonl" "$out/test.jsonl"
  cat "$out/dev.jsonl" "$out/test.jsonl" > "$out/held.jsonl"
  python3 -m sqltune run "$recipe" --db "$d/$db.sqlite" --test "$out/held.jsonl" \
    --set model="$model" --set rl.gradient_checkpointing=true ${RUN_ARGS:-} \
    --out "$out/run" $([ -d "$out/run" ] && echo --resume)
  echo "zero_pairs $db done"
  exit 0
fi
[ -s "$out/synth.jsonl" ] || python3 -m sqltune synth --db "$d/$db.sqlite" --model "$model" --k 300 \
  --holdout "$out/dev.jsonl" --holdout "$d/test.jsonl" --out "$out/synth.jsonl" ${SYNTH_ARGS:-}
python3 -m sqltune run "$recipe" --db "$d/$db.sqlite" --train "$out/synth.jsonl" --test "$out/dev.jsonl" \
  --set model="$model" --set synth.enabled=false --set rl.gradient_checkpointing=true ${RUN_ARGS:-} \
  --out "$out/run" $([ -d "$out/run" ] && echo --resume)
# the test read: the untuned model and the pipeline's last checkpoint, in the run's evaluation setting
ev=$(python3 -c "import json,sys; e=json.load(open(sys.argv[1]))['eval']; print(f\"--vote {e['vote']} --vote-when {e['vote_when']} --temperature {e['temperature']} --top-p {e['top_p']} --max-new-tokens {e['max_new_tokens']} --batch-size {e['batch_size']}\")" "$out/run/recipe.json")
fb=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['eval'].get('fallback') or 'none')" "$out/run/recipe.json")
last=$out/run/adapter_rl; [ -d "$last" ] || last=$out/run/adapter
python3 -m sqltune eval --db "$d/$db.sqlite" -m "$model" --data "$d/test.jsonl" $ev --out-dir "$out/test_base"
python3 -m sqltune eval --db "$d/$db.sqlite" -m "$model" --adapter "$last" --no-merge --fallback "$fb" \
  --data "$d/test.jsonl" $ev --out-dir "$out/test_tuned"
echo "zero_pairs $db done"
