"""sqltune.repair: a failing query's columns rewritten against the schema, kept only when the rewrite runs."""

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqltune.execute import execute
from sqltune.repair import Catalog, catalog, fix, repair_sql


@pytest.fixture()
def music(tmp_path):
    """singer 1-n song (FK), and a stage table with no key to either."""
    p = tmp_path / "music.sqlite"
    con = sqlite3.connect(p)
    con.executescript("""
        CREATE TABLE singer (Singer_ID INTEGER PRIMARY KEY, Name TEXT, Country TEXT, Birth_Year INTEGER);
        CREATE TABLE song (Song_ID INTEGER PRIMARY KEY, Title TEXT, Singer_ID INTEGER REFERENCES singer(Singer_ID),
                           Sales REAL);
        CREATE TABLE stage (Stage_ID INTEGER PRIMARY KEY, Name TEXT, City TEXT);
        INSERT INTO singer VALUES (1, 'Ann', 'France', 1970), (2, 'Bob', 'Peru', 1980);
        INSERT INTO song VALUES (1, 'Sun', 1, 10.0), (2, 'Moon', 1, 5.0), (3, 'Rain', 2, 7.5);
        INSERT INTO stage VALUES (1, 'Main', 'Lima');
    """)
    con.commit()
    con.close()
    return p


def rows(db, sql):
    res = execute(db, sql)
    assert res.ok, res.error
    return sorted(res.rows)


def test_catalog_reads_columns_and_foreign_keys(music):
    cat = catalog(music)
    assert cat.columns["song"] == ("Song_ID", "Title", "Singer_ID", "Sales")
    assert cat.keys == (("song", "Singer_ID", "singer", "Singer_ID"),)
    assert cat.links("singer", "song") == [("Singer_ID", "Singer_ID")]
    assert cat.links("singer", "stage") == []


def test_swapped_alias_is_requalified(music):
    bad = "SELECT T1.Title FROM singer AS T1 JOIN song AS T2 ON T1.Singer_ID = T2.Singer_ID WHERE T1.Name = 'Ann'"
    assert not execute(music, bad).ok
    sql, res, repaired = fix(music, bad)
    assert repaired and res.ok
    assert "T2.Title" in sql
    assert sorted(res.rows) == [("Moon",), ("Sun",)]


def test_column_of_a_neighbour_table_brings_in_the_join(music):
    sql, res, repaired = fix(music, "SELECT Title, Name FROM song")
    assert repaired
    assert "JOIN singer ON song.Singer_ID = singer.Singer_ID" in sql
    assert sorted(res.rows) == rows(music, "SELECT s.Title, g.Name FROM song s JOIN singer g USING (Singer_ID)")


def test_qualifier_naming_a_table_not_in_the_from_joins_it(music):
    sql, res, repaired = fix(music, "SELECT Title FROM song WHERE singer.Country = 'Peru'")
    assert repaired and sorted(res.rows) == [("Rain",)]


def test_undefined_alias_gets_the_join_under_that_alias(music):
    sql, res, repaired = fix(music, "SELECT Title, s.Name FROM song WHERE Sales > 6")
    assert repaired
    assert "JOIN singer AS s" in sql
    assert sorted(res.rows) == [("Rain", "Bob"), ("Sun", "Ann")]


def test_near_spelling_is_the_schema_column(music):
    sql, res, repaired = fix(music, "SELECT Name FROM singer WHERE Birth_Yearr > 1975")
    assert repaired and "Birth_Year" in sql and res.rows == [("Bob",)]


def test_ambiguous_column_after_a_join_takes_the_first_table(music):
    bad = "SELECT Name FROM singer JOIN song ON singer.Singer_ID = song.Singer_ID WHERE Singer_ID = 2"
    assert execute(music, bad).error_kind == "unknown_column"  # "ambiguous column name"
    sql, res, repaired = fix(music, bad)
    assert repaired and res.rows == [("Bob",)]


@pytest.fixture()
def hiring(tmp_path):
    """shop n-m employee through hiring: `Name` is in both of hiring's neighbours, and in neither of its columns."""
    p = tmp_path / "h.sqlite"
    con = sqlite3.connect(p)
    con.executescript("""
        CREATE TABLE shop (Shop_ID INTEGER PRIMARY KEY, Name TEXT);
        CREATE TABLE employee (Employee_ID INTEGER PRIMARY KEY, Name TEXT);
        CREATE TABLE hiring (Shop_ID INTEGER REFERENCES shop(Shop_ID), Employee_ID INTEGER REFERENCES employee(Employee_ID));
        INSERT INTO shop VALUES (1, 'A'), (2, 'B'); INSERT INTO employee VALUES (1, 'x'), (2, 'y');
    """)
    con.close()
    return p


def test_two_neighbours_with_the_column_is_left_alone(hiring):
    p = hiring
    sql = "SELECT count(*), Name FROM hiring GROUP BY Name"
    assert repair_sql(sql, catalog(p)) is None  # shop.Name or employee.Name: a guess, not a repair
    out, res, repaired = fix(p, sql)
    assert not repaired and out == sql and res.error_kind == "unknown_column"


def test_what_runs_is_never_touched(music):
    sql = "SELECT Name FROM singer ORDER BY Birth_Year"
    out, res, repaired = fix(music, sql)
    assert (out, repaired) == (sql, False) and res.ok


@pytest.mark.parametrize("sql", [
    "SELECT Name FROM singer WHERE Country = \"France\"",  # a double-quoted string, not a column
    "SELECT Name AS n FROM singer ORDER BY n",  # an alias of the SELECT list
    "SELECT Name FROM singer WHERE EXISTS (SELECT 1 FROM song WHERE song.Singer_ID = singer.Singer_ID)",  # correlated
    "SELECT t.c FROM (SELECT Name AS c FROM singer) AS t",  # a subquery's column
    "SELECT Name FROM singer WHERE Singer_ID IN (SELECT Singer_ID FROM song WHERE Sales > 6)",
])
def test_queries_that_resolve_are_not_rewritten(music, sql):
    assert execute(music, sql).ok
    assert repair_sql(sql, catalog(music)) is None


def test_other_failures_are_not_repaired(music):
    for bad in ("SELECT Name FROM singers", "SELEC Name FROM singer", "SELECT nosuch(Name) FROM singer"):
        first = execute(music, bad)
        out, res, repaired = fix(music, bad)
        assert (out, repaired, res.error) == (bad, False, first.error)


def test_invented_column_with_no_owner_stays_failing(music):
    out, res, repaired = fix(music, "SELECT Name FROM singer WHERE Genre = 'pop'")
    assert not repaired and res.error_kind == "unknown_column"


def test_subquery_column_is_resolved_in_its_own_query(music):
    # the outer query gets the join; `Name` inside the subquery stays the subquery's own table's
    sql, res, repaired = fix(music, "SELECT Title FROM song WHERE singer.Name = (SELECT Name FROM singer WHERE Singer_ID = 2)")
    assert repaired and res.rows == [("Rain",)]
    assert "(SELECT Name FROM singer WHERE Singer_ID = 2)" in sql


def test_write_statements_stay_rejected_after_repair(music):
    out, res, repaired = fix(music, "DELETE FROM singer WHERE Nme = 'Ann'")
    assert not repaired and res.error_kind == "rejected"
    assert rows(music, "SELECT COUNT(*) FROM singer") == [(2,)]


def test_unreadable_database_gives_an_empty_catalog(tmp_path):
    p = tmp_path / "junk.sqlite"
    p.write_bytes(b"not a database at all" * 100)
    assert catalog(p) == Catalog({}, ())
    assert repair_sql("SELECT a FROM b", catalog(p)) is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_repair_never_raises(text):
    cat = Catalog({"singer": ("Singer_ID", "Name"), "song": ("Singer_ID", "Title")},
                  (("song", "Singer_ID", "singer", "Singer_ID"),))
    out = repair_sql(text, cat)
    assert out is None or isinstance(out, str)


def test_a_join_condition_is_never_made_to_compare_a_column_with_itself(hiring):
    """`e.Shop_ID = s.Shop_ID` where employee has no Shop_ID: qualifying it with `s` would run (a cross join that
    means nothing); the join needs the table between them, which is not a repair."""
    p = hiring
    sql = "SELECT s.Name, COUNT(e.Employee_ID) FROM employee AS e JOIN shop AS s ON e.Shop_ID = s.Shop_ID GROUP BY s.Name"
    out, res, repaired = fix(p, sql)
    assert not repaired and out == sql and res.error_kind == "unknown_column"
