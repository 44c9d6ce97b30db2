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
