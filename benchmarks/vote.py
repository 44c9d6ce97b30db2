"""Benchmark: execution-guided decoding (issue 15) against greedy, timing the shipped evaluator.

Both arms go through `sqltune.evaluate.evaluate_items` (greedy: vote=None; vote N: `VoteSettings(N)`),
the path `sqltune eval --vote N` takes.

CPU (issue target: vote 4 <= 2.5x greedy wall time and >= +5 points exact, 0.5B, exoplanets test):
    PYTHONPATH=src python benchmarks/vote.py cpu --model qwen2.5-coder-0.5b --vote 4

GPU (devsuite test splits + exoplanets test, greedy vs vote 8, per DB and pooled):
    PYTHONPATH=src python benchmarks/vote.py gpu --model qwen2.5-coder-1.5b --vote 8 \
        --out benchmarks/results/vote_gpu_1.5b.json [--adapter RUN/checkpoint]

GPU, vote-correct and `ask --vote 8` latency (one command, ~4 min on one H200 with the 1.5B):
    python3 benchmarks/vote.py gpu --model qwen2.5-coder-1.5b --vote 8 --correct --latency 10 \
        --out $OUT/vote_correct_1.5b.json
`--correct` runs ONE arm per database, the vote with its correction step (`VoteSettings(correct=True)`):
its `vote_summary` scores greedy (candidate 0), the vote, and the answer after correction, so no
separate greedy arm runs (no time ratio in this mode). `--latency K` first times K single questions
(exoplanets test) the way `sqltune ask --vote N` answers them, after the model is loaded and one
warm-up question: `evaluate.predict` on one item, then the read-only execution of its SQL.

Writes a JSON (per database: greedy and voted summaries, seconds, overruled/helped/hurt, best-of-N,
compact predictions) and prints a table. The devsuite is read only here (`--devsuite`, default
../shared/data/devsuite).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from sqltune.evaluate import evaluate_items, load_for_inference
from sqltune.model import pick_device
from sqltune.prompt import PromptBuilder
from sqltune.schema import schema_text
from sqltune.vote import VoteSettings

HERE = Path(__file__).resolve().parent


def databases(mode: str, devsuite: Path) -> list[tuple[str, str, list[dict]]]:
    """(name, db path, test items): exoplanets test, plus every devsuite DB in gpu mode."""
    from sqltune.dataset import load_items, read_jsonl
    from sqltune.db import resolve_db

    out = [("exoplanets", str(resolve_db(None)), load_items("exoplanets:test"))]
    if mode == "gpu":
        for d in sorted(p for p in devsuite.iterdir() if (p / "test.jsonl").is_file()):
            out.append((d.name, str(d / f"{d.name}.sqlite"), read_jsonl(d / "test.jsonl", required=("question", "sql"))))
    return out


COMPACT = ("id", "sql", "greedy_sql", "voted_sql", "overruled", "correction")


def arm(model, tok, builder, items, db, vote, args, dev) -> dict:
    t, cpu = time.perf_counter(), time.process_time()
    rep = evaluate_items(model, tok, builder, items, db, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                         progress=False, autocast=dev.autocast, vote=vote)
    secs, cpu = time.perf_counter() - t, time.process_time() - cpu
    preds = [{k: r[k] for k in COMPACT if k in r} | {"exact": e["exact"]}
             for r, e in zip(rep["predictions"], rep["examples"])]
    return {"seconds": round(secs, 2), "cpu_seconds": round(cpu, 2), "summary": rep["summary"], "vote": {k: v for k, v in rep.get("vote", {}).items()
                                                                          if k != "greedy_examples"},
            "predictions": preds}


def latency(model, tok, builder, items, db, n, k, dev, max_new_tokens, correct=False) -> dict:
    """Seconds per question answered like `sqltune ask --vote n` (model loaded; one warm-up question first)."""
    import statistics

    from sqltune.evaluate import EvalConfig, predict
    from sqltune.execute import execute

    cfg = EvalConfig(progress=False, autocast=dev.autocast, max_new_tokens=max_new_tokens,
                     vote=VoteSettings(n, correct=correct))
    secs = []
    for it in items[: k + 1]:
        t = time.perf_counter()
        row = predict(model, tok, builder, [{"question": it["question"]}], db, cfg)[0]
        execute(db, row["sql"]) if row["sql"] else None
        secs.append(time.perf_counter() - t)
    secs = secs[1:]  # the first call warms up kernels and caches
    return {"n": n, "correct": correct, "questions": len(secs), "median_s": round(statistics.median(secs), 3),
            "max_s": round(max(secs), 3), "mean_s": round(sum(secs) / len(secs), 3), "seconds": [round(x, 3) for x in secs]}


def correct_table(results: dict, n: int) -> dict:
    """Print greedy / vote / vote + correction per database and pooled; return the pooled and mean numbers."""
    print(f"\n| db | n | greedy exact | vote {n} exact | + correction exact | Δ correction | close votes corrected "
          f"| changed | helped | hurt | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    tot = {"n": 0, "greedy": 0.0, "vote": 0.0, "corrected": 0.0, "ran": 0, "changed": 0, "helped": 0, "hurt": 0, "s": 0.0}
    for name, r in results.items():
        v = r["vote"]["vote"]
        c = v["correction"]
        g, vo, co = v["greedy"]["exact"], v["voted"]["exact"], c["corrected"]["exact"]
        print(f"| {name} | {r['n']} | {g:.1%} | {vo:.1%} | {co:.1%} | {100 * (co - vo):+.1f} | {c['ran']} | "
              f"{c['changed']} | {c['helped']} | {c['hurt']} | {r['vote']['seconds']:.1f} |")
        tot["n"] += r["n"]
        for key, val in (("greedy", g), ("vote", vo), ("corrected", co)):
            tot[key] += val * r["n"]
        for key in ("ran", "changed", "helped", "hurt"):
            tot[key] += c[key]
        tot["s"] += r["vote"]["seconds"]
    nn = tot["n"]
    print(f"| **pooled** | {nn} | {tot['greedy'] / nn:.1%} | {tot['vote'] / nn:.1%} | {tot['corrected'] / nn:.1%} | "
          f"{100 * (tot['corrected'] - tot['vote']) / nn:+.1f} | {tot['ran']} | {tot['changed']} | {tot['helped']} | "
          f"{tot['hurt']} | {tot['s']:.1f} |")
    mean = {k: sum(r["vote"]["vote"][src]["exact"] if src != "correction" else r["vote"]["vote"]["correction"]["corrected"]["exact"]
                   for r in results.values()) / len(results)
            for k, src in (("greedy", "greedy"), ("vote", "voted"), ("corrected", "correction"))}
    print(f"\nmean exact over {len(results)} DBs: greedy {mean['greedy']:.1%}, vote {n} {mean['vote']:.1%}, "
          f"vote {n} + correction {mean['corrected']:.1%}")
    return {"pooled": {k: (tot[k] / nn if k in ("greedy", "vote", "corrected") else tot[k]) for k in tot if k != "n"},
            "mean_exact": mean}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("cpu", "gpu"))
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--vote", type=int, default=None, help="N (default: 4 on cpu, 8 on gpu)")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--batch-size", type=int, default=64, help="rows decoded together (vote: questions x N)")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--device", default=None)
    ap.add_argument("--devsuite", type=Path, default=None,
                    help="devsuite folder (default: shared/data/devsuite in or beside the checkout)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--correct", action="store_true",
                    help="one arm per DB: the vote with its correction step (greedy and vote scored from it)")
    ap.add_argument("--latency", type=int, default=0, metavar="K",
                    help="first time K single questions answered like `ask --vote N` (after a warm-up)")
    args = ap.parse_args()
    n = args.vote or (4 if args.mode == "cpu" else 8)
    vote = VoteSettings(n, args.temperature, args.top_p, correct=args.correct)
    dev = pick_device(args.device or ("cpu" if args.mode == "cpu" else None))
    if args.devsuite is None:
        here = [HERE.parent / "shared" / "data" / "devsuite", HERE.parent.parent.parent / "shared" / "data" / "devsuite"]
        args.devsuite = next((p for p in here if p.is_dir()), here[0])
    if args.mode == "gpu" and not args.devsuite.is_dir():
        raise SystemExit(f"devsuite not found at {args.devsuite}; pass --devsuite")
    dbs = databases(args.mode, args.devsuite)
    t = time.perf_counter()
    model, tok, builder0 = load_for_inference(args.model, args.adapter, dev, db=dbs[0][1])
    load_s = time.perf_counter() - t
    print(f"model loaded in {load_s:.1f} s on {dev}", flush=True)
    meta = {"mode": args.mode, "model": args.model, "adapter": args.adapter, "vote": n, "temperature": args.temperature,
            "top_p": args.top_p, "batch_size": args.batch_size, "device": str(dev), "machine": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_seconds": round(load_s, 1)}
    if args.latency:
        name, db, items = dbs[0]
        meta["latency"] = [latency(model, tok, builder0, items, db, n, args.latency, dev, args.max_new_tokens)]
        if args.correct:
            meta["latency"].append(latency(model, tok, builder0, items, db, n, args.latency, dev, args.max_new_tokens,
                                           correct=True))
        for lat in meta["latency"]:
            print(f"ask --vote {n}{' --vote-correct' if lat['correct'] else ''} on {name}: median {lat['median_s']} s, "
                  f"max {lat['max_s']} s over {lat['questions']} questions (model loaded)", flush=True)
    results = {}
    if args.correct:
        for name, db, items in dbs:
            builder = PromptBuilder(schema_text(db), builder0.style, fewshot=builder0.fewshot)
            v = arm(model, tok, builder, items, db, vote, args, dev)
            results[name] = {"n": len(items), "vote": v}
            c = v["vote"]["correction"]
            print(f"{name}: greedy {v['vote']['greedy']['exact']:.3f}, vote {n} {v['vote']['voted']['exact']:.3f}, "
                  f"corrected {c['corrected']['exact']:.3f} (ran {c['ran']}, changed {c['changed']}) "
                  f"in {v['seconds']:.1f} s", flush=True)
        out = meta | {"correct": True} | correct_table(results, n) | {"databases": results}
        path = args.out or HERE / "results" / f"vote_correct_{args.mode}_{Path(args.model).name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1, default=str), encoding="utf-8")
        print(f"wrote {path}")
        return
    for name, db, items in dbs:
        builder = PromptBuilder(schema_text(db), builder0.style, fewshot=builder0.fewshot)
        g = arm(model, tok, builder, items, db, None, args, dev)
        print(f"{name}: greedy {g['summary']['exact']:.3f} exact in {g['seconds']:.1f} s", flush=True)
        v = arm(model, tok, builder, items, db, vote, args, dev)
        results[name] = {"n": len(items), "greedy": g, "vote": v}
        print(f"{name}: greedy {g['summary']['exact']:.3f} in {g['seconds']:.1f} s ({g['cpu_seconds']:.0f} CPU s), "
              f"vote {n} {v['summary']['exact']:.3f} in {v['seconds']:.1f} s ({v['cpu_seconds']:.0f} CPU s)", flush=True)
    pooled = {arm_: {m: sum(r[arm_]["summary"][m] * r["n"] for r in results.values()) / sum(r["n"] for r in results.values())
                     for m in ("exact", "fuzzy", "execution_rate")} for arm_ in ("greedy", "vote")}
    for arm_ in ("greedy", "vote"):
        pooled[arm_]["seconds"] = round(sum(r[arm_]["seconds"] for r in results.values()), 2)
    mean = {arm_: sum(r[arm_]["summary"]["exact"] for r in results.values()) / len(results) for arm_ in ("greedy", "vote")}
    best = sum(r["vote"]["vote"]["best_of_n"] * r["n"] for r in results.values()) / sum(r["n"] for r in results.values())
    print(f"\n| db | n | greedy exact | vote {n} exact | Δ | overruled | helped | hurt | best of {n} | greedy s | vote s | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in list(results.items()) + [("pooled", None)]:
        if r is None:
            ge, ve, gs, vs, nn = pooled["greedy"]["exact"], pooled["vote"]["exact"], pooled["greedy"]["seconds"], \
                pooled["vote"]["seconds"], sum(x["n"] for x in results.values())
            o = sum(x["vote"]["vote"]["overruled"] for x in results.values())
            h = sum(x["vote"]["vote"]["helped"] for x in results.values())
            hu = sum(x["vote"]["vote"]["hurt"] for x in results.values())
            bo = best
        else:
            ge, ve, gs, vs, nn = r["greedy"]["summary"]["exact"], r["vote"]["summary"]["exact"], r["greedy"]["seconds"], \
                r["vote"]["seconds"], r["n"]
            vv = r["vote"]["vote"]
            o, h, hu, bo = vv["overruled"], vv["helped"], vv["hurt"], vv["best_of_n"]
        print(f"| {name} | {nn} | {ge:.1%} | {ve:.1%} | {100 * (ve - ge):+.1f} | {o} | {h} | {hu} | {bo:.1%} | "
              f"{gs:.1f} | {vs:.1f} | {vs / gs if gs else 0:.2f}x |")
    print(f"\nmean exact over {len(results)} DBs: greedy {mean['greedy']:.1%}, vote {n} {mean['vote']:.1%} "
          f"({100 * (mean['vote'] - mean['greedy']):+.1f} points); model load {load_s:.1f} s")
    out = meta | {"pooled": pooled, "mean_exact": mean, "best_of_n": best, "databases": results}
    path = args.out or HERE / "results" / f"vote_{args.mode}_{Path(args.model).name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=str), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
