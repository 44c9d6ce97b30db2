"""Stage: execute model-written SQL safely.

Model output is hostile input. Defences, each enough on its own for writes:
- the file is opened read-only (`mode=ro` URI) with `PRAGMA query_only`;
- an authorizer allows only reads, SELECT, recursive CTEs and plain functions: ATTACH, PRAGMA,
  writes, DDL and `load_extension` are denied inside SQLite itself;
- one statement only (sqlglot parse plus sqlite3's own one-statement rule).

Resource limits, so one query cannot take the machine:
- the query runs in a worker process (`execute_worker.py`, a small pool reused across queries and
  threads); the caller waits at most `timeout` plus a short grace (`GRACE`), then the worker is killed
  and replaced on the next call, so the timeout holds even inside one long function call (a progress
  handler in the worker stops ordinary long queries without a kill);
- memory: SQLite's hard heap limit and the worker's address-space limit (`max_memory` plus room for
  the result); temporary tables are kept in memory so they count against it; over it -> `too_large`;
- size: `SQLITE_LIMIT_LENGTH` caps every string or blob at `max_bytes`, and the fetched rows stop at
  `max_rows` rows (`too_many_rows`) or `max_bytes` bytes (marshalled size, `too_large`); the caller's
  process never receives more than that (it holds about twice that while unpacking);
- a worker that hit `too_large` is replaced; an orphaned worker ends by itself (its stdin closes, and a
  CPU-time limit stops a query still running).

`db` is a path or a connection from `connect_readonly` (or any connection to a database file): a
connection stands for its file, which the worker opens read-only itself with the same options
(`reverse_unordered_selects`); other state of the caller's connection does not travel, and an
in-memory database cannot be used.
"""

from __future__ import annotations

import atexit
import marshal
import math
import os
import select
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp

from . import execute_worker as _w
from .errors import SqltuneError

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_BYTES = 32 * 2**20
DEFAULT_MAX_MEMORY = 512 * 2**20
GRACE = 0.5  # seconds the worker may overrun its timeout before it is killed
MAX_IDLE_WORKERS = 4

ERROR_KINDS = ("syntax", "unknown_table", "unknown_column", "timeout", "rejected", "too_many_rows", "too_large",
               "other")

_authorizer = _w.authorizer
_classify = _w.classify


class LimitError(SqltuneError, ValueError):
    """A non-positive timeout, row, byte or memory limit."""


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


class ReadonlyConnection(sqlite3.Connection):
    """A connection from `connect_readonly`: remembers its file and options for the worker."""

    path: str
    reverse_unordered_selects: bool


def connect_readonly(db_path: str | Path, *, reverse_unordered_selects: bool = False) -> ReadonlyConnection:
    """Open `db_path` read-only; the file is never opened writable.

    `reverse_unordered_selects` makes SQLite scan tables in reverse (check.py's order-dependence test);
    `execute` on this connection runs with the same option.
    """
    path = _existing(db_path)
    con = _w.open_readonly(path, reverse_unordered_selects, factory=ReadonlyConnection)
    con.path, con.reverse_unordered_selects = path, reverse_unordered_selects
    return con


def _existing(db_path: str | Path) -> str:
    path = Path(db_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"database not found: {db_path}")
    return str(path)


def _target(db: str | Path | sqlite3.Connection) -> tuple[str, bool]:
    """The database file (and scan order) that the worker opens for `db`."""
    if isinstance(db, ReadonlyConnection):
        return db.path, db.reverse_unordered_selects  # resolved when opened
    if not isinstance(db, sqlite3.Connection):
        return _existing(db), False
    try:  # someone else's connection: ask it which file it reads
        files = {row[1]: row[2] for row in db.execute("PRAGMA database_list")}
        reverse = bool(db.execute("PRAGMA reverse_unordered_selects").fetchone()[0])
    except sqlite3.Error as e:
        raise ValueError(f"execute: cannot tell which database file this connection reads ({e}); "
                         "pass the path or a connection from connect_readonly") from None
    if not files.get("main"):
        raise ValueError("execute: an in-memory database cannot be queried in the worker; pass a database file")
    return _existing(files["main"]), reverse


# ---------------------------------------------------------------- the worker pool
class _WorkerGone(Exception):
    """The worker died or did not answer in time; it has been killed."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class _Worker:
    """One `execute_worker.py` process and its two pipes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", _w.__file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, close_fds=True,
        )
        self.fd = self.proc.stdout.fileno()
        self.buf = bytearray()  # read but not yet used
        try:
            if self._recv(time.monotonic() + 60):  # the ready message is empty
                raise _WorkerGone("unexpected greeting")
        except _WorkerGone as e:
            raise RuntimeError(f"the SQL worker process did not start ({e})") from None

    def ask(self, request: tuple, deadline: float) -> tuple:
        body = marshal.dumps(request)
        try:
            self.proc.stdin.write(_w.HEADER.pack(len(body)) + body)
            self.proc.stdin.flush()
        except OSError:
            self.kill()
            raise _WorkerGone("the worker was gone before the query") from None
        columns, n, error, kind, _ = marshal.loads(self._recv(deadline))
        rows = []
        for _ in range(n):  # one chunk in memory at a time, besides the rows
            rows.extend(marshal.loads(self._recv(deadline)))
        return columns, rows, error, kind

    def _read(self, n: int, deadline: float) -> bytearray:
        """`n` bytes from the worker, read straight into their own buffer (one copy of a big result)."""
        out = bytearray(n)
        have = min(n, len(self.buf))
        out[:have] = self.buf[:have]
        del self.buf[:have]
        view = memoryview(out)
        while have < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], None if math.isinf(left) else left)[0]:
                self.kill()
                raise _WorkerGone("no answer before the deadline", timed_out=True)
            if n - have >= 1 << 16:
                got = os.readv(self.fd, [view[have:]])
            else:  # small messages: read ahead, the next one is usually right behind
                data = os.read(self.fd, 1 << 16)
                got = min(len(data), n - have)
                out[have:have + got] = data[:got]
                self.buf += data[got:]
            if not got:
                self.kill()
                raise _WorkerGone(f"the worker died (exit status {self.proc.returncode})")
            have += got
        view.release()
        return out

    def _recv(self, deadline: float) -> bytearray:
        (n,) = _w.HEADER.unpack(self._read(_w.HEADER.size, deadline))
        return self._read(n, deadline)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass

    def close(self) -> None:
        """Ask the worker to stop (it exits when its stdin closes); kill it if it lingers."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=1)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


_idle: list[_Worker] = []
_lock = threading.Lock()
_owner = os.getpid()


def _take_worker() -> _Worker:
    global _owner
    with _lock:
        if _owner != os.getpid():  # a forked child: the workers belong to the parent
            _idle.clear()
            _owner = os.getpid()
        while _idle:
            w = _idle.pop()
            if w.alive():
                return w
            w.kill()
    return _Worker()


def _give_back(w: _Worker) -> None:
    with _lock:
        if _owner == os.getpid() and len(_idle) < MAX_IDLE_WORKERS:
            _idle.append(w)
            return
    w.close()


@atexit.register
def shutdown_workers() -> None:
    """Stop the idle workers (they also stop on their own when this process exits)."""
    with _lock:
        workers = list(_idle) if _owner == os.getpid() else []
        _idle.clear()
    for w in workers:
        w.close()


def _positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isnan(value):
        raise LimitError(f"{name} must be a positive number, got {value!r}")


def execute(
    db: str | Path | sqlite3.Connection,
    sql: str | None,
    timeout: float = DEFAULT_TIMEOUT,
    max_rows: int = DEFAULT_MAX_ROWS,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> Result:
    """Run one read-only query within the limits (module docstring). Never raises for bad SQL.

    Raises FileNotFoundError for a missing database and LimitError (a ValueError) for a limit <= 0.
    """
    for name, value in (("timeout", timeout), ("max_rows", max_rows), ("max_bytes", max_bytes),
                        ("max_memory", max_memory)):
        _positive(name, value)
    result = Result(sql=sql or "")
    if sql is None or not str(sql).strip():
        result.error, result.error_kind = "no SQL", "rejected"
        return result
    try:
        text = check_statement(sql)
    except _Rejected as e:
        result.error, result.error_kind = str(e), "rejected"
        return result
    path, reverse = _target(db)
    request = (path, reverse, text, float(timeout), int(max_rows), int(max_bytes), int(max_memory))
    start = time.monotonic()
    for attempt in (1, 2):
        worker = _take_worker()
        start = time.monotonic()
        try:
            columns, rows, error, kind = worker.ask(request, start + timeout + GRACE)
            break
        except KeyboardInterrupt:
            worker.kill()  # its answer would be read by the next query
            raise
        except _WorkerGone as gone:
            result.seconds = time.monotonic() - start
            if gone.timed_out:
                result.error, result.error_kind = f"query exceeded the {timeout:g} s timeout", "timeout"
                return result
            if attempt == 2 or "before the query" not in str(gone):
                result.error, result.error_kind = f"the query's worker process died ({gone})", "other"
                return result
    if kind == "too_large":
        worker.close()  # a worker that ran out of memory may stay fragmented: start the next one fresh
    else:
        _give_back(worker)
    result.seconds = time.monotonic() - start
    if error:
        result.error, result.error_kind = error, kind
    else:
        result.columns, result.rows = columns, rows
    return result
