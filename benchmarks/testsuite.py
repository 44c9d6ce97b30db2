"""Benchmark: test-suite accuracy (issue 18).

    PYTHONPATH=src python benchmarks/testsuite.py exoplanets        # build time, scoring time, counts
    PYTHONPATH=src python benchmarks/testsuite.py devsuite-predict  # real 0.5B, devsuite test splits (CPU: ~10 min)
    PYTHONPATH=src python benchmarks/testsuite.py devsuite          # suites + counts on those predictions

Results go to benchmarks/results/testsuite/: *.json summaries and, for the manual check, every
prediction that exact counts right and the suite rejects (with the variant that shows it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from sqltune.dataset import load_items, read_jsonl, write_jsonl  # noqa: E402
from sqltune.db import resolve_db  # noqa: E402
from sqltune.execute import execute  # noqa: E402
from sqltune.score import score_pairs  # noqa: E402
from sqltune.testsuite import build_suite, disagreements, load_suite  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "testsuite"
DEVSUITE = Path(os.environ.get("DEVSUITE", "/work/shared/data/devsuite"))


def _evidence(meta: dict, gold: str, pred: str) -> dict:
    """The first kept variant on which the prediction and the gold differ, with both results."""
    from sqltune.score import rows_match
    from sqltune.testsuite import Judge

    judge = Judge([gold], 5.0)
    for v, var in enumerate(meta["variants"]):
        path = Path(meta["folder"]) / var["file"]
        g = judge.gold(0, v, path)
        if g is None:
            continue
        p = execute(path, pred)
        if not (p.ok and rows_match(g, p.rows, ordered=False)):
            return {"variant": var["file"], "gold_rows": [list(r) for r in g[:8]], "gold_n": len(g),
                    "pred_rows": [list(r) for r in p.rows[:8]], "pred_n": len(p.rows), "pred_error": p.error}
    return {}


def _timed_scores(db, items, preds, meta, reps: int = 3) -> tuple[dict, dict, float, float]:
    best_plain = best_suite = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        plain = score_pairs(db, items, preds)
        best_plain = min(best_plain, time.perf_counter() - t)
        t = time.perf_counter()
        suite = score_pairs(db, items, preds, test_suite=meta)
        best_suite = min(best_suite, time.perf_counter() - t)
    return plain, suite, best_plain, best_suite


def exoplanets(args) -> dict:
    """Each split: build the suite (fresh), then score every stored run's predictions with and without it."""
    db = resolve_db(None)
    out, accidents = {}, []
    for split in args.splits.split(","):
        items = load_items(f"exoplanets:{split}")
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            res = build_suite(db, items, Path(tmp) / "suite")
            build_s = time.perf_counter() - t
            meta = load_suite(res.folder)
            o = out[split] = {"n": len(items), "build_seconds": round(build_s, 2), "build": res.summary(), "runs": {}}
            for rep_file in sorted((ROOT / "benchmarks" / "results" / "runs").glob(f"*/*_{split}_report.json")):
                report = json.loads(rep_file.read_text())
                by_id = {e["id"]: e.get("pred_sql") for e in report["examples"]}
                if set(by_id) != {it["id"] for it in items}:
                    continue
                preds = [by_id[it["id"]] for it in items]
                plain, suite, tp, ts = _timed_scores(db, items, preds, meta)
                key = f"{rep_file.parent.name}/{rep_file.name.split('_')[0]}"
                o["runs"][key] = {"exact": sum(e["exact"] for e in plain["examples"]),
                                  "suite": sum(e["suite"] for e in suite["examples"]),
                                  "right_by_accident": suite["summary"]["right_by_accident"],
                                  "plain_scoring_s": round(tp, 3), "suite_scoring_s": round(ts, 3),
                                  "ratio": round(ts / tp, 2)}
                for e in disagreements(suite):
                    accidents.append({"split": split, "run": key, "id": e["id"], "question": e["question"],
                                      "gold_sql": e["gold_sql"], "pred_sql": e["pred_sql"],
                                      **_evidence(meta, e["gold_sql"], e["pred_sql"])})
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "exoplanets.json").write_text(json.dumps(out, indent=2, default=str))
    (OUT / "exoplanets_accidents.json").write_text(json.dumps(accidents, indent=2, default=str))
    print(json.dumps(out, indent=2))
    return out


def devsuite_dbs(limit: int | None = None) -> list[Path]:
    """Smallest test split first, so that a run cut short still covers many databases."""
    dbs = sorted((p for p in DEVSUITE.iterdir() if (p / "test.jsonl").is_file()),
                 key=lambda p: (len((p / "test.jsonl").read_text().splitlines()), p.name))
    return dbs[:limit] if limit else dbs


def devsuite_predict(args) -> None:
    """Base-model predictions (greedy, batch 64) for every devsuite test question; one model load."""
    from sqltune.evaluate import predict_items
    from sqltune.model import load_model, pick_device
    from sqltune.prompt import PromptBuilder
    from sqltune.schema import schema_text

    dev = pick_device("cpu")
    model, tok, _ = load_model(args.model, dev)
    OUT.mkdir(parents=True, exist_ok=True)
    out_file = OUT / "devsuite_base_pred.jsonl"
    done = {(r["db"], r["id"]) for r in read_jsonl(out_file)} if out_file.is_file() else set()
    rows = read_jsonl(out_file) if out_file.is_file() else []
    t0 = time.perf_counter()
    for folder in devsuite_dbs(args.limit):
        db = folder / f"{folder.name}.sqlite"
        items = [it for it in load_items(folder / "test.jsonl") if (folder.name, it["id"]) not in done]
        if not items:
            continue
        builder = PromptBuilder(schema_text(db), "chat")
        t = time.perf_counter()
        preds = predict_items(model, tok, builder, items, db, batch_size=64, progress=False, autocast=dev.autocast,
                              max_new_tokens=args.max_new_tokens)
        rows += [{"db": folder.name, "id": p["id"], "sql": p["sql"]} for p in preds]
        write_jsonl(out_file, rows)
        print(f"{folder.name}: {len(items)} questions in {time.perf_counter() - t:.1f} s", flush=True)
    print(f"all: {len(rows)} predictions, {time.perf_counter() - t0:.1f} s")


def devsuite(args) -> dict:
    preds = read_jsonl(Path(args.preds) if args.preds else OUT / "devsuite_base_pred.jsonl")
    tag = f"_{args.tag}" if args.tag else ""
    by = {(r["db"], r["id"]): r["sql"] for r in preds}
    out = {"dbs": {}, "build_seconds": 0.0}
    accidents = []
    with tempfile.TemporaryDirectory() as tmp:
        for folder in devsuite_dbs(args.limit):
            items = load_items(folder / "test.jsonl")
            if not all((folder.name, it["id"]) in by for it in items):
                continue
            db = folder / f"{folder.name}.sqlite"
            t = time.perf_counter()
            res = build_suite(db, items, Path(tmp) / folder.name)
            build_s = time.perf_counter() - t
            meta = load_suite(res.folder)
            p = [by[(folder.name, it["id"])] for it in items]
            plain, suite, tp, ts = _timed_scores(db, items, p, meta, reps=1)
            out["build_seconds"] += build_s
            out["dbs"][folder.name] = {"n": len(items), "exact": sum(e["exact"] for e in plain["examples"]),
                                       "suite": sum(e["suite"] for e in suite["examples"]),
                                       "right_by_accident": suite["summary"]["right_by_accident"],
                                       "build_s": round(build_s, 2), "variants": len(meta["variants"]),
                                       "plain_scoring_s": round(tp, 3), "suite_scoring_s": round(ts, 3)}
            for e in disagreements(suite):
                accidents.append({"db": folder.name, "id": e["id"], "question": e["question"],
                                  "gold_sql": e["gold_sql"], "pred_sql": e["pred_sql"],
                                  **_evidence(meta, e["gold_sql"], e["pred_sql"])})
    d = out["dbs"].values()
    out["total"] = {k: sum(x[k] for x in d) for k in ("n", "exact", "suite", "right_by_accident")}
    out["total"]["plain_scoring_s"] = round(sum(x["plain_scoring_s"] for x in d), 3)
    out["total"]["suite_scoring_s"] = round(sum(x["suite_scoring_s"] for x in d), 3)
    out["build_seconds"] = round(out["build_seconds"], 2)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"devsuite{tag}.json").write_text(json.dumps(out, indent=2, default=str))
    (OUT / f"devsuite{tag}_accidents.json").write_text(json.dumps(accidents, indent=2, default=str))
    print(json.dumps(out, indent=2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["exoplanets", "devsuite-predict", "devsuite"])
    ap.add_argument("--splits", default="test", help="exoplanets splits, comma-separated (test,valid).")
    ap.add_argument("--limit", type=int, default=None, help="Only the first N devsuite databases.")
    ap.add_argument("--max-new-tokens", type=int, default=160, help="devsuite-predict: tokens per answer.")
    ap.add_argument("--model", default=None, help="Model for devsuite-predict (default: qwen2.5-coder-0.5b).")
    ap.add_argument("--preds", default=None, help="devsuite: predictions JSONL {db, id, sql} (default: devsuite-predict's).")
    ap.add_argument("--tag", default="", help="devsuite: suffix of the output files (devsuite_TAG.json).")
    args = ap.parse_args()
    {"exoplanets": exoplanets, "devsuite-predict": devsuite_predict, "devsuite": devsuite}[args.what](args)


if __name__ == "__main__":
    main()
