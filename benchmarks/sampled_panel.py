"""Panels with sampled voters, replayed: the untuned model's greedy answers and samples per prompt, voted by result.

`benchmarks/untuned_answers.py --vote N` keeps, per question and per number k of retrieved train pairs, the greedy
answer (Uk) and N-1 samples (Sk, in draw order). This script votes lists of them with the shipped `vote.choose`
(answers that fail or return no rows do not vote; ties go to the earliest in the list), applies the shipped
last-resort repair over the same list (`evaluate.repair_rows`) and scores with the shipped `score_pairs`. Schemes
(session 32's rule, BENCHMARKS.md):

- A: U4, U0, U2 (the shipped untuned panel, `eval.fallback: panel` when training keeps step 0)
- B: A, then S4, S0, S2, 7 samples each (n = 8 per prompt)
- C: A, then S4, S0, S2, 15 samples each (n = 16)
- D: U4, then S4 (15): self-consistency on one prompt
- E: A, then S4 (15)

With `--oracle`, the ceilings of the judges as well (session 39): oA, oB, oC, whether *some* answer in A, B or C is
exact, which is what a perfect judge over that list would score (the last-resort repair, which writes SQL of its own,
not counted).

With `--pool-tag TAG` (answers decoded with `untuned_answers.py --extra-pool ... --tag TAG`: Vk, the greedy answer
with k examples retrieved from the seeds and the extra pairs) two more: F = V4, U0, V2 (the panel with the larger
pool) and G = A, then V4 (a fourth voter, last in tie order).

With `--runs` (a run folder per DB holding its stored answers, as `panel_replay.py` reads them) the tuned forms are
scored too: `shipped` (the run's answers with the repair), `T` (the tuned answer, before any `base` fallback),
`TA` = T, U0, U4 (the shipped panel of three) and `T<scheme>` = T, U0, U4, then the scheme's samples (with
`--pool-tag`: `TF` = T, U0, V4).

    python benchmarks/sampled_panel.py --answers runs/u15/xf --suite .gpu/xf --split test
    python benchmarks/sampled_panel.py --answers runs/u15/ds --suite ../shared/data/devsuite --split valid \\
        --runs /tmp/comb --pattern '{db}/ship' --stage rl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

KS = (4, 0, 2)  # the untuned panel's prompts, in its tie order


def schemes(u: dict[int, str | None], s: dict[int, list[str | None]]) -> dict[str, list[str | None]]:
    """Each scheme's voters for one question, in tie order (`u`: greedy answer per k; `s`: samples per k)."""
    a = [u[4], u[0], u[2]]
    return {"A": a, "B": a + [x for k in KS for x in s[k][:7]], "C": a + [x for k in KS for x in s[k]],
            "D": [u[4]] + s[4], "E": a + s[4]}


SCHEMES = ("A", "B", "C", "D", "E")


def tuned_schemes(t: str | None, u: dict[int, str | None], s: dict[int, list[str | None]]) -> dict[str, list]:
    """The same samples behind the shipped panel of three (T, U0, U4) instead of the untuned model's."""
    head = [t, u[0], u[4]]
    untuned = schemes(u, s)
    return {"TA": head, **{f"T{n}": head + untuned[n][len(untuned[n]) - _samples(n, s):] for n in SCHEMES[1:]}}


def _samples(name: str, s: dict[int, list]) -> int:
    return {"A": 0, "B": 7 * len(KS), "C": sum(len(s[k]) for k in KS), "D": len(s[4]), "E": len(s[4])}[name]


def read_answers(folder: Path, split: str, n: int) -> dict[str, tuple[dict, dict]]:
    """{id: ({k: greedy}, {k: samples})} from `<split>_k<k>_v<n>.jsonl` for every k in KS."""
    from repair_replay import _read

    out: dict[str, tuple[dict, dict]] = {}
    for k in KS:
        rows = _read(folder / f"{split}_k{k}_v{n}.jsonl")
        if rows is None:
            raise SystemExit(f"error: {folder / f'{split}_k{k}_v{n}.jsonl'} is missing "
                             f"(benchmarks/untuned_answers.py --vote {n} writes it)")
        for r in rows:
            u, s = out.setdefault(str(r["id"]), ({}, {}))
            cands = [c.get("sql") for c in r["candidates"]]
            u[k], s[k] = cands[0], cands[1:]
    return out


def read_pool(folder: Path, split: str, tag: str) -> dict[int, dict[str, str | None]]:
    """{k: {id: greedy answer}} from `<split>_k<k><tag>.jsonl` for k = 4, 2 (`untuned_answers.py --tag`)."""
    from repair_replay import _read

    out = {}
    for k in (4, 2):
        rows = _read(folder / f"{split}_k{k}{tag}.jsonl")
        if rows is None:
            raise SystemExit(f"error: {folder / f'{split}_k{k}{tag}.jsonl'} is missing "
                             f"(benchmarks/untuned_answers.py --extra-pool ... --tag {tag} writes it)")
        out[k] = {str(r["id"]): r.get("sql") for r in rows}
    return out


def split_items(a, name: str) -> tuple[list[dict], list[dict] | None] | None:
    """(gold, the run's rows as written or None) of one DB's `a.split`: with `a.runs`, the stored run's (None: the DB
    has no such run, skip it); else the gold items of `a.suite`."""
    from repair_replay import stored_rows

    from sqltune.dataset import read_jsonl
    from sqltune.evaluate import as_written

    if a.runs is None:
        return read_jsonl(a.suite / name / f"{a.split}.jsonl"), None
    got = stored_rows(a.runs / a.pattern.format(db=name), a.stage, a.split)
    return None if got is None else (got[0], [as_written(r) for r in got[1]])


def replay(db: Path, gold: list[dict], lists: dict[str, dict[str, list]]) -> dict[str, list[bool]]:
    """{scheme: [exact per gold item]}: `lists[scheme][id]` voted (`panel_replay._voted`), repaired, scored."""
    from panel_replay import _voted

    from sqltune.evaluate import EvalConfig, repair_rows
    from sqltune.score import score_pairs

    ids = [str(g["id"]) for g in gold]
    cfg = EvalConfig(repair=True)
    out = {}
    for name, per_id in lists.items():
        width = max(len(per_id[i]) for i in ids)
        voters = [{i: (per_id[i][j] if j < len(per_id[i]) else None) for i in ids} for j in range(width)]
        rows = repair_rows(_voted(db, ids, voters), db, cfg)
        out[name] = [bool(e["exact"]) for e in score_pairs(db, gold, [r.get("sql") for r in rows])["examples"]]
    return out


def oracle(db: Path, gold: list[dict], lists: dict[str, dict[str, list]], names=("A", "B", "C")) -> dict:
    """{"o<scheme>": [some answer of the scheme's list exact, per gold item]}: a perfect judge's score over that list
    (each distinct SQL scored once with the shipped `score_pairs`)."""
    from sqltune.score import score_pairs

    ids = [str(g["id"]) for g in gold]
    by_id = {str(g["id"]): g for g in gold}
    todo = sorted({(i, x) for n in names for i in ids for x in lists[n][i] if x})
    scored = score_pairs(db, [by_id[i] for i, _ in todo], [x for _, x in todo])["examples"]
    right = {key: bool(e["exact"]) for key, e in zip(todo, scored)}
    return {f"o{n}": [any(right[(i, x)] for x in lists[n][i] if x) for i in ids] for n in names}


def main(argv: list[str] | None = None) -> int:
    from panel_replay import print_totals, table_header, table_row, tuned_answers

    from sqltune.evaluate import EvalConfig, repair_rows
    from sqltune.score import score_pairs

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--answers", required=True, type=Path, help="benchmarks/untuned_answers.py --vote N's --out")
    ap.add_argument("--suite", required=True, type=Path, help="the devsuite-shaped folder the answers were decoded on")
    ap.add_argument("--split", default="test")
    ap.add_argument("--vote", type=int, default=16, help="the N the answers were decoded with")
    ap.add_argument("--runs", type=Path, default=None, help="stored runs, one folder per DB (adds the tuned forms)")
    ap.add_argument("--pattern", default="{db}")
    ap.add_argument("--stage", default="rl")
    ap.add_argument("--pool-tag", default=None, help="also F, G (and TF): answers with the larger pool, this tag")
    ap.add_argument("--answers-pool", type=Path, default=None,
                    help="where the --pool-tag answers are (default: --answers)")
    ap.add_argument("--oracle", action="store_true",
                    help="also oA, oB, oC: some answer of A, B or C exact (a perfect judge's score)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    out: dict[str, dict] = {}
    cols = None
    for folder in sorted(p for p in a.answers.iterdir() if p.is_dir()):
        name = folder.name
        db = a.suite / name / f"{name}.sqlite"
        got = split_items(a, name)
        if got is None:
            continue
        gold, rows = got
        ans = read_answers(folder, a.split, a.vote)
        ids = [str(g["id"]) for g in gold]
        if any(i not in ans for i in ids):
            raise SystemExit(f"error: {folder} lacks answers for some {a.split} questions")
        lists = {n: {} for n in SCHEMES}
        for i in ids:
            for n, v in schemes(*ans[i]).items():
                lists[n][i] = v
        pool = read_pool((a.answers_pool or a.answers) / name, a.split, a.pool_tag) if a.pool_tag else None
        if pool is not None:
            if any(i not in pool[k] for k in (4, 2) for i in ids):
                raise SystemExit(f"error: {folder} lacks {a.pool_tag} answers for some {a.split} questions")
            for i in ids:
                u = ans[i][0]
                lists.setdefault("F", {})[i] = [pool[4][i], u[0], pool[2][i]]
                lists.setdefault("G", {})[i] = [u[4], u[0], u[2], pool[4][i]]
        r = {"n": len(ids)}
        r["U0"] = [bool(e["exact"]) for e in score_pairs(db, gold, [ans[i][0][0] for i in ids])["examples"]]
        if rows is not None:
            t = tuned_answers(rows)
            shipped = repair_rows([dict(x) for x in rows], db, EvalConfig(repair=True))
            r["shipped"] = [bool(e["exact"])
                            for e in score_pairs(db, gold, [x.get("sql") for x in shipped])["examples"]]
            r["T"] = [bool(e["exact"]) for e in score_pairs(db, gold, [t[i] for i in ids])["examples"]]
            for i in ids:
                for n, v in tuned_schemes(t[i], *ans[i]).items():
                    lists.setdefault(n, {})[i] = v
                if pool is not None:
                    lists.setdefault("TF", {})[i] = [t[i], ans[i][0][0], pool[4][i]]
        r.update(replay(db, gold, lists))
        if a.oracle:
            r.update(oracle(db, gold, lists))
        out[name] = r
        if cols is None:
            cols = [c for c in r if c != "n"]
            print(table_header(cols, "folder"))
        print(table_row(name, r, cols))
    if not out:
        print(f"error: no {a.split} answers under {a.answers}", file=sys.stderr)
        return 2
    print_totals(out, cols, {c: "A" for c in cols if c not in ("A", "U0")}, "folder")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
