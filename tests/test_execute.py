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
