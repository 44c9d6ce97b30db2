"""Stage: test-suite accuracy (Zhong, Yu & Klein, EMNLP 2020, "distilled test suites").

Execution match on one database over-counts: a prediction can return the gold rows on this data and
still mean something else (`<=` for `<` where no row sits on the boundary, a filter that removes
nothing here, `LIMIT 1` where ties do not occur). A test suite fixes that:

1. `neighbours(sql)`: queries one AST edit away from the gold (operator, predicate, constant,
   column, clause, LIMIT, DISTINCT, aggregate), written with sqlglot.
2. `make_variant(...)`: a small random database with the same schema and constraints (primary
   keys unique and not null, NOT NULL, declared types, foreign keys pointing at existing rows);
   values drawn from the real columns (so their distributions) plus the gold's constants and the
   boundary values +-1, seeded.
3. `build_suite(db, items)`: generate variants and keep the few that tell the most neighbours
   apart from their gold (greedy set cover); they go to a cache folder keyed by a fingerprint of
   the DB, the gold SQL and the settings, never beside the user's DB.
4. `suite_verdicts(...)`: a prediction is `suite`-correct when it is exact on the original DB and
   returns the gold's rows on every kept variant.

On a variant, rows compare as multisets (ORDER BY is already judged on the original DB), and a
variant is skipped for a question whose gold has a LIMIT that cuts through tied rows there (the
gold's own answer would be arbitrary). Every query runs through `sqltune.execute.execute`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp

from .errors import SqltuneError
from .execute import DEFAULT_TIMEOUT, connect_readonly, execute
from .score import exact_match, is_ordered, rows_match

SUITE_VERSION = 1
SUITE_FILE = "suite.json"

_CMP_SWAPS = {
    exp.LT: (exp.LTE, exp.GT), exp.LTE: (exp.LT, exp.GTE), exp.GT: (exp.GTE, exp.LT),
    exp.GTE: (exp.GT, exp.LTE), exp.EQ: (exp.NEQ, exp.LT, exp.GT), exp.NEQ: (exp.EQ,),
}
_AGG_SWAPS = {exp.Max: exp.Min, exp.Min: exp.Max, exp.Sum: exp.Avg, exp.Avg: exp.Sum}
_PREDICATES = (exp.Binary, exp.Like, exp.In, exp.Between, exp.Not, exp.Is, exp.Exists, exp.Paren)


@dataclass
class SuiteConfig:
    """How a suite is built. Every field enters the fingerprint."""

    seed: int = 0
    rows_per_table: int = 30  # most rows in one table of a variant ("tens of rows")
    candidates: int = 40  # most variants generated
    patience: int = 12  # stop after this many variants in a row that tell no new neighbour apart
    keep: int = 10  # most variants kept (greedy set cover)
    max_neighbours: int = 60  # per gold query
    timeout: float = 2.0  # seconds per query while building


# ---------------------------------------------------------------- neighbours
def _parse(sql: str):
    try:
        tree = sqlglot.parse_one(sql.strip().rstrip(";"), read="sqlite")
    except (sqlglot.errors.SqlglotError, RecursionError):
        return None
    return tree


def _edits(node, columns: dict[str, list[str]]):
    """Edits for one node: functions that take the node (in a copy of the tree) and change it."""
    out = []
    cls = type(node)
    in_join = node.find_ancestor(exp.Join) is not None  # `a.id < b.id` in ON: a near cross join, slow and pointless
    for target in () if in_join else _CMP_SWAPS.get(cls, ()):
        out.append(lambda n, t=target: n.replace(t(this=n.this, expression=n.expression)))
    if isinstance(node, (exp.And, exp.Or)):
        other = exp.Or if isinstance(node, exp.And) else exp.And
        out.append(lambda n, o=other: n.replace(o(this=n.this, expression=n.expression)))
    # drop one predicate of a conjunction/disjunction, or a whole WHERE/HAVING with one predicate
    if isinstance(node, _PREDICATES) and isinstance(node.parent, (exp.And, exp.Or)):
        out.append(lambda n: n.parent.replace(n.parent.expression if n.arg_key == "this" else n.parent.this))
    if isinstance(node, (exp.Where, exp.Having)):
        out.append(lambda n: n.pop())
    if isinstance(node, exp.Literal) and not isinstance(node.parent, (exp.Limit, exp.Offset, exp.Ordered)):
        if node.is_string:
            if node.this:
                out.append(lambda n: n.replace(exp.Literal.string(n.this[:-1] if len(n.this) > 1 else n.this + "x")))
        else:
            try:
                v = float(node.this)
            except ValueError:
                v = None
            if v is not None:
                is_int = re.fullmatch(r"\d+", node.this) is not None
                for d in (1, -1):
                    w = int(v) + d if is_int else v + d
                    out.append(lambda n, w=w: n.replace(exp.Literal.number(w)))
    if isinstance(node, exp.Select):
        out.append(lambda n: n.set("distinct", None if n.args.get("distinct") else exp.Distinct()))
        for key in ("group", "order", "limit"):
            if node.args.get(key):
                out.append(lambda n, k=key: n.set(k, None))
        if len(node.expressions) > 1:
            for i in range(len(node.expressions)):
                out.append(lambda n, i=i: n.set("expressions", [e for j, e in enumerate(n.expressions) if j != i]))
    if isinstance(node, exp.Limit):
        lit = node.expression
        if isinstance(lit, exp.Literal) and lit.this.isdigit():
            out.append(lambda n: n.set("expression", exp.Literal.number(int(n.expression.this) + 1)))
    if isinstance(node, exp.Ordered):
        out.append(lambda n: n.set("desc", not n.args.get("desc")))
    if cls in _AGG_SWAPS:
        out.append(lambda n, t=_AGG_SWAPS[cls]: n.replace(t(this=n.this)))
    if isinstance(node, exp.Count) and not isinstance(node.this, exp.Star):
        if isinstance(node.this, exp.Distinct):
            out.append(lambda n: n.replace(exp.Count(this=n.this.expressions[0])))
        else:
            out.append(lambda n: n.replace(exp.Count(this=exp.Distinct(expressions=[n.this]))))
    if isinstance(node, exp.Join) and not node.args.get("side") and node.args.get("on"):
        out.append(lambda n: n.set("side", "LEFT"))
    if isinstance(node, exp.Column) and node.name and not isinstance(node.parent, exp.Ordered):
        # another column of a table that has this one (same position in the query): the wrong column
        for alt in columns.get(node.name.lower(), [])[:2]:
            out.append(lambda n, a=alt: n.set("this", exp.to_identifier(a)))
    return out


def neighbours(sql: str, columns: dict[str, list[str]] | None = None, limit: int = 60) -> list[str]:
    """Queries one AST edit away from `sql` (deduplicated, `sql` itself left out).

    `columns` maps a lower-case column name to a few other column names of its table (for the
    "wrong column" edit); without it that edit is skipped. Unparseable SQL has no neighbours.
    """
    tree = _parse(sql)
    if tree is None:
        return []
    columns = columns or {}
    own = tree.sql(dialect="sqlite")
    seen, out = {own}, []
    for i, node in enumerate(tree.walk()):
        for edit in _edits(node, columns):
            t = tree.copy()
            target = next(n for j, n in enumerate(t.walk()) if j == i)
            try:
                edit(target)
                text = t.sql(dialect="sqlite")
            except Exception:  # noqa: BLE001 - an edit that does not apply to this shape is skipped
                continue
            if text not in seen:
                seen.add(text)
                out.append(text)
            if len(out) >= limit:
                return out
    return out


# ---------------------------------------------------------------- schema and value pools
@dataclass
class _Col:
    name: str
    type: str
    notnull: bool
    pk: int
    values: list = field(default_factory=list)  # real values, with repeats (their distribution)
    special: list = field(default_factory=list)  # gold constants and boundary values

    @property
    def numeric(self) -> bool:
        t = self.type.upper()
        return any(k in t for k in ("INT", "REAL", "FLOA", "DOUB", "NUM", "DEC", "BOOL"))

    @property
    def integer(self) -> bool:
        return "INT" in self.type.upper()

    @property
    def distinct_text(self) -> bool:
        """A text column whose real values are all different (names, titles, codes): unique in practice
        though no constraint says so. Variants keep it unique, or every GROUP BY name vs GROUP BY id and
        every DISTINCT would "disagree" on duplicates the real data can never hold."""
        real = [v for v in self.values if v is not None]
        return not self.numeric and len(real) >= 3 and len(set(real)) == len(real)


@dataclass
class _Table:
    name: str
    create: str
    cols: list[_Col]
    fks: list[tuple[str, str, str | None]]  # (column, parent table, parent column or None = its pk)
    nrows: int


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _open_trusted(db: Path) -> sqlite3.Connection:
    """Read-only connection for our own schema queries (never model SQL)."""
    con = connect_readonly(db)
    con.set_authorizer(None)
    return con


def read_schema(db: Path, sample: int = 2000) -> tuple[list[_Table], list[tuple[str, str]]]:
    """Tables (with up to `sample` real values per column) and the other CREATE statements."""
    con = _open_trusted(db)
    try:
        tables, extra = [], []
        for kind, name, sql in con.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND sql IS NOT NULL ORDER BY rowid"
        ).fetchall():
            if kind != "table":
                extra.append((kind, sql))  # indexes (unique ones keep their constraint), views, triggers
                continue
            info = con.execute(f"PRAGMA table_info({_q(name)})").fetchall()
            fks = [(r[3], r[2], r[4]) for r in con.execute(f"PRAGMA foreign_key_list({_q(name)})")]
            nrows = con.execute(f"SELECT COUNT(*) FROM {_q(name)}").fetchone()[0]
            rows = con.execute(f"SELECT * FROM {_q(name)} LIMIT {sample}").fetchall()
            cols = [_Col(c[1], c[2] or "", bool(c[3]), c[5], [r[k] for r in rows]) for k, c in enumerate(info)]
            tables.append(_Table(name, sql, cols, fks, nrows))
        return tables, extra
    finally:
        con.close()


def _literal_value(node):
    neg = isinstance(node, exp.Neg)
    lit = node.this if neg else node
    if not isinstance(lit, exp.Literal):
        return None
    if lit.is_string:
        return lit.this
    try:
        v = int(lit.this) if re.fullmatch(r"\d+", lit.this) else float(lit.this)
    except ValueError:
        return None
    return -v if neg else v


def gold_constants(sqls: list[str]) -> dict[str, set]:
    """Constants the gold compares a column with, by lower-case column name (with +-1 for numbers)."""
    out: dict[str, set] = {}
    for sql in sqls:
        tree = _parse(sql)
        if tree is None:
            continue
        for node in tree.walk():
            if not isinstance(node, (exp.Binary, exp.In, exp.Between)) or isinstance(node, (exp.And, exp.Or)):
                continue
            col = node.this if isinstance(node.this, exp.Column) else node.args.get("expression")
            if not isinstance(col, exp.Column):
                continue
            lits = [x for v in node.args.values() for x in (v if isinstance(v, list) else [v])
                    if x is not col and isinstance(x, (exp.Literal, exp.Neg))]
            bucket = out.setdefault(col.name.lower(), set())
            for lit in lits:
                v = _literal_value(lit)
                if v is None:
                    continue
                if isinstance(v, str):
                    core = v.strip("%")
                    bucket.update({core, core + "x"} if isinstance(node, exp.Like) else {v, v + "x"})
                else:
                    bucket.update({v, v - 1, v + 1})
    return out


# ---------------------------------------------------------------- variants
def _order(tables: list[_Table]) -> list[_Table]:
    """Parents before children (foreign keys); cycles broken in schema order."""
    by = {t.name.lower(): t for t in tables}
    done, out = set(), []

    def visit(t, stack):
        if t.name.lower() in done or t.name.lower() in stack:
            return
        for _, parent, _ in t.fks:
            p = by.get(parent.lower())
            if p is not None and p is not t:
                visit(p, stack | {t.name.lower()})
        done.add(t.name.lower())
        out.append(t)

    for t in tables:
        visit(t, frozenset())
    return out


def _draw(rng: random.Random, col: _Col, p_special: float = 0.3):
    special = [v for v in col.special if isinstance(v, (int, float)) == col.numeric]
    real = col.values
    if special and (not real or rng.random() < p_special):
        v = rng.choice(special)
        return int(v) if col.integer and isinstance(v, float) and v.is_integer() else v
    if real:
        v = rng.choice(real)
        if v is None and (col.notnull or col.pk):
            v = next((x for x in real if x is not None), None)
        if v is not None or not (col.notnull or col.pk):
            return v
    return rng.randint(0, 100) if col.numeric else f"v{rng.randint(0, 999)}"


def _fresh(rng: random.Random, col: _Col, used: set):
    """A value of `col`'s kind that is not in `used` (for primary keys)."""
    pool = [v for v in set(col.values) | set(col.special) if v is not None and v not in used
            and (isinstance(v, (int, float)) == col.numeric)]
    if pool:
        return rng.choice(sorted(pool, key=repr))
    if col.numeric:
        top = max([v for v in used if isinstance(v, (int, float))] or [0])
        return int(top) + 1
    k = len(used)
    while f"k{k}" in used:
        k += 1
    return f"k{k}"


def make_variant(tables: list[_Table], extra: list[tuple[str, str]], path: Path, seed: int, rows_per_table: int = 30) -> Path:
    """Write one random database with the schema of `tables` to `path` (a new file)."""
    rng = random.Random(seed)
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode = OFF")  # a throwaway file: no journal, no fsync
        con.execute("PRAGMA synchronous = OFF")
        con.execute("BEGIN")
        for t in tables:
            con.execute(t.create)
        for kind, sql in extra:
            if kind == "index":  # before the rows: a UNIQUE index turns away duplicate rows
                con.execute(sql)
        made: dict[str, list[dict]] = {}
        for t in _order(tables):
            n = rng.randint(1, rows_per_table)
            pk_cols = [c for c in t.cols if c.pk]
            fk_of = {c.lower(): (p, pc) for c, p, pc in t.fks}
            rows, keys, used = [], set(), {c.name: set() for c in pk_cols}
            used.update({c.name: set() for c in t.cols if c.distinct_text and not c.pk})
            for _ in range(n * 3):
                if len(rows) >= n:
                    break
                row = {}
                for c in t.cols:
                    if c.name.lower() in fk_of:
                        continue
                    if (len(pk_cols) == 1 and c.pk) or (c.distinct_text and not c.pk):
                        row[c.name] = _fresh(rng, c, used[c.name])
                    else:
                        row[c.name] = _draw(rng, c)
                for c in t.cols:  # foreign keys: an existing parent value (self references included)
                    if c.name.lower() not in fk_of:
                        continue
                    parent, pcol = fk_of[c.name.lower()]
                    prow = made.get(parent.lower()) if parent.lower() != t.name.lower() else rows + [row]
                    ptab = next((x for x in tables if x.name.lower() == parent.lower()), None)
                    if pcol is None and ptab is not None:
                        pcol = next((x.name for x in ptab.cols if x.pk), None)
                    vals = [r.get(pcol) for r in prow or [] if pcol and r.get(pcol) is not None]
                    null_ok = not (c.notnull or c.pk) and None in c.values
                    if vals and not (null_ok and rng.random() < 0.1):
                        row[c.name] = rng.choice(vals)
                    elif null_ok or not vals and ptab is None:
                        row[c.name] = None if null_ok else _draw(rng, c)
                    else:
                        row = None  # no parent row to point at: skip this row
                        break
                if row is None:
                    continue
                key = tuple(row[c.name] for c in pk_cols)
                if pk_cols and (key in keys or any(v is None for v in key)):
                    continue
                cols = list(row)
                try:
                    con.execute(f"INSERT INTO {_q(t.name)} ({', '.join(map(_q, cols))}) VALUES ({', '.join('?' * len(cols))})",
                                [row[c] for c in cols])
                except sqlite3.Error:
                    continue  # a CHECK or UNIQUE constraint said no: draw another row
                keys.add(key)
                for name in used:
                    if name in row:
                        used[name].add(row[name])
                rows.append(row)
            made[t.name.lower()] = rows
        for kind, sql in extra:
            if kind != "index":
                try:
                    con.execute(sql)
                except sqlite3.Error:
                    pass  # a view or trigger SQLite will not create here: the variant works without it
        con.execute("COMMIT")
    finally:
        con.close()
    return path


# ---------------------------------------------------------------- judging on a variant
def _limit_probe(sql: str) -> str | None | bool:
    """For a gold query with a top-level LIMIT: SQL that shows whether the LIMIT cuts through ties.

    Returns False when the gold has no LIMIT (always usable), None when the gold's answer on a
    variant cannot be trusted (LIMIT without ORDER BY, OFFSET, a non-literal LIMIT).
    """
    tree = _parse(sql)
    if not isinstance(tree, exp.Select) or not tree.args.get("limit"):
        return False
    lim = tree.args["limit"].expression
    order = tree.args.get("order")
    if order is None or tree.args.get("offset") or not (isinstance(lim, exp.Literal) and lim.this.isdigit()):
        return None
    t = tree.copy()
    aliases = {e.alias.lower(): e.this for e in t.expressions if isinstance(e, exp.Alias)}
    keys = []
    for o in t.args["order"].expressions:
        key = o.this
        if isinstance(key, exp.Column) and not key.table and key.name.lower() in aliases:
            key = aliases[key.name.lower()]  # ORDER BY an output alias: the select list cannot name it
        elif isinstance(key, exp.Literal) and key.is_int and 0 < int(key.this) <= len(t.expressions):
            key = t.expressions[int(key.this) - 1].unalias()  # ORDER BY 2
        keys.append(key.copy())
    t.set("expressions", t.expressions + keys)
    t.set("limit", exp.Limit(expression=exp.Literal.number(int(lim.this) + 1)))
    return t.sql(dialect="sqlite")


class Judge:
    """Gold results per (question, variant), computed once."""

    def __init__(self, golds: list[str], timeout: float):
        self.golds = golds
        self.timeout = timeout
        self.probes = [_limit_probe(g) for g in golds]
        self.cache: dict[tuple[int, int], object] = {}

    def gold(self, i: int, v: int, con) -> list | None:
        """Gold rows of question i on variant v, or None when the variant cannot judge it."""
        key = (i, v)
        if key not in self.cache:
            self.cache[key] = self._gold(i, con)
        return self.cache[key]

    def _gold(self, i, con):
        probe = self.probes[i]
        if probe is None:
            return None
        res = execute(con, self.golds[i], self.timeout)
        if not res.ok:
            return None
        if probe:
            k = len(res.rows)
            pr = execute(con, probe, self.timeout)
            if not pr.ok:
                return None
            if len(pr.rows) > k:
                m = len(pr.columns) - len(res.columns)
                a, b = pr.rows[k - 1][-m:], pr.rows[k][-m:]
                if k == 0 or rows_match([a], [b], ordered=True):
                    return None  # the LIMIT cuts through tied rows: the gold's own answer is arbitrary
        return res.rows


def _same(gold_rows: list, res) -> bool:
    return res.ok and rows_match(gold_rows, res.rows, ordered=False)


# ---------------------------------------------------------------- fingerprint and cache
def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(db_sha: str, golds: list[str], cfg: SuiteConfig) -> str:
    h = hashlib.sha256()
    h.update(f"v{SUITE_VERSION}\n{db_sha}\n{json.dumps(asdict(cfg), sort_keys=True)}\n".encode())
    for g in golds:
        h.update(g.encode("utf-8", "replace") + b"\0")
    return h.hexdigest()


def default_dir(fp: str) -> Path:
    from .paths import cache_dir

    return cache_dir() / "testsuites" / fp[:16]


def load_suite(folder: str | os.PathLike) -> dict:
    """suite.json of a built suite, with its folder; a SqltuneError if it is not one."""
    folder = Path(folder)
    f = folder / SUITE_FILE
    if not f.is_file():
        raise SqltuneError(f"{folder} is not a test suite (no {SUITE_FILE}; build one with `sqltune testsuite build`)")
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SqltuneError(f"{f}: unreadable ({e})") from None
    if meta.get("version") != SUITE_VERSION:
        raise SqltuneError(f"{f}: test suite version {meta.get('version')} (expected {SUITE_VERSION}); rebuild it")
    missing = [v["file"] for v in meta["variants"] if not (folder / v["file"]).is_file()]
    if missing:
        raise SqltuneError(f"{folder}: variant {missing[0]} is missing; rebuild the suite")
    meta["folder"] = str(folder)
    return meta


# ---------------------------------------------------------------- build
@dataclass
class BuildResult:
    folder: Path
    cached: bool
    meta: dict

    def summary(self) -> dict:
        qs = self.meta["questions"]
        return {"questions": len(qs), "neighbours": sum(q["neighbours"] for q in qs),
                "told_apart_by_db": sum(q["killed_by_db"] for q in qs),
                "told_apart_by_variants": sum(q["killed_by_variants"] for q in qs),
                "never_told_apart": sum(q["alive"] for q in qs),
                "variants": len(self.meta["variants"]), "candidates": self.meta["candidates"],
                "seconds": self.meta["seconds"], "cached": self.cached}


def column_alternatives(tables: list[_Table]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t in tables:
        names = [c.name for c in t.cols]
        for k, c in enumerate(t.cols):
            alts = [n for n in names[k + 1:] + names[:k] if n.lower() != c.name.lower()]
            out.setdefault(c.name.lower(), alts[:2])
    return out


def build_suite(db: str | os.PathLike, items: list[dict], out: str | os.PathLike | None = None,
                cfg: SuiteConfig | None = None, progress=None) -> BuildResult:
    """Build (or reuse from the cache) the distilled test suite of `items`' gold SQL on `db`."""
    cfg = cfg or SuiteConfig()
    db = Path(db)
    if not db.is_file():
        raise SqltuneError(f"database not found: {db}")
    golds = [str(it.get("sql") or "") for it in items]
    if not golds:
        raise SqltuneError("no gold queries to build a test suite from")
    db_sha = file_sha256(db)
    fp = fingerprint(db_sha, golds, cfg)
    folder = Path(out) if out else default_dir(fp)
    if folder.resolve() == db.resolve() or folder.resolve() == db.resolve().parent:
        raise SqltuneError(f"--out {folder}: the suite's variants must not live beside the database; name a new folder")
    if folder.exists():
        if not folder.is_dir():
            raise SqltuneError(f"--out {folder} is a file")
        if (folder / SUITE_FILE).is_file():
            try:
                meta = load_suite(folder)
                if meta.get("fingerprint") == fp:
                    return BuildResult(folder, True, meta)
            except SqltuneError:
                pass  # stale or broken: rebuilt below
        elif any(folder.iterdir()):
            raise SqltuneError(f"--out {folder} is a non-empty folder that is not a test suite; name a new folder")

    t0 = time.monotonic()
    tables, extra = read_schema(db)
    consts = gold_constants(golds)
    for t in tables:
        for c in t.cols:
            c.special = sorted(consts.get(c.name.lower(), ()), key=repr)
    alts = column_alternatives(tables)
    judge = Judge(golds, cfg.timeout)

    con = connect_readonly(db)
    alive: dict[int, list[str]] = {}
    stats = []
    try:
        for i, g in enumerate(golds):
            gres = execute(con, g, cfg.timeout)
            if not gres.ok:
                raise SqltuneError(f"gold query {items[i].get('id', i)} fails on the database ({gres.error_kind}): {gres.error}")
            ordered = is_ordered(g)
            keep, killed = [], 0
            for nb in neighbours(g, alts, cfg.max_neighbours):
                r = execute(con, nb, cfg.timeout)
                if not r.ok:
                    continue  # not a query that could be a prediction that exact accepts
                if exact_match(gres.rows, r.rows, ordered):
                    keep.append(nb)
                else:
                    killed += 1
            alive[i] = keep
            stats.append({"id": str(items[i].get("id", i)), "neighbours": killed + len(keep), "killed_by_db": killed})
    finally:
        con.close()

    parent = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".suite-", dir=parent))
    try:
        kills: list[set] = []
        files: list[str] = []
        idle = 0
        for k in range(cfg.candidates):
            if not any(alive.values()) or idle >= cfg.patience:
                break
            name = f"variant-{k:03d}.sqlite"
            path = make_variant(tables, extra, tmp / name, seed=cfg.seed * 100_003 + k, rows_per_table=cfg.rows_per_table)
            vcon = connect_readonly(path)
            told = set()
            try:
                for i, nbs in alive.items():
                    if not nbs:
                        continue
                    grows = judge.gold(i, len(files), vcon)
                    if grows is None:
                        continue
                    for nb in nbs:
                        r = execute(vcon, nb, cfg.timeout)
                        if r.ok and not rows_match(grows, r.rows, ordered=False):
                            told.add((i, nb))
            finally:
                vcon.close()
            if told:
                for i, nb in told:
                    alive[i].remove(nb)
                kills.append(told)
                files.append(name)
                judge.cache = {key: v for key, v in judge.cache.items() if key[1] < len(files)}
                idle = 0
            else:
                path.unlink()
                judge.cache = {key: v for key, v in judge.cache.items() if key[1] < len(files)}
                idle += 1
            if progress:
                progress(k + 1, len(files), sum(map(len, alive.values())))
        candidates = k + 1 if cfg.candidates else 0
        # greedy set cover: fewest variants that keep every neighbour told apart, at most cfg.keep
        chosen, left = [], set().union(*kills) if kills else set()
        while left and len(chosen) < cfg.keep:
            best = max(range(len(kills)), key=lambda j: (len(kills[j] & left), -j))
            if not kills[best] & left:
                break
            chosen.append(best)
            left -= kills[best]
        for j, f in enumerate(files):
            if j not in chosen:
                (tmp / f).unlink()
        told_by = {i: sum(1 for j in chosen for (q, _) in kills[j] if q == i) for i in alive}
        for i, s in enumerate(stats):
            s["killed_by_variants"] = told_by.get(i, 0)
            s["alive"] = s["neighbours"] - s["killed_by_db"] - s["killed_by_variants"]
            s["never_told_apart"] = sorted(set(alive[i]) | {nb for j, ks in enumerate(kills) if j not in chosen
                                                            for (q, nb) in ks if q == i})
        meta = {
            "version": SUITE_VERSION, "fingerprint": fp, "db": str(db.resolve()), "db_sha256": db_sha,
            "config": asdict(cfg), "candidates": candidates, "seconds": round(time.monotonic() - t0, 2),
            "variants": [{"file": files[j], "tells_apart": len(kills[j])} for j in sorted(chosen)],
            "questions": [dict(s, sql=g) for s, g in zip(stats, golds)],
        }
        (tmp / SUITE_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        if folder.exists():
            if (folder / SUITE_FILE).is_file():
                shutil.rmtree(folder)  # our own stale suite (it has our marker file)
            else:
                folder.rmdir()  # empty (checked above)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    meta["folder"] = str(folder)
    return BuildResult(folder, False, meta)


# ---------------------------------------------------------------- scoring
def suite_verdicts(suite: str | os.PathLike | dict, db: str | os.PathLike, golds: list[str],
                   preds: list[str | None], exact: list[bool], timeout: float = DEFAULT_TIMEOUT) -> list[bool]:
    """`suite` per pair: exact on the original DB and the gold's rows on every kept variant.

    Only pairs that exact accepts are run on the variants (suite implies exact).
    """
    meta = suite if isinstance(suite, dict) else load_suite(suite)
    if Path(db).is_file() and file_sha256(Path(db)) != meta["db_sha256"]:
        raise SqltuneError(f"the test suite in {meta['folder']} was built for another database "
                           f"(or the database changed since); rebuild it with `sqltune testsuite build`")
    folder = Path(meta["folder"])
    judge = Judge(golds, timeout)
    out = [bool(e) for e in exact]
    cons = [connect_readonly(folder / v["file"]) for v in meta["variants"]]
    try:
        for i, ok in enumerate(exact):
            if not ok:
                continue
            for v, vcon in enumerate(cons):
                grows = judge.gold(i, v, vcon)
                if grows is None:
                    continue
                if not _same(grows, execute(vcon, preds[i], timeout)):
                    out[i] = False
                    break
    finally:
        for c in cons:
            c.close()
    return out


def disagreements(report: dict) -> list[dict]:
    """Examples that exact counts right and the suite rejects ("right by accident")."""
    return [e for e in report.get("examples", []) if e.get("exact") and e.get("suite") is False]


__all__ = ["SuiteConfig", "BuildResult", "neighbours", "make_variant", "build_suite", "load_suite",
           "suite_verdicts", "disagreements", "gold_constants", "fingerprint"]
