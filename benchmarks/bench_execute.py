"""Executor overhead (issue 12): what the per-query limits cost when scoring.

    SQLTUNE_HOME=/tmp/sqh PYTHONPATH=src .venv/bin/python benchmarks/bench_execute.py --repeat 5

Scores the exoplanets train+valid+test gold against itself through `sqltune.score.score_pairs` (each item
runs the gold query and the "prediction", so 2 queries per item), `--repeat` times, and reports the
median wall time per call and per query. Also times `execute` on a trivial query (`SELECT 1`) through a
connection and through a path, which is the fixed cost per call. Runs on any version of the executor
(it only uses the public signatures), so the same command measures before and after a change.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--trivial", type=int, default=2000, help="calls of SELECT 1 per timing")
    args = ap.parse_args()

    from sqltune.dataset import load_items
    from sqltune.db import default_db
    from sqltune.execute import connect_readonly, execute
    from sqltune.score import score_pairs

    db = default_db()
    items = [it for split in ("train", "valid", "test") for it in load_items(f"exoplanets:{split}")]
    preds = [it["sql"] for it in items]
    report = score_pairs(db, items, preds)  # warm-up (page cache, worker start)
    assert report["summary"]["exact"] == 1.0, report["summary"]
    score_s = median_time(lambda: score_pairs(db, items, preds), args.repeat)

    con = connect_readonly(db)
    per_con = median_time(lambda: [execute(con, "SELECT 1") for _ in range(args.trivial)], args.repeat) / args.trivial
    per_path = median_time(lambda: [execute(db, "SELECT 1") for _ in range(args.trivial // 4)], args.repeat) / (args.trivial // 4)
    con.close()
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "items": len(items), "queries_per_score": 2 * len(items),
        "score_pairs_s": round(score_s, 4), "per_query_ms": round(1000 * score_s / (2 * len(items)), 3),
        "select1_connection_ms": round(1000 * per_con, 4), "select1_path_ms": round(1000 * per_path, 4),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
