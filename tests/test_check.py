"""`data check`: normalisation, leakage, nondeterminism, and the shipped splits."""

import json

import pytest

from sqltune.check import (
    LeakIndex,
    check_items,
    leaks,
    normalize_question,
    normalize_sql,
    sql_skeleton,
    volatile_calls,
)
from sqltune.cli import main
from sqltune.dataset import load_items


def test_normalize_question():
    assert normalize_question("  How many  Planets were found in 2016? ") == normalize_question("how many planets were found in 2016")
    assert normalize_question("Kepler-11’s planets") != normalize_question("Kepler-12’s planets")


def test_normalize_sql_keeps_literals():
    a = "select NAME from Exoplanets where discovery_year = 2016;"
    b = "SELECT name\nFROM exoplanets\nWHERE discovery_year=2016"
    assert normalize_sql(a) == normalize_sql(b)
    assert normalize_sql(b) != normalize_sql(b.replace("2016", "2015"))


def test_sql_skeleton():
    base = "SELECT e.name, e.mass_multiplier * r.mass AS mass_kg FROM exoplanets e JOIN reference_planets r ON e.mass_wrt = r.name WHERE e.discovery_year = 2016 ORDER BY mass_kg DESC LIMIT 5"
    same = [
        base.replace("2016", "2003").replace("LIMIT 5", "LIMIT 3"),  # other literals
        base.replace("mass_kg", "kg").replace(" e ", " p ").replace("e.", "p."),  # other aliases
        "select x.name, x.mass_multiplier*y.mass as m from exoplanets as x join reference_planets as y "
        "on x.mass_wrt=y.name where x.discovery_year=1999 order by m desc limit 10",
    ]
    for sql in same:
        assert sql_skeleton(sql) == sql_skeleton(base), sql
    assert sql_skeleton(base) != sql_skeleton(base.replace("discovery_year", "distance"))
    assert sql_skeleton(base) != sql_skeleton(base.replace("= 2016", "< 2016"))
    assert sql_skeleton("SELECT 1 FROM t WHERE a IN (1, 2)") == sql_skeleton("SELECT 1 FROM t WHERE a IN (5, 6, 7)")
    assert sql_skeleton("SELECT name FROM t WHERE c LIKE 'Kepler-11 %'") == sql_skeleton("SELECT name FROM t WHERE c LIKE 'TRAPPIST-1 %'")


def test_leaks_for_one_new_item():
    against = [{"id": "train-1", "question": "How many books were published before 1900?",
                "sql": "SELECT COUNT(*) FROM books WHERE year < 1900"}]
    assert leaks({"question": "how many books were published before 1900", "sql": "SELECT 1"}, against) == [
        "same question as train-1"]
    assert leaks({"question": "x", "sql": "select count(*) from BOOKS where year<1900;"}, against) == ["same SQL as train-1"]
    assert leaks({"question": "x", "sql": "SELECT COUNT(*) FROM books WHERE year < 1950"}, against, "train") == [
        "same SQL skeleton as train/train-1"]
    assert leaks({"question": "Books after 1900?", "sql": "SELECT COUNT(*) FROM books WHERE year > 1900"}, against) == []
    index = LeakIndex(against, "train")
    index.add({"id": "new-1", "question": "q", "sql": "SELECT title FROM books"}, "aug")
    assert index.leaks({"question": "Q?", "sql": "SELECT title FROM books"}) == ["same question as aug/new-1",
                                                                                 "same SQL as aug/new-1"]


def test_volatile_calls():
    assert volatile_calls("SELECT name FROM t WHERE y >= strftime('%Y', 'now') - 2") == ["'now'"]
    assert volatile_calls("SELECT name FROM t ORDER BY random() LIMIT 1") == ["random()"]
    assert volatile_calls("SELECT name FROM t WHERE name = 'now'") == []


# ---------------------------------------------------------------- planted problems on the tiny DB
PLANTED = {
    "train": [
        {"id": "ok", "question": "Books before 1900?", "sql": "SELECT title FROM books WHERE year < 1900"},
        {"id": "fails", "question": "Broken?", "sql": "SELECT nope FROM books"},
        {"id": "empty", "question": "Books after 2000?", "sql": "SELECT title FROM books WHERE year > 2000"},
        {"id": "empty-ok", "question": "Books after 2010?", "sql": "SELECT title FROM books WHERE year > 2010",
         "notes": "Empty on purpose: no book is that recent."},
        {"id": "tie", "question": "Which author is from the last country alphabetically?",
         "sql": "SELECT name FROM authors ORDER BY country DESC LIMIT 1"},
        {"id": "tie-broken", "question": "Which author comes last by country, then name?",
         "sql": "SELECT name FROM authors ORDER BY country DESC, name LIMIT 1"},
        {"id": "sub-tie", "question": "How many books has the author from the last country written?",
         "sql": "SELECT COUNT(*) FROM books WHERE author_id IN (SELECT id FROM authors ORDER BY country DESC LIMIT 1)"},
        {"id": "no-order", "question": "Any two titles?", "sql": "SELECT title FROM books LIMIT 2"},
        {"id": "order-ties", "question": "Authors by country?", "sql": "SELECT name, country FROM authors ORDER BY country"},
        {"id": "window", "question": "Number the authors by country.",
         "sql": "SELECT name, ROW_NUMBER() OVER (ORDER BY country) AS n FROM authors"},
        {"id": "concat", "question": "All titles in one string?", "sql": "SELECT group_concat(title) FROM books"},
        {"id": "clock", "question": "Books from the last 100 years?",
         "sql": "SELECT title FROM books WHERE year > strftime('%Y', 'now') - 100"},
        {"id": "dup", "question": "books before 1900", "sql": "SELECT title FROM books WHERE year < 1900"},
        {"id": "ok", "question": "Dup id?", "sql": "SELECT COUNT(*) FROM authors"},
    ],
    "test": [
        {"id": "t-leak", "question": "Which books are older than 1950?", "sql": "SELECT title FROM books WHERE year < 1950"},
        {"id": "t-same-q", "question": "Broken?", "sql": "SELECT COUNT(*) FROM sales"},
        {"id": "t-clean", "question": "Total copies sold?", "sql": "SELECT SUM(copies) FROM sales"},
    ],
}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from conftest import make_tiny_db

    return check_items(make_tiny_db(tmp_path_factory.mktemp("planted") / "tiny.sqlite"), PLANTED)


def kinds(report, file, item_id):
    return sorted(f.kind for f in report.for_item(file, item_id))


@pytest.mark.parametrize("file,item_id,expected", [
    ("train", "fails", ["error"]),
    ("train", "empty", ["empty"]),
    ("train", "empty-ok", []),
    ("train", "tie", ["limit_tie"]),
    ("train", "tie-broken", []),
    ("train", "sub-tie", ["limit_tie"]),
    ("train", "no-order", ["unordered_limit"]),
    ("train", "order-ties", ["order_ties"]),
    ("train", "window", ["window_ties"]),
    ("train", "concat", ["order_dependent"]),
    ("train", "clock", ["volatile"]),
    ("train", "dup", ["duplicate_question", "duplicate_sql"]),
    ("test", "t-leak", ["leak"]),
    ("test", "t-same-q", ["leak"]),
    ("test", "t-clean", []),
])
def test_planted_findings(planted, file, item_id, expected):
    assert kinds(planted, file, item_id) == expected


def test_planted_levels_and_messages(planted):
    assert {(f.id, f.kind) for f in planted.errors} == {
        ("fails", "error"), ("ok", "duplicate_id"), ("t-leak", "leak"), ("t-same-q", "leak")}
    assert not planted.ok
    (tie,) = [f for f in planted.findings if f.id == "tie"]
    assert "rows 1 and 2 tie on the ORDER BY keys ('UK')" in tie.message
    (leak,) = planted.for_item("test", "t-leak")
    assert leak.message == "same SQL skeleton as train/ok"
    assert planted.to_dict()["errors"] == 4


def write(path, items):
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    return str(path)


def test_cli_exit_codes(tiny_db, tmp_path, capsys):
    train = write(tmp_path / "train.jsonl", PLANTED["train"][:1])
    test = write(tmp_path / "test.jsonl", PLANTED["test"][:1])
    assert main(["data", "check", "--db", str(tiny_db), "--data", train, "--data", test]) == 1
    captured = capsys.readouterr()
    assert "same SQL skeleton as train.jsonl/ok" in captured.out and "1 errors, 0 warnings" in captured.out
    assert captured.err.strip().startswith("error: data check failed: 1 errors")
    warn = write(tmp_path / "warn.jsonl", [PLANTED["train"][2]])
    report = tmp_path / "report.json"
    assert main(["data", "check", "--db", str(tiny_db), "--data", warn, "--out", str(report)]) == 0
    assert json.loads(report.read_text())["warnings"] == 1
    assert main(["data", "path", "exoplanets"]) == 0
    assert capsys.readouterr().out.strip().endswith("exoplanets")


# ---------------------------------------------------------------- the shipped splits
def test_shipped_splits_pass_alone_and_together(exo_db):
    """One run over all three covers each split alone too: per-item findings don't depend on the
    other files, and checking them together only adds the leakage tests between them."""
    files = {f"exoplanets:{s}": load_items(f"exoplanets:{s}") for s in ("train", "valid", "test")}
    report = check_items(exo_db, files)
    assert report.findings == []
    assert report.files == {"exoplanets:train": len(files["exoplanets:train"]), "exoplanets:valid": 10,
                            "exoplanets:test": len(files["exoplanets:test"])}


# ---------------------------------------------------------------- units (issue 13)
OLD_TRAIN_007 = """WITH min_radius AS (
    SELECT discovery_year, MIN(radius_multiplier) AS min_radius
    FROM exoplanets
    GROUP BY discovery_year
)
SELECT e.discovery_year, e.name, e.radius_multiplier
FROM exoplanets e
JOIN min_radius m ON e.discovery_year = m.discovery_year
WHERE e.radius_multiplier = m.min_radius"""


def test_multiplier_compared_without_its_unit_is_a_warning(exo_db):
    from sqltune.check import check_items, mixed_units, unit_columns

    units = unit_columns(exo_db)
    assert units == {"mass_multiplier": "mass_wrt", "radius_multiplier": "radius_wrt"}
    assert mixed_units(OLD_TRAIN_007, units) == ["radius_multiplier"]
    assert mixed_units("SELECT name FROM exoplanets ORDER BY mass_multiplier DESC LIMIT 3", units) == ["mass_multiplier"]
    assert mixed_units("SELECT name FROM exoplanets WHERE radius_multiplier BETWEEN 1 AND 2", units) == ["radius_multiplier"]
    # the unit is read: by a filter, a join to reference_planets, or a conversion
    assert mixed_units("SELECT name FROM exoplanets WHERE mass_wrt = 'Earth' AND mass_multiplier > 2", units) == []
    assert mixed_units("SELECT MAX(e.mass_multiplier * r.mass) FROM exoplanets e "
                       "JOIN reference_planets r ON e.mass_wrt = r.name", units) == []
    # shown or tested for NULL only: nothing is compared
    assert mixed_units("SELECT name, radius_multiplier FROM exoplanets WHERE radius_multiplier IS NOT NULL", units) == []
    rep = check_items(exo_db, {"train": [{"id": "t7", "question": "q", "sql": OLD_TRAIN_007}]})
    assert [(f.kind, f.level) for f in rep.findings] == [("mixed_units", "warning")]
    assert "radius_wrt" in rep.findings[0].message


def test_shipped_items_fixed_by_issue_13():
    train = {it["id"]: it for it in load_items("exoplanets:train")}
    test = {it["id"]: it for it in load_items("exoplanets:test")}
    assert "radius_wrt" in train["train-007"]["sql"]
    assert "distance < 1000" in test["test-048"]["sql"] and "<=" not in test["test-048"]["sql"]


def test_a_gold_query_naming_a_column_where_it_is_not_gets_the_schemas_reading(tmp_path):
    """A seed whose SQL fails on a column of another table: the error says what the schema repair reads it as."""
    from conftest import make_tiny_db

    db = make_tiny_db(tmp_path / "tiny.sqlite")
    rep = check_items(db, {"train": [
        {"id": "x", "question": "Titles with author names?", "sql": "SELECT title, name FROM books"},
        {"id": "y", "question": "Genres?", "sql": "SELECT genre FROM books"}]})
    (x,) = rep.for_item("train", "x")
    assert x.kind == "error" and "no such column: name" in x.message
    assert "did you mean: SELECT title, authors.name FROM books JOIN authors ON books.author_id = authors.id" in x.message
    (y,) = rep.for_item("train", "y")
    assert y.kind == "error" and "did you mean" not in y.message
