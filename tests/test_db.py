import os
import sqlite3


import pytest

from sqltune.cli import main
from sqltune.db import EXOPLANETS_COLUMNS, build_exoplanets_db, default_db, resolve_db
from sqltune.errors import SqltuneError


def test_exoplanets_db_contents(exo_db):
    con = sqlite3.connect(exo_db)
    assert con.execute("SELECT COUNT(*) FROM exoplanets").fetchone() == (5250,)
    assert con.execute("SELECT COUNT(*) FROM exoplanets WHERE discovery_year = 2016").fetchone() == (1517,)
    assert dict(con.execute("SELECT name, mass FROM reference_planets")) == {"Jupiter": 1.898e27, "Earth": 5.972e24}
    types = {r[1]: r[2] for r in con.execute("PRAGMA table_info(exoplanets)")}
    assert types == EXOPLANETS_COLUMNS
    pk = [r[1] for r in con.execute("PRAGMA table_info(reference_planets)") if r[5]]
    assert pk == ["name"]
    # empty CSV cells are NULL, not empty strings
    assert con.execute("SELECT COUNT(*) FROM exoplanets WHERE mass_wrt = ''").fetchone() == (0,)
    assert con.execute("SELECT COUNT(*) FROM exoplanets WHERE mass_wrt IS NULL").fetchone()[0] > 0


def test_build_refuses_overwrite(tmp_path):
    out = tmp_path / "x.sqlite"
    out.write_bytes(b"precious")
    with pytest.raises(SqltuneError, match="--force"):
        build_exoplanets_db(out)
    assert out.read_bytes() == b"precious"
    with pytest.raises(SqltuneError, match="not an exoplanets database that sqltune build-db wrote"):
        build_exoplanets_db(out, force=True)  # --force replaces only what build-db wrote
    assert out.read_bytes() == b"precious"
    out.unlink()
    build_exoplanets_db(out)
    (tmp_path / "x.notes.md").write_text("my notes")
    build_exoplanets_db(out, force=True)
    assert out.read_bytes()[:15] == b"SQLite format 3"
    assert (tmp_path / "x.notes.md").read_text() == "my notes"  # the user's notes are never replaced
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # normal permissions, not mkstemp's 0600


def test_cli_build_db_refuses_overwrite(tmp_path, capsys):
    out = tmp_path / "x.sqlite"
    assert main(["build-db", str(out)]) == 0
    assert main(["build-db", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_default_db_built_on_first_use():
    path = default_db()
    assert path.is_file()
    assert resolve_db(None) == path == resolve_db("exoplanets")


def test_resolve_db_errors(tmp_path):
    with pytest.raises(SqltuneError, match="not found"):
        resolve_db(tmp_path / "missing.sqlite")
    bad = tmp_path / "bad.sqlite"
    bad.write_text("hello")
    with pytest.raises(SqltuneError, match="not a SQLite"):
        resolve_db(bad)


def test_a_locked_database_says_so(tmp_path):
    """A database another program holds an exclusive lock on is named as locked, not as unreadable; the file is fine."""
    import sqlite3

    db = tmp_path / "busy.sqlite"
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("CREATE TABLE t (x INT)")
    writer.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(SqltuneError, match=r"busy.sqlite is locked by another program .*try again"):
            resolve_db(db)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert resolve_db(db) == db
