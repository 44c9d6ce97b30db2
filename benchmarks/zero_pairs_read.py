"""Read `benchmarks/zero_pairs.sh`'s folders: a user with no pairs (BENCHMARKS.md, "Session 23").

    python benchmarks/zero_pairs_read.py DIR [--dbs DB ...]      # DIR/<db>/{run,test_base,test_tuned,synth.summary.json}

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


def _exact(report: dict) -> dict[str, bool]:
    return {e["id"]: bool(e["exact"]) for e in report["examples"]}


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--dbs", nargs="*")
    a = ap.parse_args(argv)
    dbs = a.dbs or sorted(p.name for p in a.dir.iterdir() if (p / "run").is_dir())
    pooled = {"dev": ([], []), "test": ([], [])}
    per_db = {"dev": [], "test": []}
    greedy_dev = []
    print("| db | kept pairs (joins) | SFT / GRPO step | dev n | dev untuned greedy | dev untuned | dev tuned (fixed / broken) "
          "| test n | test untuned | test tuned (fixed / broken) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for db in dbs:
        d = a.dir / db
        summ = _read(d / "synth.summary.json") or {}
        metrics = _read(d / "run" / "metrics.json") or {}
        chosen = metrics.get("chosen", {})
        steps = " / ".join(str(chosen.get(s, {}).get("step", "-")) for s in ("tuned", "rl"))
        cells = [db, f"{summ.get('kept', '-')} ({(summ.get('kept_by_shape') or {}).get('join', 0)})", steps]
        last = "rl" if (d / "run" / "rl_test_report.json").is_file() else "tuned"
        sets = {"dev": (_read(d / "run" / "base_test_report.json"), _read(d / "run" / f"{last}_test_report.json")),
                "test": (_read(d / "test_base" / "test_report.json"), _read(d / "test_tuned" / "test_report.json"))}
        for name, (base, tuned) in sets.items():
            if base is None or tuned is None:
                cells += ["-"] * (4 if name == "dev" else 3)
                continue
            b, t = _exact(base), _exact(tuned)
            ids = sorted(b)
            fixed = sum(t[i] and not b[i] for i in ids)
            broken = sum(b[i] and not t[i] for i in ids)
            eb, et = sum(b.values()) / len(ids), sum(t[i] for i in ids) / len(ids)
            per_db[name].append((eb, et))
            pooled[name][0].extend(b[i] for i in ids)
            pooled[name][1].extend(t[i] for i in ids)
            cells.append(str(len(ids)))
            if name == "dev":
                greedy_dev.append(greedy_view(base)["summary"]["exact"])
                cells.append(f"{greedy_dev[-1]:.1%}")
            cells += [f"{eb:.1%}", f"{et:.1%} ({fixed} / {broken})"]
        print("| " + " | ".join(cells) + " |")
    for name in ("dev", "test"):
        rows = per_db[name]
        if not rows:
            continue
        mb, mt = (sum(x[i] for x in rows) / len(rows) for i in (0, 1))
        c = compare_paired(*pooled[name])
        greedy = f"; the untuned model's greedy answers {sum(greedy_dev) / len(greedy_dev):.1%} per DB" if name == "dev" else ""
        print(f"\n{name}: {len(rows)} DBs, {c.n} questions; per DB {mb:.1%} -> {mt:.1%} ({100 * (mt - mb):+.1f}){greedy}; "
              f"pooled {c.before:.1%} -> {c.after:.1%} ({100 * c.delta:+.1f}, CI [{100 * c.ci_low:+.1f}, "
              f"{100 * c.ci_high:+.1f}], {c.fixed} fixed / {c.broken} broken, McNemar p = {c.p_value:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
