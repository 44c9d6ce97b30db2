import re
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqltune.cli import main
from sqltune.errors import SqltuneError
from sqltune.schema import describe, render, schema_text


def test_exoplanets_schema_text(exo_db):
    text = schema_text(exo_db)
    assert "CREATE TABLE exoplanets (  -- 5250 rows" in text
    assert "mass_wrt TEXT REFERENCES reference_planets(name)" in text
    assert "name TEXT PRIMARY KEY" in text
    # the full value list of a low-cardinality text column
    for t in ("'Gas Giant'", "'Neptune-like'", "'Super Earth'", "'Terrestrial'"):
        assert t in text
    # notes shipped beside the DB explain units and mass_wrt
    assert "light years" in text and "mass_multiplier * reference_planets.mass" in text
    assert len(text) < 4000  # it goes into every prompt


def test_schema_keys_and_samples(tiny_db):
    s = describe(tiny_db)
    books = {t.name: t for t in s.tables}["books"]
    cols = {c.name: c for c in books.columns}
    assert cols["id"].pk and cols["author_id"].fk == "authors.id"
    assert cols["price"].nulls == 1
    assert books.rows == 6
    assert len(cols["title"].samples) <= 3


def test_notes_yaml_and_markdown(tiny_db, tmp_path):
    y = tmp_path / "n.yaml"
    y.write_text("books:\n  price: in euros\n")
    assert "price: in euros" in render(describe(tiny_db, y))
    beside = tiny_db.parent / "tiny.notes.md"
    beside.write_text("Sales are monthly.")
    assert "Sales are monthly." in schema_text(tiny_db)


def test_cli_schema_errors(tmp_path, capsys, tiny_db):
    assert main(["schema", "--db", str(tmp_path / "nope.sqlite")]) == 2
    assert main(["schema", "--db", str(tiny_db), "--notes", str(tmp_path / "nope.md")]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [unclosed")
    assert main(["schema", "--db", str(tiny_db), "--notes", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "not valid YAML" in err


def test_a_table_sqlite_cannot_read_is_one_line_naming_it(tmp_path, capsys):
    from sqltune.schema import table_names

    db = tmp_path / "broken view.sqlite"
    con = sqlite3.connect(db)
    con.executescript("CREATE TABLE base (x INT); CREATE TABLE kept (y INT); CREATE VIEW v AS SELECT x FROM base; "
                      "DROP TABLE base;")  # the view now reads a table that is gone
    con.close()
    before = db.read_bytes()
    assert main(["schema", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert 'cannot read "v"' in err and "no such table: main.base" in err
    with pytest.raises(SqltuneError, match='cannot read "v"'):
        table_names(db)
    assert db.read_bytes() == before


def _shape(con):
    """What a database says about its tables: columns in order, the primary key, the foreign keys."""
    out = {}
    for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
        info = con.execute(f"PRAGMA table_info({_q(t)})").fetchall()
        fks = sorted((r[3], r[2], r[4]) for r in con.execute(f"PRAGMA foreign_key_list({_q(t)})"))
        out[t] = ([r[1] for r in info], sorted((r[5], r[1]) for r in info if r[5]), fks)
    return out


def _q(name):
    return '"' + name.replace('"', '""') + '"'


# names a user's database may have: plain, SQL keywords, spaces, brackets, a leading digit, other letters
NAMES = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
    st.sampled_from(["order", "group", "values", "select", "Date", "type", "name", "index", "check", "limit"]),
    st.from_regex(r"[A-Za-z0-9_ ()%/.é]{1,12}", fullmatch=True).filter(lambda n: n.strip() == n and n),
)


@settings(max_examples=80, deadline=None)
@given(names=st.lists(NAMES, min_size=3, max_size=7, unique_by=str.lower),
       types=st.lists(st.sampled_from(["INT", "TEXT", "REAL", "INTEGER"]), min_size=7, max_size=7),
       key=st.lists(st.integers(0, 4), unique=True, max_size=3), data=st.data())
def test_the_schema_text_is_the_database_schema(tmp_path_factory, names, types, key, data):
    """Fed back to SQLite (comments stripped), the schema text makes the same tables: the same column
    names, the same primary key (one column or several: a composite key is one `PRIMARY KEY (a, b)`
    constraint, never `PRIMARY KEY` on each column, which would say each alone is unique) and the same
    foreign keys, whatever the names (keywords and names with spaces or brackets are quoted)."""
    parent, *cols = names
    key = data.draw(st.permutations([k for k in key if k < len(cols)]))  # the key's order need not be the table's
    body = ", ".join(f"{_q(c)} {types[i]}" for i, c in enumerate(cols))
    if key:
        body += ", PRIMARY KEY (" + ", ".join(_q(cols[i]) for i in key) + ")"
    child_ref = cols[key[0]] if len(key) == 1 else cols[0]
    ddl = (f"CREATE TABLE {_q(parent)} ({body});"
           f"CREATE TABLE {_q(parent + ' child')} (ref {types[0]} REFERENCES {_q(parent)}({_q(child_ref)}), x TEXT);")
    db = tmp_path_factory.mktemp("shape") / "s.sqlite"
    con = sqlite3.connect(db)
    con.executescript(ddl)
    values = data.draw(st.lists(st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=12)), min_size=len(cols),
                                max_size=len(cols)))
    for r in range(2):  # rows with NULLs and texts holding quotes, '--' or line breaks: all must stay in comments
        row = [r if i in key else v for i, v in enumerate(values)]
        con.execute(f"INSERT INTO {_q(parent)} VALUES ({', '.join('?' * len(cols))})", row)
    con.commit()
    con.close()
    text = schema_text(db, notes=None)
    assert text.count("PRIMARY KEY") == (1 if key else 0)
    back = sqlite3.connect(":memory:")
    back.executescript(re.sub(r"--[^\n]*", "", text))
    want = sqlite3.connect(db)
    assert _shape(back) == _shape(want)
    want.close()
    back.close()


def test_what_a_comment_line_says(tmp_path):
    """A column NULL in every row says so (not an empty `one of:`); a sample with a line break stays on its
    comment line; a bare `REFERENCES t` names the column it points at (t's key), not rowid."""
    db = tmp_path / "c.sqlite"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE people (People_ID INT PRIMARY KEY, Name TEXT, Other TEXT, Score REAL);
        CREATE TABLE player (id INT PRIMARY KEY, People_ID INT REFERENCES people);
        INSERT INTO people VALUES (1, 'Ann' || char(10) || 'Lee', NULL, NULL), (2, 'Bo', NULL, NULL);
        INSERT INTO player VALUES (1, 1);
    """)
    con.close()
    text = schema_text(db)
    assert "  Other TEXT,  -- NULL in every row" in text
    assert "  Score REAL  -- NULL in every row" in text  # not a bare "(2 NULL)" outside any comment
    assert "  Name TEXT,  -- e.g. 'Ann Lee', 'Bo'" in text
    assert "People_ID INT REFERENCES people(People_ID)" in text
    assert all(line.startswith(("CREATE TABLE", "  ", ");")) for line in text.splitlines())


def test_blob_samples_are_short_sql_literals(tmp_path):
    """A BLOB sample is an X'..' literal cut to the text samples' length, not Python's b'...' of the whole value
    (a 2 KB image in a comment would fill the prompt)."""
    db = tmp_path / "b.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE img (id INT PRIMARY KEY, data BLOB)")
    con.executemany("INSERT INTO img VALUES (?, ?)", [(1, bytes(range(256)) * 8), (2, b"\x01\x02")])
    con.commit()
    con.close()
    line = next(ln for ln in schema_text(db).splitlines() if ln.strip().startswith("data BLOB"))
    assert "X'000102030405060708090A0B0C0D0E0F1011…'" in line and "X'0102'" in line, line
    assert "b'" not in line and len(line) < 120


def test_composite_key_beside_foreign_keys(tmp_path):
    """network_1's Friend: (student_id, friend_id) together is the key, each a reference to Highschooler;
    neither column alone is unique, and the text must not say it is."""
    db = tmp_path / "net.sqlite"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE Highschooler (ID INT PRIMARY KEY, name TEXT);
        CREATE TABLE Friend (student_id INT, friend_id INT, PRIMARY KEY (student_id, friend_id),
            FOREIGN KEY (student_id) REFERENCES Highschooler(ID), FOREIGN KEY (friend_id) REFERENCES Highschooler(ID));
        INSERT INTO Highschooler VALUES (1, 'Jordan'), (2, 'Gabriel');
        INSERT INTO Friend VALUES (1, 2), (2, 1);
    """)
    con.close()
    text = schema_text(db)
    friend = text[text.index("CREATE TABLE Friend"):].split(");")[0]
    assert "  student_id INT REFERENCES Highschooler(ID),  -- e.g. 1, 2" in friend
    assert "  friend_id INT REFERENCES Highschooler(ID),  -- e.g. 2, 1" in friend
    assert friend.rstrip().endswith("PRIMARY KEY (student_id, friend_id)")
    assert "ID INT PRIMARY KEY," in text  # a one-column key stays on its column
