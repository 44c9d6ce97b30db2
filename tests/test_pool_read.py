"""benchmarks/pool_read.py: the shipped `eval.fallback: base` rebuilt from a pooled run's reports (the tuned answer
before the pool where it executes, else the untuned greedy SQL), scored again against the gold on the database."""

from __future__ import annotations

import json

from conftest import make_tiny_db
from repo_scripts import load_script


ITEMS = [{"id": "q0", "question": "names", "sql": "SELECT name FROM authors"},
         {"id": "q1", "question": "latest year", "sql": "SELECT max(year) FROM books"},
         {"id": "q2", "question": "how many", "sql": "SELECT count(*) FROM authors"},
         {"id": "q3", "question": "ids", "sql": "SELECT id FROM authors"}]


def _ex(exact, pred_sql, pool=None):
    e = {"exact": exact, "pred_sql": pred_sql, "executed": pred_sql is not None}
    if pool:
        e["pool"] = pool
    return e


def test_base_fallback_is_rebuilt_from_the_pool_records(tmp_path):
    pr = load_script("benchmarks/pool_read.py", "pool_read_bench")
    db = make_tiny_db(tmp_path / "d.sqlite")
    run = tmp_path / "w" / "d" / "v"
    run.mkdir(parents=True)
    base = {"examples": [{"exact": e} for e in (True, True, True, False)],
            "vote": {"greedy_examples": [{"exact": e} for e in (True, False, True, False)]}}
    rl = {"examples": [
        _ex(True, "SELECT name FROM authors"),  # not pooled: tuned and untuned agreed
        # pooled, the tuned answer failed: `base` takes the untuned greedy SQL (right), the pool took a wrong one
        _ex(False, "SELECT min(year) FROM books", {"sql": "SELECT max(yr) FROM books", "base_sql": "SELECT max(year) FROM books"}),
        # pooled, the tuned answer executed to another result: `base` keeps it (wrong), the pool fixed it
        _ex(True, "SELECT count(*) FROM authors", {"sql": "SELECT sum(id) FROM authors", "base_sql": "SELECT count(*) FROM authors"}),
        # pooled, the tuned model wrote no SQL at all and the untuned greedy SQL is wrong too
        _ex(False, None, {"sql": None, "base_sql": "SELECT name FROM authors"})]}
    (run / "base_test_report.json").write_text(json.dumps(base))
    (run / "rl_test_report.json").write_text(json.dumps(rl))
    r = pr.read_split(run, db, ITEMS, "rl", "test")
    assert r["untuned"] == [True, False, True, False]  # the vote's greedy half
    assert r["untuned@vote"] == [True, True, True, False]
    assert r["tuned@vote"] == [True, False, False, False]  # the answers before the pool, scored again
    assert r["+base"] == [True, True, False, False]
    assert r["+pool"] == [True, False, True, False]
    assert r["pooled"] == [False, True, True, True]


def test_the_script_writes_a_table_per_split(tmp_path):
    pr = load_script("benchmarks/pool_read.py", "pool_read_bench")
    suite = tmp_path / "suite" / "d"
    suite.mkdir(parents=True)
    make_tiny_db(suite / "d.sqlite")
    (suite / "test.jsonl").write_text("".join(json.dumps(it) + "\n" for it in ITEMS[:2]))
    run = tmp_path / "w" / "d" / "v"
    run.mkdir(parents=True)
    (run / "base_test_report.json").write_text(json.dumps({"examples": [{"exact": True}, {"exact": False}]}))
    (run / "rl_test_report.json").write_text(json.dumps({"examples": [
        _ex(True, "SELECT name FROM authors"),
        _ex(True, "SELECT max(year) FROM books", {"sql": None, "base_sql": "SELECT max(year) FROM books"})]}))
    out = tmp_path / "o" / "pool-0.5b"  # a dot in the name: OUT.md, not a replaced suffix
    pr.main(["--work", str(tmp_path / "w"), "--setting", "v", "--splits", "valid", "test",
             "--devsuite", str(tmp_path / "suite"), "--out", str(out)])
    md = (tmp_path / "o" / "pool-0.5b.md").read_text()
    assert "## test: 1 DBs, 2 questions" in md and "## valid" not in md  # no valid report: no valid table
    assert "| d | 2 | 1 | 50.0 % | 50.0 % | 50.0 % | 100.0 % | 100.0 % |" in md
    data = json.loads((tmp_path / "o" / "pool-0.5b.json").read_text())
    assert data["test"]["d"]["+base"] == [True, True]


def test_pair_mode_reads_one_eval_against_its_untuned_report(tmp_path, capsys):
    pr = load_script("benchmarks/pool_read.py", "pool_read_bench")
    db = make_tiny_db(tmp_path / "d.sqlite")
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps(it) + "\n" for it in ITEMS[:2]))
    (tmp_path / "b.json").write_text(json.dumps({"examples": [{"exact": False}, {"exact": False}]}))
    (tmp_path / "r.json").write_text(json.dumps({"examples": [
        _ex(True, "SELECT name FROM authors", {"sql": "SELECT id FROM authors", "base_sql": "SELECT name FROM authors"}),
        _ex(False, "SELECT min(year) FROM books")]}))
    pr.main(["--pair", str(tmp_path / "b.json"), str(tmp_path / "r.json"), str(db), str(data),
             "--out", str(tmp_path / "o" / "p")])
    got = json.loads((tmp_path / "o" / "p.json").read_text())
    assert got["tuned@vote"] == [False, False] and got["+base"] == [False, False] and got["+pool"] == [True, False]
    assert "- +base -> +pool: exact: 0.0% → 50.0%" in capsys.readouterr().out
