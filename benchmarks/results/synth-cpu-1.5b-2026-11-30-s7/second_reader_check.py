"""Which kept pairs would a second reader (the 0.5B) also read back to the same result?"""
import json, sys
from sqltune.synth import SynthConfig, readback_sql, _load_writer
from sqltune.pairs import roundtrip_agrees
from sqltune.schema import schema_text
from sqltune.prompt import PromptBuilder

db = "../shared/data/devsuite/network_1/network_1.sqlite"
files = {"cpu_greedy": "/tmp/s7cpu/network_1-greedy.jsonl",
         "gpu_sampled_rb4": "benchmarks/results/gpu-h200x2-2026-11-30-s7/out/synth/network_1-sampled-rb4.jsonl"}
model, tok = _load_writer(sys.argv[1], None)
builder = PromptBuilder(schema_text(db), style="chat")
out = {}
for name, f in files.items():
    rows = [json.loads(l) for l in open(f)]
    sqls = readback_sql(model, tok, builder, [r["question"] for r in rows], db, SynthConfig(progress=False, batch_size=32))
    agree = roundtrip_agrees(db, rows, sqls)
    out[name] = [{"question": r["question"], "sql": r["sql"], "agree": bool(a), "reader_sql": s} for r, a, s in zip(rows, agree, sqls)]
    print(name, sum(agree), "of", len(rows), "agree", flush=True)
json.dump(out, open(sys.argv[2], "w"), indent=1)
