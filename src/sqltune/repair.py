"""Stage (after generate, before score): repair a model query that names a column where it is not.

The small model's most common failing query names a column that exists, but in another table: `T2.x` where `x` is
T1's, `reference_planets.mass` without the join that brings `reference_planets` in, `Name` from `song` when it is
`singer`'s. SQLite answers "no such column" and the answer is lost; re-prompting the 0.5B with the error fixed none of
70 such queries (BENCHMARKS.md, "Self-correction"). `repair_sql` rewrites the query against the schema instead, with
no model call. For each column of a SELECT that does not resolve there, the first rule that applies:

1. exactly one other table of the same FROM has the column: qualify it with that table;
2. the qualifier names a table of the database that is not in the FROM (or no table of the FROM has the column):
   a table one foreign key away from the FROM's tables has it, along exactly one key: JOIN it on that key;
3. exactly one column of the FROM's tables is spelled almost like it (difflib ratio >= `CLOSE`): use that column.

A column that two tables of the FROM have (SQLite's "ambiguous column name") is qualified with the first of them.
A double-quoted name that resolves nowhere is left alone (SQLite reads it as a string). Correlated references to an
outer query, aliases of the SELECT list and columns of subqueries in the FROM are not touched.

`fix` runs the loop: execute, and while the query fails with an unknown or ambiguous column, repair and execute
again (at most `ROUNDS` times); it returns the first query that runs, or the original when none does. The repaired
query is hostile input like any other: it goes through the same read-only executor.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import Scope, traverse_scope

from .execute import DEFAULT_TIMEOUT, Result, execute

CLOSE = 0.8  # difflib ratio from which a misspelt column name is read as the schema's column
ROUNDS = 4  # repair + execute at most this many times per query
PASSES = 12  # rewrites per repair (one column each)


@dataclass(frozen=True)
class Catalog:
    """What repair needs of a database: its tables' columns and its foreign keys, names as the schema spells them."""

    columns: dict  # table -> tuple of column names
    keys: tuple  # (table, column, ref_table, ref_column)

    def table(self, name: str) -> str | None:
        low = name.lower()
        return next((t for t in self.columns if t.lower() == low), None)

    def has(self, table: str, column: str) -> str | None:
        low = column.lower()
        return next((c for c in self.columns.get(table, ()) if c.lower() == low), None)

    def links(self, a: str, b: str) -> list[tuple[str, str]]:
        """Foreign keys between tables a and b, as (column of a, column of b)."""
        out = [(c, rc) for t, c, rt, rc in self.keys if t == a and rt == b]
        return out + [(rc, c) for t, c, rt, rc in self.keys if t == b and rt == a]


def catalog(db_path: str | os.PathLike) -> Catalog:
    """The Catalog of a SQLite file, read-only, from its catalogue alone (cached by path and modification time)."""
    p = Path(db_path)
    return _catalog(str(p.resolve()), p.stat().st_mtime_ns)


@lru_cache(maxsize=32)
def _catalog(path: str, _mtime: int) -> Catalog:
    from .errors import SqltuneError
    from .schema import foreign_keys, table_names

    try:
        cols, refs = table_names(path), foreign_keys(path)
    except SqltuneError:  # an unreadable schema: nothing to repair against
        return Catalog({}, ())
    named = {t.lower(): t for t in cols}
    keys = []
    for t, c, rt, rc in refs:  # keys to a table and column the schema has (not a bare key's rowid)
        ref = named.get(str(rt).lower())
        to = next((x for x in cols.get(ref, ()) if x.lower() == str(rc).lower()), None)
        if to is not None:
            keys.append((t, c, ref, to))
    return Catalog({t: tuple(v) for t, v in cols.items()}, tuple(keys))


def _sources(scope: Scope, cat: Catalog) -> list[tuple[str, str]]:
    """(name in the query, schema table) of each table of the scope's FROM/JOINs, in query order."""
    out = []
    for name, (_node, source) in scope.selected_sources.items():
        if isinstance(source, exp.Table):
            t = cat.table(source.name)
            if t is not None:
                out.append((name, t))
    return out


def _derived_outputs(scope: Scope) -> set[str] | None:
    """Lower-cased output names of the scope's subqueries and CTEs in the FROM; None when one has a star."""
    out: set[str] = set()
    for _name, (_node, source) in scope.selected_sources.items():
        if isinstance(source, Scope):
            sel = source.expression
            if isinstance(sel, exp.Query):
                if any(isinstance(s, exp.Star) or (isinstance(s, exp.Column) and s.is_star) for s in sel.selects):
                    return None
                out |= {n.lower() for n in sel.named_selects}
    return out


def _outer_has(scope: Scope, cat: Catalog, qualifier: str, name: str) -> bool:
    """Whether an enclosing query defines `qualifier` (or, unqualified, a table with the column): a correlated reference."""
    p = scope.parent
    while p is not None:
        if qualifier:
            if qualifier in p.selected_sources:
                return True
        elif any(cat.has(t, name) for _n, t in _sources(p, cat)):
            return True
        p = p.parent
    return False


def _tautology(col: exp.Column, table: str) -> bool:
    """Whether qualifying `col` with `table` makes a comparison of a column with itself (`s.Shop_ID = s.Shop_ID`, from
    a join condition whose one side names a table without that column): a rewrite that runs and means nothing."""
    parent = col.parent
    if not isinstance(parent, (exp.EQ, exp.NEQ)):
        return False
    other = parent.expression if parent.this is col else parent.this
    return (isinstance(other, exp.Column) and other.name.lower() == col.name.lower()
            and other.table.lower() == table.lower())


def _close(name: str, candidates: list[tuple[str, str]]) -> tuple[str, str] | None:
    """The one (source, column) whose column is spelt almost like `name`, or None (none or a tie)."""
    scored = sorted(((SequenceMatcher(None, name.lower(), c.lower()).ratio(), s, c) for s, c in candidates), reverse=True)
    if not scored or scored[0][0] < CLOSE or (len(scored) > 1 and scored[1][0] == scored[0][0]):
        return None
    return scored[0][1], scored[0][2]


def _join_for(scope: Scope, cat: Catalog, sources: list[tuple[str, str]], column: str, table: str | None):
    """(new table, its column, source name, source column) for the one FK join that brings `column` in, else None.
    `table`: the schema table the query named (its qualifier), or None to look at every neighbour."""
    in_from = {t for _n, t in sources}
    names = {n.lower() for n in scope.selected_sources}
    options = []
    for t in ([table] if table else cat.columns):
        if t in in_from or t.lower() in names or not cat.has(t, column):
            continue
        for src_name, src in sources:
            for src_col, t_col in cat.links(src, t):
                options.append((t, t_col, src_name, src_col))
    return options[0] if len(options) == 1 else None


def _rewrite_one(tree: exp.Expression, cat: Catalog) -> bool:
    """Fix the first column of `tree` that does not resolve (in place); False when there is none it can fix."""
    for scope in traverse_scope(tree):
        select = scope.expression
        if not isinstance(select, exp.Select):
            continue
        sources = _sources(scope, cat)
        if not sources:
            continue
        derived = _derived_outputs(scope)
        if derived is None:
            continue
        aliases = {e.alias.lower() for e in select.selects if isinstance(e, exp.Alias)}
        by_name = dict(sources)
        for col in scope.columns:
            if col.is_star or not isinstance(col.this, exp.Identifier) or col.find_ancestor(exp.Select) is not select:
                continue  # a star, or a subquery's column (its own scope sees it)
            name, q = col.name, col.table
            if q:
                if q in scope.selected_sources:
                    t = by_name.get(q)
                    if t is None or cat.has(t, name):
                        continue  # a subquery's output, or fine
                    others = [n for n, ot in sources if n != q and cat.has(ot, name)]
                    if len(others) == 1 and not _tautology(col, others[0]):  # rule 1
                        col.set("table", exp.to_identifier(others[0]))
                        return True
                    if _add_join(select, col, cat, sources, scope, None, alias=None):  # rule 2
                        return True
                    near = _close(name, [(q, c) for c in cat.columns[t]])  # rule 3
                    if near:
                        col.set("this", exp.to_identifier(near[1]))
                        return True
                    continue
                if _outer_has(scope, cat, q, name):
                    continue
                named = cat.table(q)
                if named is not None and cat.has(named, name):
                    here = [n for n, t in sources if t == named]
                    if len(here) == 1:  # the table is in the FROM under another name
                        col.set("table", exp.to_identifier(here[0]))
                        return True
                    if _add_join(select, col, cat, sources, scope, named, alias=None):  # rule 2
                        return True
                    continue
                if named is None:  # an alias the query never defined: resolve the column, keep the alias if joined
                    owners = [n for n, t in sources if cat.has(t, name)]
                    if len(owners) == 1:
                        col.set("table", exp.to_identifier(owners[0]))
                        return True
                    if not owners and _add_join(select, col, cat, sources, scope, None, alias=q):
                        return True
                continue
            # unqualified
            owners = [n for n, t in sources if cat.has(t, name)]
            if len(owners) == 1 or name.lower() in derived:
                continue
            if len(owners) > 1:
                if any(isinstance(s, Scope) for _n, (_x, s) in scope.selected_sources.items()):
                    continue
                col.set("table", exp.to_identifier(owners[0]))
                return True
            if col.this.quoted or name.lower() in aliases or _outer_has(scope, cat, "", name):
                continue
            if _add_join(select, col, cat, sources, scope, None, alias=None):  # rule 2
                return True
            near = _close(name, [(n, c) for n, t in sources for c in cat.columns[t]])  # rule 3
            if near:
                col.set("this", exp.to_identifier(near[1]))
                if len(sources) > 1:
                    col.set("table", exp.to_identifier(near[0]))
                return True
    return False


def _add_join(select: exp.Select, col: exp.Column, cat: Catalog, sources, scope, table: str | None, alias: str | None) -> bool:
    found = _join_for(scope, cat, sources, col.name, table)
    if found is None:
        return False
    t, t_col, src_name, src_col = found
    ref = alias or t
    node = exp.Table(this=exp.to_identifier(t))
    if alias:
        node.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
    on = exp.EQ(this=exp.column(src_col, table=src_name), expression=exp.column(t_col, table=ref))
    select.join(node, on=on, copy=False)
    col.set("table", exp.to_identifier(ref))
    col.set("this", exp.to_identifier(cat.has(t, col.name)))
    return True


def repair_sql(sql: str, cat: Catalog) -> str | None:
    """`sql` with its unresolved columns fixed by the module's rules, or None when no rule applies (or it does not parse)."""
    if not sql or not cat.columns:
        return None
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
        changed = False
        for _ in range(PASSES):
            if not _rewrite_one(tree, cat):
                break
            changed = True
        return tree.sql(dialect="sqlite") if changed else None
    except (SqlglotError, RecursionError):
        return None
    except Exception:  # noqa: BLE001 - a best-effort rewrite of hostile text: any failure of the parser is "no repair"
        return None


REPAIRABLE = ("unknown_column",)


def fix(db: str | os.PathLike, sql: str, result: Result | None = None, *, timeout: float = DEFAULT_TIMEOUT,
        max_rows: int | None = None, con: sqlite3.Connection | None = None) -> tuple[str, Result, bool]:
    """(sql, its result, repaired?) — `sql` itself unless it fails with an unknown/ambiguous column and a repair runs.

    `result`: `sql`'s result when the caller already executed it (saves one execution); `con`: a read-only connection
    to `db` to execute on (`execute.connect_readonly`); `db` is the file, where the schema is read from."""
    kw = {"timeout": timeout} if max_rows is None else {"timeout": timeout, "max_rows": max_rows}
    target = con if con is not None else db
    first = result if result is not None else execute(target, sql, **kw)
    if first.error_kind not in REPAIRABLE or not isinstance(db, (str, os.PathLike)):
        return sql, first, False
    cat = catalog(db)
    cur = sql
    for _ in range(ROUNDS):
        new = repair_sql(cur, cat)
        if new is None or new == cur:
            break
        res = execute(target, new, **kw)
        if res.ok:
            return new, res, True
        if res.error_kind not in REPAIRABLE:
            break
        cur = new
    return sql, first, False
