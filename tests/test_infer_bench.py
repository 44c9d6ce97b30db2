"""benchmarks/infer.py: inference settings of the untuned model per DB, paired with greedy, on valid and test."""

from __future__ import annotations

import json
import shutil

import pytest
from repo_scripts import load_script

from sqltune.dataset import write_jsonl


def _infer():
    return load_script("benchmarks/infer.py", "infer_bench")


def test_settings_parse():
    parse = _infer().parse_setting
    assert parse("greedy") == (0, None, 0)
    assert parse("fewshot=4")[0] == 4 and parse("fewshot=4")[1] is None
    k, vote, retries = parse("fewshot=2+vote=4")
    assert k == 2 and vote.n == 4 and retries == 0
    assert parse("retries=1") == (0, None, 1)
    with pytest.raises(SystemExit, match="bad setting"):
        parse("beam=4")
    with pytest.raises(SystemExit, match="no retries"):
        parse("vote=4+retries=1")


def test_one_database_end_to_end(tiny_model_dir, tiny_db, tmp_path):
    """The tiny model on a one-DB suite: every (split, setting) report is written once and compared with
    greedy on the same questions; a second run reads them back instead of generating again."""
    suite = tmp_path / "suite" / "books"
    suite.mkdir(parents=True)
    shutil.copy(tiny_db, suite / "books.sqlite")
    rows = [{"id": f"b-{i}", "question": q, "sql": s} for i, (q, s) in enumerate([
        ("How many books?", "SELECT COUNT(*) FROM books"),
        ("How many authors?", "SELECT COUNT(*) FROM authors"),
        ("Names of the authors?", "SELECT name FROM authors"),
        ("Titles of the books?", "SELECT title FROM books")])]
    for split, part in (("train", rows[:2]), ("valid", rows[2:3]), ("test", rows[3:])):
        write_jsonl(suite / f"{split}.jsonl", part)
    out = tmp_path / "out"
    argv = ["--model", str(tiny_model_dir), "--device", "cpu", "--max-new-tokens", "8",
            "--devsuite", str(tmp_path / "suite"), "--settings", "greedy", "fewshot=1", "vote=2", "--out", str(out)]
    infer = _infer()
    assert infer.main(argv) == 0
    res = json.loads((out / "infer.json").read_text())
    assert list(res["dbs"]) == ["books"] and res["settings"] == ["greedy", "fewshot=1", "vote=2"]
    for split, n in (("valid", 1), ("test", 1)):
        row = res["dbs"]["books"][split]
        assert row["n"] == n and set(row) == {"n", "greedy", "fewshot=1", "vote=2"}
        assert row["greedy"]["vs_greedy"]["delta"] == 0.0
    assert json.loads((out / "reports" / "books_test_vote=2.json").read_text())["vote"]["n"] == 2
    assert "| test | vote=2 |" in (out / "infer.md").read_text()
    stamp = (out / "reports" / "books_test_greedy.json").stat().st_mtime_ns
    assert infer.main(argv) == 0
    assert (out / "reports" / "books_test_greedy.json").stat().st_mtime_ns == stamp


def test_train_split_as_a_development_set(tiny_model_dir, tiny_db, tmp_path):
    """`--splits train` scores only the train split (held-out questions for an untuned model); fewshot,
    whose examples come from train, is refused there with one line."""
    suite = tmp_path / "suite" / "books"
    suite.mkdir(parents=True)
    shutil.copy(tiny_db, suite / "books.sqlite")
    rows = [{"id": f"b-{i}", "question": q, "sql": s} for i, (q, s) in enumerate([
        ("How many books?", "SELECT COUNT(*) FROM books"), ("How many authors?", "SELECT COUNT(*) FROM authors"),
        ("Names of the authors?", "SELECT name FROM authors"), ("Titles?", "SELECT title FROM books")])]
    for split, part in (("train", rows[:3]), ("valid", rows[3:]), ("test", rows[3:])):
        write_jsonl(suite / f"{split}.jsonl", part)
    out = tmp_path / "out"
    base = ["--model", str(tiny_model_dir), "--device", "cpu", "--max-new-tokens", "8",
            "--devsuite", str(tmp_path / "suite"), "--out", str(out), "--splits", "train"]
    infer = _infer()
    with pytest.raises(SystemExit, match="fewshot examples come from the train split"):
        infer.main(base + ["--settings", "fewshot=1"])
    assert infer.main(base + ["--settings", "vote=2@error"]) == 0
    res = json.loads((out / "infer.json").read_text())
    assert set(res["dbs"]["books"]) == {"train"} and res["dbs"]["books"]["train"]["n"] == 3
    assert set(res["pooled"]) == {"train greedy", "train vote=2@error"}
    assert sorted(p.name for p in (out / "reports").iterdir()) == ["books_train_greedy.json",
                                                                   "books_train_vote=2@error.json"]
    assert "| books | 3 |" in (out / "infer.md").read_text()

def test_rl_probe_benchmark_counts_questions_with_a_gradient(tiny_model_dir, tiny_db, tmp_path):
    """benchmarks/rl_probe.py runs the shipped `rl.probe` per DB: the tiny random model writes no SQL in any
    sample, so no question is informative and every one is 'none right'."""
    mod = load_script("benchmarks/rl_probe.py", "rl_probe_bench")
    suite = tmp_path / "suite" / "books"
    suite.mkdir(parents=True)
    shutil.copy(tiny_db, suite / "books.sqlite")
    write_jsonl(suite / "train.jsonl", [{"id": "b-0", "question": "How many books?", "sql": "SELECT COUNT(*) FROM books"},
                                        {"id": "b-1", "question": "Names?", "sql": "SELECT name FROM authors"}])
    out = tmp_path / "probe.json"
    assert mod.main(["--model", str(tiny_model_dir), "--device", "cpu", "--samples", "2",
                     "--devsuite", str(tmp_path / "suite"), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["dbs"]["books"]["questions"] == 2 and res["dbs"]["books"]["informative"] == 0
    assert res["total"] == {"questions": 2, "informative": 0, "all_exact": 0, "none_exact": 2}
