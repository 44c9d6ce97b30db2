import json
import random
import re

import pytest

from sqltune.augment import (AugmentResult, Validator, apply_roundtrip, failures, filter_candidates, mutate,
                              roundtrip_agrees, sql_kinds)
from sqltune.check import LeakIndex, sql_skeleton
from sqltune.cli import main
from sqltune.errors import SqltuneError

TRAIN = [{"id": "t1", "question": "How many books were published after 1900?",
          "sql": "SELECT COUNT(*) FROM books WHERE year > 1900"}]
TEST = [{"id": "x1", "question": "Which book is the most expensive?",
         "sql": "SELECT title FROM books ORDER BY price DESC LIMIT 1"}]


def validator(db):
    index = LeakIndex()
    for label, items in (("train", TRAIN), ("test", TEST)):
        for it in items:
            index.add(it, label, it["id"])
    return Validator(db, index)


@pytest.mark.parametrize(
    "cand,reason",
    [
        ({"question": "Price of each title?", "sql": "SELECT title, cost FROM books"}, "fails"),
        ({"question": "Books from the future?", "sql": "SELECT title FROM books WHERE year > 3000"}, "empty result"),
        ({"question": "Total price of the books from the future", "sql": "SELECT SUM(price) FROM books WHERE year > 3000"},
         "zero result"),
        # a test item in disguise: other wording, other literal, same skeleton
        ({"question": "Name the cheapest-looking top title", "sql": "SELECT title FROM books ORDER BY price DESC LIMIT 2"},
         "leak: same SQL skeleton"),
        ({"question": "how many books were published after 1900", "sql": "SELECT MAX(year) FROM books"},
         "leak: same question"),
        ({"question": "Any random author?", "sql": "SELECT name FROM authors ORDER BY random() LIMIT 1"},
         "nondeterministic"),
        ({"question": "Which country has an author first alphabetically?",
          "sql": "SELECT country FROM authors ORDER BY country LIMIT 1"}, None),
    ],
)
def test_each_filter(tiny_db, cand, reason):
    got = validator(tiny_db).reject_reason(cand)
    assert (got if reason is None else (got or "")[: len(reason)]) == reason


def test_kept_pairs_block_their_own_duplicates(tiny_db):
    good = {"id": "a1", "question": "How many authors are from the UK?",
            "sql": "SELECT COUNT(*) FROM authors WHERE country = 'UK'"}
    dup = dict(good, id="a2", question="Count the British authors", sql="SELECT COUNT(*) FROM authors WHERE country = 'IT'")
    res = filter_candidates([good, dup], validator(tiny_db), max_keep=10)
    assert [c["id"] for c in res.kept] == ["a1"]
    assert res.tried == 2 and res.rejected == {"leak: same SQL skeleton": 1}


def test_round_trip_keeps_only_pairs_whose_question_reads_back_to_the_same_result(tiny_db):
    uk = {"id": "a1", "question": "How many authors are from the UK?",
          "sql": "SELECT COUNT(*) FROM authors WHERE country = 'UK'"}
    # a valid, executable pair whose question does not describe its SQL (what a small writer model produces)
    mismatch = {"id": "a2", "question": "What is the most expensive book?",
                "sql": "SELECT MIN(year) FROM books"}
    titles = {"id": "a3", "question": "List the book titles.", "sql": "SELECT title FROM books ORDER BY title"}
    model_sql = ["SELECT COUNT(name) AS n FROM authors WHERE country = 'UK'",  # same result, other column name
                 "SELECT title FROM books ORDER BY price DESC LIMIT 1",        # what the question means: disagrees
                 None]                                                          # the model wrote nothing usable
    assert roundtrip_agrees(tiny_db, [uk, mismatch, titles], model_sql) == [True, False, False]
    res = apply_roundtrip(AugmentResult(kept=[uk, mismatch, titles], tried=3), tiny_db, model_sql, max_keep=5)
    assert [c["id"] for c in res.kept] == ["a1"]
    assert res.kept[0]["provenance"]["roundtrip_sql"] == model_sql[0]
    assert sum(res.rejected.values()) == 2 and all(k.startswith("round trip") for k in res.rejected)
    # extra columns and column order are free (fuzzy), and max_keep still caps what is kept
    both = [uk, dict(titles, id="a4")]
    res = apply_roundtrip(AugmentResult(kept=both, tried=2), tiny_db,
                          ["SELECT 'x', COUNT(*) FROM authors WHERE country = 'UK'", "SELECT title, year FROM books ORDER BY title"],
                          max_keep=1)
    assert [c["id"] for c in res.kept] == ["a1"] and not res.rejected


def test_sql_kinds():
    assert sql_kinds("SELECT name, RANK() OVER (PARTITION BY y ORDER BY m) FROM e") >= {"window"}
    assert {"group_by", "having", "aggregate"} <= sql_kinds("SELECT y, COUNT(*) FROM e GROUP BY y HAVING COUNT(*) > 3")
    assert "reference_join" in sql_kinds("SELECT e.m * r.mass FROM e JOIN reference_planets r ON e.w = r.name")
    assert "ratio" in sql_kinds("SELECT a / b FROM t")
    assert sql_kinds("not sql at all (") == set()


def test_mutations_change_the_skeleton():
    sql = "SELECT title, price FROM books WHERE year > 1900 ORDER BY price DESC LIMIT 3"
    muts = mutate(sql, {"price", "year", "copies"}, random.Random(1), n=4)
    assert muts and all(sql_skeleton(m) != sql_skeleton(sql) for m in muts)


def test_failures_read_valid_only(tmp_path):
    (tmp_path / "tuned_valid_report.json").write_text(json.dumps({"examples": [
        {"id": "v1", "question": "q", "gold_sql": "SELECT COUNT(*) FROM t GROUP BY a", "exact": False, "error_kind": None},
        {"id": "v2", "question": "r", "gold_sql": "SELECT 1", "exact": True, "error_kind": None}]}))
    (tmp_path / "tuned_test_report.json").write_text("{}")
    f = failures(tmp_path)
    assert [x["id"] for x in f] == ["v1"] and "group_by" in f[0]["kinds"]
    with pytest.raises(SqltuneError, match="never test"):
        failures(tmp_path / "missing")


def test_cli_augment_bad_run(tmp_path, capsys):
    assert main(["augment", "--run", str(tmp_path), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "not a sqltune run folder" in capsys.readouterr().err


def test_augment_finds_a_run_started_in_another_folder(tiny_db, tmp_path, monkeypatch, capsys):
    """recipe.json keeps data.db, data.train, ... as `sqltune run` was given them, maybe relative to the folder it was
    started in; `augment --run` from another folder read them from there ('database not found: my.sqlite'). It finds
    the database as `serve --run` does (inputs.json `db_path`: `serve.run_db`) and the item files in the folder the
    run records (inputs.json `started_in`); a run from before that record, or whose files moved, is one clear error."""
    import shutil
    import sqlite3

    import sqltune.augment as aug
    import sqltune.model

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    db = shutil.copy(tiny_db, project / "my.sqlite")
    con = sqlite3.connect(db)  # a table only the run's database has: a pair about it executes only there
    con.executescript("CREATE TABLE prizes (name TEXT, amount INTEGER); INSERT INTO prizes VALUES ('a', 5), ('b', 7);")
    con.commit()
    con.close()
    valid = {"id": "v1", "question": "Which book is the most expensive?",
             "sql": "SELECT title FROM books ORDER BY price DESC LIMIT 1"}
    (project / "train.jsonl").write_text("".join(json.dumps(it) + "\n" for it in TRAIN))
    (project / "valid.jsonl").write_text(json.dumps(valid) + "\n")
    run = project / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "recipe.json").write_text(json.dumps({"model": "m", "data": {
        "db": "my.sqlite", "train": "train.jsonl", "valid": "valid.jsonl", "test": None, "extra": ["exoplanets:test"]}}))
    inputs = {"db": "0" * 64, "db_path": str(project / "my.sqlite"), "started_in": str(project)}
    (run / "inputs.json").write_text(json.dumps(inputs))
    (run / "tuned_valid_report.json").write_text(json.dumps({"examples": [
        {"id": "v1", "question": valid["question"], "gold_sql": valid["sql"], "exact": False, "error_kind": None}]}))

    def chat(model, tok, prompts, max_new_tokens=160, desc="", **kw):
        proposals = ["Question: Which book is the most expensive?\nSQL: SELECT title FROM books",  # valid's question
                     f"Question: {TRAIN[0]['question']}\nSQL: SELECT MIN(year) FROM books",  # train's question
                     "Question: What is the total amount of all prizes?\nSQL: SELECT SUM(amount) FROM prizes"]
        return [proposals[i % 3] if "proposed" in desc else "What is it?" for i in range(len(prompts))]

    writers = []
    monkeypatch.setattr(sqltune.model, "load_model", lambda name, *a, **k: writers.append(name) or (None, None, None))
    monkeypatch.setattr(aug, "_chat", chat)
    monkeypatch.chdir(elsewhere)
    assert main(["augment", "--run", str(run), "--out", "more.jsonl", "--no-roundtrip"]) == 0
    assert writers == ["m"]  # recipe.json's model, no folder anywhere: a name, as given
    (project / "m").mkdir()  # a relative model folder (`--set model=m`): found where the run was started
    assert main(["augment", "--run", str(run), "--out", "more.jsonl", "--no-roundtrip"]) == 0
    assert writers == ["m", str(project / "m")]
    kept = [json.loads(line) for line in (elsewhere / "more.jsonl").read_text().splitlines()]
    assert [k["sql"] for k in kept] == ["SELECT SUM(amount) FROM prizes"]  # executed on the run's database
    assert "   2  leak: same question" in capsys.readouterr().out  # both the run's train and valid files were read

    for recorded, said in (({"db": "0" * 64}, "no my.sqlite here .*: work from that folder$"),
                           ({k: v for k, v in inputs.items() if k != "started_in"},
                            "data.train train.jsonl, a path relative .* no train.jsonl here .*: work from that folder$"),
                           ({**inputs, "started_in": str(tmp_path / "gone")},
                            f"no train.jsonl here .* nor in {tmp_path / 'gone'}, where the run was started: put it back")):
        (run / "inputs.json").write_text(json.dumps(recorded))  # a run from before the records, or whose files moved
        assert main(["augment", "--run", str(run), "--out", "more.jsonl", "--no-roundtrip"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and re.search(said, " ".join(err.split())), err
