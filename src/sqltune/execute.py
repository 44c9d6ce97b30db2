"""Stage: execute model-written SQL safely.

Model output is hostile input. Defences, each enough on its own for writes:
- the file is opened read-only (`mode=ro` URI) with `PRAGMA query_only`;
- an authorizer allows only reads, SELECT, recursive CTEs and plain functions: ATTACH, PRAGMA,
  writes, DDL and `load_extension` are denied inside SQLite itself;
- one statement only (sqlglot parse plus sqlite3's own one-statement rule);
- a real timeout: a progress handler aborts the query inside SQLite's VM;
- a row cap: rows are fetched in chunks and fetching stops past the cap.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import sqlglot
from sqlglot import exp

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_ROWS = 10_000

ERROR_KINDS = ("syntax", "unknown_table", "unknown_column", "timeout", "rejected", "too_many_rows", "other")

_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION}
if hasattr(sqlite3, "SQLITE_RECURSIVE"):
    _ALLOWED_ACTIONS.add(sqlite3.SQLITE_RECURSIVE)
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}


@dataclass
class Result:
    """Rows and column names, or a typed error."""

    sql: str
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {"sql": self.sql, "columns": self.columns, "rows": [list(r) for r in self.rows],
                "error": self.error, "error_kind": self.error_kind}


class _Rejected(Exception):
    pass


def _authorizer(action, arg1, arg2, dbname, source):
    if action in _ALLOWED_ACTIONS:
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def check_statement(sql: str) -> str:
    """Return the single query in `sql` (trailing `;` stripped) or raise _Rejected."""
    text = sql.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise _Rejected("empty query")
    try:
        statements = [s for s in sqlglot.parse(text, read="sqlite") if s is not None]
    except (sqlglot.errors.SqlglotError, RecursionError):
        # SQLite is the judge of syntax; sqlglot only counts statements and spots non-queries.
        statements = None
    if statements is not None:
        if len(statements) != 1:
            raise _Rejected(f"expected exactly one statement, got {len(statements)}")
        if not isinstance(statements[0], exp.Query):
            raise _Rejected(f"only queries are allowed, not {statements[0].key.upper()}")
    return text


def connect_readonly(db_path: str | Path) -> sqlite3.Connection:
    """Open `db_path` read-only; the file is never opened writable."""
    path = Path(db_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"database not found: {db_path}")
    con = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, check_same_thread=False)
    con.execute("PRAGMA query_only = ON")
    con.set_authorizer(_authorizer)
    return con


def _classify(message: str) -> str:
    m = message.lower()
    if "interrupted" in m:
        return "timeout"
    if "no such table" in m:
        return "unknown_table"
    if "no such column" in m or "ambiguous column" in m:
        return "unknown_column"
    if "not authorized" in m or "one statement" in m or "readonly" in m or "read-only" in m:
        return "rejected"
    if "syntax error" in m or "incomplete input" in m or "unrecognized token" in m or re.search(
        r"near \".*\"", m
    ):
        return "syntax"
    return "other"


def execute(
    db: str | Path | sqlite3.Connection,
    sql: str | None,
    timeout: float = DEFAULT_TIMEOUT,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Result:
    """Run one read-only query with a timeout and a row cap. Never raises for bad SQL."""
    result = Result(sql=sql or "")
    if sql is None or not str(sql).strip():
        result.error, result.error_kind = "no SQL", "rejected"
        return result
    try:
        text = check_statement(sql)
    except _Rejected as e:
        result.error, result.error_kind = str(e), "rejected"
        return result
    own = not isinstance(db, sqlite3.Connection)
    con = connect_readonly(db) if own else db
    deadline = time.monotonic() + timeout
    con.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 1000)
    start = time.monotonic()
    try:
        cur = con.execute(text)
        result.columns = [d[0] for d in cur.description or []]
        rows: list[tuple] = []
        while True:
            chunk = cur.fetchmany(1000)
            if not chunk:
                break
            rows.extend(chunk)
            if len(rows) > max_rows:
                cur.close()
                result.error = f"more than {max_rows} rows"
                result.error_kind = "too_many_rows"
                rows = []
                break
        result.rows = rows
    except sqlite3.Warning as e:  # e.g. "You can only execute one statement at a time."
        result.error, result.error_kind = str(e), "rejected"
    except sqlite3.Error as e:
        msg = str(e)
        if "interrupted" in msg.lower():
            msg = f"query exceeded the {timeout:g} s timeout"
            result.error_kind = "timeout"
        else:
            result.error_kind = _classify(msg)
        result.error = msg
    except (OverflowError, ValueError, MemoryError) as e:
        result.error, result.error_kind = str(e), "other"
    finally:
        con.set_progress_handler(None, 0)
        result.seconds = time.monotonic() - start
        if own:
            con.close()
    if result.error:
        result.columns, result.rows = [], []
    return result
