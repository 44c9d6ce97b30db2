"""Executor overhead (issue 12): what the per-query limits cost when scoring.

    SQLTUNE_HOME=/tmp/sqh PYTHONPATH=src .venv/bin/python benchmarks/bench_execute.py --repeat 5

Scores the exoplanets train+valid+test gold against itself through `sqltune.score.score_pairs` (each item
runs the gold query and the "prediction", so 2 queries per item), `--repeat` times, and reports the
median wall and CPU time (this process plus its executor workers) per call and per query. Also times `execute` on a trivial query (`SELECT 1`) through a
connection and through a path, which is the fixed cost per call. Runs on any version of the executor
(it only uses the public signatures), so the same command measures before and after a change.
`--hostile` also runs the issue-12 queries with the default limits (before the change these take
gigabytes and run past the timeout).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time


def worker_cpu() -> float:
    """CPU seconds used so far by this process's live executor workers (0 for an in-process executor)."""
    import sys

    idle = getattr(sys.modules["sqltune.execute"], "_idle", [])
    total = 0.0
    for w in idle:
        with open(f"/proc/{w.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def median_time(fn, repeat: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (this process + its workers) of fn()."""
    times, cpus = [], []
    for _ in range(repeat):
        c = time.process_time() + worker_cpu()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() + worker_cpu() - c)
    return statistics.median(times), statistics.median(cpus)


HOSTILE = [
    "SELECT group_concat(a.name || b.name) FROM exoplanets a, exoplanets b",
    "SELECT replace(hex(zeroblob(20000000)), '00', 'abcdef')",
    "SELECT printf('%.*c', 2000000000, 'x')",
    "SELECT instr(printf('%.*c', 4000000, 'a'), printf('%.*c', 2000000, 'a') || 'b')",
]


def peak_rss_growth(fn):
    """fn()'s value and how far this process's peak RSS (VmHWM) rose above its RSS before, in MiB."""
    def status(key: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status("VmRSS")
    value = fn()
    return value, round((status("VmHWM") - before) / 1024, 1)


def hostile(db) -> list[dict]:
    """The issue-12 queries with the default limits: error kind, wall seconds, this process's peak growth."""
    from sqltune.execute import execute

    rows = []
    for sql in HOSTILE:
        execute(db, "SELECT 1")
        t = time.perf_counter()
        r, grew = peak_rss_growth(lambda: execute(db, sql))
        rows.append({"sql": sql, "error_kind": r.error_kind, "seconds": round(time.perf_counter() - t, 2),
                     "result_chars": sum(len(str(v)) for row in r.rows for v in row), "parent_peak_growth_mib": grew})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--trivial", type=int, default=1000, help="calls of SELECT 1 per timing")
    ap.add_argument("--hostile", action="store_true", help="also run the issue-12 hostile queries (default limits)")
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
    score_s, score_cpu = median_time(lambda: score_pairs(db, items, preds), args.repeat)

    con = connect_readonly(db)
    n = args.trivial
    con_s, con_cpu = median_time(lambda: [execute(con, "SELECT 1") for _ in range(n)], args.repeat)
    path_s, path_cpu = median_time(lambda: [execute(db, "SELECT 1") for _ in range(n)], args.repeat)
    con.close()
    ms = lambda s, k: round(1000 * s / k, 3)  # noqa: E731
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_avg_1min": os.getloadavg()[0],
        "items": len(items), "queries_per_score": 2 * len(items),
        "score_pairs_s": round(score_s, 3), "score_pairs_cpu_s": round(score_cpu, 3),
        "per_query_ms": ms(score_s, 2 * len(items)), "per_query_cpu_ms": ms(score_cpu, 2 * len(items)),
        "select1_connection_ms": ms(con_s, n), "select1_connection_cpu_ms": ms(con_cpu, n),
        "select1_path_ms": ms(path_s, n), "select1_path_cpu_ms": ms(path_cpu, n),
    }
    if args.hostile:
        out["hostile"] = hostile(db)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
