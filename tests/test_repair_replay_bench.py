"""benchmarks/repair_replay.py: the shipped last-resort repair over a run's stored answers, scored with the shipped
scorer; from pred files or, where only the report was kept, from its examples (gzipped or not)."""

from __future__ import annotations

import gzip
import json

from repo_scripts import load_script

from sqltune.dataset import write_jsonl
from sqltune.score import score_pairs

GOLD = [{"id": "a", "question": "Titles of the UK authors' books?",
         "sql": "SELECT T2.title FROM authors AS T1 JOIN books AS T2 ON T1.id = T2.author_id WHERE T1.country = 'UK'"},
        {"id": "b", "question": "How many books?", "sql": "SELECT COUNT(*) FROM books"},
        {"id": "c", "question": "Genres?", "sql": "SELECT title FROM books"}]
WROTE = ["SELECT T1.title FROM authors AS T1 JOIN books AS T2 ON T1.id = T2.author_id WHERE T1.country = 'UK'",
         "SELECT COUNT(*) FROM authors",  # runs, wrong: untouched
         "SELECT genre FROM books"]  # fails, no repair


def _store(folder, db, stage, gz: bool, with_pred: bool):
    folder.mkdir(parents=True)
    rep = score_pairs(db, GOLD, WROTE)
    text = json.dumps(rep)
    if gz:
        (folder / f"{stage}_test_report.json.gz").write_bytes(gzip.compress(text.encode()))
    else:
        (folder / f"{stage}_test_report.json").write_text(text)
    if with_pred:
        write_jsonl(folder / f"{stage}_test_pred.jsonl",
                    [{"id": g["id"], "question": g["question"], "sql": s, "error": e["error"]}
                     for g, s, e in zip(GOLD, WROTE, rep["examples"])])


def test_the_replay_repairs_only_failing_answers_and_counts_them(tiny_db, tmp_path, capsys):
    bench = load_script("benchmarks/repair_replay.py")
    suite, runs = tmp_path / "suite", tmp_path / "runs"
    for name, gz, pred in (("one", False, True), ("two", True, False)):
        (suite / name).mkdir(parents=True)
        (suite / name / f"{name}.sqlite").write_bytes(tiny_db.read_bytes())
        _store(runs / name / "ship", suite / name / f"{name}.sqlite", "rl", gz, pred)
    out = tmp_path / "out.json"
    assert bench.main(["--runs", str(runs), "--pattern", "{db}/ship", "--stage", "rl", "--devsuite", str(suite),
                       "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| one | 3 | 0 | 1 | 1 (1) |" in printed and "| two | 3 | 0 | 1 | 1 (1) |" in printed
    assert "| **pooled** | 6 | 0 | 2 | 2 (2) |" in printed and "2 fixed, 0 broken" in printed
    got = json.loads(out.read_text())
    assert got["one"]["examples"] == [{"id": "a", "model_sql": WROTE[0], "exact": True,
                                       "sql": got["one"]["examples"][0]["sql"]}]
    assert "T2.title" in got["one"]["examples"][0]["sql"]
    assert bench.main(["--runs", str(runs), "--stage", "tuned", "--devsuite", str(suite)]) == 2  # nothing stored
    assert "no tuned_test reports" in capsys.readouterr().err
