import hashlib
import time

import pytest

from sqltune.execute import execute


def digest(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_simple_query(tiny_db):
    r = execute(tiny_db, "SELECT name FROM authors WHERE country = 'UK' ORDER BY name;")
    assert r.ok and r.columns == ["name"] and r.rows == [("Ada",), ("Dickens",)]


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE books",
        "DELETE FROM books",
        "UPDATE books SET price = 0",
        "INSERT INTO authors VALUES (9, 'x', 'y')",
        "CREATE TABLE t (x)",
        "ATTACH DATABASE 'other.db' AS o",
        "DETACH DATABASE main",
        "PRAGMA writable_schema = 1",
        "PRAGMA journal_mode = WAL",
        "SELECT 1; DROP TABLE books",
        "SELECT 1; SELECT 2",
        "SELECT load_extension('libevil')",
        "VACUUM",
        "REPLACE INTO authors VALUES (1, 'x', 'y')",
        "WITH x AS (SELECT 1) DELETE FROM books",
    ],
)
def test_hostile_sql_rejected_and_db_unchanged(tiny_db, sql):
    before = digest(tiny_db)
    r = execute(tiny_db, sql)
    assert not r.ok
    assert r.error_kind == "rejected", r.error
    assert digest(tiny_db) == before
    assert not tiny_db.with_name("other.db").exists()


def test_never_ending_recursive_cte_times_out(tiny_db):
    before = digest(tiny_db)
    t = time.monotonic()
    r = execute(tiny_db, "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r", timeout=0.5)
    assert time.monotonic() - t < 3
    assert r.error_kind == "timeout"
    assert digest(tiny_db) == before


def test_huge_cross_join_capped_or_timed_out(exo_db):
    t = time.monotonic()
    # 27 million rows streamed: the row cap stops fetching early
    r = execute(exo_db, "SELECT a.name, b.name FROM exoplanets a, exoplanets b", timeout=2, max_rows=1000)
    assert r.error_kind == "too_many_rows" and r.rows == []
    # aggregated: nothing to fetch, so the timeout must stop it inside SQLite
    r = execute(exo_db, "SELECT COUNT(*) FROM exoplanets a, exoplanets b, exoplanets c", timeout=0.5)
    assert r.error_kind == "timeout"
    assert time.monotonic() - t < 5


@pytest.mark.parametrize(
    "sql,kind",
    [
        ("SELEC name FROM authors", "syntax"),
        ("SELECT name FROM writers", "unknown_table"),
        ("SELECT nom FROM authors", "unknown_column"),
        ("", "rejected"),
        (None, "rejected"),
    ],
)
def test_typed_errors(tiny_db, sql, kind):
    r = execute(tiny_db, sql)
    assert r.error_kind == kind


def test_trailing_semicolons_and_comments_ok(tiny_db):
    assert execute(tiny_db, "SELECT COUNT(*) FROM books;;  ").rows == [(6,)]
    assert execute(tiny_db, "-- count\nSELECT COUNT(*) FROM books").rows == [(6,)]


def test_missing_db_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        execute(tmp_path / "nope.sqlite", "SELECT 1")


def test_readonly_even_for_temp_objects(tiny_db):
    before = digest(tiny_db)
    r = execute(tiny_db, "SELECT * FROM pragma_table_info('books')")
    # table-valued pragmas are pragmas: denied
    assert not r.ok
    assert digest(tiny_db) == before


# ---------------------------------------------------------------- resource limits (issue 12)
import math  # noqa: E402
import os  # noqa: E402
import sqlite3  # noqa: E402
import threading  # noqa: E402

from sqltune.errors import SqltuneError  # noqa: E402
from sqltune.execute import GRACE, MAX_IDLE_WORKERS, LimitError, _idle, connect_readonly  # noqa: E402

MIB = 2**20


def _status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def peak_growth(fn):
    """Run fn(); return (its value, how far this process's peak RSS rose above its RSS before)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current RSS
    except OSError:
        pytest.skip("cannot reset the peak RSS here")
    before = _status("VmRSS")
    value = fn()
    return value, _status("VmHWM") - before


def timed(fn):
    t = time.monotonic()
    value = fn()
    return value, time.monotonic() - t


def idle_worker_pid():
    return _idle[-1].proc.pid if _idle else None


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    "sql,kinds",
    [
        # the measured 660 MB value: group_concat only reports "too big" when it finishes, so the clock stops it
        ("SELECT group_concat(a.name || b.name) FROM exoplanets a, exoplanets b", {"too_large", "timeout"}),
        # each step under the 1 MiB value limit but the last
        ("SELECT replace(hex(zeroblob(300000)), '0', 'ab')", {"too_large"}),
        ("SELECT replace(hex(zeroblob(2000000000)), '0', 'ab')", {"too_large"}),
        ("SELECT length(hex(zeroblob(600000)))", {"too_large"}),  # a small result, but a value over SQLITE_LIMIT_LENGTH
        ("SELECT name, printf('%.*c', 200, 'x') FROM exoplanets", {"too_large"}),  # 5250 rows of 1.1 MB in all
    ],
)
def test_hostile_sizes_return_typed_error_with_bounded_memory(exo_db, sql, kinds):
    before = digest(exo_db)
    execute(exo_db, "SELECT 1")  # a warm worker: its start is not counted
    (r, took), grew = peak_growth(lambda: timed(lambda: execute(exo_db, sql, timeout=1, max_bytes=MIB)))
    assert r.error_kind in kinds, (r.error_kind, r.error)
    assert r.rows == [] and r.columns == []
    assert took < 1 + GRACE + 1
    assert grew < 16 * MIB, grew
    assert digest(exo_db) == before


def test_result_bytes_are_capped_but_ordinary_results_pass(exo_db):
    r = execute(exo_db, "SELECT name FROM exoplanets", max_bytes=10_000)
    assert r.error_kind == "too_large" and "10000 bytes" in r.error and r.rows == []
    r = execute(exo_db, "SELECT name FROM exoplanets")
    assert r.ok and len(r.rows) == 5250 and r.columns == ["name"]
    # the cap counts the rows as sent (marshal: a few bytes per row and value on top of the data)
    assert execute(exo_db, "SELECT hex(zeroblob(500))", max_bytes=1100).rows == [("00" * 500,)]
    assert execute(exo_db, "SELECT hex(zeroblob(500))", max_bytes=999).error_kind == "too_large"


def test_sqlite_heap_limit(exo_db):
    before = digest(exo_db)
    # DISTINCT over a 27 million row join builds a temporary b-tree: in memory, so the heap limit stops it
    (r, took), grew = peak_growth(lambda: timed(lambda: execute(
        exo_db, "SELECT COUNT(DISTINCT a.name || b.name) FROM exoplanets a, exoplanets b",
        timeout=20, max_memory=16 * MIB)))
    assert r.error_kind == "too_large", r.error
    assert "16 MiB" in r.error
    assert took < 20
    assert grew < 16 * MIB
    assert digest(exo_db) == before
    assert execute(exo_db, "SELECT COUNT(*) FROM exoplanets").rows == [(5250,)]


@pytest.mark.parametrize(
    "sql",
    [
        # sqlite's printf pads a huge width inside one call: seconds, and no progress-handler tick
        "SELECT printf('%.*c', 2000000000, 'x')",
        # a naive O(n*m) substring search inside one call: hours
        "SELECT instr(printf('%.*c', 4000000, 'a'), printf('%.*c', 2000000, 'a') || 'b')",
    ],
)
def test_one_long_function_is_cut_at_the_deadline_and_the_worker_recovers(exo_db, sql):
    before = digest(exo_db)
    assert execute(exo_db, "SELECT 1").ok
    pid = idle_worker_pid()
    r, took = timed(lambda: execute(exo_db, sql, timeout=0.3))
    assert r.error_kind == "timeout" and "0.3 s" in r.error
    assert took < 0.3 + GRACE + 0.7
    assert not alive(pid)  # killed and reaped
    r = execute(exo_db, "SELECT COUNT(*) FROM exoplanets WHERE discovery_year = 2016")
    assert r.ok and r.rows == [(1517,)]
    assert idle_worker_pid() != pid
    assert digest(exo_db) == before


def test_an_ordinary_timeout_keeps_the_worker(tiny_db):
    assert execute(tiny_db, "SELECT 1").ok
    pid = idle_worker_pid()
    r = execute(tiny_db, "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r",
                timeout=0.2)
    assert r.error_kind == "timeout"
    assert idle_worker_pid() == pid and alive(pid)  # the progress handler stopped it: no kill, no restart


@pytest.mark.parametrize(
    "kwargs",
    [{"timeout": 0}, {"timeout": -1}, {"timeout": math.nan}, {"max_rows": 0}, {"max_rows": -3},
     {"max_bytes": 0}, {"max_memory": -1}, {"max_rows": "10"}],
)
def test_non_positive_limits_are_refused(tiny_db, kwargs):
    with pytest.raises(LimitError) as info:
        execute(tiny_db, "SELECT 1", **kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, SqltuneError)
    assert next(iter(kwargs)) in str(info.value)


def test_connections_stand_for_their_file(tiny_db):
    before = digest(tiny_db)
    con = connect_readonly(tiny_db)
    assert execute(con, "SELECT name FROM authors").rows == [("Ada",), ("Borges",), ("Calvino",), ("Dickens",)]
    rcon = connect_readonly(tiny_db, reverse_unordered_selects=True)  # check.py's order-dependence probe
    assert execute(rcon, "SELECT name FROM authors").rows == [("Dickens",), ("Calvino",), ("Borges",), ("Ada",)]
    own = sqlite3.connect(tiny_db)  # anyone's connection: the worker opens the same file read-only
    assert execute(own, "SELECT COUNT(*) FROM books").rows == [(6,)]
    assert execute(own, "DELETE FROM books").error_kind == "rejected"
    own.close()
    with pytest.raises(ValueError, match="in-memory"):
        execute(sqlite3.connect(":memory:"), "SELECT 1")
    con.close()
    rcon.close()
    assert digest(tiny_db) == before


def test_threads_share_the_pool(tiny_db):
    results, errors = [], []

    def work(i):
        try:
            for _ in range(5):
                results.append(execute(tiny_db, f"SELECT {i} + COUNT(*) FROM books").rows)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(r[0][0] for r in results) == sorted([6 + i for i in range(4)] * 5)
    assert len(_idle) <= MAX_IDLE_WORKERS


def test_huge_limits_are_accepted(tiny_db):
    r = execute(tiny_db, "SELECT COUNT(*) FROM books", timeout=math.inf, max_rows=10**30, max_bytes=10**30,
                max_memory=10**30)
    assert r.ok and r.rows == [(6,)]


@pytest.mark.skipif(os.name != "posix", reason="file names that are not UTF-8 are a POSIX thing")
def test_a_database_under_a_folder_whose_name_is_not_utf8(tmp_path):
    """A folder made by another system (latin-1 bytes in its name): the database opens, read-only, by its bytes;
    `resolve_db` and the executor both take it (both used to fail to encode the URI, a traceback)."""
    from conftest import make_tiny_db

    from sqltune.db import resolve_db

    folder = tmp_path / os.fsdecode(b"caf\xe9")
    folder.mkdir()
    db = make_tiny_db(folder / "tiny.sqlite")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    assert resolve_db(str(db)) == db
    res = execute(db, "SELECT COUNT(*) FROM authors")
    assert res.ok and res.rows[0][0] > 0
    assert execute(db, "DELETE FROM authors").error_kind == "rejected"
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
