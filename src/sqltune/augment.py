"""Stage: hard-example mining and validated data augmentation.

1. Read a finished run's per-question results on **valid** (never test) and keep what the tuned
   model still gets wrong, grouped by what the gold SQL needs (window functions, joins to reference
   tables, HAVING, subqueries, ratios, …) as read from the SQL with sqlglot.
2. Make candidate pairs two ways: (a) `mutate` training SQL of the same kinds (other columns,
   aggregates, comparisons, sort direction) and have the model write the question; (b) have the model
   propose a question + SQL in the style of a failing example.
3. Keep a candidate only if its SQL runs through the safe executor, returns a non-empty, deterministic
   result (the `data check` rules) other than one row of 0 / NULL (`pairs.zero_result`), its question
   asks for no extreme the SQL does not compute (`pairs.extreme_not_computed`) and quotes no value the SQL
   does not use (`pairs.quoted_value_missing`), and neither it nor its
   question duplicates or near-duplicates (same normalised question, SQL or SQL skeleton) anything in
   train, valid, test or the kept pairs.
4. Round trip (on by default): the run's tuned model writes SQL for each surviving question; the pair is
   kept only if that SQL returns the candidate's result (`fuzzy`: same rows, column names and order
   free). Executing is not enough: a small model's question often does not describe the mutated SQL
   (measured: BENCHMARKS.md, "Augmentation"), and a mutated formula can be valid SQL with no meaning.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import sqlglot
from sqlglot import exp

from .check import LeakIndex
from .errors import SqltuneError
# the one validation pipeline, shared with `synth` (re-exported: augment's public names stay)
from .pairs import PairResult, Validator, apply_roundtrip, chat, clean_question, filter_candidates, roundtrip_agrees, write_pairs

AugmentResult = PairResult

KINDS = ("filter", "window", "reference_join", "join", "having", "subquery", "cte", "case", "ratio", "aggregate",
         "group_by", "order_limit", "name_match", "null_handling")


def sql_kinds(sql: str) -> set[str]:
    """What a query needs, read from its syntax tree."""
    try:
        tree = sqlglot.parse_one(sql.strip().rstrip(";"), read="sqlite")
    except (sqlglot.errors.SqlglotError, RecursionError):
        return set()
    kinds = set()
    if tree.find(exp.Where):
        kinds.add("filter")
    if tree.find(exp.Window):
        kinds.add("window")
    tables = {t.name.lower() for t in tree.find_all(exp.Table)}
    if "reference_planets" in tables:
        kinds.add("reference_join")
    if tree.find(exp.Join):
        kinds.add("join")
    if tree.find(exp.Having):
        kinds.add("having")
    if any(isinstance(s.parent, (exp.Where, exp.In, exp.Select, exp.Binary, exp.From, exp.Join))
           for s in tree.find_all(exp.Subquery)) or any(q is not tree for q in tree.find_all(exp.Select)
                                                         if not q.find_ancestor(exp.CTE)):
        kinds.add("subquery")
    if tree.find(exp.CTE):
        kinds.add("cte")
    if tree.find(exp.Case):
        kinds.add("case")
    if tree.find(exp.Div):
        kinds.add("ratio")
    if tree.find(exp.AggFunc):
        kinds.add("aggregate")
    if tree.find(exp.Group):
        kinds.add("group_by")
    if tree.args.get("order") is not None and tree.args.get("limit") is not None:
        kinds.add("order_limit")
    if tree.find(exp.Like):
        kinds.add("name_match")
    if any(isinstance(i.expression, exp.Null) for i in tree.find_all(exp.Is)) or tree.find(exp.Coalesce):
        kinds.add("null_handling")
    return kinds


def failures(run_dir: str | os.PathLike, stage: str = "tuned") -> list[dict]:
    """The valid questions a run's `stage` model still gets wrong, with the kinds their gold SQL needs."""
    path = Path(run_dir) / f"{stage}_valid_report.json"
    if not path.is_file():
        raise SqltuneError(f"{path} not found: augment reads a finished run's valid results (never test)")
    from .report import load_report

    report = load_report(path, ("id", "question", "gold_sql", "exact", "error_kind"))
    return [{"id": e["id"], "question": e["question"], "sql": e["gold_sql"], "kinds": sorted(sql_kinds(e["gold_sql"])),
             "error_kind": e["error_kind"]} for e in report["examples"] if not e["exact"]]


# ----------------------------------------------------------------------------- (a) mutations
_AGG_SWAP = {exp.Max: exp.Min, exp.Min: exp.Max, exp.Sum: exp.Avg, exp.Avg: exp.Sum}
_CMP_SWAP = {exp.GT: exp.LT, exp.LT: exp.GT, exp.GTE: exp.LTE, exp.LTE: exp.GTE}


def _numeric_columns(db) -> set[str]:
    from .schema import describe

    return {c.name.lower() for t in describe(db, notes=None).tables for c in t.columns
            if any(x in c.type for x in ("REAL", "INT", "NUM", "FLOA", "DOUB"))}


def mutate(sql: str, numeric_columns: set[str], rng: random.Random, n: int = 4) -> list[str]:
    """Structural variants of `sql`: another numeric column, aggregate, comparison or sort direction.

    Changing literals alone would keep the SQL skeleton, so such variants are not made: the leakage
    filter would (rightly) reject them as near-duplicates of their source.
    """
    try:
        tree = sqlglot.parse_one(sql.strip().rstrip(";"), read="sqlite")
    except (sqlglot.errors.SqlglotError, RecursionError):
        return []
    out: list[str] = []
    cols = sorted(numeric_columns)
    keys = {c.name.lower() for j in tree.find_all(exp.Join) for c in j.find_all(exp.Column)}  # join keys stay
    used = sorted({c.name.lower() for c in tree.find_all(exp.Column) if c.name.lower() in numeric_columns} - keys)
    for _ in range(n * 3):
        t = tree.copy()
        op = rng.choice(["column", "aggregate", "compare", "direction"])
        if op == "column" and used and len(cols) > 1:
            old = rng.choice(used)
            new = rng.choice([c for c in cols if c != old and c not in used] or [c for c in cols if c != old])
            for c in t.find_all(exp.Column):
                if c.name.lower() == old:
                    c.set("this", exp.to_identifier(new))
        elif op == "aggregate":
            aggs = [a for a in t.find_all(*_AGG_SWAP) if type(a) in _AGG_SWAP]
            if not aggs:
                continue
            a = rng.choice(aggs)
            a.replace(_AGG_SWAP[type(a)](this=a.this.copy()))
        elif op == "compare":
            cmps = list(t.find_all(*_CMP_SWAP))
            if not cmps:
                continue
            c = rng.choice(cmps)
            c.replace(_CMP_SWAP[type(c)](this=c.this.copy(), expression=c.expression.copy()))
        elif op == "direction":
            orders = list(t.find_all(exp.Ordered))
            if not orders:
                continue
            o = rng.choice(orders)
            o.set("desc", not o.args.get("desc"))
        else:
            continue
        s = t.sql(dialect="sqlite", pretty=True)
        if s != tree.sql(dialect="sqlite", pretty=True) and s not in out:
            out.append(s)
        if len(out) >= n:
            break
    return out


# ----------------------------------------------------------------------------- model prompts
QUESTION_PROMPT = ("Here is a SQLite query on the database below. Write the one question, in plain English as "
                   "a user would ask it, that this query answers. Reply with the question only.\n\n"
                   "Schema:\n{schema}\n\nSQL:\n{sql}")
PROPOSE_PROMPT = ("Database schema:\n{schema}\n\nExample question: {question}\nExample SQL:\n{sql}\n\n"
                  "Write a NEW question of a similar type but about different columns or conditions, and its "
                  "SQLite query. Answer exactly in this form:\nQuestion: ...\nSQL: ...")


_chat = chat
_clean_question = clean_question


def _parse_proposal(text: str) -> dict | None:
    from .extract import extract_sql

    if "Question:" not in text or "SQL" not in text:
        return None
    q = text.split("Question:", 1)[1].split("SQL", 1)[0].strip()
    sql = extract_sql(text.split("Question:", 1)[1].split("SQL", 1)[1].lstrip(" :\n"))
    return {"question": q.splitlines()[0].strip() if q else "", "sql": sql} if sql else None


def _run_data(run_dir: Path, data):
    """A run's `recipe.DataSection` with its paths found from here: the database as `serve --run` finds it
    (`serve.run_db`), the notes and item files, where relative paths not found here, in the folder the run was started
    in (`run.run_file`); a packaged split (`exoplanets:train`) or a hub id is no file and stays as it is."""
    from .dataset import ITEM_FILE_SUFFIXES
    from .run import run_file
    from .serve import run_db

    def items(spec: str | None, key: str) -> str | None:
        file = spec and not spec.startswith("hf:") and Path(spec).suffix.lower() in ITEM_FILE_SUFFIXES
        return run_file(run_dir, spec, key) if file else spec

    return replace(data, db=run_db(run_dir, data.db, give=None),
                   notes=data.notes and run_file(run_dir, data.notes, "data.notes"),
                   train=items(data.train, "data.train"), valid=items(data.valid, "data.valid"),
                   test=items(data.test, "data.test"), extra=[items(s, "data.extra") for s in data.extra])


def run_train_items(run_dir: str | os.PathLike) -> list[dict]:
    """The training pairs a run folder's recipe names, found from here as `augment --run` finds them (`_run_data`):
    the pool of the run's `eval.fallback: panel` examples for `ask --run` and `serve --run`."""
    from .dataset import NO_PAIRS
    from .recipe import build_recipe
    from .run import NO_PAIRS_FILE, read_recipe

    run_dir = Path(run_dir)
    built = build_recipe(read_recipe(run_dir), str(run_dir / "recipe.json"))
    built.data = _run_data(run_dir, built.data)
    return built.items(run_dir / NO_PAIRS_FILE if built.data.train == NO_PAIRS else None)["train"]


def augment(run_dir: str | os.PathLike, out: str | os.PathLike, max_keep: int = 50, model: str | None = None,
            seed: int = 0, roundtrip: bool = True) -> AugmentResult:
    """Mine a run's valid failures and write validated new training pairs to `out` (JSONL).

    `model` writes the questions (default: the run's base model); with `roundtrip` the run's tuned
    model (its `adapter`, else the writer) must read each question back into SQL with the same result."""
    from .checkpoint import is_complete, load_trained
    from .dataset import NO_PAIRS
    from .db import resolve_db
    from .evaluate import EvalConfig, predict
    from .model import load_model, pick_device
    from .prompt import PromptBuilder
    from .run import NO_PAIRS_FILE, read_recipe, run_base, run_model
    from .schema import schema_text

    run_dir = Path(run_dir)
    recipe_file = run_dir / "recipe.json"
    recipe = read_recipe(run_dir)
    if not isinstance(recipe.get("data"), dict):  # a run's recipe always names its data
        raise SqltuneError(f"{recipe_file} is not a sqltune run's recipe")
    from .recipe import build_recipe

    built = build_recipe(recipe, str(recipe_file))
    built.data = _run_data(run_dir, built.data)  # found from here, though the run was started in another folder
    db = resolve_db(built.data.db)
    # a run with no pairs of its own trained on those it wrote from the database (data.train: synth, in the run folder)
    splits = built.items(run_dir / NO_PAIRS_FILE if built.data.train == NO_PAIRS else None)
    fails = failures(run_dir)
    res = AugmentResult()
    if not fails:
        write_pairs(out, [])
        return res
    wanted = Counter(k for f in fails for k in f["kinds"])
    rng = random.Random(seed)

    # (a) mutate training SQL of the failing kinds
    numeric = _numeric_columns(db)
    sources = sorted(splits["train"], key=lambda it: -sum(wanted[k] for k in sql_kinds(it["sql"])))
    sources = [s for s in sources if sql_kinds(s["sql"]) & set(wanted)][: max_keep * 2]
    mutated = [(src, m) for src in sources for m in mutate(src["sql"], numeric, rng, n=2)]
    # every prompt costs a generation (minutes per batch on a 2-core CPU); ~70 % of candidates survive
    # the filters (BENCHMARKS.md, "Augmentation"), so 1.5x the wanted count is enough
    mutated = mutated[: int(1.5 * max_keep) + 1]

    # the run's model as `sqltune run` found it (a relative model folder: in the folder it was started in)
    m, tok, _ = load_model(model or run_model(run_dir, recipe.get("model")), pick_device(recipe.get("device"), recipe.get("dtype")))
    schema = schema_text(db, built.data.notes)
    questions = _chat(m, tok, [QUESTION_PROMPT.format(schema=schema, sql=sql) for _, sql in mutated],
                      desc="augment: questions for mutated SQL")
    cands = [{"id": f"aug-mut-{i + 1:03d}", "question": _clean_question(q), "sql": sql,
              "provenance": {"method": "mutation", "source": src["id"],
                             "failures": [f["id"] for f in fails if set(f["kinds"]) & sql_kinds(src["sql"])]}}
             for i, ((src, sql), q) in enumerate(zip(mutated, questions))]

    # (b) the model proposes pairs in the style of each failing example
    props = _chat(m, tok, [PROPOSE_PROMPT.format(schema=schema, question=f["question"], sql=f["sql"])
                           for f in fails for _ in range(3)], max_new_tokens=256, desc="augment: proposed pairs")
    for i, (f, text) in enumerate(zip([f for f in fails for _ in range(3)], props)):
        p = _parse_proposal(text)
        cand = {"id": f"aug-gen-{i + 1:03d}", "question": (p or {}).get("question", ""), "sql": (p or {}).get("sql"),
                "provenance": {"method": "proposal", "failures": [f["id"]]}}
        cands.append(cand)

    index = LeakIndex()
    for name, items in splits.items():
        for it in items:
            index.add(it, name, str(it.get("id")))
    res = filter_candidates(cands, Validator(db, index), len(cands) if roundtrip else max_keep)
    if roundtrip and res.kept:
        builder = PromptBuilder(schema, style=(recipe.get("prompt") or {}).get("style", "chat"))
        if is_complete(run_dir / "adapter"):  # the run's tuned model reads the questions back; the writer goes first
            del m
            m, tok = load_trained(run_dir / "adapter", recipe.get("device"), builder=builder,
                                  base=run_base(run_dir, run_dir / "adapter"))[:2]
        ecfg = EvalConfig.from_recipe(recipe, pick_device(recipe.get("device"), recipe.get("dtype")),
                                      fewshot_pool=splits["train"])
        rows = predict(m, tok, builder, res.kept, db, ecfg)
        res = apply_roundtrip(res, db, [r["sql"] for r in rows], max_keep)
    write_pairs(out, res.kept)
    return res
