"""The reviewer (`eval.panel_judge: reviewer`) over the answers a dev-halves lease stored (session 27's format).

Session 27's lease kept, per dev half (`benchmarks/ckpt_rules.py build` folders), the SQL the untuned model (step 0)
and the last checkpoint wrote with 0, 2 and 4 retrieved examples (`dev{,_fs2,_fs4}_sql.jsonl[.gz]`). This script
replays the `default` recipe's panel over them — the tuned answer T0, the untuned U0 and U4, the tuned T2, in that tie
order — once by votes (`vote.choose`) and once with the reviewer electing where they disagree (the evaluator's own
reviewer pass, `evaluate.review_outcomes` / `elected_candidate`, the untuned model given by `--model`), each ended
by the shipped repair (`evaluate.repair_rows`) and scored with `score_pairs`. Devsuite halves only (`exo_*` folders
are skipped unless `--exoplanets`: the exoplanets schema makes each review a long forward pass on a CPU).

    python benchmarks/review_halves.py --work benchmarks/results/nvidia-h200-2026-12-02-s27-fewshot/seed42 \\
        --folders .gpu/ckr --model qwen2.5-coder-0.5b
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

ORDER = ("T0", "U0", "U4", "T2")  # the default panel's voters in tie order
COLS = ("vote", "reviewer")


def main(argv: list[str] | None = None) -> int:
    from ckpt_rules import _sql_lines
    from panel_replay import _voted, table_header, table_row, table_totals

    from sqltune.dataset import read_jsonl
    from sqltune.evaluate import EvalConfig, elected_candidate, repair_rows, review_outcomes
    from sqltune.execute import connect_readonly
    from sqltune.model import load, pick_device
    from sqltune.prompt import PromptBuilder
    from sqltune.schema import schema_text
    from sqltune.score import score_pairs
    from sqltune.vote import Candidate, choose

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, type=Path, help="a lease's stored answers, one folder per dev half")
    ap.add_argument("--folders", required=True, type=Path, help="the halves (`ckpt_rules.py build`: dev.jsonl, DB)")
    ap.add_argument("--model", default="qwen2.5-coder-0.5b", help="the untuned model that wrote them (the reviewer)")
    ap.add_argument("--exoplanets", action="store_true", help="the exo_* halves too")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None)
    a = ap.parse_args(argv)
    dev = pick_device(a.device, a.dtype)
    loaded = load(a.model, dev, builder=lambda info: None)
    cfg = EvalConfig(repair=True)
    rcfg = EvalConfig(panel_judge="reviewer", autocast=bool(dev.autocast), progress=False)
    out: dict[str, dict] = {}
    spent = 0.0
    for d in sorted(p for p in a.work.iterdir() if p.is_dir() and (a.exoplanets or not p.name.startswith("exo_"))):
        answers = {}
        for suffix, digit in (("", "0"), ("_fs2", "2"), ("_fs4", "4")):
            rows = _sql_lines(d / f"dev{suffix}_sql.jsonl")
            answers["U" + digit], answers["T" + digit] = rows[0]["sql"], rows[-1]["sql"]
        half = a.folders / d.name
        gold = read_jsonl(half / "dev.jsonl")
        db = half / f"{d.name}.sqlite"
        notes = half / f"{d.name}.notes.md"
        builder = PromptBuilder(schema_text(db, notes if notes.is_file() else None), "chat")
        ids = [str(g["id"]) for g in gold]
        plain = _voted(db, ids, [{i: answers[v].get(i) for i in ids} for v in ORDER])
        judged = [dict(x) for x in plain]
        con = connect_readonly(db)
        try:
            outs = [choose(con, [Candidate(sql=answers[v].get(i), raw="", mean_logprob=-float(k))
                                 for k, v in enumerate(ORDER)]) for i in ids]
        finally:
            con.close()
        t0 = time.perf_counter()
        reviews = review_outcomes(loaded.model, loaded.tokenizer, builder, gold, outs, rcfg)  # the shipped pass
        spent += time.perf_counter() - t0
        for x, o, rev in zip(judged, outs, reviews):
            if rev:
                x["sql"], x["error"] = answers[ORDER[elected_candidate(o, rev)]].get(x["id"]), None

        def exact(rows: list[dict]) -> list[bool]:
            fixed = repair_rows(rows, db, cfg)
            return [bool(e["exact"]) for e in score_pairs(db, gold, [r.get("sql") for r in fixed])["examples"]]

        out[d.name] = {"n": len(ids), "vote": exact([dict(x) for x in plain]), "reviewer": exact(judged)}
        if len(out) == 1:
            print(table_header(COLS, "half"))
        print(table_row(d.name, out[d.name], COLS), flush=True)
    if not out:
        print(f"error: no dev halves under {a.work}", file=sys.stderr)
        return 2
    print("\n".join(table_totals(out, COLS, "folder")[1]))
    print(f"reviewer model time: {spent:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
