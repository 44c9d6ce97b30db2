"""What the pooled vote (`eval.fallback: vote`) did in finished devsuite runs, against what the shipped
`eval.fallback: base` would have done with the same answers: one run gives all three, because the report keeps,
for every pooled question, the tuned answer before pooling and the untuned model's greedy SQL.

    python benchmarks/pool_read.py --work DIR --setting NAME [--stage rl] [--splits valid test] \
        [--devsuite ../shared/data/devsuite] [--out OUT]
    python benchmarks/pool_read.py --pair BASE_REPORT POOLED_REPORT DB DATA [--out OUT]

Per DB and split, exact of:
  untuned      the untuned model's greedy answers (`base_SPLIT_report.json`, the vote's greedy half)
  untuned@vote the untuned model with the recipe's vote (the same report)
  tuned@vote   the tuned model's answer before the pool (the recipe's vote, no fallback)
  +base        the same, where that answer does not execute: the untuned model's greedy SQL (`fallback: base`)
  +pool        what the run wrote (`fallback: vote`)
and the paired comparisons +base -> +pool and untuned -> +pool (sqltune.stats). Every answer not in the report is
scored again here, read-only, with the shipped scorer.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from sqltune.dataset import read_jsonl
from sqltune.score import score_pairs
from sqltune.stats import compare_paired

COLS = ("untuned", "untuned@vote", "tuned@vote", "+base", "+pool")


def read_split(run: Path, db: Path, items: list[dict], stage: str, split: str) -> dict[str, list[bool]]:
    base = json.loads((run / f"base_{split}_report.json").read_text())
    rep = json.loads((run / f"{stage}_{split}_report.json").read_text())
    if len(rep["examples"]) != len(items):
        raise SystemExit(f"{run}: {stage}_{split} has {len(rep['examples'])} answers for {len(items)} questions")
    return rebuild(base, rep, db, items)


def rebuild(base: dict, rep: dict, db: Path, items: list[dict]) -> dict[str, list[bool]]:
    """Per question: exact of each column of COLS, from the untuned model's report `base` and the pooled report `rep`
    (an `eval.fallback: vote` evaluation of the same questions)."""
    ex = rep["examples"]
    greedy = base["vote"]["greedy_examples"] if base.get("vote") else base["examples"]
    # the tuned answer before the pool, and the answer `fallback: base` would have given
    before = [e["pool"]["sql"] if "pool" in e else e["pred_sql"] for e in ex]
    pre = score_pairs(db, items, before)["examples"]
    with_base = [e["pool"]["base_sql"] if ("pool" in e and not p["executed"]) else b
                 for e, p, b in zip(ex, pre, before)]
    fb = score_pairs(db, items, with_base)["examples"]
    return {"untuned": [bool(e["exact"]) for e in greedy], "untuned@vote": [bool(e["exact"]) for e in base["examples"]],
            "tuned@vote": [bool(e["exact"]) for e in pre], "+base": [bool(e["exact"]) for e in fb],
            "+pool": [bool(e["exact"]) for e in ex], "pooled": [("pool" in e) for e in ex]}


def pct(xs: list[bool]) -> str:
    return f"{100 * sum(xs) / len(xs):.1f} %" if xs else "-"


def line(name: str, a: list[bool], b: list[bool]) -> str:
    return f"- {name}: " + compare_paired(a, b).sentence()


def write(out: Path | None, text: str, data: dict) -> None:
    """Print `text`; with `out`, also OUT.md and OUT.json (`data`). The name is extended, never re-suffixed
    (`pool-0.5b` gives `pool-0.5b.md`)."""
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{out}.md").write_text(text + "\n")
        Path(f"{out}.json").write_text(json.dumps(data, indent=1) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, help="transfer.py's --work folder (DB/SETTING/...)")
    ap.add_argument("--setting", help="the setting's name (its folder under each DB)")
    ap.add_argument("--pair", nargs=4, metavar=("BASE_REPORT", "POOLED_REPORT", "DB", "DATA"),
                    help="instead of --work: one untuned report and one `sqltune eval --fallback vote` report of the "
                         "same questions (DATA, .jsonl) on DB")
    ap.add_argument("--stage", default="rl", help="the tuned stage whose reports to read (rl, tuned, rl_run1, ...)")
    ap.add_argument("--splits", nargs="+", default=["valid", "test"])
    ap.add_argument("--devsuite", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "devsuite")
    ap.add_argument("--out", type=Path, help="write OUT.md and OUT.json")
    a = ap.parse_args(argv)
    if a.pair:
        b, r, db, data = a.pair
        from sqltune.db import resolve_db

        res = rebuild(json.loads(Path(b).read_text()), json.loads(Path(r).read_text()), resolve_db(db), read_jsonl(data))
        text = "\n".join([f"{k}: {pct(v)} ({sum(v)} of {len(v)})" for k, v in res.items() if k != "pooled"]
                         + [f"pooled: {sum(res['pooled'])}"]
                         + [line(f"{x} -> {y}", res[x], res[y]) for x, y in
                            (("untuned", "tuned@vote"), ("tuned@vote", "+base"), ("+base", "+pool"), ("untuned", "+pool"))])
        write(a.out, text, res)
        return
    if not (a.work and a.setting):
        ap.error("give --work and --setting, or --pair")
    out, md = {}, []
    for split in a.splits:
        rows, pooled = [], {k: [] for k in COLS}
        for run in sorted(a.work.glob(f"*/{a.setting}")):
            name = run.parent.name
            if not (run / f"{a.stage}_{split}_report.json").is_file():
                continue
            db = a.devsuite / name / f"{name}.sqlite"
            items = read_jsonl(a.devsuite / name / f"{split}.jsonl")
            r = read_split(run, db, items, a.stage, split)
            out.setdefault(split, {})[name] = r
            rows.append(f"| {name} | {len(items)} | {sum(r['pooled'])} | " + " | ".join(pct(r[k]) for k in COLS) + " |")
            for k in COLS:
                pooled[k] += r[k]
        if not rows:
            continue
        dbs = out[split]
        per_db = {k: sum(100 * sum(v[k]) / len(v[k]) for v in dbs.values()) / len(dbs) for k in COLS}
        md += [f"## {split}: {len(dbs)} DBs, {len(pooled['+pool'])} questions, stage `{a.stage}`", "",
               "| db | n | pooled | " + " | ".join(COLS) + " |", "|---|---|---|" + "---|" * len(COLS), *rows,
               f"| **per DB** | | | " + " | ".join(f"{per_db[k]:.1f} %" for k in COLS) + " |", "",
               line("tuned@vote -> +base (the shipped fallback)", pooled["tuned@vote"], pooled["+base"]),
               line("+base -> +pool (pooled vote instead of the shipped fallback)", pooled["+base"], pooled["+pool"]),
               line("untuned -> +pool", pooled["untuned"], pooled["+pool"]),
               line("untuned@vote -> +pool", pooled["untuned@vote"], pooled["+pool"]), ""]
    write(a.out, "\n".join(md), out)


if __name__ == "__main__":
    main()
