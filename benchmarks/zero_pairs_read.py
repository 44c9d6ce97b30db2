"""Read `benchmarks/zero_pairs.sh`'s folders: a user with no pairs (BENCHMARKS.md, "Session 23").

    python benchmarks/zero_pairs_read.py DIR [--dbs DB ...]      # DIR/<db>/{run,test_base,test_tuned,synth.summary.json}
    python benchmarks/zero_pairs_read.py DIR --no-test           # dev only (the decision is read before test)
    python benchmarks/zero_pairs_read.py DIR --against OTHER     # also DIR's last stage against OTHER's, per question

A folder of `MODE=one` (`sqltune run --db DB` writes the pairs itself, `run/synth_pairs.summary.json`) scored dev and
test in one run: its reports are split by the ids of `dev.jsonl` and `test.jsonl` beside `run/`.

Per DB: the synthetic pairs kept, the step each stage chose, and exact on the two held-out sets —
dev (the devsuite's train + valid: the run's `test` split; `base` is the untuned model in the run's evaluation
setting, `rl` the pipeline's last stage) and test (the devsuite's test, `sqltune eval` of both). Fixed / broken
count the questions the last stage got right that the untuned model got wrong, and the reverse; the pooled
line has the paired bootstrap CI and McNemar's p (`sqltune.stats.compare_paired`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sqltune.run import greedy_view
from sqltune.stats import compare_paired


def _exact(report: dict, ids: set | None = None) -> dict[str, bool]:
    return {e["id"]: bool(e["exact"]) for e in report["examples"] if ids is None or e["id"] in ids}


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _ids(path: Path) -> set | None:
    return {json.loads(x)["id"] for x in path.read_text().splitlines() if x.strip()} if path.is_file() else None


def _last(run: Path) -> str:
    return "rl" if (run / "rl_test_report.json").is_file() else "tuned"


def held_sets(d: Path) -> dict:
    """{"dev"|"test": (untuned report, tuned report, ids)} of one DB's folder, either layout; a set not there is
    left out. Session 23's: dev in the run, test from `sqltune eval`; MODE=one: both in the run, split by id."""
    run = d / "run"
    base, last = _read(run / "base_test_report.json"), _read(run / f"{_last(run)}_test_report.json")
    out = {}
    if base is not None and last is not None:
        out["dev"] = (base, last, _ids(d / "dev.jsonl"))
    if (d / "test_base").is_dir():
        tb, tt = _read(d / "test_base" / "test_report.json"), _read(d / "test_tuned" / "test_report.json")
        if tb is not None and tt is not None:
            out["test"] = (tb, tt, None)
    elif "dev" in out and (d / "test.jsonl").is_file():
        out["test"] = (base, last, _ids(d / "test.jsonl"))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--dbs", nargs="*")
    ap.add_argument("--no-test", action="store_true", help="read dev only")
    ap.add_argument("--against", type=Path, help="another folder of this layout: its last stage against DIR's")
    a = ap.parse_args(argv)
    dbs = a.dbs or sorted(p.name for p in a.dir.iterdir() if (p / "run").is_dir())
    names = ["dev"] if a.no_test else ["dev", "test"]
    pooled = {n: ([], []) for n in names}
    per_db = {n: [] for n in names}
    vs = {n: ([], [], []) for n in names}  # --against: pooled OTHER, pooled DIR, per-DB (other, this)
    greedy_dev = []
    head = "| db | kept pairs (joins) | SFT / GRPO step | dev n | dev untuned greedy | dev untuned | dev tuned (fixed / broken) "
    print(head + ("|" if a.no_test else "| test n | test untuned | test tuned (fixed / broken) |"))
    print("|---" * (7 if a.no_test else 10) + "|")
    for db in dbs:
        d = a.dir / db
        summ = _read(d / "synth.summary.json") or _read(d / "run" / "synth_pairs.summary.json") or {}
        metrics = _read(d / "run" / "metrics.json") or {}
        chosen = metrics.get("chosen", {})
        steps = " / ".join(str(chosen.get(s, {}).get("step", "-")) for s in ("tuned", "rl"))
        cells = [db, f"{summ.get('kept', '-')} ({(summ.get('kept_by_shape') or {}).get('join', 0)})", steps]
        sets = held_sets(d)
        other = held_sets(a.against / db) if a.against else {}
        for name in names:
            if name not in sets:
                cells += ["-"] * (4 if name == "dev" else 3)
                continue
            base, tuned, only = sets[name]
            b, t = _exact(base, only), _exact(tuned, only)
            ids = sorted(b)
            fixed = sum(t[i] and not b[i] for i in ids)
            broken = sum(b[i] and not t[i] for i in ids)
            eb, et = sum(b.values()) / len(ids), sum(t[i] for i in ids) / len(ids)
            per_db[name].append((eb, et))
            pooled[name][0].extend(b[i] for i in ids)
            pooled[name][1].extend(t[i] for i in ids)
            cells.append(str(len(ids)))
            if name == "dev":
                g = _exact(greedy_view(base), only)
                greedy_dev.append(sum(g.values()) / len(g))
                cells.append(f"{greedy_dev[-1]:.1%}")
            cells += [f"{eb:.1%}", f"{et:.1%} ({fixed} / {broken})"]
            if name in other:
                o = _exact(other[name][1], other[name][2])
                common = [i for i in ids if i in o]
                vs[name][0].extend(o[i] for i in common)
                vs[name][1].extend(t[i] for i in common)
                vs[name][2].append((db, sum(o[i] for i in common) / len(common), sum(t[i] for i in common) / len(common),
                                    sum(t[i] and not o[i] for i in common), sum(o[i] and not t[i] for i in common)))
        print("| " + " | ".join(cells) + " |")
    for name in names:
        rows = per_db[name]
        if not rows:
            continue
        mb, mt = (sum(x[i] for x in rows) / len(rows) for i in (0, 1))
        c = compare_paired(*pooled[name])
        greedy = f"; the untuned model's greedy answers {sum(greedy_dev) / len(greedy_dev):.1%} per DB" if name == "dev" else ""
        print(f"\n{name}: {len(rows)} DBs, {c.n} questions; per DB {mb:.1%} -> {mt:.1%} ({100 * (mt - mb):+.1f}){greedy}; "
              f"pooled {c.before:.1%} -> {c.after:.1%} ({100 * c.delta:+.1f}, CI [{100 * c.ci_low:+.1f}, "
              f"{100 * c.ci_high:+.1f}], {c.fixed} fixed / {c.broken} broken, McNemar p = {c.p_value:.2f})")
    for name in names:
        other_pooled, this_pooled, rows = vs[name]
        if not rows:
            continue
        print(f"\n{name}, {a.dir.name} against {a.against.name} (each one's last stage):")
        for db, o, t, fx, br in rows:
            print(f"  {db}: {o:.1%} -> {t:.1%} ({fx} fixed / {br} broken)")
        c = compare_paired(other_pooled, this_pooled)
        mo, mt = (sum(r[i] for r in rows) / len(rows) for i in (1, 2))
        print(f"  per DB {mo:.1%} -> {mt:.1%} ({100 * (mt - mo):+.1f}, {len(rows)} DBs); pooled {c.before:.1%} -> "
              f"{c.after:.1%} ({100 * c.delta:+.1f}, CI [{100 * c.ci_low:+.1f}, {100 * c.ci_high:+.1f}], {c.fixed} fixed / "
              f"{c.broken} broken, McNemar p = {c.p_value:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
