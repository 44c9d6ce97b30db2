import re
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqltune.cli import main
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


def _keys(con, table):
    return sorted((pk, name) for _, name, _, _, _, pk in con.execute(f"PRAGMA table_info({table})") if pk)


@settings(max_examples=60, deadline=None)
@given(types=st.lists(st.sampled_from(["INT", "TEXT", "REAL", "INTEGER"]), min_size=1, max_size=5),
       key=st.lists(st.integers(0, 4), unique=True, max_size=4), data=st.data())
def test_rendered_keys_are_the_database_keys(tmp_path_factory, types, key, data):
    """The schema text says what the database says: fed back to SQLite (comments stripped), it makes
    the same primary key, one column or several (a composite key is one `PRIMARY KEY (a, b)`
    constraint, never `PRIMARY KEY` on each of its columns)."""
    key = [k for k in key if k < len(types)]
    key = data.draw(st.permutations(key))  # the key's column order need not be the table's
    cols = ", ".join(f"c{i} {t}" for i, t in enumerate(types))
    ddl = f"CREATE TABLE t ({cols}" + (f", PRIMARY KEY ({', '.join(f'c{i}' for i in key)})" if key else "") + ")"
    db = tmp_path_factory.mktemp("keys") / "k.sqlite"
    con = sqlite3.connect(db)
    con.execute(ddl)
    con.commit()
    con.close()
    text = schema_text(db, notes=None)
    assert text.count("PRIMARY KEY") == (1 if key else 0)
    back = sqlite3.connect(":memory:")
    back.executescript(re.sub(r"--[^\n]*", "", text))
    want = sqlite3.connect(db)
    assert _keys(back, "t") == _keys(want, "t")
    want.close()
    back.close()


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
