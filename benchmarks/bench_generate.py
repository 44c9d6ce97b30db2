"""Generation speed (issue 4): batched + shared-prefix decoding vs a one-question-at-a-time loop.

    SQLTUNE_HOME=/tmp/sqh flock /tmp/sqltune-cpu.lock \\
        .venv/bin/python benchmarks/bench_generate.py --out /tmp/bench_generate.json

Predicts the exoplanets valid + test questions with the default model, first with
`sqltune.generate.generate_sql` (batched, greedy, schema prefix computed once), then, in the same
process, with `model.generate` on one question at a time (greedy, same stopping rule). Prints both
times, the ratio, the accuracy of each (they must agree) and where the batched time went. Also times
the first 30 questions alone (target: <= 8 s) and, with --variants, other batch sizes and the batched
path without the shared prefix.
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


def sweep(model, tok, builder, dev, sizes=(1, 8, 16, 32, 64), suffix=25, steps=6) -> list[dict]:
    """Seconds for one prefill of `suffix` tokens per row and for one decode step, per batch size."""
    import torch
    from transformers import DynamicCache

    from sqltune.generate import _batch_cache, _SdpaGqa
    from sqltune.prompt import encode

    device = next(model.parameters()).device
    ck = _cache_kwarg(model)
    pre = encode(tok, builder.prefix(tok))
    P = len(pre)
    out = []
    with torch.inference_mode():
        c = DynamicCache(config=model.config)
        t = time.perf_counter()
        with _SdpaGqa(device):
            model(input_ids=torch.tensor([pre], device=device), use_cache=True, logits_to_keep=1, **{ck: c})
        print(f"sweep: prefix {P} tokens {time.perf_counter() - t:.2f} s", flush=True)
        g = torch.Generator().manual_seed(0)
        for B in sizes:
            cache = _batch_cache(c, model.config, B, suffix + steps + 1)
            mask = torch.ones(B, P + suffix, dtype=torch.long)
            pos = torch.arange(P, P + suffix).repeat(B, 1)
            ids = torch.randint(0, 30000, (B, suffix), generator=g)
            t = time.perf_counter()
            with _SdpaGqa(device):
                model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1, **{ck: cache})
            prefill = time.perf_counter() - t
            times = []
            for i in range(steps):
                mask = torch.cat([mask, mask.new_ones(B, 1)], 1)
                t = time.perf_counter()
                model(input_ids=torch.randint(0, 30000, (B, 1), generator=g), attention_mask=mask,
                      position_ids=pos[:, -1:] + 1 + i, use_cache=True, logits_to_keep=1, **{ck: cache})
                times.append(time.perf_counter() - t)
            step = sorted(times)[len(times) // 2]
            row = {"batch": B, "prefill_s": prefill, "prefill_tok_s": B * suffix / prefill, "step_s": step, "decode_tok_s": B / step}
            print(f"sweep: batch {B:3d}: prefill {B}x{suffix} {prefill:.2f} s ({row['prefill_tok_s']:.0f} tok/s), "
                  f"decode step {step * 1000:.0f} ms ({row['decode_tok_s']:.1f} tok/s)", flush=True)
            out.append(row)
    return out


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
    ap.add_argument("--sweep", action="store_true", help="time one prefill and decode steps per batch size")
    ap.add_argument("--out", type=Path, default=None, help="write all numbers as JSON here")
    args = ap.parse_args()

    import torch

    from sqltune.db import default_db
    from sqltune.extract import extract_sql
    from sqltune.generate import GenerationStats, generate_one_by_one, generate_sql
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

    def batched(qs, label, **kw):
        stats = GenerationStats()
        t = time.perf_counter()
        gens = generate_sql(model, tok, builder, qs, max_new_tokens=args.max_new_tokens, progress=False,
                            autocast=dev.autocast, stats=stats, **({"batch_size": args.batch_size} | kw))
        secs = time.perf_counter() - t
        summ = score(db, items[: len(qs)], [g.sql for g in gens])
        row = {"label": label, "n": len(qs), "seconds": secs, "queries_per_s": len(qs) / secs,
               "exact": summ["exact"], "execution_rate": summ["execution_rate"], "stats": stats.to_dict(),
               "sql": [g.sql for g in gens], "raw": [g.raw for g in gens]}
        print(f"{label:32s} {len(qs):3d} q  {secs:7.1f} s  {len(qs) / secs:5.2f} q/s  exact {summ['exact']:.1%}  "
              f"executed {summ['execution_rate']:.1%}", flush=True)
        print("    " + json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in stats.to_dict().items()}), flush=True)
        return row

    runs = [batched(questions, f"batched (batch {args.batch_size})")]
    if len(questions) > 30:
        runs.append(batched(questions[:30], f"batched, first 30 (batch {args.batch_size})"))
    if args.variants:
        for bs in (16, 32, 64):
            if bs != args.batch_size:
                runs.append(batched(questions, f"batched (batch {bs})", batch_size=bs))
        k = min(16, len(questions))  # without the shared prefix every row prefills the whole schema: costly
        runs.append(batched(questions[:k], f"batched, first {k}", batch_size=k))
        runs.append(batched(questions[:k], f"batched, first {k}, no shared prefix", batch_size=k, share_prefix=False))
    res["batched"] = runs

    if args.sweep:
        res["sweep"] = sweep(model, tok, builder, dev)

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
