"""Stage: in-domain synthetic question → SQL pairs for one database (issue 14).

From the database alone (schema, keys, real values) plus the user's seed pairs (possibly none),
write K validated pairs. Candidate SQL comes from four sources, cheapest first:

- `schema`: graded-complexity templates filled from the schema and real values: single table
  (filter, count, top-1, extremes), join along a foreign key, aggregate + GROUP BY / HAVING, nested
  (comparison with a subquery, NOT IN), window (RANK). Each carries a plain template question.
- `instantiate`: each seed's skeleton filled with other values of the same columns, other columns of
  the same type, or (single-table seeds) another table with columns of the same types (sqlglot AST).
- `mutate`: structural mutations of the seeds (`augment.mutate`: other aggregate, comparison, sort
  direction, numeric column).
- `model`: the writer model writes SQL of each complexity level, shown the schema, sampled values and
  up to three seed examples.

Every candidate goes through the one validation pipeline (`sqltune.pairs`): executes read-only,
returns rows, is deterministic, leaks nothing into valid/test, is not a duplicate of a seed or a kept
pair (same SQL, or same skeleton and same result). The writer model (`teacher` if given, else
`model`) then writes a question for each survivor in one of several styles, and a pair survives a
consistency check: the writer reads the question back into SQL (`evaluate.predict`, the prompt
used for training) and that SQL must return the candidate's result; with `reader` a second model
must read it back to the same result too (one model checking itself passes its own misreadings).
Every kept pair has provenance. The model-written SQL prompts take the complexity levels in turn, and when more
than K pairs survive the cut takes the query shapes in turn (`pairs.balanced_cut`): the read-back keeps far fewer
joins than single-table queries, and a set without joins cannot teach them; the summary counts the kept pairs'
shapes beside the seeds'.

`choose_checkpoint` is the checkpoint rule the training stage uses when synthetic pairs are in play.
"""

from __future__ import annotations

import math
import os
import random
import re
import time
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from .errors import SqltuneError
# a name as the generated SQL writes it: as the schema text shows it (bare where SQLite reads it so, quoted
# otherwise), so the training pairs and the prompt spell every name alike; the catalogue's own queries too
from .schema import describe
from .schema import ident as _q
from .pairs import (READER_REJECT, ROUNDTRIP_REJECT, PairResult, Validator, balanced_cut, chat, clean_question,
                    filter_candidates, interleave, roundtrip_agrees, shape_counts, write_pairs)
from .synth_config import SOURCES, SQL_TOKENS_FLOOR, SQL_TOKENS_MARGIN, STYLES, SynthConfig  # noqa: F401 - SOURCES and SynthConfig are this stage's API too

LEVELS = {
    "single": "a query on a single table with a WHERE filter",
    "join": "a query that joins two tables along a foreign key",
    "aggregate": "a query with an aggregate, GROUP BY and possibly HAVING",
    "nested": "a query with a nested subquery (IN, NOT IN, or a comparison with a subquery)",
    "window": "a query that uses a window function such as RANK() OVER (ORDER BY ...)",
}
_NUMERIC = ("INT", "REAL", "NUM", "FLOA", "DOUB", "DEC")


# ----------------------------------------------------------------------------- the database's catalog
@dataclass
class Col:
    name: str
    table: str
    numeric: bool
    pk: bool = False
    fk: str | None = None
    values: list = field(default_factory=list)  # distinct real values (a sample)


@dataclass
class Catalog:
    tables: dict[str, list[Col]]
    rows: dict[str, int]
    fks: list[tuple[str, str, str, str]]  # (table, column, ref_table, ref_column)

    def col(self, table: str, name: str) -> Col | None:
        for c in self.tables.get(table, []):
            if c.name.lower() == name.lower():
                return c
        return None

    def table_of(self, name: str) -> str | None:
        for t in self.tables:
            if t.lower() == name.lower():
                return t
        return None


def catalog(db, notes=None, max_values: int = 20) -> Catalog:
    """Tables, columns (numeric or not), keys and up to `max_values` real values per column."""
    from .execute import connect_readonly

    schema = describe(db, notes)
    tables = [t for t in schema.tables if t.rows > 0]
    if not tables:
        raise SqltuneError(f"{db} has no tables with rows: there is nothing to synthesise pairs from")
    con = connect_readonly(db)
    con.set_authorizer(None)
    cat = Catalog({}, {}, [])
    try:
        for t in tables:
            cols = []
            for c in t.columns:
                vals = [r[0] for r in con.execute(
                    f"SELECT DISTINCT {_q(c.name)} FROM {_q(t.name)} WHERE {_q(c.name)} IS NOT NULL "
                    f"AND {_q(c.name)} != '' ORDER BY {_q(c.name)} LIMIT {max_values}")]
                vals = [int(v) if isinstance(v, float) and v.is_integer() else v for v in vals]
                numeric = any(x in c.type for x in _NUMERIC) or (bool(vals) and all(
                    isinstance(v, (int, float)) for v in vals))
                cols.append(Col(c.name, t.name, numeric, c.pk, c.fk, vals))
                if c.ref:
                    rt, rc = c.ref
                    cat.fks.append((t.name, c.name, rt, rc))
            cat.tables[t.name] = cols
            cat.rows[t.name] = t.rows
    finally:
        con.close()
    cat.fks = [fk for fk in cat.fks if cat.table_of(fk[2]) and cat.col(cat.table_of(fk[2]), fk[3])]
    return cat


def _lit(v) -> str:
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(v) if isinstance(v, float) else str(v)


def _words(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).replace("_", " ").strip().lower()


# ----------------------------------------------------------------------------- source: schema templates
def _id_like(name: str) -> bool:
    """An identifier's name: id, student_id, Template_ID, StudentID."""
    return bool(re.search(r"(^|[_\s])id$", name, re.I) or re.search(r"[a-z]ID$", name))


def from_schema(cat: Catalog, rng: random.Random, per_table: int = 40) -> list[dict]:
    """Graded templates filled from the schema and real values; each with a template question."""
    out: list[dict] = []
    seen: set[str] = set()

    def add(level: str, sql: str, question: str, tables: list[str]):
        if sql in seen:
            return
        seen.add(sql)
        out.append({"sql": sql, "template_question": question,
                    "provenance": {"method": "schema", "level": level, "tables": tables}})

    for t, cols in cat.tables.items():
        T, tw = _q(t), _words(t)
        plain = [c for c in cols if not c.pk and not c.fk and c.values] or [c for c in cols if c.values]
        # no arithmetic on identifiers: AVG(friend_id) or MAX(liked_id) ran, returned rows and got questions
        # ("how many friends does the average student have?") that no reader would ask (session 7's manual read)
        nums = [c for c in plain if c.numeric and not (c.pk or c.fk or _id_like(c.name))]
        texts = [c for c in plain if not c.numeric]
        for _ in range(per_table):
            shown = rng.choice(plain) if plain else None
            if shown is None:
                break
            S = _q(shown.name)
            if texts:
                f = rng.choice(texts)
                v = rng.choice(f.values)
                if f is not shown:
                    add("single", f"SELECT {S} FROM {T} WHERE {_q(f.name)} = {_lit(v)}",
                        f"What is the {_words(shown.name)} of the {tw} whose {_words(f.name)} is {v}?", [t])
                add("single", f"SELECT COUNT(*) FROM {T} WHERE {_q(f.name)} = {_lit(v)}",
                    f"How many {tw} records have {_words(f.name)} {v}?", [t])
                add("aggregate", f"SELECT {_q(f.name)}, COUNT(*) FROM {T} GROUP BY {_q(f.name)}",
                    f"How many {tw} records are there for each {_words(f.name)}?", [t])
                add("aggregate", f"SELECT {_q(f.name)} FROM {T} GROUP BY {_q(f.name)} HAVING COUNT(*) > 1",
                    f"Which {_words(f.name)} values appear in more than one {tw} record?", [t])
            if nums:
                n = rng.choice(nums)
                v = n.values[len(n.values) // 2]
                N = _q(n.name)
                if n is not shown:
                    add("single", f"SELECT {S} FROM {T} WHERE {N} > {_lit(v)}",
                        f"List the {_words(shown.name)} of {tw} with {_words(n.name)} greater than {v}.", [t])
                    add("single", f"SELECT {S} FROM {T} ORDER BY {N} DESC LIMIT 1",
                        f"What is the {_words(shown.name)} of the {tw} with the highest {_words(n.name)}?", [t])
                    add("nested", f"SELECT {S} FROM {T} WHERE {N} > (SELECT AVG({N}) FROM {T})",
                        f"Which {tw} have a {_words(n.name)} above the average? Give their {_words(shown.name)}.", [t])
                    add("window", f"SELECT {S}, {N}, RANK() OVER (ORDER BY {N} DESC) FROM {T}",
                        f"Rank every {tw} by {_words(n.name)}, highest first, showing its {_words(shown.name)}.", [t])
                agg = rng.choice(["AVG", "MAX", "MIN", "SUM"])
                word = {"AVG": "average", "MAX": "maximum", "MIN": "minimum", "SUM": "total"}[agg]
                add("single", f"SELECT {agg}({N}) FROM {T}", f"What is the {word} {_words(n.name)} of all {tw}?", [t])
                if texts:
                    g = rng.choice(texts)
                    add("aggregate", f"SELECT {_q(g.name)}, {agg}({N}) FROM {T} GROUP BY {_q(g.name)}",
                        f"What is the {word} {_words(n.name)} for each {_words(g.name)} of {tw}?", [t])
    for t, c, rt, rc in cat.fks:
        rt = cat.table_of(rt)
        for _ in range(max(1, per_table // 3)):
            shown = [x for x in cat.tables[rt] if not x.pk and x.values]
            # a link table's own columns are often part of its key (course_arrange: Course_ID, Teacher_ID, Grade)
            filt = [x for x in cat.tables[t] if not x.pk and not x.fk and x.values] or \
                [x for x in cat.tables[t] if not x.fk and x.values and not _id_like(x.name)]
            if not shown or not filt:
                break
            s, f = rng.choice(shown), rng.choice(filt)
            v = rng.choice(f.values)
            op, opw = ("=", "is") if not f.numeric else (">", "is greater than")
            add("join", f"SELECT DISTINCT T2.{_q(s.name)} FROM {_q(t)} AS T1 JOIN {_q(rt)} AS T2 "
                        f"ON T1.{_q(c)} = T2.{_q(rc)} WHERE T1.{_q(f.name)} {op} {_lit(v)}",
                f"What are the {_words(s.name)} of the {_words(rt)} linked to {_words(t)} records whose "
                f"{_words(f.name)} {opw} {v}?", [t, rt])
            add("aggregate", f"SELECT T2.{_q(s.name)}, COUNT(*) FROM {_q(t)} AS T1 JOIN {_q(rt)} AS T2 "
                             f"ON T1.{_q(c)} = T2.{_q(rc)} GROUP BY T2.{_q(rc)}",
                f"For each {_words(rt)}, give its {_words(s.name)} and how many {_words(t)} records it has.", [t, rt])
            add("nested", f"SELECT {_q(s.name)} FROM {_q(rt)} WHERE {_q(rc)} NOT IN (SELECT {_q(c)} FROM {_q(t)} "
                          f"WHERE {_q(c)} IS NOT NULL)",
                f"Which {_words(rt)} have no {_words(t)} records? Give their {_words(s.name)}.", [t, rt])
            # the joins users ask for most (session 14: the kept sets held 5-18 % joins, the devsuite's test 12-65 %):
            # a column of each table side by side, the child's rows filtered on the parent's value, and the parent
            # of the child row with the highest number
            on = f"FROM {_q(t)} AS T1 JOIN {_q(rt)} AS T2 ON T1.{_q(c)} = T2.{_q(rc)}"
            a = rng.choice(filt)
            add("join", f"SELECT T1.{_q(a.name)}, T2.{_q(s.name)} {on}",
                f"Show the {_words(a.name)} of each {_words(t)} record and the {_words(s.name)} of its "
                f"{_words(rt)}.", [t, rt])
            pf = [x for x in cat.tables[rt] if not x.pk and not x.fk and x.values and not x.numeric]
            if pf:
                g = rng.choice(pf)
                w = rng.choice(g.values)
                add("join", f"SELECT T1.{_q(a.name)} {on} WHERE T2.{_q(g.name)} = {_lit(w)}",
                    f"What are the {_words(a.name)} of the {_words(t)} records whose {_words(rt)} has "
                    f"{_words(g.name)} {w}?", [t, rt])
            nums = [x for x in filt if x.numeric and not _id_like(x.name)]
            if nums:
                n = rng.choice(nums)
                add("join", f"SELECT T2.{_q(s.name)} {on} ORDER BY T1.{_q(n.name)} DESC LIMIT 1",
                    f"What is the {_words(s.name)} of the {_words(rt)} of the {_words(t)} record with the highest "
                    f"{_words(n.name)}?", [t, rt])
    # a link table between two parents (course_arrange: course <- arrange -> teacher; network_1's Friend: a student
    # and a friend, both Highschooler): a column of each parent side by side, the many-to-many join Spider asks most
    by_table: dict[str, list[tuple[str, str, str]]] = {}
    for t, c, rt, rc in cat.fks:
        by_table.setdefault(t, []).append((c, cat.table_of(rt), rc))
    for t, links in by_table.items():
        for i, (c1, r1, k1) in enumerate(links):
            for c2, r2, k2 in links[i + 1:]:
                a = [x for x in cat.tables[r1] if not x.pk and x.values]
                b = [x for x in cat.tables[r2] if not x.pk and x.values]
                if not a or not b:
                    continue
                for _ in range(max(1, per_table // 10)):
                    x, y = rng.choice(a), rng.choice(b)
                    role1, role2 = (_words(c).removesuffix(" id") or _words(r) for c, r in ((c1, r1), (c2, r2)))
                    add("join", f"SELECT T2.{_q(x.name)}, T3.{_q(y.name)} FROM {_q(t)} AS T1 JOIN {_q(r1)} AS T2 ON "
                                f"T1.{_q(c1)} = T2.{_q(k1)} JOIN {_q(r2)} AS T3 ON T1.{_q(c2)} = T3.{_q(k2)}",
                        f"For each {_words(t)} record, show the {_words(x.name)} of its {role1} and the "
                        f"{_words(y.name)} of its {role2}.", [t, r1, r2])
    rng.shuffle(out)
    return out


# ----------------------------------------------------------------------------- source: seed skeletons
def _parse(sql: str):
    try:
        return sqlglot.parse_one(sql.strip().rstrip(";"), read="sqlite")
    except (sqlglot.errors.SqlglotError, RecursionError):
        return None


def _alias_map(tree, cat: Catalog) -> dict[str, str]:
    m = {}
    for t in tree.find_all(exp.Table):
        real = cat.table_of(t.name)
        if real:
            m[t.name.lower()] = real
            if t.alias:
                m[t.alias.lower()] = real
    return m


def _column_table(col: exp.Column, amap: dict[str, str], cat: Catalog) -> str | None:
    if col.table:
        return amap.get(col.table.lower())
    for t in dict.fromkeys(amap.values()):
        if cat.col(t, col.name):
            return t
    return None


def _retarget(col: exp.Column, new, rng: random.Random) -> None:
    """Point `col` at column `new`; a literal it is compared with becomes one of `new`'s real values."""
    col.set("this", exp.to_identifier(new.name))
    parent = col.parent
    if isinstance(parent, (exp.EQ, exp.NEQ, exp.GT, exp.LT, exp.GTE, exp.LTE)) and isinstance(parent.expression, exp.Literal):
        v = rng.choice(new.values)
        parent.set("expression", exp.Literal.string(v) if isinstance(v, str) else exp.Literal.number(v))


def instantiate(sql: str, cat: Catalog, rng: random.Random, n: int = 6) -> list[tuple[str, str, dict]]:
    """Variants of a seed's skeleton: (sql, how, {old literal: new literal}). Other real values of the
    compared columns, other columns of the same type in the same table, or (single-table seeds) another
    table whose columns have the same types. The literal map lets the seed's question follow a pure
    value change (`retarget_question`)."""
    tree = _parse(sql)
    if tree is None:
        return []
    amap = _alias_map(tree, cat)
    if not amap:
        return []
    out: list[tuple[str, str, dict]] = []
    join_cols = {id(c) for j in tree.find_all(exp.Join) for c in j.find_all(exp.Column)}

    def emit(t, how, values=None):
        s = t.sql(dialect="sqlite")
        if s not in (x for x, _, _ in out) and s != tree.sql(dialect="sqlite"):
            out.append((s, how, values or {}))

    for _ in range(n * 3):
        if len(out) >= n:
            break
        t = tree.copy()
        op = rng.choice(["values", "column", "table"])
        cols = [c for c in t.find_all(exp.Column) if id(c) not in join_cols]
        if op == "values":
            changed = {}
            for pred in t.find_all(exp.EQ, exp.GT, exp.LT, exp.GTE, exp.LTE, exp.NEQ, exp.Like):
                c, lit = pred.this, pred.expression
                if isinstance(lit, exp.Column) and lit.this.quoted and not lit.table and \
                        not any(cat.col(x, lit.name) for x in amap.values()):
                    lit = exp.Literal.string(lit.name)  # Spider-style "double-quoted" string literal
                if not isinstance(c, exp.Column) or not isinstance(lit, exp.Literal):
                    continue
                tab = _column_table(c, amap, cat)
                info = cat.col(tab, c.name) if tab else None
                if not info or not info.values or isinstance(pred, exp.Like):
                    continue
                v = rng.choice(info.values)
                if lit.is_string != isinstance(v, str):
                    continue
                changed[lit.this] = str(v)
                pred.set("expression", exp.Literal.string(v) if isinstance(v, str) else exp.Literal.number(v))
            if changed:
                emit(t, "other values", changed)
        elif op == "column" and cols:
            c = rng.choice(cols)
            tab = _column_table(c, amap, cat)
            info = cat.col(tab, c.name) if tab else None
            if not info or info.pk or info.fk:
                continue
            used = {x.name.lower() for x in cols}
            alts = [x for x in cat.tables[tab] if x.numeric == info.numeric and not x.pk and not x.fk
                    and x.name.lower() not in used and x.values]
            if not alts:
                continue
            new = rng.choice(alts)
            for x in t.find_all(exp.Column):
                if x.name.lower() == c.name.lower() and _column_table(x, amap, cat) == tab:
                    _retarget(x, new, rng)
            emit(t, f"column {c.name} -> {new.name}")
        elif op == "table" and len(set(amap.values())) == 1 and len(cat.tables) > 1:
            src = next(iter(amap.values()))
            dst = rng.choice([x for x in cat.tables if x != src])
            mapping, taken = {}, set()
            ok = True
            for c in {x.name.lower(): x for x in t.find_all(exp.Column)}.values():
                info = cat.col(src, c.name)
                if info is None:
                    continue
                alts = [x for x in cat.tables[dst] if x.numeric == info.numeric and x.pk == info.pk
                        and x.name not in taken and x.values] or \
                       [x for x in cat.tables[dst] if x.numeric == info.numeric and x.name not in taken and x.values]
                if not alts:
                    ok = False
                    break
                mapping[c.name.lower()] = rng.choice(alts)
                taken.add(mapping[c.name.lower()].name)
            if not ok or not mapping:
                continue
            for x in t.find_all(exp.Table):
                x.set("this", exp.to_identifier(dst))
            for x in t.find_all(exp.Column):
                if x.name.lower() in mapping:
                    new = mapping[x.name.lower()]
                    _retarget(x, new, rng)
            emit(t, f"table {src} -> {dst}")
    return out


def retarget_question(question: str, values: dict[str, str]) -> str | None:
    """The seed's question with each replaced literal swapped for its new value, when every old value
    appears in it word for word (otherwise None: the question cannot follow the change safely)."""
    out = question
    for old, new in values.items():
        pat = re.compile(r"(?<![\w.])" + re.escape(str(old)) + r"(?![\w])", re.IGNORECASE)
        if not str(old).strip() or len(pat.findall(out)) != 1:
            return None
        out = pat.sub(lambda _: str(new), out)
    return out if out != question else None


# ----------------------------------------------------------------------------- model prompts
SQL_PROMPT = ("Database schema:\n{schema}\n\n{examples}Write one new SQLite query about the table {table}: "
              "{level}. Use real values shown in the schema. Reply with the SQL query only.")
# the schema first: every question prompt of a batch then shares the instruction + schema prefix, whose KV
# cache `generate_texts` computes once (with the style first, each prompt paid for the schema again)
QUESTION_PROMPT = ("Here is a SQLite query on the database below.\n\nSchema:\n{schema}\n\nSQL:\n{sql}\n\n"
                   "Write the one question this query answers, as {style}. Mention every condition and value in the "
                   "query. Reply with the question only.")


def _examples_text(seeds: list[dict], rng: random.Random, k: int = 3) -> str:
    if not seeds:
        return ""
    picks = rng.sample(seeds, min(k, len(seeds)))
    return "".join(f"Example question: {s['question']}\nExample SQL: {s['sql']}\n\n" for s in picks)


# ----------------------------------------------------------------------------- the API
def check_seeds(db, seeds: list[dict], timeout: float = 5.0) -> None:
    """Seeds whose SQL fails stop synthesis with one clear line."""
    from .execute import execute

    for i, s in enumerate(seeds, 1):
        if not s.get("sql") or not s.get("question"):
            raise SqltuneError(f"seed pair {s.get('id', i)}: needs a question and SQL")
        res = execute(db, s["sql"], timeout=timeout)
        if not res.ok:
            raise SqltuneError(f"seed pair {s.get('id', i)}: its SQL fails ({res.error_kind}): {res.error}")


def candidates(db, seeds: list[dict], cfg: SynthConfig, cat: Catalog | None = None) -> list[dict]:
    """The deterministic candidates (schema templates, seed instantiations, seed mutations), interleaved
    so that every source is represented when the budget cuts the list."""
    from .augment import mutate

    cat = cat or catalog(db)
    rng = random.Random(cfg.seed)
    pools: list[list[dict]] = []
    if "instantiate" in cfg.sources:
        pool = []
        for s in seeds:
            for sql, how, values in instantiate(s["sql"], cat, rng, n=8):
                c = {"sql": sql, "provenance": {"method": "instantiate", "source": s.get("id"), "how": how}}
                if values and (q := retarget_question(s.get("question", ""), values)):
                    c["template_question"] = q
                pool.append(c)
        rng.shuffle(pool)
        pools.append(pool)
    if "mutate" in cfg.sources:
        pool = []
        for s in seeds:  # numeric, non-key columns of the seed's own tables
            tree = _parse(s["sql"])
            tabs = set(_alias_map(tree, cat).values()) if tree is not None else set()
            numeric = {c.name.lower() for t in tabs for c in cat.tables[t] if c.numeric and not c.pk and not c.fk}
            pool += [{"sql": m, "provenance": {"method": "mutation", "source": s.get("id")}}
                     for m in mutate(s["sql"], numeric, rng, n=4)]
        rng.shuffle(pool)
        pools.append(pool)
    if "schema" in cfg.sources:
        pools.append(from_schema(cat, rng))
    return interleave(*pools)


def synth(db, out, seeds: list[dict] = (), heldout: dict[str, list[dict]] | None = None, *,
          model: str | None = None, teacher: str | None = None, reader: str | None = None, notes=None,
          prompt_style: str = "chat", device=None, cfg: SynthConfig | None = None) -> PairResult:
    """Write up to `cfg.k` validated pairs for `db` to `out` (JSONL, atomic; summary beside it).

    `seeds`: the user's pairs (may be empty). `heldout`: {"valid": items, "test": items} nothing may
    leak into. `teacher` (else `model`) writes SQL and questions and reads the questions back; `reader`
    (optional) is a second model that must read each question back to the candidate's result as well."""
    from .check import LeakIndex
    from .db import resolve_db
    from .schema import schema_text

    cfg = (cfg or SynthConfig()).validate()
    if cfg.k < 1:
        raise SqltuneError("synth: k must be at least 1")
    if reader and not (cfg.readback and cfg.questions == "model"):
        raise SqltuneError("synth: a second reader checks the model's read-back; it needs model questions and "
                           "the read-back on (not --template-questions or --no-readback)")
    db = resolve_db(db)
    seeds = list(seeds)
    check_seeds(db, seeds)
    cat = catalog(db, notes)
    rng = random.Random(cfg.seed)
    index = LeakIndex()
    for name, items in (heldout or {}).items():
        for it in items:
            index.add(it, name, str(it.get("id")))
    validator = Validator(db, index, dedupe_results=True)
    for s in seeds:
        validator.add(s)
    use_model = cfg.questions == "model"

    writer = tok = builder = second = sql_limit = None
    if use_model:
        if reader:  # loaded first: a reader that cannot be loaded fails before any work
            second = _load_writer(reader, device, role="reader")
        writer, tok = _load_writer(teacher or model, device)
        schema = schema_text(db, notes)
        from .prompt import PromptBuilder

        builder = PromptBuilder(schema, style=prompt_style)

    seconds: dict[str, float] = {}  # wall time per stage, in the summary
    sql_stats = None
    t = time.perf_counter()
    cands = candidates(db, seeds, cfg, cat)
    seconds["templates"] = time.perf_counter() - t
    if use_model and "model" in cfg.sources:
        from .generate import GenerationStats

        t, sql_stats = time.perf_counter(), GenerationStats()
        prompts, meta = [], []
        # the levels in turn (single, join, aggregate, ..., single, join, ...): the SQL filters stop at `want`
        # survivors, and level by level that cut fell on the last levels (session 14: tvshow's and orchestra's
        # 300 kept pairs held no model-written nested or window query, 5 and 17 % joins)
        for _ in range(cfg.model_sql_per_level):
            for level, what in LEVELS.items():
                table = rng.choice(list(cat.tables))
                prompts.append(SQL_PROMPT.format(schema=schema, examples=_examples_text(seeds, rng), table=table,
                                                 level=what))
                meta.append(level)
        from .extract import extract_sql, is_complete

        # a row ends where its statement does (what follows cannot change `extract_sql`); the batch still
        # decodes until its longest reply, so the SQL has its own token limit (BENCHMARKS.md, "Session 10 leases")
        sql_limit = cfg.sql_max_new_tokens or sql_token_limit(tok, seeds)
        texts = chat(writer, tok, prompts, max_new_tokens=sql_limit, batch_size=cfg.batch_size,
                     desc="synth: model-written SQL", progress=cfg.progress, temperature=cfg.sql_temperature,
                     seed=cfg.seed, stop=is_complete, stats=sql_stats)
        seconds["model_sql"] = time.perf_counter() - t
        model_cands = [{"sql": extract_sql(t), "provenance": {"method": "model", "level": lv}}
                       for t, lv in zip(texts, meta)]
        cands = interleave(model_cands, cands)
    if not use_model:
        cands = [c for c in cands if c.get("template_question")]

    # 1. SQL filters (cheap; before any question is written)
    for i, c in enumerate(cands):
        c["id"] = f"syn-{i + 1:05d}"
        c["question"] = c.get("template_question") if not use_model else "?"
    want = cfg.k if not use_model else max(cfg.k, int(math.ceil(cfg.k * cfg.overgenerate)))
    if use_model:
        validator.check_questions = False
    t = time.perf_counter()
    res = filter_candidates([c for c in cands if c.get("sql")], validator, want, progress=cfg.progress,
                            desc="synth: executing candidates")
    seconds["sql_filters"] = time.perf_counter() - t
    res.seconds = seconds  # the question rounds add theirs
    res.tried += sum(1 for c in cands if not c.get("sql"))
    if n_nosql := sum(1 for c in cands if not c.get("sql")):
        res.rejected["no SQL in the model's reply"] += n_nosql

    # 2. questions in several styles, 3. read-back consistency check; with `question_attempts` > 1 the SQL whose
    # question a reader read back to another result gets a new question in the next style and is read again
    if use_model and res.kept:
        pending, kept = res.kept, []
        for attempt in range(cfg.question_attempts):
            last = attempt == cfg.question_attempts - 1
            ok, failed = _question_round(pending, attempt, res, validator, db, cfg, writer, tok, builder, schema,
                                         second, count_rejects=last)
            kept += ok
            pending = failed
            if not pending or len(kept) >= cfg.k:
                break
        res.kept = kept
    res.kept = balanced_cut(res.kept, cfg.k)  # more than k survived: the common shapes give way, not the rare
    for c in res.kept:
        c.pop("template_question", None)
        c["provenance"].update({"writer": "template" if not use_model else (teacher or model or "default"),
                                "readback": bool(use_model and cfg.readback),
                                **({"reader": reader} if reader else {})})
    summary = dict(res.summary(), seed_shapes=shape_counts(seeds), k=cfg.k, seeds=len(seeds),
                   sources=list(cfg.sources), styles=list(cfg.styles),
                   teacher=teacher, reader=reader, model=model, model_sql_per_level=cfg.model_sql_per_level,
                   sql_temperature=cfg.sql_temperature, readback_samples=cfg.readback_samples,
                   question_attempts=cfg.question_attempts, overgenerate=cfg.overgenerate, batch_size=cfg.batch_size,
                   sql_max_new_tokens=sql_limit or cfg.sql_max_new_tokens,
                   model_sql_generation=sql_stats.to_dict() if sql_stats is not None else None,
                   rejected_pairs=len(res.rejected_pairs))
    write_pairs(out, res.kept, summary, rejected=res.rejected_pairs)
    return res


def sql_token_limit(tok, seeds: list[dict]) -> int:
    """The model-written SQL's token limit when the settings leave it open: `SQL_TOKENS_FLOOR`, or the longest
    seed query as a fenced reply + `SQL_TOKENS_MARGIN` when that is more (the model is shown seeds as examples;
    a reply far longer than all of them is nearly always one that rambles, and it holds up its whole batch)."""
    longest = max((len(tok(f"```sql\n{s['sql']}\n```", add_special_tokens=False)["input_ids"]) for s in seeds),
                  default=0)
    return max(SQL_TOKENS_FLOOR, longest + SQL_TOKENS_MARGIN)


def _question_round(cands: list[dict], attempt: int, res, validator, db, cfg: SynthConfig, writer, tok, builder,
                    schema: str, second, count_rejects: bool) -> tuple[list[dict], list[dict]]:
    """One question per candidate SQL (first round: the styles in turn; later: the next style), then the
    read-back(s).

    Returns (kept, failed): `failed` are the candidates a reader read back to another result (they may get
    another question); a question that fails its own filters (too short, a held-out or kept question) is
    counted in `res.rejected` at once, a failed read-back only when `count_rejects` (the last attempt).
    The time of the questions and of each reader is added to `res.seconds`."""
    def took(stage: str, since: float) -> None:
        res.seconds[stage] = res.seconds.get(stage, 0.0) + time.perf_counter() - since

    def reject(c: dict, reason: str, **read) -> None:
        res.rejected[reason] += 1
        res.rejected_pairs.append({**{k: v for k, v in c.items() if k != "template_question"},
                                   "provenance": {**c["provenance"], **read, "rejected": reason}})

    styles = list(cfg.styles)
    for i, c in enumerate(cands):  # first round: the styles in turn; later rounds: each SQL's next style
        for key in ("roundtrip_sql", "reader_sql"):  # an earlier attempt's readings
            c["provenance"].pop(key, None)
        c["provenance"]["style"] = styles[(styles.index(c["provenance"]["style"]) + 1 if attempt else i) % len(styles)]
        if cfg.question_attempts > 1:
            c["provenance"]["question_attempt"] = attempt + 1
    prompts = [QUESTION_PROMPT.format(style=STYLES[c["provenance"]["style"]], schema=schema, sql=c["sql"]) for c in cands]
    desc = "synth: questions" + (f" (attempt {attempt + 1})" if attempt else "")
    t = time.perf_counter()
    qs = chat(writer, tok, prompts, max_new_tokens=96, batch_size=cfg.batch_size, desc=desc, progress=cfg.progress)
    took("questions", t)
    asked = []
    for c, q in zip(cands, qs):
        c["question"] = clean_question(q)
        if reason := validator.question_reason(c):
            reject(c, reason)
        else:
            validator.add_question(c)
            asked.append(c)
    failed = []
    readers = ([(writer, tok, ROUNDTRIP_REJECT, "roundtrip_sql")] if cfg.readback else []) + \
              ([(*second, READER_REJECT, "reader_sql")] if second is not None else [])
    for model, mtok, reason, key in readers:
        if not asked:
            break
        t = time.perf_counter()
        sqls = readback_sql(model, mtok, builder, [c["question"] for c in asked], db, cfg)
        agree = roundtrip_agrees(db, asked, sqls)
        took("second_reader" if key == "reader_sql" else "readback", t)
        nxt = []
        for c, ok, sql in zip(asked, agree, sqls):
            if ok:
                c["provenance"][key] = sql
                nxt.append(c)
            else:
                failed.append(c)
                if count_rejects:
                    reject(c, reason, **{key: sql})
        asked = nxt
    return asked, failed


def readback_sql(model, tok, builder, questions: list[str], db, cfg: SynthConfig) -> list[str | None]:
    """The SQL the model reads each question back into, through the one evaluator (`evaluate.predict`):
    greedy, or with `readback_samples` > 1 the majority result of sampled SQL (`sqltune.vote`)."""
    from .evaluate import EvalConfig, predict
    from .vote import VoteSettings

    vote = VoteSettings(cfg.readback_samples, seed=cfg.seed) if cfg.readback_samples > 1 else None
    ecfg = EvalConfig(batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, progress=cfg.progress, vote=vote)
    rows = predict(model, tok, builder, [{"id": str(i), "question": q} for i, q in enumerate(questions)], db, ecfg)
    return [r["sql"] for r in rows]


def _load_writer(name: str | None, device=None, role: str = "writer"):
    from .model import load_model

    try:
        m, tok, _ = load_model(name, device)
    except SqltuneError as e:
        raise SqltuneError(f"synth: the {role} model {name or '(default)'} cannot be loaded: {e}") from None
    except (OSError, ValueError, KeyError) as e:
        raise SqltuneError(f"synth: the {role} model {name or '(default)'} cannot be loaded: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return m, tok


def split_heldout(pairs: list[dict], fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(training part, held-out part) of the synthetic pairs; the held-out part joins the checkpoint choice."""
    if fraction <= 0 or len(pairs) < 2:
        return list(pairs), []
    idx = list(range(len(pairs)))
    random.Random(seed).shuffle(idx)
    n = max(1, int(round(len(pairs) * fraction)))
    held = set(idx[:n])
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


# ----------------------------------------------------------------------------- checkpoint choice
def noise_margin(p0: float, n: int, z: float) -> float:
    """`z` standard errors of a proportion at p0 on n questions, and at least one question (1/n)."""
    return max(z * math.sqrt(max(p0 * (1 - p0), 0.0) / max(n, 1)), 1.0 / max(n, 1))


def _split_line(r: dict, valid_ids: set) -> dict:
    """An evaluation line over valid + the synthetic slice, with `exact` on valid alone and `guard_exact`
    on the slice (from its `exact_ids`)."""
    ids = set(r.get("exact_ids") or [])
    n_guard = r["n"] - len(valid_ids)
    return {**r, "exact": len(ids & valid_ids) / max(len(valid_ids), 1),
            "guard_exact": len(ids - valid_ids) / n_guard if n_guard > 0 else None, "n_guard": n_guard}


def _judged(history: list[dict], n: int, z: float, valid_ids) -> tuple[list[dict], int, dict | None, object]:
    """What both rules judge: the lines (split into valid / synthetic slice with `valid_ids`), the number of
    questions a gain or loss is measured on, step 0's line (None without one), and the slice guard: a
    predicate that a line's slice exact did not fall below step 0's by more than the slice's margin
    (always true without a slice)."""
    lines = history
    if valid_ids is not None:
        valid_ids = {str(i) for i in valid_ids}
        lines = [_split_line(r, valid_ids) for r in history]
        n = len(valid_ids)
    base = next((r for r in lines if r["step"] == 0), None)
    if base is None or valid_ids is None or base.get("guard_exact") is None:
        return lines, n, base, lambda r: True
    floor = base["guard_exact"] - noise_margin(base["guard_exact"], base["n_guard"], z)
    return lines, n, base, lambda r: r["guard_exact"] >= floor - 1e-9


def choose_checkpoint(history: list[dict], n: int, z: float = 1.0, valid_ids=None) -> dict | None:
    """The checkpoint to keep, from the trainer's evaluation lines (`step`, `exact` on `n` questions).

    Rule: the untuned model (step 0) stays unless the best trained checkpoint's exact beats it by more
    than the noise of `n` questions: `z` standard errors of a proportion, sqrt(p0 (1 - p0) / n) at the
    untuned accuracy p0, and by more than one question (margin at least 1/n). Among trained checkpoints the
    highest exact wins (ties: the later step; chosen on dev halves of train splits, BENCHMARKS.md "Session 25",
    where it never lost to the earlier rule, lower valid loss then the earlier step).

    With `valid_ids` (the lines were scored on valid + a held-out slice of synthetic pairs): the gain is
    judged on the valid questions alone (`n` = their number), and the synthetic slice is a guard: a
    checkpoint whose exact on the slice falls below step 0's by more than the slice's own margin is not
    eligible. The returned line is the trainer's own (its `exact` the pooled one).

    Why: a valid split of a few questions moves by 1/n per question, so "best exact" alone picks
    whichever checkpoint got lucky (measured: a devsuite DB went 0.50 → 1.00 on 4 valid questions
    while its test fell 0.77 → 0.64); demanding a gain above one standard error keeps the untuned model
    when the evidence is noise. The synthetic slice cannot measure a gain: its pairs survived the
    writer's own read-back, so when the writer is the model being tuned, step 0 answers nearly all of
    them (measured on the devsuite, 1.5B: 0.89-1.00 on the slice at step 0 for 12 of 12 DBs), and pooled
    with valid it made every trained checkpoint lose. It does show forgetting (every SFT run lowered it).
    """
    if not history:
        return None
    key = lambda r: (r["exact"], r["step"])  # noqa: E731
    lines, n, base, guard_ok = _judged(history, n, z, valid_ids)
    trained = [r for r in lines if r["step"] != 0]
    if base is None or not trained:
        best = max(lines, key=key)
        return history[lines.index(best)]
    trained = [r for r in trained if guard_ok(r)]
    if not trained:
        return history[lines.index(base)]
    best = max(trained, key=key)
    p0 = base["exact"]
    chosen = best if best["exact"] - p0 > noise_margin(p0, n, z) + 1e-9 else base
    return history[lines.index(chosen)]


def choose_latest(history: list[dict], n: int, z: float = 1.0, valid_ids=None) -> dict | None:
    """The *latest* checkpoint that the evidence does not say is worse (recipe `rl.choose: last`).

    Where `choose_checkpoint` asks a trained checkpoint to prove a gain, this one asks it only not to show
    a loss: the latest trained line is kept unless its valid exact falls below step 0's by more than the
    noise margin of `n` questions (`noise_margin`, as above), or (with `valid_ids`) its exact on the synthetic
    slice falls below step 0's by more than the slice's margin; then the latest earlier line that passes
    both, else step 0. It is for a stage whose benefit was established on a development suite rather
    than on each database's few valid questions (GRPO: whether its steps pay is to be decided on the
    devsuite's valid splits pooled; BENCHMARKS.md, "The third devsuite sweep"; the `default` recipe's
    fine-tuning, `train.choose: last`: on dev halves of the exoplanets and devsuite train splits the last
    checkpoint beat the noise rule's choice in 41 of 60 runs and lost in 5, BENCHMARKS.md "Session 25"). On a
    valid split that starts at 100 % no rule that demands a gain can ever take a step; this one can.
    """
    if not history:
        return None
    lines, n, base, guard_ok = _judged(history, n, z, valid_ids)
    if base is None:
        return history[lines.index(max(lines, key=lambda r: r["step"]))]
    floor = base["exact"] - noise_margin(base["exact"], n, z)
    ok = [r for r in lines if r["step"] != 0 and r["exact"] >= floor - 1e-9 and guard_ok(r)]
    chosen = max(ok, key=lambda r: r["step"]) if ok else base
    return history[lines.index(chosen)]


RULES = {"noise": choose_checkpoint, "last": choose_latest}


def checkpoint_rule(n: int, z: float = 1.0, valid_ids=None, mode: str = "noise"):
    """The checkpoint rule `mode` (`noise`: `choose_checkpoint`, a trained checkpoint must show a gain beyond
    the noise; `last`: `choose_latest`, the latest one that shows no loss) bound to `n`, `z` (and
    `valid_ids`), in the form the trainer's `choose` hook takes."""
    if mode not in RULES:
        raise SqltuneError(f"unknown checkpoint rule {mode!r}; one of: {', '.join(RULES)}")
    fn = RULES[mode]
    return lambda history, _n=None: fn(history, n, z, valid_ids)


def weighted_training_items(seeds: list[dict], synthetic: list[dict], seed_weight: int) -> list[dict]:
    """Seeds repeated `seed_weight` times (ids suffixed so each copy is distinct), then the synthetic pairs."""
    out = []
    for r in range(max(1, seed_weight)):
        out += [dict(s, id=f"{s.get('id')}" + (f"#w{r}" if r else "")) for s in seeds]
    return out + [{"id": p["id"], "question": p["question"], "sql": p["sql"]} for p in synthetic]


def load_seeds(spec: str | os.PathLike | None) -> list[dict]:
    if spec is None:
        return []
    from .dataset import load_items

    return load_items(spec)


__all__ = ["SynthConfig", "synth", "candidates", "catalog", "from_schema", "instantiate", "choose_checkpoint", "choose_latest",
           "checkpoint_rule", "split_heldout", "weighted_training_items", "STYLES", "SOURCES"]
