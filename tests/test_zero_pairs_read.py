"""benchmarks/zero_pairs_read.py: a no-pairs run's reports read per DB in both layouts — session 23's (dev in the
run, test from `sqltune eval`) and MODE=one's (dev and test in one run's `test` split, told apart by id) — and one
folder's last stage against another's, question by question."""

from __future__ import annotations

import json

from repo_scripts import load_script


def _report(exact: dict, greedy: dict | None = None) -> dict:
    rep = {"summary": {"exact": sum(exact.values()) / len(exact)},
           "examples": [{"id": i, "exact": e} for i, e in exact.items()]}
    if greedy is not None:
        rep["vote"] = {"greedy": {"exact": sum(greedy.values()) / len(greedy)},
                       "greedy_examples": [{"id": i, "exact": e} for i, e in greedy.items()]}
    return rep


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj) if not isinstance(obj, list) else "".join(json.dumps(o) + "\n" for o in obj))


def test_both_layouts_and_the_comparison(tmp_path, capsys):
    zr = load_script("benchmarks/zero_pairs_read.py", "zero_pairs_read_bench")
    # MODE=one: dev d1, d2 and test t1, t2 scored in one run; the untuned greedy answers get d1 wrong, the vote fixes it
    one = tmp_path / "one" / "db"
    _write(one / "dev.jsonl", [{"id": "d1"}, {"id": "d2"}])
    _write(one / "test.jsonl", [{"id": "t1"}, {"id": "t2"}])
    _write(one / "run" / "base_test_report.json",
           _report({"d1": True, "d2": False, "t1": True, "t2": True}, {"d1": False, "d2": False, "t1": True, "t2": True}))
    _write(one / "run" / "rl_test_report.json", _report({"d1": True, "d2": True, "t1": False, "t2": True}))
    _write(one / "run" / "synth_pairs.summary.json", {"kept": 7, "kept_by_shape": {"join": 2}})
    sets = zr.held_sets(one)
    assert sets["dev"][2] == {"d1", "d2"} and sets["test"][2] == {"t1", "t2"}
    # session 23's layout: dev in the run (its test split), test from `sqltune eval` (test_base / test_tuned)
    old = tmp_path / "old" / "db"
    _write(old / "run" / "base_test_report.json", _report({"d1": True, "d2": False}))
    _write(old / "run" / "rl_test_report.json", _report({"d1": False, "d2": False}))
    _write(old / "test_base" / "test_report.json", _report({"t1": True, "t2": True}))
    _write(old / "test_tuned" / "test_report.json", _report({"t1": True, "t2": False}))

    assert zr.main([str(tmp_path / "one"), "--no-test"]) == 0
    out = capsys.readouterr().out
    assert "| db | 7 (2) | - / - | 2 | 0.0% | 50.0% | 100.0% (1 / 0) |" in out and "test:" not in out
    assert zr.main([str(tmp_path / "one"), "--against", str(tmp_path / "old")]) == 0
    out = capsys.readouterr().out
    assert "| 2 | 100.0% | 50.0% (0 / 1) |" in out  # test: t1 broken
    dev_vs, test_vs = out.split("\ndev, one against old")[1].split("\ntest, one against old")
    assert "db: 0.0% -> 100.0% (2 fixed / 0 broken)" in dev_vs  # the old run's last stage got both dev wrong
    assert "db: 50.0% -> 50.0% (1 fixed / 1 broken)" in test_vs  # old kept t1, lost t2; this one the reverse
