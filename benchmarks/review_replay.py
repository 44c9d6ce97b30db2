"""A reviewer chooses among the panel's answers: log P(question | schema, SQL) under the untuned model, replayed.

The panel (`eval.fallback: panel`) votes its voters' results (`vote.choose`): the largest group wins, ties go to the
earliest voter. This script scores, for every question whose voters give two or more result groups, each distinct
SQL by how likely the model finds the question given it (Coder-Reviewer reranking, Zhang et al. 2022): the chat
template with a reviewer system prompt over the same schema text the answers were written from, the SQL as the
user's turn and the question's tokens, as the assistant's reply, summed. The question is the same for every
candidate, so the sums compare directly. A group's score is its best member's. The scoring and R1's election are
the shipped `vote.review_scores` / `vote.review_pick` (`eval.panel_judge: reviewer`). Schemes (session 32's rule,
BENCHMARKS.md):

- A: U4, U0, U2 voted as shipped (`benchmarks/untuned_answers.py` answers: the greedy answer, candidate 0 of a
  `--vote N` file); R1: the same voters, the group with the best reviewer score wins; R2: votes first, the reviewer
  instead of tie order; R3: reviewer score + log(votes).
- with `--runs` (stored tuned answers T, as `panel_replay.py` reads them): TA = T, U0, U4 (the shipped panel of
  three), TR1, TR2, TR3 over the same voters. A run whose training kept step 0 answered with the untuned panel (its
  rows say `pool.untuned`); its tuned forms are then the untuned ones (TA = A, TR1 = R1, ...), as the run answered.
- with `--schemes` (session 33): the larger voter lists of `sampled_panel.py` (B, C, E: A then the untuned model's
  samples per prompt; TB, TC, TE with the tuned answer first), each voted and judged: CR1, CR2, CR3, TCR1, ...

- with `--coder-fewshot K --coder-cache PATH` (session 34): each SQL also scored by the coder, log P(SQL | the
  writing prompt with the K train pairs retrieved for the question) (`vote.coder_scores`), and judged by R4
  (reviewer + coder, summed) and R5 (both per token) too.
- with `--review-canonical` (session 34): the reviewer reads every SQL in one canonical form (`check.normalize_sql`)
  instead of its voter's spelling; with `--review-results`, each SQL's columns and first rows after it; each its own
  cache setting.

- with `--verifier PATH` (session 40): `benchmarks/verifier.py train`'s per-DB verifier scores, judged by V1 (LEVER's
  sum of P(right) over a result group's voters) and V2 (the group's best log-odds); a folder whose verifier saw fewer
  than 5 right or 5 wrong answers keeps R1's election. V3 (session 41): z(reviewer) + z(verifier) over every SQL of
  the question both scored (with `--schemes C`, its running scheme-C SQL).

Every scheme ends with the shipped last-resort repair over its voters (`evaluate.repair_rows`) and is scored with
`score_pairs`. Scores are cached in `--cache` (JSON), so a second read costs no model time.

    python benchmarks/review_replay.py --model qwen2.5-coder-1.5b --answers xf --suite .gpu/xf --split test \\
        --cache review_xf.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sampled_panel import SCHEMES  # noqa: E402

RULES = ("R1", "R2", "R3")
CODER_RULES = ("R4", "R5")  # with --coder-fewshot: the reviewer's score and the coder's
VERIFIER_RULES = ("V1", "V2", "V3")  # with --verifier: a verifier trained on the seeds' labelled answers (verifier.py)
VERIFIER_MIN_CLASS = 5  # a verifier whose train rows hold fewer right or fewer wrong answers than this is not used


def zsum(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """z(a) + z(b) for every key both score, each z over those keys (population deviation; 1 where all are equal)."""
    import statistics

    both = [x for x in a if x in b]
    if not both:
        return {}

    def z(m: dict[str, float]) -> dict[str, float]:
        vals = [m[x] for x in both]
        mu, sd = statistics.fmean(vals), statistics.pstdev(vals) or 1.0
        return {x: (m[x] - mu) / sd for x in both}

    za, zb = z(a), z(b)
    return {x: za[x] + zb[x] for x in both}


def verifier_pick(outcome, scores: dict[str, float], rule: str, review: dict[str, float] | None = None) -> int | None:
    """The candidate a trained verifier elects (`benchmarks/verifier.py`; `scores`: {sql: log-odds that it is right}).
    V1 (LEVER's aggregation, Ni et al. 2023): a result group's score is the sum of P(right) over its members, each
    voter counted (the samples stand in for the coder's probability); V2: the group's best member's log-odds, R1's
    election (`vote.review_pick`) with the verifier's score; V3 (session 41): the same with z(reviewer) + z(verifier)
    (`zsum` over every SQL of the question both scored, `review` the reviewer's scores; a SQL missing either cannot
    win). Ties: the group with the earliest member. None where fewer than two groups ran with rows."""
    import math

    from sqltune.vote import review_pick

    if rule == "V3":
        return review_pick(outcome, zsum(scores, review or {}))
    if rule == "V2" or len(outcome.groups) < 2:
        return review_pick(outcome, scores)
    sql_of = [c["sql"] for c in outcome.candidates]

    def p(sql: str) -> float:
        d = scores.get(sql)
        return 0.0 if d is None else 1.0 / (1.0 + math.exp(-d))

    def key(g) -> tuple:
        return (sum(p(sql_of[i]) for i in g["members"]), -min(g["members"]))

    return min(max(outcome.groups, key=key)["members"])


def pick(outcome, scores: dict[str, float], rule: str = "R1", coder: dict[str, list] | None = None,
         qlen: int = 1) -> int | None:
    """The index of the candidate elected among `outcome`'s groups (None: fewer than two groups). A group's score is
    its best member's. R1 (the shipped `vote.review_pick`): the best score wins; R2: votes first, the score instead of
    tie order; R3: score + log(votes), the result-level coder-reviewer product (votes / n estimate the result's
    probability under the coder, as the reviewer's score is the question's log-probability given the SQL).
    With `coder` ({sql: [log P(sql | prompt), tokens]}, `vote.coder_scores`): R4, the reviewer's score + the coder's
    (log p(x|y) + log p(y|x), Coder-Reviewer reranking); R5, both per token (the reviewer's over the question's
    `qlen` tokens, the coder's over its SQL's)."""
    import math

    from sqltune.vote import review_pick

    if rule == "R1" or len(outcome.groups) < 2:
        return review_pick(outcome, scores)
    sql_of = {i: c["sql"] for i, c in enumerate(outcome.candidates)}
    inf = float("-inf")

    def both(sql: str) -> float:
        c = (coder or {}).get(sql)
        if c is None or sql not in scores:
            return inf
        return scores[sql] + c[0] if rule == "R4" else scores[sql] / max(qlen, 1) + c[0] / max(c[1], 1)

    def score(g) -> float:
        if rule in CODER_RULES:
            return max(both(sql_of[i]) for i in g["members"])
        return max(scores.get(sql_of[i], inf) for i in g["members"])

    if rule in CODER_RULES:
        key = lambda g: (score(g), -min(g["members"]))  # noqa: E731
    elif rule == "R2":
        key = lambda g: (g["votes"], score(g), -min(g["members"]))  # noqa: E731
    else:
        key = lambda g: (score(g) + math.log(g["votes"]), -min(g["members"]))  # noqa: E731
    return min(max(outcome.groups, key=key)["members"])


def judged(base: str, rule: str) -> str:
    """A judged column's name: R1 (over A), TR1 (over TA), CR1 (over C), TCR1 (over TC), ..."""
    return f"{base[:-1] if base.endswith('A') else base}{rule}"


def _exact(db, gold: list[dict], rows: list[dict]) -> list[bool]:
    from sqltune.score import score_pairs

    return [bool(e["exact"]) for e in score_pairs(db, gold, [x.get("sql") for x in rows])["examples"]]


def main(argv: list[str] | None = None) -> int:
    from panel_replay import _voted, print_totals, table_header, table_row, tuned_answers
    from sampled_panel import read_answers, schemes, split_items, tuned_schemes

    from sqltune.check import normalize_sql
    from sqltune.dataset import read_jsonl
    from sqltune.evaluate import EvalConfig, repair_rows
    from sqltune.execute import connect_readonly, execute
    from sqltune.generate import fewshot_for
    from sqltune.prompt import CORRECTION_ROWS, PromptBuilder
    from sqltune.schema import schema_text
    from sqltune.vote import Candidate, choose, coder_scores, review_scores

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--answers", required=True, type=Path, help="benchmarks/untuned_answers.py --vote N's --out")
    ap.add_argument("--suite", required=True, type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--vote", type=int, default=16)
    ap.add_argument("--runs", type=Path, default=None)
    ap.add_argument("--pattern", default="{db}")
    ap.add_argument("--stage", default="rl")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--cache", type=Path, default=None, help="reviewer scores, read and written ({db: {q: {sql: s}}})")
    ap.add_argument("--schemes", nargs="+", default=["A"], choices=SCHEMES,
                    help="the voters judged (sampled_panel.py's schemes; with --runs, their tuned forms too)")
    ap.add_argument("--review-fewshot", type=int, default=0,
                    help="train pairs retrieved for the question (as U<k> retrieves them) shown to the reviewer, SQL "
                         "then question, before each candidate (0: none, as shipped)")
    ap.add_argument("--review-canonical", action="store_true",
                    help="the reviewer reads each SQL in one canonical form (`check.normalize_sql`: sqlglot's spacing "
                         "and keyword case, identifiers lower-cased), not as its voter wrote it")
    ap.add_argument("--review-results", action="store_true",
                    help="the reviewer also reads each SQL's result: its columns and first rows, as the vote's "
                         "correction prompt shows them (`prompt.result_preview`)")
    ap.add_argument("--coder-fewshot", type=int, default=None, metavar="K",
                    help="also score each SQL by the coder, log P(SQL | the writing prompt with K train pairs retrieved "
                         "as U<K> retrieves them), and judge by R4/R5 too (needs --coder-cache)")
    ap.add_argument("--coder-cache", type=Path, default=None,
                    help="coder scores, read and written ({db: {q: {sql: [sum, tokens], _qlen: n}}})")
    ap.add_argument("--verifier", type=Path, default=None,
                    help="`benchmarks/verifier.py train`'s scores: judge by V1, V2, V3 too (a folder whose verifier saw "
                         f"fewer than {VERIFIER_MIN_CLASS} right or wrong answers keeps R1's election)")
    ap.add_argument("--scores-only", action="store_true",
                    help="fill --cache and print no accuracy (scores for a split whose read waits for its rule)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.scores_only and not a.cache:
        ap.error("--scores-only needs --cache")
    if (a.coder_fewshot is None) != (a.coder_cache is None):
        ap.error("--coder-fewshot and --coder-cache go together")
    rules = RULES + (CODER_RULES if a.coder_fewshot is not None else ()) + (VERIFIER_RULES if a.verifier else ())
    ver = json.loads(a.verifier.read_text()) if a.verifier else {}
    ccache = json.loads(a.coder_cache.read_text()) if a.coder_cache and a.coder_cache.is_file() else {}
    if a.coder_cache and ccache.setdefault("_settings", {"coder_fewshot": a.coder_fewshot}) != {
            "coder_fewshot": a.coder_fewshot}:
        raise SystemExit(f"error: {a.coder_cache} holds scores for {ccache['_settings']}, not coder_fewshot "
                         f"{a.coder_fewshot}")
    cache = json.loads(a.cache.read_text()) if a.cache and a.cache.is_file() else {}
    settings = {"review_fewshot": a.review_fewshot, **({"canonical": True} if a.review_canonical else {}),
                **({"results": True} if a.review_results else {})}
    # a cache written before the setting existed holds the shipped reviewer's scores (no examples)
    if cache.setdefault("_settings", {"review_fewshot": 0} if cache else settings) != settings:
        raise SystemExit(f"error: {a.cache} holds scores for {cache['_settings']}, not {settings}")
    loaded = dev = None
    cfg = EvalConfig(repair=True)
    out: dict[str, dict] = {}
    spent, judged_n = 0.0, 0
    for folder in sorted(p for p in a.answers.iterdir() if p.is_dir()):
        name = folder.name
        db = a.suite / name / f"{name}.sqlite"
        got = split_items(a, name)
        if got is None:
            continue
        gold, rows = got
        # a run whose training kept step 0 answers with the untuned panel (U4, U0, U2 and its judge): its rows hold
        # that panel's answers, not an adapter's, so its tuned forms are the untuned ones (TR1 = R1, ...)
        kept0 = bool(rows) and all((r.get("pool") or {}).get("untuned") for r in rows)
        if kept0:
            print(f"{name}: the run kept step 0 (the untuned panel answered): its tuned forms are the untuned ones",
                  flush=True)
        t = None if rows is None or kept0 else tuned_answers(rows)
        ans = read_answers(folder, a.split, a.vote)
        ids = [str(g["id"]) for g in gold]
        question = {str(g["id"]): g["question"] for g in gold}
        voters: dict[str, dict[str, list]] = {}
        for x in a.schemes:
            voters[x] = {i: schemes(*ans[i])[x] for i in ids}
        if t is not None:
            for x in a.schemes:
                voters[f"T{x}"] = {i: tuned_schemes(t[i], *ans[i])[f"T{x}"] for i in ids}
        builder = PromptBuilder(schema_text(db), "chat")  # the schema text the answers were written from
        shots = {i: None for i in ids}
        pool = read_jsonl(a.suite / name / "train.jsonl") if a.review_fewshot or a.coder_fewshot else []
        if a.review_fewshot:
            shots = {i: fewshot_for([question[i]], pool, a.review_fewshot, exclude=gold)[0] for i in ids}
        scores = cache.setdefault(name, {})
        cscores = ccache.setdefault(name, {})
        # this folder's verifier scores, or None where it saw too few of a class to judge by (R1 elects there)
        vscores = None
        if a.verifier:
            v = ver.get(name)
            if v is None:
                raise SystemExit(f"error: {a.verifier} has no scores for {name}")
            if min(v["right"], v["train"] - v["right"]) >= VERIFIER_MIN_CLASS:
                vscores = v["scores"]
        con = connect_readonly(db)
        try:
            picked: dict[str, dict[str, int | None]] = {}
            for base, per_id in voters.items():
                keys = [judged(base, rule) for rule in rules]
                for key in keys:
                    picked[key] = {}
                for i in ids:
                    o = choose(con, [Candidate(sql=s, raw="", mean_logprob=-float(k), greedy=k == 0)
                                     for k, s in enumerate(per_id[i])])
                    if len(o.groups) >= 2:
                        ran = {c["sql"] for c in o.candidates if c["votes"]}
                        todo = sorted(ran - set(scores.get(i, {})))
                        ctodo = sorted(ran - set(cscores.get(i, {}))) if a.coder_fewshot is not None else []
                        if (todo or ctodo) and loaded is None:
                            from sqltune.model import load, pick_device

                            dev = pick_device(a.device, a.dtype)
                            loaded = load(a.model, dev, builder=lambda info: None)
                        if ctodo:
                            shown = fewshot_for([question[i]], pool, a.coder_fewshot, exclude=gold)[0]
                            t0 = time.perf_counter()
                            got_c = coder_scores(loaded.model, loaded.tokenizer, builder, question[i], ctodo,
                                                 autocast=bool(dev.autocast), examples=shown)
                            spent += time.perf_counter() - t0
                            entry = cscores.setdefault(i, {})
                            entry.update({q: list(v) for q, v in zip(ctodo, got_c)})
                            entry["_qlen"] = len(loaded.tokenizer(question[i].strip(),
                                                                  add_special_tokens=False)["input_ids"])
                        if todo:
                            t0 = time.perf_counter()
                            shown_sql = [normalize_sql(x) for x in todo] if a.review_canonical else todo
                            res = None
                            if a.review_results:
                                res = [{"columns": r.columns, "rows": r.rows[:CORRECTION_ROWS]} for r in
                                       (execute(con, x, timeout=cfg.timeout) for x in todo)]
                            got_scores = review_scores(loaded.model, loaded.tokenizer, builder, question[i], shown_sql,
                                                       autocast=bool(dev.autocast), examples=shots[i], results=res)
                            spent += time.perf_counter() - t0
                            judged_n += 1
                            scores.setdefault(i, {}).update(dict(zip(todo, got_scores)))
                    ci = cscores.get(i, {})
                    for key, rule in zip(keys, rules):
                        if rule in VERIFIER_RULES:
                            picked[key][i] = (verifier_pick(o, vscores.get(i, {}), rule, scores.get(i, {}))
                                              if vscores is not None
                                              else pick(o, scores.get(i, {}), "R1"))
                            continue
                        picked[key][i] = (pick(o, scores.get(i, {}), rule, ci, ci.get("_qlen", 1))
                                          if len(o.groups) >= 2 else None)
        finally:
            con.close()
        if a.cache:
            a.cache.write_text(json.dumps(cache, indent=0))
        if a.coder_cache:
            a.coder_cache.write_text(json.dumps(ccache, indent=0))
        if a.scores_only:
            print(f"{name}: {sum(len(v) for v in scores.values())} SQL scored", flush=True)
            continue
        r = {"n": len(ids)}
        for base, per_id in voters.items():
            width = max(len(per_id[i]) for i in ids)
            lists = [{i: (per_id[i][j] if j < len(per_id[i]) else None) for i in ids} for j in range(width)]
            plain = _voted(db, ids, lists)
            r[base] = _exact(db, gold, repair_rows([dict(x) for x in plain], db, cfg))
            for key in (judged(base, rule) for rule in rules):
                rows = [dict(x) for x in plain]
                for x in rows:
                    k = picked[key][x["id"]]
                    if k is not None:  # the elected answer runs with rows (it is in a group)
                        x["sql"], x["error"] = per_id[x["id"]][k], None
                r[key] = _exact(db, gold, repair_rows(rows, db, cfg))
        if kept0:
            r.update({f"T{c}": r[c] for c in list(r) if c != "n"})
        out[name] = r
        if len(out) == 1:
            print(table_header([c for c in r if c != "n"], "folder"))
        print(table_row(name, r, [c for c in r if c != "n"]), flush=True)
    if a.scores_only:
        print(f"reviewer model time: {spent:.0f} s over {judged_n} questions with unscored SQL")
        return 0
    if not out:
        print(f"error: no {a.split} answers under {a.answers}", file=sys.stderr)
        return 2
    cols = [c for c in next(iter(out.values())) if c != "n"]
    base = {c: "TA" if c.startswith("T") else "A" for c in cols}
    print_totals(out, cols, {c: base[c] for c in cols if c != base[c] and base[c] in cols}, "folder")
    print(f"reviewer model time: {spent:.0f} s over {judged_n} questions with unscored SQL")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
