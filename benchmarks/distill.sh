#!/usr/bin/env bash
# The 0.5B trained on what the 1.5B alone kept (issue 14's 0.5B target; session 12). A `synth` run with
# `--reader` writes the pairs both models read back (OUT.jsonl) and, beside them, those the second reader
# rejected (OUT.rejected.jsonl, reason "second reader: ..."); together, in id order and cut at the run's k, they
# are the set a run without --reader keeps. Trained into the reader itself, the kept pairs are only the ones it
# already answers (BENCHMARKS.md, "The 0.5B on the 2-core CPU trained on the lease's pairs"), so the 0.5B gets
# the writer-only set: WORK/DB/writer15/synth.jsonl, then the shipped `sqltune run` through transfer.py with the
# default recipe, seeds + those pairs, every evaluation greedy and voted (8): untuned@vote is the bar.
#
#   bash benchmarks/distill.sh SYNTH_DIR SETTING DEVSUITE WORK DB...     # SYNTH_DIR/DB-SETTING.jsonl from synth_scale.sh
#   VOTE=1 bash benchmarks/distill.sh ...      # greedy evaluations only (a CPU: voting 8 costs ~4x)
# sqltune must be importable (installed, or PYTHONPATH=src), as for transfer.py.
set -u
syn=$1 setting=$2 ds=$3 work=$4; shift 4
here=$(cd "$(dirname "$0")" && pwd)
for db in "$@"; do
  mkdir -p "$work/$db/writer15"
  python3 - "$syn/$db-$setting.jsonl" "$work/$db/writer15/synth.jsonl" <<'PY' || exit 1
import json, sys
from pathlib import Path

from sqltune.dataset import read_jsonl, write_jsonl
from sqltune.pairs import rejected_path, summary_path

kept = Path(sys.argv[1])
k = json.loads(summary_path(kept).read_text())["k"]
rows = read_jsonl(kept)
n_kept = len(rows)
if rejected_path(kept).exists():
    rows += [r for r in read_jsonl(rejected_path(kept)) if r["provenance"]["rejected"].startswith("second reader")]
rows = sorted(rows, key=lambda r: r["id"])[:k]
for r in rows:
    for key in ("rejected", "reader_sql", "reader"):
        r["provenance"].pop(key, None)
write_jsonl(sys.argv[2], rows)
print(f"{kept.name}: {n_kept} kept by both readers, {len(rows)} by the writer alone")
PY
  SECONDS=0
  python3 "$here/transfer.py" --recipe default --model qwen2.5-coder-0.5b --devsuite "$ds" --work "$work" \
    --settings "writer15:synth.enabled=true;synth.k=1000;eval.vote=${VOTE:-8}" --dbs "$db" --out "$work/$db-transfer"
  echo "$db distill rc=$? seconds=$SECONDS" | tee "$work/$db-distill.time"
done
