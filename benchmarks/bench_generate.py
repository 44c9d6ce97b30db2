"""Generation speed (issue 4): batched + shared-prefix decoding vs a one-question-at-a-time loop.

    SQLTUNE_HOME=/tmp/sqh flock /tmp/sqltune-cpu.lock \\
        .venv/bin/python benchmarks/bench_generate.py --out /tmp/bench_generate.json

Predicts the exoplanets valid + test questions with the default model, first with
the evaluator `sqltune.evaluate.evaluate` (batched, greedy, schema prefix computed once), then, in the same
process, with `model.generate` on one question at a time (greedy, same stopping rule). Prints both
times, the ratio, the accuracy of each (they must agree) and where the batched time went. Also times
the first 30 questions alone (target: <= 8 s) and, with --variants, other batch sizes (the decoder
against `model.generate`, with and without the prefix cache: benchmarks/decoder.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")
    except OSError:
        model = platform.processor() or "?"
    return f"{model}, {os.cpu_count()} cores"


def load_questions(limit: int | None) -> list[dict]:
    from sqltune.dataset import load_items

    items = load_items("exoplanets:valid")
    try:
        items += load_items("exoplanets:test")
    except Exception:  # noqa: BLE001 - before the test split existed: the recovered train questions
        seed = Path("/work/shared/data/seed/exoplanets_sql_recovered.jsonl")
        items += [dict(r, id=f"seed-{i}") for i, r in enumerate(json.loads(x) for x in seed.read_text().splitlines())
                  if r.get("split") != "valid"]
    return items[:limit] if limit else items


def score(db, items, sqls) -> dict:
    from sqltune.score import score_pairs

    return score_pairs(db, items, sqls)["summary"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: the packaged default model")
    ap.add_argument("--style", default="chat")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--limit", type=int, default=None, help="only the first N questions")
    ap.add_argument("--no-baseline", action="store_true", help="skip the one-by-one loop")
    ap.add_argument("--variants", action="store_true",
                    help="also batch sizes 16/64, and 16 questions with and without the shared prefix")
    ap.add_argument("--out", type=Path, default=None, help="write all numbers as JSON here")
    args = ap.parse_args()

    import torch

    from sqltune.db import default_db
    from sqltune.extract import extract_sql
    from sqltune.evaluate import EvalConfig, evaluate
    from sqltune.generate import generate_one_by_one
    from sqltune.model import load_model, pick_device
    from sqltune.prompt import PromptBuilder
    from sqltune.schema import schema_text

    res: dict = {"machine": cpu_name(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                 "load_before": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M"), "args": vars(args) | {"out": str(args.out)}}
    db = default_db()
    items = load_questions(args.limit)
    questions = [it["question"] for it in items]
    dev = pick_device()
    t = time.perf_counter()
    model, tok, loc = load_model(args.model, dev)
    res["load_seconds"] = time.perf_counter() - t
    builder = PromptBuilder(schema_text(db), args.style)
    res.update(device=f"{dev.device} {dev.dtype} autocast={dev.autocast}", model=loc, n=len(items))
    print(f"{len(items)} questions, {res['machine']}, {res['device']}, model loaded in {res['load_seconds']:.1f} s", flush=True)

    def batched(qs, label, batch_size=None):
        """The evaluator (`sqltune.evaluate.evaluate`): generation, execution and scoring, as `eval` runs them."""
        cfg = EvalConfig(batch_size=batch_size or args.batch_size, max_new_tokens=args.max_new_tokens,
                         autocast=dev.autocast, progress=False)
        t = time.perf_counter()
        rep = evaluate(model, tok, builder, items[: len(qs)], db, cfg)
        secs = time.perf_counter() - t
        summ, stats = rep["summary"], rep["timing"]["generation"]
        preds = rep["predictions"]
        row = {"label": label, "n": len(qs), "seconds": secs, "queries_per_s": len(qs) / secs,
               "exact": summ["exact"], "execution_rate": summ["execution_rate"], "stats": stats,
               "sql": [p["sql"] for p in preds], "raw": [p["raw"] for p in preds]}
        print(f"{label:32s} {len(qs):3d} q  {secs:7.1f} s  {len(qs) / secs:5.2f} q/s  exact {summ['exact']:.1%}  "
              f"executed {summ['execution_rate']:.1%}", flush=True)
        print("    " + json.dumps(stats), flush=True)
        return row

    runs = [batched(questions, f"batched (batch {args.batch_size})")]
    if len(questions) > 30:
        runs.append(batched(questions[:30], f"batched, first 30 (batch {args.batch_size})"))
    if args.variants:
        for bs in (16, 32, 64):
            if bs != args.batch_size:
                runs.append(batched(questions, f"batched (batch {bs})", batch_size=bs))
    res["batched"] = runs

    if not args.no_baseline:
        prompts = [builder.prompt(tok, q) for q in questions]
        t = time.perf_counter()
        outs = generate_one_by_one(model, tok, prompts, max_new_tokens=args.max_new_tokens, autocast=dev.autocast)
        secs = time.perf_counter() - t
        sqls = [extract_sql(o[0]) for o in outs]
        summ = score(db, items, sqls)
        base = {"label": "one by one (model.generate)", "n": len(items), "seconds": secs,
                "queries_per_s": len(items) / secs, "exact": summ["exact"], "execution_rate": summ["execution_rate"],
                "latency_mean": secs / len(items), "new_tokens": sum(o[1] for o in outs), "sql": sqls}
        res["one_by_one"] = base
        main_run = runs[0]
        same = sum(a == b for a, b in zip(main_run["sql"], sqls))
        res["ratio"] = secs / main_run["seconds"]
        res["same_sql"] = same
        print(f"{base['label']:32s} {len(items):3d} q  {secs:7.1f} s  {len(items) / secs:5.2f} q/s  "
              f"exact {summ['exact']:.1%}  executed {summ['execution_rate']:.1%}", flush=True)
        print(f"speed-up {res['ratio']:.1f}x; identical SQL for {same}/{len(items)} questions; "
              f"accuracy {'agrees' if summ['exact'] == main_run['exact'] else 'DIFFERS'}", flush=True)
        for i, (a, b) in enumerate(zip(main_run["sql"], sqls)):
            if a != b:
                print(f"  differs: {items[i]['id']}: batched {a!r} / one-by-one {b!r}")
    res["load_after"] = os.getloadavg()
    print(f"load average before {res['load_before']}, after {res['load_after']}")
    if args.out:
        args.out.write_text(json.dumps(res, indent=2, default=str))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
