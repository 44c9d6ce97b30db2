"""The process that runs model-written SQL for `sqltune.execute` (stdlib only, started by path).

`sqltune.execute` starts this file as `python -I -S execute_worker.py` (about 30 ms: no site-packages,
no sqltune import) and talks to it over stdin/stdout: each message is an 8-byte length and a `marshal`
payload. A request is `(path, reverse_unordered_selects, sql, timeout, max_rows, max_bytes, max_memory)`;
the answer is `(columns, n, error, error_kind, seconds)` followed by `n` messages, each a list of rows,
so the parent unpacks the rows one chunk at a time.

Inside the worker, per query: SQLite's hard heap limit and the process's address-space limit
(`RLIMIT_AS`) cap memory, `SQLITE_LIMIT_LENGTH` caps every string or blob at `max_bytes`, temporary
tables stay in memory (so they count against the heap limit instead of filling the disk), a progress
handler stops the VM at the deadline, a CPU-time limit ends the worker if its parent is gone, and the
fetched rows stop at `max_rows` rows or `max_bytes` marshalled bytes. The parent kills the worker when
no answer came by the deadline (one long function call, e.g. `printf` with a huge width, never returns
to the VM's progress handler).

The connection helpers (`open_readonly`, `authorizer`, `classify`) are shared with `sqltune.execute`.
"""

from __future__ import annotations

import marshal
import os
import re
import resource
import signal
import sqlite3
import struct
import sys
import time
from urllib.parse import quote

HEADER = struct.Struct("!Q")
FETCH_CHUNK = 256
MAX_OPEN = 4  # connections kept open, one per (file, options)

_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION}
if hasattr(sqlite3, "SQLITE_RECURSIVE"):
    _ALLOWED_ACTIONS.add(sqlite3.SQLITE_RECURSIVE)
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}


def authorizer(action, arg1, arg2, dbname, source):
    if action in _ALLOWED_ACTIONS:
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def readonly_uri(path) -> str:
    """The read-only SQLite URI of `path` (absolute): the file name's bytes %-escaped, so that a name that is not
    UTF-8 (a folder made by another system) opens too instead of failing to encode."""
    return f"file:{quote(os.fsencode(path))}?mode=ro"


def open_readonly(path: str, reverse_unordered_selects: bool = False, *, temp_in_memory: bool = False,
                  factory=sqlite3.Connection):
    """`path` (absolute, existing) opened read-only, `query_only`, with the authorizer."""
    con = sqlite3.connect(readonly_uri(path), uri=True, check_same_thread=False, factory=factory)
    con.execute("PRAGMA query_only = ON")
    if temp_in_memory:
        con.execute("PRAGMA temp_store = MEMORY")
    if reverse_unordered_selects:
        con.execute("PRAGMA reverse_unordered_selects = ON")
    con.set_authorizer(authorizer)
    return con


def classify(message: str) -> str:
    m = message.lower()
    if "interrupted" in m:
        return "timeout"
    if "too big" in m or "out of memory" in m:
        return "too_large"
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


def mib(n: int) -> str:
    return f"{n} bytes" if n < 2**20 else f"{n / 2**20:.4g} MiB"


class Runner:
    """Runs queries under the limits; keeps a few read-only connections open between queries."""

    def __init__(self) -> None:
        self.cons: dict[tuple, sqlite3.Connection] = {}
        self.control = sqlite3.connect(":memory:")  # trusted: sets the process-wide heap limit
        self.heap = None
        self.base_as = self._address_space()
        self.as_hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        self.cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]

    @staticmethod
    def _address_space() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 64 * 2**20

    def connection(self, path: str, reverse: bool) -> sqlite3.Connection:
        st = os.stat(path)  # a replaced file (new inode) gets a new connection
        key = (path, st.st_dev, st.st_ino, reverse)
        con = self.cons.pop(key, None)
        if con is None:
            while len(self.cons) >= MAX_OPEN:
                self.cons.pop(next(iter(self.cons))).close()
            con = open_readonly(path, reverse, temp_in_memory=True)
        self.cons[key] = con  # most recently used last
        return con

    def limit(self, timeout: float, max_bytes: int, max_memory: int) -> None:
        if self.heap != max_memory:
            self.control.execute(f"PRAGMA hard_heap_limit = {min(int(max_memory), 2**63 - 1)}")
            self.heap = max_memory
        # Python's own memory (the fetched rows, their marshalled copies) on top of SQLite's heap
        cap = self.base_as + max_memory + 4 * max_bytes + 128 * 2**20
        if self.as_hard != resource.RLIM_INFINITY:
            cap = min(cap, self.as_hard)
        elif cap >= resource.RLIM_INFINITY:
            cap = resource.RLIM_INFINITY
        resource.setrlimit(resource.RLIMIT_AS, (cap, self.as_hard))
        # if the parent died while a query runs, the worker still ends
        used = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        cpu = int(used + min(timeout, 1e7)) + 2
        if self.cpu_hard == resource.RLIM_INFINITY or cpu < self.cpu_hard:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, self.cpu_hard))

    def run(self, path, reverse, sql, timeout, max_rows, max_bytes, max_memory):
        start = time.monotonic()
        columns: list[str] = []
        chunks: list[bytes] = []
        error = kind = None
        con = None
        try:
            con = self.connection(path, reverse)
            self.limit(timeout, max_bytes, max_memory)
            con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(1, min(int(max_bytes), 2**31 - 1)))
            deadline = start + timeout
            con.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 1000)
            cur = con.execute(sql)
            columns = [d[0] for d in cur.description or []]
            rows = size = 0
            while True:
                chunk = cur.fetchmany(FETCH_CHUNK)
                if not chunk:
                    break
                rows += len(chunk)
                if rows > max_rows:
                    error, kind = f"more than {max_rows} rows", "too_many_rows"
                    break
                blob = marshal.dumps(chunk)
                size += len(blob)
                if size > max_bytes:
                    error, kind = f"the result is larger than {mib(max_bytes)}", "too_large"
                    break
                chunks.append(blob)
            cur.close()
        except sqlite3.Warning as e:  # e.g. "You can only execute one statement at a time."
            error, kind = str(e), "rejected"
        except sqlite3.Error as e:
            error, kind = str(e), classify(str(e))
            if kind == "timeout":
                error = f"query exceeded the {timeout:g} s timeout"
            elif kind == "too_large":
                error = f"{e} (limits: {mib(max_bytes)} per value, {mib(max_memory)} of memory)"
        except MemoryError:
            error, kind = f"the query needs more than {mib(max_memory)} of memory", "too_large"
        except (OverflowError, ValueError) as e:
            error, kind = str(e), "other"
        except OSError as e:  # the file went away under an open connection
            error, kind = f"cannot open the database: {e}", "other"
        finally:
            if con is not None:
                con.set_progress_handler(None, 0)
        if error:
            columns, chunks = [], []
        return columns, chunks, error, kind, time.monotonic() - start


def _read_exact(stream, n: int) -> bytes | None:
    data = stream.read(n)
    return data if data is not None and len(data) == n else None


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes our stdin
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    runner = Runner()
    stdout.write(HEADER.pack(0))  # ready
    stdout.flush()
    while True:
        head = _read_exact(stdin, HEADER.size)
        if head is None:
            return  # the parent closed the pipe
        body = _read_exact(stdin, HEADER.unpack(head)[0])
        if body is None:
            return
        try:
            columns, chunks, error, kind, seconds = runner.run(*marshal.loads(body))
        except MemoryError:
            columns, chunks, error, kind, seconds = [], [], "the query needs more memory than allowed", "too_large", 0.0
        except Exception as e:  # noqa: BLE001 -- a worker bug is one query's error, not a dead worker
            columns, chunks, error, kind, seconds = [], [], f"executor worker: {type(e).__name__}: {e}", "other", 0.0
        for frame in [marshal.dumps((columns, len(chunks), error, kind, seconds)), *chunks]:
            stdout.write(HEADER.pack(len(frame)))
            stdout.write(frame)
        stdout.flush()

if __name__ == "__main__":
    main()
