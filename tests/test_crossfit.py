"""benchmarks/crossfit.py: a dev set cut from a devsuite DB's train split by SQL skeleton, each half the other's test,
so that a setting can be chosen on train data without reading the devsuite's test."""

from __future__ import annotations

import json

from conftest import make_tiny_db
from repo_scripts import load_script

from sqltune.check import sql_skeleton

ROWS = [{"id": f"d-{i}", "question": f"q{i}", "sql": sql} for i, sql in enumerate([
    "SELECT name FROM authors", "SELECT name FROM authors WHERE id = 1", "SELECT name FROM authors WHERE id = 2",
    "SELECT count(*) FROM books", "SELECT count(*) FROM authors", "SELECT max(year) FROM books",
    "SELECT title FROM books ORDER BY year", "SELECT title FROM books ORDER BY year DESC",
    "SELECT a.name FROM authors AS a JOIN books AS b ON a.id = b.author_id",
    "SELECT year, count(*) FROM books GROUP BY year"])]


def test_halves_keep_each_skeleton_whole_and_balance_the_sizes():
    cf = load_script("benchmarks/crossfit.py", "crossfit_bench")
    a, b = cf.halves(ROWS, seed=20)
    assert sorted(r["id"] for r in a + b) == sorted(r["id"] for r in ROWS)  # a partition
    assert not {sql_skeleton(r["sql"]) for r in a} & {sql_skeleton(r["sql"]) for r in b}
    assert abs(len(a) - len(b)) <= max(
        sum(1 for r in ROWS if sql_skeleton(r["sql"]) == k) for k in {sql_skeleton(r["sql"]) for r in ROWS})
    assert cf.halves(ROWS, seed=20) == (a, b)  # the seed fixes the cut


def _suite(tmp_path):
    """A devsuite of one DB `d` (the tiny DB, ROWS as train, one valid pair) under tmp_path/suite; returns d's folder."""
    src = tmp_path / "suite" / "d"
    src.mkdir(parents=True)
    make_tiny_db(src / "d.sqlite")
    (src / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (src / "valid.jsonl").write_text(json.dumps({"id": "v", "question": "v", "sql": "SELECT 1"}) + "\n")
    return src


def test_build_writes_both_sides_and_never_the_devsuite_test(tmp_path):
    cf = load_script("benchmarks/crossfit.py", "crossfit_bench")
    src = _suite(tmp_path)
    (src / "test.jsonl").write_text(json.dumps({"id": "SECRET", "question": "t", "sql": "SELECT 2"}) + "\n")
    out = tmp_path / "xf"
    assert cf.main(["--devsuite", str(tmp_path / "suite"), "--out", str(out), "--min-train", "4"]) == 0

    def ids(p):
        return [json.loads(line)["id"] for line in p.read_text().splitlines()]

    for side, other in (("a", "b"), ("b", "a")):
        d = out / f"d_{side}"
        assert (d / f"d_{side}.sqlite").read_bytes() == (src / "d.sqlite").read_bytes()
        assert ids(d / "test.jsonl") == ids(out / f"d_{other}" / "train.jsonl")
        assert ids(d / "valid.jsonl") == ["v"]
    assert "SECRET" not in "".join(p.read_text() for p in out.rglob("*.jsonl"))
    # a DB below --min-train is left out; a DB that is not there is one clear error
    assert cf.main(["--devsuite", str(tmp_path / "suite"), "--out", str(tmp_path / "none"), "--min-train", "99"]) == 0
    assert not (tmp_path / "none").exists()
    assert cf.main(["--devsuite", str(tmp_path / "suite"), "--out", str(out), "--dbs", "nope"]) == 2


def test_build_overwrites_only_its_own_folders(tmp_path, capsys):
    cf = load_script("benchmarks/crossfit.py", "crossfit_bench")
    _suite(tmp_path)
    args = ["--devsuite", str(tmp_path / "suite"), "--min-train", "4"]
    out = tmp_path / "xf"
    assert cf.main(args + ["--out", str(out)]) == 0
    assert cf.main(args + ["--out", str(out)]) == 0  # its own folders: rebuilt
    # someone's folder of the same name: refused with one line, nothing in it touched
    theirs = tmp_path / "mine" / "d_a"
    theirs.mkdir(parents=True)
    (theirs / "train.jsonl").write_text("my pairs\n")
    capsys.readouterr()
    assert cf.main(args + ["--out", str(tmp_path / "mine")]) == 2
    assert "was not made by this script" in capsys.readouterr().err
    assert (theirs / "train.jsonl").read_text() == "my pairs\n" and sorted(p.name for p in theirs.iterdir()) == ["train.jsonl"]
