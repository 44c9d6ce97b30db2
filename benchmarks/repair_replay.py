"""What `eval.repair` (the last-resort schema repair) does to answers a run already wrote, with no model.

The repair is a pure post-processing of the rows `evaluate.predict` returns (`evaluate.repair_rows`: where the final
answer fails, the answers the row weighed are rewritten against the schema in tie order and the first rewrite that
runs is taken), so it can be replayed exactly over stored runs: each folder's `{stage}_{split}_pred.jsonl` (or, where
only the report was kept, its examples: `pred_sql`, `error`, `fallback`, `pool`), repaired with the shipped
`repair_rows` and scored with the shipped `score_pairs` against the gold items of the report.

    python benchmarks/repair_replay.py --runs /tmp/comb --pattern '{db}/ship' --stage rl --devsuite ../shared/data/devsuite
    python benchmarks/repair_replay.py --runs benchmarks/results/cpu-devsuite-default-2026-12-03-s29 \
        --pattern '{db}' --stage tuned --devsuite ../shared/data/devsuite

Prints one line per DB (n, exact as written, exact repaired, answers repaired / right) and the pooled change with its
paired CI and McNemar p (`stats.compare_paired`); `--json` writes the same.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _read(path: Path):
    """A JSON file or JSONL rows, plain or .gz; None when neither exists."""
    for p in (path, path.with_name(path.name + ".gz")):
        if p.is_file():
            text = (gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()).decode("utf-8")
            if p.name.endswith((".jsonl", ".jsonl.gz")):
                return [json.loads(line) for line in text.splitlines() if line.strip()]
            return json.loads(text)
    return None


def stored_rows(folder: Path, stage: str, split: str = "test") -> tuple[list[dict], list[dict]] | None:
    """(gold items, `predict` rows) of one stored stage: the pred file's rows where kept, else the report's examples."""
    report = _read(folder / f"{stage}_{split}_report.json")
    if report is None:
        return None
    gold = [{"id": e["id"], "question": e["question"], "sql": e["gold_sql"]} for e in report["examples"]]
    rows = _read(folder / f"{stage}_{split}_pred.jsonl")
    if rows is None:
        rows = [{"id": e["id"], "question": e["question"], "sql": e["pred_sql"], "error": e.get("error"),
                 **{k: e[k] for k in ("fallback", "pool", "vote") if e.get(k)}} for e in report["examples"]]
    if [str(r["id"]) for r in rows] != [str(g["id"]) for g in gold]:
        raise SystemExit(f"{folder}: {stage}_{split} pred rows and report examples differ")
    return gold, rows


def replay(folder: Path, db: Path, stage: str, split: str = "test") -> dict | None:
    from sqltune.evaluate import EvalConfig, as_written, repair_rows
    from sqltune.score import score_pairs

    got = stored_rows(folder, stage, split)
    if got is None:
        return None
    gold, rows = got
    rows = [as_written(r) for r in rows]  # a run that repaired already: start from what the model wrote
    before = score_pairs(db, gold, [r.get("sql") for r in rows])["examples"]
    fixed = repair_rows([dict(r) for r in rows], db, EvalConfig(repair=True))
    after = score_pairs(db, gold, [r.get("sql") for r in fixed])["examples"]
    repaired = [i for i, r in enumerate(fixed) if r.get("model_sql") is not None]
    return {"n": len(gold), "before": [bool(e["exact"]) for e in before], "after": [bool(e["exact"]) for e in after],
            "repaired": len(repaired), "repaired_right": sum(bool(after[i]["exact"]) for i in repaired),
            "examples": [{"id": gold[i]["id"], "model_sql": fixed[i]["model_sql"], "sql": fixed[i]["sql"],
                          "exact": bool(after[i]["exact"])} for i in repaired]}


def per_db(out: dict, key: str) -> float:
    """Mean over DBs of the share of `out[db][key]` (one bool per question) that is true, in percent."""
    return 100 * sum(sum(r[key]) / r["n"] for r in out.values()) / len(out)


def main(argv: list[str] | None = None) -> int:
    from sqltune.stats import compare_paired

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="folder holding one run folder per DB")
    ap.add_argument("--pattern", default="{db}", help="a DB's run folder under --runs, e.g. '{db}/ship'")
    ap.add_argument("--stage", default="tuned", help="the stage whose answers are replayed (base, tuned, rl, ...)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--devsuite", default=str(ROOT.parent / "shared" / "data" / "devsuite"))
    ap.add_argument("--dbs", nargs="*", default=None, help="default: every devsuite DB with a run folder")
    ap.add_argument("--json", default=None, help="also write the per-DB results here")
    args = ap.parse_args(argv)
    runs, suite = Path(args.runs), Path(args.devsuite)
    dbs = args.dbs or sorted(p.name for p in suite.iterdir() if p.is_dir())
    out, before, after = {}, [], []
    print("| db | n | as written | repaired | answers repaired (right) |\n|---|---|---|---|---|")
    for db in dbs:
        folder = runs / args.pattern.format(db=db)
        if not folder.is_dir():
            continue
        r = replay(folder, suite / db / f"{db}.sqlite", args.stage, args.split)
        if r is None:
            continue
        out[db] = r
        before += r["before"]
        after += r["after"]
        print(f"| {db} | {r['n']} | {sum(r['before'])} | {sum(r['after'])} | {r['repaired']} ({r['repaired_right']}) |")
    if not out:
        print(f"error: no {args.stage}_{args.split} reports under {runs}", file=sys.stderr)
        return 2
    cmp = compare_paired(before, after)
    print(f"| **pooled** | {len(before)} | {sum(before)} | {sum(after)} | "
          f"{sum(r['repaired'] for r in out.values())} ({sum(r['repaired_right'] for r in out.values())}) |")
    print(f"\nper DB {per_db(out, 'before'):.1f} -> {per_db(out, 'after'):.1f} %; pooled {cmp.sentence()}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
