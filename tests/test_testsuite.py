"""Test suites (sqltune.testsuite): planted right-by-accident cases, equivalent rewrites, variant
constraints, the fingerprint cache and bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from sqltune.cli import main
from sqltune.errors import SqltuneError
from sqltune.score import score_pairs
from sqltune.testsuite import SuiteConfig, build_suite, load_suite, make_variant, neighbours, read_schema

SCHEMA = """
CREATE TABLE dept (id INTEGER PRIMARY KEY, dname TEXT NOT NULL UNIQUE, floor INTEGER);
CREATE TABLE people (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER NOT NULL, city TEXT,
  dept_id INTEGER NOT NULL REFERENCES dept(id), boss_id INTEGER REFERENCES people(id));
CREATE TABLE skill (person_id INTEGER NOT NULL REFERENCES people(id), skill TEXT NOT NULL, level INTEGER,
  PRIMARY KEY (person_id, skill));
"""

# The real data is chosen so that the planted wrong queries return the gold rows on it:
# nobody is 30 (so `age < 30` == `age <= 30`), everybody lives in Paris (the city filter removes
# nothing), and the oldest person is unique (so `ORDER BY age DESC LIMIT 1` finds all of them).
PEOPLE = [(1, "Ann", 25, "Paris", 1, None), (2, "Bob", 31, "Paris", 2, 1), (3, "Cid", 28, "Paris", 1, 1),
          (4, "Dee", 45, "Paris", 3, 2), (5, "Eve", 22, "Paris", 2, 4), (6, "Fay", 33, "Paris", 3, 4),
          (7, "Gus", 29, "Paris", 1, 2), (8, "Hal", 38, "Paris", 2, 6)]


def make_db(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    con.executemany("INSERT INTO dept VALUES (?, ?, ?)", [(1, "Sales", 1), (2, "R&D", 2), (3, "Ops", 2)])
    con.executemany("INSERT INTO people VALUES (?, ?, ?, ?, ?, ?)", PEOPLE)
    con.executemany("INSERT INTO skill VALUES (?, ?, ?)",
                    [(1, "sql", 3), (1, "go", 1), (2, "sql", 2), (4, "rust", 5), (5, "sql", 4), (7, "go", 2)])
    con.commit()
    con.close()
    return path


GOLD = [
    {"id": "lt", "question": "Who is younger than 30?", "sql": "SELECT name FROM people WHERE age < 30"},
    {"id": "city", "question": "Who lives in Paris?", "sql": "SELECT name FROM people WHERE city = 'Paris'"},
    {"id": "oldest", "question": "Who is the oldest?",
     "sql": "SELECT name FROM people WHERE age = (SELECT MAX(age) FROM people)"},
    {"id": "sales", "question": "Who works in Sales?",
     "sql": "SELECT p.name FROM people AS p JOIN dept AS d ON p.dept_id = d.id WHERE d.dname = 'Sales'"},
    {"id": "count", "question": "How many people are there?", "sql": "SELECT COUNT(*) FROM people"},
    {"id": "pairs", "question": "Names and ages of people over 30.", "sql": "SELECT name, age FROM people WHERE age > 30"},
    {"id": "skills", "question": "How many people have each skill?",
     "sql": "SELECT skill, COUNT(*) FROM skill GROUP BY skill"},
]

# right by accident: exact says yes, the suite must say no
WRONG = {
    "lt": "SELECT name FROM people WHERE age <= 30",
    "city": "SELECT name FROM people",
    "oldest": "SELECT name FROM people ORDER BY age DESC LIMIT 1",
}
# equivalent rewrites: both must say yes
SAME = {
    "sales": "SELECT name FROM people WHERE dept_id IN (SELECT id FROM dept WHERE dname = 'Sales')",
    "count": "SELECT COUNT(id) FROM people",
    "skills": "SELECT s.skill, COUNT(s.person_id) FROM skill s GROUP BY s.skill",
    "pairs": "SELECT p.name, p.age FROM people p WHERE NOT p.age <= 30",
}


@pytest.fixture
def db(tmp_path) -> Path:
    return make_db(tmp_path / "people.sqlite")


@pytest.fixture
def suite(db, tmp_path):
    return build_suite(db, GOLD, tmp_path / "suite", SuiteConfig(seed=0))


def test_neighbours_are_one_edit_away():
    nbs = neighbours("SELECT name FROM t WHERE a < 3 AND b = 'x' ORDER BY name LIMIT 2")
    assert "SELECT name FROM t WHERE a <= 3 AND b = 'x' ORDER BY name LIMIT 2" in nbs  # operator
    assert "SELECT name FROM t WHERE b = 'x' ORDER BY name LIMIT 2" in nbs  # predicate dropped
    assert "SELECT name FROM t WHERE a < 4 AND b = 'x' ORDER BY name LIMIT 2" in nbs  # constant
    assert "SELECT name FROM t WHERE a < 3 AND b = 'x' ORDER BY name" in nbs  # LIMIT dropped
    assert "SELECT name FROM t WHERE a < 3 AND b = 'x' ORDER BY name LIMIT 3" in nbs  # LIMIT changed
    assert "SELECT DISTINCT name FROM t WHERE a < 3 AND b = 'x' ORDER BY name LIMIT 2" in nbs  # DISTINCT
    assert "SELECT name FROM t WHERE a < 3 OR b = 'x' ORDER BY name LIMIT 2" in nbs  # connective
    assert "SELECT MIN(x) FROM t" in neighbours("SELECT MAX(x) FROM t")  # aggregate
    assert "SELECT b FROM t" in neighbours("SELECT a FROM t", {"a": ["b"]})  # column
    assert "SELECT name FROM t WHERE a < 3" not in nbs and len(nbs) == len(set(nbs))
    assert neighbours("SELEC nonsense ((") == []


def test_planted_right_by_accident_and_equivalent_rewrites(db, suite):
    preds = {g["id"]: g["sql"] for g in GOLD} | WRONG | SAME
    plain = score_pairs(db, GOLD, [preds[g["id"]] for g in GOLD])
    rep = score_pairs(db, GOLD, [preds[g["id"]] for g in GOLD], test_suite=suite.folder)
    ex = {e["id"]: e for e in rep["examples"]}
    assert all(e["exact"] for e in plain["examples"])  # on the real data every prediction matches
    assert "suite" not in plain["examples"][0] and "suite" not in plain["summary"]
    for qid in WRONG:
        assert ex[qid]["exact"] and ex[qid]["suite"] is False, qid
    for qid in SAME:
        assert ex[qid]["exact"] and ex[qid]["suite"] is True, qid
    assert rep["summary"]["right_by_accident"] == len(WRONG)
    assert rep["summary"]["suite"] == pytest.approx((len(GOLD) - len(WRONG)) / len(GOLD))


def test_gold_itself_always_passes_and_suite_implies_exact(db, suite):
    rep = score_pairs(db, GOLD, [g["sql"] for g in GOLD], test_suite=suite.folder)
    assert all(e["suite"] for e in rep["examples"])
    swapped = score_pairs(db, GOLD, ["SELECT age, name FROM people WHERE age > 30" if g["id"] == "pairs" else None
                                     for g in GOLD], test_suite=suite.folder)
    for e in swapped["examples"]:  # column order: the suite agrees with exact (columns by position)
        assert e["suite"] == e["exact"] is False
    assert swapped["examples"][5]["fuzzy"]


def test_ties_at_a_limit_do_not_judge_the_gold(db, tmp_path):
    gold = [{"id": "top", "question": "q", "sql": "SELECT name FROM people ORDER BY age DESC LIMIT 1"}]
    s = build_suite(db, gold, tmp_path / "s2", SuiteConfig(seed=1))
    pred = ["SELECT name FROM people WHERE age = (SELECT MAX(age) FROM people)"]
    rep = score_pairs(db, gold, pred, test_suite=s.folder)
    # the prediction returns all tied rows where the gold picks one arbitrarily: never held against it
    assert rep["examples"][0]["suite"] is True


def test_variants_keep_the_constraints(db, tmp_path):
    tables, extra = read_schema(db)
    for seed in range(15):
        path = make_variant(tables, extra, tmp_path / f"v{seed}.sqlite", seed=seed, rows_per_table=30)
        con = sqlite3.connect(path)
        try:
            assert con.execute("PRAGMA foreign_key_check").fetchall() == []
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            n, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM people").fetchone()
            assert 1 <= n <= 30 and n == distinct
            assert con.execute("SELECT COUNT(*) FROM people WHERE name IS NULL OR age IS NULL OR dept_id IS NULL"
                               ).fetchone()[0] == 0
            pairs = con.execute("SELECT COUNT(*), COUNT(DISTINCT person_id || '/' || skill) FROM skill").fetchone()
            assert pairs[0] == pairs[1]
            assert con.execute("SELECT COUNT(*) FROM dept").fetchone()[0] == con.execute(
                "SELECT COUNT(DISTINCT dname) FROM dept").fetchone()[0]
            assert {type(a) for (a,) in con.execute("SELECT age FROM people")} == {int}
            sql = [r[0] for r in con.execute("SELECT sql FROM sqlite_master WHERE name = 'people'")]
            assert "REFERENCES dept(id)" in sql[0]  # same schema text as the real DB
        finally:
            con.close()
    # the gold's constant (30, never in the real data) reaches the kept variants
    assert 30 not in {a for (_, _, a, *_r) in PEOPLE}
    s = build_suite(db, GOLD, tmp_path / "s3")
    variant_ages = set()
    for v in s.meta["variants"]:
        con = sqlite3.connect(Path(s.folder) / v["file"])
        variant_ages |= {a for (a,) in con.execute("SELECT age FROM people")}
        con.close()
    assert 30 in variant_ages


def test_cache_reuse_and_fingerprint_invalidation(db, tmp_path):
    cfg = SuiteConfig(candidates=6, patience=3)
    first = build_suite(db, GOLD, cfg=cfg)  # default folder: the cache, keyed by the fingerprint
    assert not first.cached and "testsuites" in str(first.folder)
    assert first.folder.parent != db.parent
    again = build_suite(db, GOLD, cfg=cfg)
    assert again.cached and again.folder == first.folder
    other = build_suite(db, GOLD[:3], cfg=cfg)  # other data: another fingerprint, another folder
    assert not other.cached and other.folder != first.folder
    con = sqlite3.connect(db)  # the database changes
    con.execute("INSERT INTO people VALUES (9, 'Ida', 30, 'Lyon', 1, NULL)")
    con.commit()
    con.close()
    with pytest.raises(SqltuneError, match="another database"):
        score_pairs(db, GOLD, [g["sql"] for g in GOLD], test_suite=first.folder)
    fresh = build_suite(db, GOLD, cfg=cfg)
    assert not fresh.cached and fresh.folder != first.folder
    out = tmp_path / "mine"  # an explicit folder is rebuilt in place when stale
    build_suite(db, GOLD, out, cfg)
    assert build_suite(db, GOLD, out, cfg).cached
    rebuilt = build_suite(db, GOLD, out, SuiteConfig(seed=5, candidates=6, patience=3))
    assert not rebuilt.cached and load_suite(out)["config"]["seed"] == 5


def test_cli_build_and_score(db, tmp_path, capsys):
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(g) + "\n" for g in GOLD))
    pred = tmp_path / "pred.jsonl"
    preds = {g["id"]: g["sql"] for g in GOLD} | WRONG
    pred.write_text("".join(json.dumps({"id": g["id"], "sql": preds[g["id"]]}) + "\n" for g in GOLD))
    out = tmp_path / "suite"
    assert main(["testsuite", "build", "--db", str(db), "--data", str(gold), "--out", str(out)]) == 0
    assert (out / "suite.json").is_file() and "7 questions" in capsys.readouterr().out
    report = tmp_path / "report.json"
    assert main(["score", "--db", str(db), "--gold", str(gold), "--pred", str(pred), "--test-suite", str(out),
                 "--out", str(report)]) == 0
    text = capsys.readouterr().out
    assert "right by accident" in text and "suite" in text
    rep = json.loads(report.read_text())
    assert rep["summary"]["right_by_accident"] == 3
    assert sorted(e["id"] for e in rep["examples"] if e["exact"] and not e["suite"]) == sorted(WRONG)


@pytest.mark.parametrize("args, message", [
    (["testsuite", "build", "--data", "{tmp}/missing.jsonl"], "not found"),
    (["testsuite", "build", "--data", "{gold}", "--out", "{tmp}/busy"], "not a test suite"),
    (["testsuite", "build", "--data", "{gold}", "--out", "{tmp}"], "beside the database"),
    (["testsuite", "build", "--data", "{bad}"], "fails on the database"),
    (["score", "--gold", "{gold}", "--pred", "{gold}", "--test-suite", "{tmp}/nowhere"], "not a test suite"),
])
def test_bad_input_is_one_line(db, tmp_path, capsys, args, message):
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(g) + "\n" for g in GOLD))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "sql": "SELECT nope FROM people"}) + "\n")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("user file")
    argv = [a.format(tmp=tmp_path, gold=gold, bad=bad) for a in args] + ["--db", str(db)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert (tmp_path / "busy" / "keep.txt").read_text() == "user file"


def test_recipe_switch_scores_run_stages_with_the_suite(db, tmp_path, monkeypatch):
    from sqltune import generate
    from sqltune.evaluate import EvalConfig
    from sqltune.recipe import load_recipe
    from sqltune.report import build_markdown
    from sqltune.run import RunFolder, evaluate_stage

    assert load_recipe(overrides={"eval": {"test_suite": True}}).eval.test_suite is True
    assert load_recipe().eval.test_suite is False
    preds = {g["id"]: g["sql"] for g in GOLD} | WRONG
    by_question = {g["question"]: preds[g["id"]] for g in GOLD}
    monkeypatch.setattr(generate, "generate_sql", lambda m, t, b, qs, **kw: [
        generate.Generation(q, by_question[q], by_question[q], 0.0) for q in qs])
    cfg = EvalConfig(progress=False)
    reps = evaluate_stage(RunFolder(tmp_path / "run"), "base", None, None, None, {"valid": GOLD}, db, cfg, ["valid"],
                          test_suite=True)
    summary = reps["valid"]["summary"]
    assert summary["right_by_accident"] == 3 and summary["exact"] == 1.0
    md = build_markdown("t", {"base": {"valid": summary}}, {"base": reps}, [], {}, {}, {})
    assert "| valid | suite |" in md and "Right by accident" in md and "Who lives in Paris?" in md
    plain = evaluate_stage(RunFolder(tmp_path / "run2"), "base", None, None, None, {"valid": GOLD}, db, cfg, ["valid"])
    md = build_markdown("t", {"base": {"valid": plain["valid"]["summary"]}}, {"base": plain}, [], {}, {}, {})
    assert "suite" not in md and "Right by accident" not in md


def test_limit_tie_probe_reads_aliases_and_positions(db):
    from sqltune.testsuite import Judge

    golds = ["SELECT dept_id, COUNT(*) AS n FROM people GROUP BY dept_id ORDER BY n LIMIT 1",  # dept 3: 2 people
             "SELECT dept_id, COUNT(*) AS n FROM people GROUP BY dept_id ORDER BY n DESC LIMIT 1",  # 1 and 2 tie at 3
             "SELECT name, age FROM people ORDER BY 2 DESC LIMIT 2",  # 45, 38: no tie
             "SELECT name FROM people LIMIT 2"]  # no ORDER BY: arbitrary rows
    judge = Judge(golds, 5.0)
    assert judge.gold(0, 0, db) == [(3, 2)]
    assert judge.gold(1, 0, db) is None
    assert sorted(judge.gold(2, 0, db)) == [("Dee", 45), ("Hal", 38)]
    assert judge.gold(3, 0, db) is None


def test_text_columns_unique_in_the_data_stay_unique_in_variants(tmp_path):
    """Names that are all different in the real data are never duplicated in a variant, so GROUP BY name
    and GROUP BY id (or IN over ids) agree there as they do on the real data; a column with repeats keeps
    its repeats possible."""
    src = tmp_path / "s.sqlite"
    con = sqlite3.connect(src)
    con.execute("CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT)")
    con.execute("CREATE TABLE song (sid INTEGER PRIMARY KEY, singer_id INTEGER REFERENCES singer(id), title TEXT)")
    con.executemany("INSERT INTO singer VALUES (?, ?, ?)",
                    [(i, f"Singer {i}", "France" if i % 2 else "Chile") for i in range(1, 9)])
    con.executemany("INSERT INTO song VALUES (?, ?, ?)", [(i, 1 + i % 5, f"Song {i}") for i in range(1, 15)])
    con.commit()
    con.close()
    tables, extra = read_schema(src)
    assert [c.distinct_text for c in tables[0].cols] == [False, True, False]
    gold = "SELECT T1.name FROM singer AS T1 JOIN song AS T2 ON T1.id = T2.singer_id GROUP BY T1.name HAVING COUNT(*) > 1"
    pred = "SELECT name FROM singer WHERE id IN (SELECT singer_id FROM song GROUP BY singer_id HAVING COUNT(*) > 1)"
    countries = 0
    for seed in range(8):
        v = make_variant(tables, extra, tmp_path / f"v{seed}.sqlite", seed, rows_per_table=30)
        c = sqlite3.connect(v)
        names = [r[0] for r in c.execute("SELECT name FROM singer")]
        countries = max(countries, c.execute("SELECT COUNT(*) - COUNT(DISTINCT country) FROM singer").fetchone()[0])
        assert len(names) == len(set(names))
        assert sorted(c.execute(gold).fetchall()) == sorted(c.execute(pred).fetchall())
        c.close()
    assert countries > 0  # a column with repeats in the data still repeats in variants
