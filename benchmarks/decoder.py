"""Decoder (issue 13): sqltune's hand-written batched decoder against transformers' batched `generate`.

    python benchmarks/decoder.py --limit 30 --out decoder.json            # CPU or GPU, whatever pick_device finds
    python benchmarks/decoder.py --limit 30 --variants --out decoder.json  # + no prefix cache, + StaticCache

The generators get the same prompts (exoplanets valid + test questions, the default prompt builder),
the same batch, greedy decoding, the same stopping rule (EOS or the end of the SQL statement) and the
precision `model.pick_device` picks (bf16 autocast on a CPU that has it): `generate_texts`
(`model.generate` from a copy of the schema prefix's KV cache) and, with --variants, without the
prefix cache and with `cache_implementation="static"`. The hand-written decoder this was compared
with (issue 13) was deleted; to repeat that comparison, check out commit 39d7802, where this
script also times `generate_texts(decoder="custom")`.
Runs are interleaved and repeated (`--repeat`); the table keeps each one's fastest time. Outputs are
compared text by text. Only public names of sqltune are used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def machine() -> dict:
    import torch
    import transformers

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu = next((x.split(":", 1)[1].strip() for x in out.splitlines() if x.startswith("Model name")), "?")
    except OSError:
        cpu = platform.processor() or "?"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "gpu": gpu,
            "torch": torch.__version__, "transformers": transformers.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="default: qwen2.5-coder-0.5b")
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--variants", action="store_true")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from sqltune.dataset import load_items
    from sqltune.db import default_db
    from sqltune.generate import GenerationStats, generate_texts
    from sqltune.model import load, pick_device
    from sqltune.prompt import PromptBuilder
    from sqltune.schema import schema_text

    items = (load_items("exoplanets:valid") + load_items("exoplanets:test"))[: args.limit]
    dev = pick_device(args.device)
    db = default_db()
    t = time.perf_counter()
    loaded = load(args.model, dev, builder=PromptBuilder(schema_text(db)))
    load_s = time.perf_counter() - t
    model, tok, builder = loaded.model, loaded.tokenizer, loaded.builder
    prompts = [builder.prompt(tok, it["question"]) for it in items]
    kw = dict(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, progress=False, autocast=dev.autocast)
    methods = {"model.generate + prefix cache copied per batch": lambda s: generate_texts(model, tok, prompts, stats=s, **kw)}
    if args.variants:
        methods["model.generate, no prefix cache"] = lambda s: generate_texts(model, tok, prompts, stats=s,
                                                                             share_prefix=False, **kw)
        methods["model.generate, StaticCache, no prefix cache"] = lambda s: generate_texts(
            model, tok, prompts, stats=s, share_prefix=False, cache_implementation="static", **kw)
    generate_texts(model, tok, prompts[:2], **dict(kw, max_new_tokens=8))  # warm-up: one-off costs out of the timing
    res = {name: {"times": []} for name in methods}
    for _ in range(args.repeat):
        for name, fn in methods.items():
            stats = GenerationStats()
            t, cpu = time.perf_counter(), time.process_time()
            out = fn(stats)
            res[name]["times"].append(round(time.perf_counter() - t, 3))
            res[name].setdefault("cpu_times", []).append(round(time.process_time() - cpu, 3))  # robust on a shared CPU
            res[name]["texts"] = [x[0] for x in out]
            res[name]["new_tokens"] = stats.new_tokens
            print(f"{name}: {res[name]['times'][-1]:.2f} s (CPU time {res[name]['cpu_times'][-1]:.1f} s)",
                  file=sys.stderr, flush=True)
    ref = next(iter(res.values()))["texts"]
    from sqltune.extract import extract_sql
    from sqltune.score import score_pairs

    rows = []
    for name, r in res.items():
        summary = score_pairs(db, items, [extract_sql(x) for x in r["texts"]])["summary"]
        best = min(r["times"])
        rows.append({"generator": name, "questions": len(items), "seconds": best, "times": r["times"],
                     "cpu_seconds": min(r["cpu_times"]),
                     "q_per_s": round(len(items) / best, 3), "same_text_as_first": sum(a == b for a, b in zip(r["texts"], ref)),
                     "exact": summary["exact"], "executed": summary["execution_rate"], "new_tokens": r["new_tokens"]})
    first = rows[0]["seconds"]
    for r in rows:
        r["vs_first"] = round(r["seconds"] / first, 2)
    report = {"machine": machine(), "device": dev.__dict__, "load_seconds": round(load_s, 1), "args": vars(args),
              "rows": rows}
    print("| generator | questions | best of runs | q/s | time vs first row | same text as first row | exact | executed |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['generator']} | {r['questions']} | {r['seconds']:.2f} s ({', '.join(f'{x:.1f}' for x in r['times'])}) "
              f"| {r['q_per_s']:.2f} | {r['vs_first']:.2f}× | {r['same_text_as_first']}/{r['questions']} "
              f"| {r['exact']:.1%} | {r['executed']:.1%} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
