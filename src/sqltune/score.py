"""Stage: score predicted SQL against gold SQL by executing both.

Metrics per pair (all booleans; the summary averages them):
- executed: the prediction ran without error within the limits.
- exact: same multiset of rows (columns by position); numbers compare numerically, floats within
  relative 1e-9; NULL == NULL. Ordered comparison when the gold query has a top-level ORDER BY.
- set: `set(pred_rows) == set(gold_rows)`, exactly as BIRD and premsql score it.
- fuzzy: column names/order don't matter and extra predicted columns are allowed, but every gold
  column must be matched by a distinct predicted column with the same values row by row; floats
  within relative 1e-4.
- vacuous: the gold result is empty, so a match proves little.
- suite (only with a test suite, `sqltune.testsuite`): exact on the original DB and the gold's rows
  on every kept variant database; exact but not suite means right by accident.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import sqlglot
from sqlglot import exp

from .errors import DatasetError
from .execute import DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT, Result, connect_readonly, execute

EXACT_REL_TOL = 1e-9
FUZZY_REL_TOL = 1e-4
_MAX_MATCHINGS = 2000  # bound on column assignments tried by `fuzzy` (keeps it polynomial)

Row = Sequence


# ---------------------------------------------------------------- value comparison
def _is_num(v) -> bool:
    return isinstance(v, (int, float))  # bool is an int, as SQLite has no boolean type


def values_equal(a, b, rel_tol: float = EXACT_REL_TOL) -> bool:
    """Numbers numerically (1 == 1.0, floats within rel_tol), NULL == NULL, others by ==."""
    if a is None or b is None:
        return a is None and b is None
    if _is_num(a) and _is_num(b):
        if isinstance(a, float) and math.isnan(a):
            return isinstance(b, float) and math.isnan(b)
        return a == b or math.isclose(a, b, rel_tol=rel_tol, abs_tol=0.0)
    if _is_num(a) or _is_num(b):
        return False
    return a == b


def _sort_key(v):
    if v is None:
        return (0, 0)
    if _is_num(v):
        return (1, float(v) if not (isinstance(v, float) and math.isnan(v)) else math.inf)
    if isinstance(v, str):
        return (2, v)
    if isinstance(v, bytes):
        return (3, v)
    return (4, repr(v))


def _rows_equal(a: Row, b: Row, rel_tol: float) -> bool:
    return len(a) == len(b) and all(values_equal(x, y, rel_tol) for x, y in zip(a, b))


def rows_match(gold: list[Row], pred: list[Row], ordered: bool, rel_tol: float = EXACT_REL_TOL) -> bool:
    """Multiset (or sequence, if `ordered`) equality of rows with numeric tolerance."""
    if len(gold) != len(pred):
        return False
    if ordered:
        return all(_rows_equal(g, p, rel_tol) for g, p in zip(gold, pred))
    key = lambda r: tuple(_sort_key(v) for v in r)  # noqa: E731
    gs, ps = sorted(gold, key=key), sorted(pred, key=key)
    if all(_rows_equal(g, p, rel_tol) for g, p in zip(gs, ps)):
        return True
    # Sorting can interleave values that differ by less than the tolerance; fall back to a
    # greedy multiset match (correct whenever tolerance-equality is transitive on the data).
    remaining = list(ps)
    for g in gs:
        for i, p in enumerate(remaining):
            if _rows_equal(g, p, rel_tol):
                del remaining[i]
                break
        else:
            return False
    return True


def exact_match(gold: list[Row], pred: list[Row], ordered: bool) -> bool:
    return rows_match(gold, pred, ordered, EXACT_REL_TOL)


def set_match(gold: list[Row], pred: list[Row]) -> bool:
    """BIRD / premsql's execution accuracy: plain Python set equality of row tuples."""
    return set(map(tuple, pred)) == set(map(tuple, gold))


def _column(rows: list[Row], j: int) -> list:
    return [r[j] for r in rows]


def _bipartite_candidates(gold: list[Row], pred: list[Row], ordered: bool, rel_tol: float):
    """For each gold column, the predicted columns that could hold it."""
    ng, np_ = len(gold[0]) if gold else 0, len(pred[0]) if pred else 0
    gcols = [_column(gold, j) for j in range(ng)]
    pcols = [_column(pred, k) for k in range(np_)]
    cands = []
    for g in gcols:
        if ordered:
            ok = [k for k, p in enumerate(pcols) if _rows_equal(g, p, rel_tol)]
        else:
            ok = [k for k, p in enumerate(pcols) if rows_match([(v,) for v in g], [(v,) for v in p], False, rel_tol)]
        cands.append(ok)
    return cands


def fuzzy_match(gold: list[Row], pred: list[Row], ordered: bool, rel_tol: float = FUZZY_REL_TOL) -> bool:
    """Every gold column matched by a distinct predicted column, values row by row."""
    if len(gold) != len(pred):
        return False
    if not gold:
        return True  # both empty: nothing to contradict (the pair is flagged vacuous)
    ng = len(gold[0])
    if ng == 0:
        return True
    cands = _bipartite_candidates(gold, pred, ordered, rel_tol)
    if any(not c for c in cands):
        return False
    if ordered:
        # Row alignment is fixed, so column compatibility is exact: a bipartite matching decides.
        return _has_perfect_matching(cands)
    # Unordered: per-column candidates are necessary, not sufficient, because the row alignment is
    # unknown. Assign gold columns one at a time and keep an assignment only while the joint multiset
    # of the columns assigned so far agrees (a refinement that prunes almost every wrong branch);
    # identical predicted columns are interchangeable, and the search is bounded.
    order = sorted(range(ng), key=lambda j: len(cands[j]))
    gkeys = [tuple(_fuzzy_key(r[j]) for r in gold) for j in range(ng)]
    pkeys = [tuple(_fuzzy_key(r[k]) for r in pred) for k in range(len(pred[0]))]
    budget = [_MAX_MATCHINGS * ng]

    def search(i: int, used: set, chosen: dict, gjoint: list, pjoint: list) -> bool:
        if i == len(order):
            proj = [tuple(r[chosen[j]] for j in range(ng)) for r in pred]
            return rows_match(gold, proj, False, rel_tol)
        j = order[i]
        seen = set()
        for k in cands[j]:
            if k in used or pkeys[k] in seen:
                continue
            seen.add(pkeys[k])
            budget[0] -= 1
            if budget[0] < 0:
                return False
            g2 = [a + (b,) for a, b in zip(gjoint, gkeys[j])]
            p2 = [a + (b,) for a, b in zip(pjoint, pkeys[k])]
            if Counter(g2) != Counter(p2):
                continue
            chosen[j] = k
            if search(i + 1, used | {k}, chosen, g2, p2):
                return True
        return False

    empty = [()] * len(gold)
    return search(0, set(), {}, empty, empty)


def _fuzzy_key(v):
    """A hashable key for pruning: numbers rounded to 4 significant digits."""
    if isinstance(v, (int, float)) and not (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
        return (1, float(f"{float(v):.4g}"))
    return _sort_key(v)


def _has_perfect_matching(cands: list[list[int]]) -> bool:
    match: dict[int, int] = {}

    def augment(j: int, seen: set) -> bool:
        for k in cands[j]:
            if k in seen:
                continue
            seen.add(k)
            if k not in match or augment(match[k], seen):
                match[k] = j
                return True
        return False

    return all(augment(j, set()) for j in range(len(cands)))


# ---------------------------------------------------------------- ORDER BY detection
@lru_cache(maxsize=4096)
def is_ordered(sql: str) -> bool:
    """True when the query has a top-level ORDER BY (parsed with sqlglot, not searched)."""
    try:
        tree = sqlglot.parse_one(sql.strip().rstrip(";"), read="sqlite")
    except (sqlglot.errors.SqlglotError, RecursionError):
        return False
    while isinstance(tree, exp.Subquery):
        tree = tree.this
    return tree is not None and tree.args.get("order") is not None


# ---------------------------------------------------------------- pairs and files
@dataclass
class Example:
    id: str
    question: str
    gold_sql: str
    pred_sql: str | None
    executed: bool
    error: str | None
    error_kind: str | None
    exact: bool
    set: bool
    fuzzy: bool
    vacuous: bool
    gold_rows: int
    pred_rows: int
    suite: bool | None = None  # None: scored without a test suite

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        if d["suite"] is None:
            del d["suite"]
        return d


def compare(gold: Result, pred: Result, gold_sql: str) -> dict:
    """Verdicts for one pair whose gold result is known to be good."""
    if not pred.ok:
        return {"executed": False, "exact": False, "set": False, "fuzzy": False}
    ordered = is_ordered(gold_sql)
    return {
        "executed": True,
        "exact": exact_match(gold.rows, pred.rows, ordered),
        "set": set_match(gold.rows, pred.rows),
        "fuzzy": fuzzy_match(gold.rows, pred.rows, ordered),
    }


def summarize(examples: Iterable[Example]) -> dict:
    ex = list(examples)
    n = len(ex)
    frac = lambda key: (sum(bool(getattr(e, key)) for e in ex) / n) if n else 0.0  # noqa: E731
    out = {
        "n": n,
        "execution_rate": frac("executed"),
        "exact": frac("exact"),
        "set": frac("set"),
        "fuzzy": frac("fuzzy"),
        "vacuous": frac("vacuous"),
    }
    if ex and all(e.suite is not None for e in ex):
        out["suite"] = frac("suite")
        out["right_by_accident"] = sum(1 for e in ex if e.exact and not e.suite)
    return out


def score_pairs(
    db: str | Path,
    gold: list[dict],
    preds: list[str | None],
    timeout: float = DEFAULT_TIMEOUT,
    max_rows: int = DEFAULT_MAX_ROWS,
    gold_results: list[Result] | None = None,
    test_suite: str | Path | dict | None = None,
) -> dict:
    """Score predicted SQL strings against gold items ({id, question, sql}). Returns a report.

    A gold query that fails raises DatasetError: it is never scored as the model's success or failure.
    With `test_suite` (a folder built by `sqltune.testsuite.build_suite`), each example also gets
    `suite` and the summary `suite` and `right_by_accident`.
    """
    if len(gold) != len(preds):
        raise DatasetError(f"{len(gold)} gold items but {len(preds)} predictions")
    con = connect_readonly(db)
    examples: list[Example] = []
    try:
        for i, (g, p) in enumerate(zip(gold, preds)):
            gres = gold_results[i] if gold_results else execute(con, g["sql"], timeout, max_rows)
            gid = str(g.get("id", i))
            if not gres.ok:
                raise DatasetError(f"gold query {gid} fails ({gres.error_kind}): {gres.error}")
            pres = execute(con, p, timeout, max_rows)
            verdict = compare(gres, pres, g["sql"])
            examples.append(Example(
                id=gid, question=g.get("question", ""), gold_sql=g["sql"], pred_sql=p,
                error=pres.error, error_kind=pres.error_kind, vacuous=not gres.rows,
                gold_rows=len(gres.rows), pred_rows=len(pres.rows), **verdict,
            ))
    finally:
        con.close()
    if test_suite is not None:
        from .testsuite import suite_verdicts

        verdicts = suite_verdicts(test_suite, db, [g["sql"] for g in gold], list(preds),
                                  [e.exact for e in examples], timeout=timeout)
        for e, v in zip(examples, verdicts):
            e.suite = v
    return {"summary": summarize(examples), "examples": [e.to_dict() for e in examples]}
