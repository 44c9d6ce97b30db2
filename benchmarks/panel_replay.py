"""What `eval.fallback: panel` would have answered in runs that were scored without it, with no model on this machine.

A run keeps each tuned answer (`{stage}_{split}_pred.jsonl`, or its report's examples); the panel needs besides the
untuned model's greedy answers without and with k retrieved train pairs, which `benchmarks/untuned_answers.py` writes
(`<db>/<split>_k<k>.jsonl`). This script votes them with the shipped `vote.choose` (answers that fail or return no
rows do not vote; ties in the listed order), applies the shipped last-resort repair (`evaluate.repair_rows`, the
answers weighed in tie order) and scores with the shipped `score_pairs`. Columns, per DB:

- shipped: the run's answers as written, with the repair (what `repair_replay.py` reads);
- panel T, U0, U4: the tuned answer (the run's answer before any `base` fallback replaced it), the untuned greedy
  answer and the untuned answer with 4 examples, with the repair;
- untuned panel U4, U0, U2: no training at all (the untuned model's own panel), with the repair;
- U0: the untuned greedy answers decoded for this replay, as written (a check against the run's untuned stage).

    python benchmarks/panel_replay.py --runs /tmp/comb --pattern '{db}/ship' --stage rl --untuned runs/untuned15 \\
        --split valid --devsuite ../shared/data/devsuite
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _answers(path: Path) -> dict[str, str | None]:
    from repair_replay import _read

    rows = _read(path)
    if rows is None:
        raise SystemExit(f"error: {path} is missing (benchmarks/untuned_answers.py writes it)")
    return {str(r["id"]): r.get("sql") for r in rows}


def table_header(cols, first: str = "db") -> str:
    """The markdown header the replay scripts print: a first column, n, then one column per answer kind."""
    return f"| {first} | n | " + " | ".join(cols) + " |\n|---|---|" + "---|" * len(cols)


def table_row(name: str, r: dict, cols) -> str:
    """One DB's (or folder's) line: n and how many questions each kind answered right."""
    return f"| {name} | {r['n']} | " + " | ".join(str(sum(r[c])) for c in cols) + " |"


def table_totals(out: dict, cols, per: str = "DB") -> tuple[dict, list[str]]:
    """(pooled exact lists per kind, the pooled line and the mean-per-DB line) over every DB's `out` entry."""
    from repair_replay import per_db

    pooled = {c: [x for r in out.values() for x in r[c]] for c in cols}
    n = sum(r["n"] for r in out.values())
    return pooled, [f"| **pooled** | {n} | " + " | ".join(str(sum(pooled[c])) for c in cols) + " |",
                    f"| **mean per {per} (%)** | | " + " | ".join(f"{per_db(out, c):.1f}" for c in cols) + " |"]


def print_totals(out: dict, cols, versus: dict[str, str], per: str = "DB") -> None:
    """Print the pooled and mean-per-DB lines of `table_totals`, then each `col vs base` paired comparison over the
    pooled questions (`versus`: {col: base}, in its order)."""
    from sqltune.stats import compare_paired

    pooled, lines = table_totals(out, cols, per)
    print("\n".join(lines))
    for c, base in versus.items():
        print(f"{c} vs {base}, pooled: {compare_paired(pooled[base], pooled[c]).sentence()}")


def tuned_answers(rows: list[dict]) -> dict[str, str | None]:
    """{id: the tuned answer} of a run's rows as written: the answer before a `base` fallback replaced it, if any."""
    return {str(r["id"]): ((r.get("fallback") or {}).get("sql") if r.get("fallback") else r.get("sql")) for r in rows}


def _voted(db: Path, ids: list[str], voters: list[dict]) -> list[dict]:
    """`predict`-like rows: the answer the voters' results elect (ties in list order), the answers in `pool`."""
    from sqltune.execute import connect_readonly
    from sqltune.vote import Candidate, choose

    con = connect_readonly(db)
    try:
        rows = []
        for i in ids:
            sqls = [v.get(i) for v in voters]
            out = choose(con, [Candidate(sql=s, raw="", mean_logprob=-float(k), greedy=k == 0)
                               for k, s in enumerate(sqls)])
            rows.append({"id": i, "sql": out.sql, "error": out.candidates[out.chosen]["error"] if out.sql else "no SQL",
                         "pool": {"answers": {str(k): s for k, s in enumerate(sqls)}}})
        return rows
    finally:
        con.close()


def replay(folder: Path, db: Path, untuned: Path, stage: str, split: str) -> dict | None:
    from repair_replay import stored_rows
    from sqltune.evaluate import EvalConfig, as_written, repair_rows
    from sqltune.score import score_pairs

    got = stored_rows(folder, stage, split)
    if got is None:
        return None
    gold, rows = got
    ids = [str(g["id"]) for g in gold]
    rows = [as_written(r) for r in rows]
    tuned = tuned_answers(rows)
    u = {k: _answers(untuned / f"{split}_k{k}.jsonl") for k in (0, 2, 4)}
    if any(i not in u[k] for k in u for i in ids):
        raise SystemExit(f"error: {untuned} lacks answers for some {split} questions of {folder}")
    cfg = EvalConfig(repair=True)

    def exact(sqls: list) -> list[bool]:
        return [bool(e["exact"]) for e in score_pairs(db, gold, sqls)["examples"]]

    shipped = repair_rows([dict(r) for r in rows], db, cfg)
    panel = repair_rows(_voted(db, ids, [tuned, u[0], u[4]]), db, cfg)
    upanel = repair_rows(_voted(db, ids, [u[4], u[0], u[2]]), db, cfg)
    return {"n": len(ids), "shipped": exact([r.get("sql") for r in shipped]),
            "panel": exact([r.get("sql") for r in panel]), "untuned_panel": exact([r.get("sql") for r in upanel]),
            "U0": exact([u[0][i] for i in ids]), "tuned_as_written": exact([tuned[i] for i in ids])}


COLUMNS = ("U0", "untuned_panel", "tuned_as_written", "shipped", "panel")


def main(argv: list[str] | None = None) -> int:
    from sqltune.stats import compare_paired

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="folder holding one run folder per DB")
    ap.add_argument("--pattern", default="{db}", help="a DB's run folder under --runs, e.g. '{db}/ship'")
    ap.add_argument("--stage", default="tuned", help="the stage whose answers are the tuned ones (tuned, rl, ...)")
    ap.add_argument("--untuned", required=True, help="benchmarks/untuned_answers.py's --out")
    ap.add_argument("--split", default="test")
    ap.add_argument("--devsuite", default=str(ROOT.parent / "shared" / "data" / "devsuite"))
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    runs, suite, untuned = Path(a.runs), Path(a.devsuite), Path(a.untuned)
    out = {}
    print(table_header(COLUMNS))
    for db in sorted(p.name for p in suite.iterdir() if p.is_dir()):
        folder = runs / a.pattern.format(db=db)
        if not folder.is_dir() or not (untuned / db).is_dir():
            continue
        r = replay(folder, suite / db / f"{db}.sqlite", untuned / db, a.stage, a.split)
        if r is None:
            continue
        out[db] = r
        print(table_row(db, r, COLUMNS))
    if not out:
        print(f"error: no {a.stage}_{a.split} runs with untuned answers under {runs}", file=sys.stderr)
        return 2
    pooled, lines = table_totals(out, COLUMNS)
    print("\n".join(lines))
    print(f"\npanel vs shipped, pooled: {compare_paired(pooled['shipped'], pooled['panel']).sentence()}")
    print(f"untuned panel vs shipped, pooled: {compare_paired(pooled['shipped'], pooled['untuned_panel']).sentence()}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
