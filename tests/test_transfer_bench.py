"""benchmarks/transfer.py's table: columns per setting and stage, greedy and voted, each paired with the
untuned model's greedy answers on the same questions."""

from __future__ import annotations

import json
from pathlib import Path

from repo_scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


def _transfer():
    return load_script("benchmarks/transfer.py", "transfer_bench")


def _report(exact: list[bool], greedy: list[bool] | None = None) -> dict:
    ex = [{"id": f"q{i}", "exact": e, "fuzzy": e} for i, e in enumerate(exact)]
    rep = {"summary": {"exact": sum(exact) / len(exact), "fuzzy": sum(exact) / len(exact)}, "examples": ex}
    if greedy is not None:
        g = [{"id": f"q{i}", "exact": e, "fuzzy": e} for i, e in enumerate(greedy)]
        rep["vote"] = {"n": 8, "greedy": {"exact": sum(greedy) / len(greedy), "fuzzy": sum(greedy) / len(greedy)},
                       "greedy_examples": g}
    return rep


def _write(folder: Path, **reports):
    folder.mkdir(parents=True)
    for name, rep in reports.items():
        (folder / f"{name}_test_report.json").write_text(json.dumps(rep))
    (folder / "metrics.json").write_text("{}")


def test_voted_runs_get_greedy_and_voted_columns_against_the_untuned_greedy(tmp_path):
    t = _transfer()
    _write(tmp_path / "db1" / "full",
           base=_report([True, True, False, False], greedy=[True, False, False, False]),
           tuned=_report([True, True, False, False], greedy=[True, False, False, False]),
           rl=_report([True, True, True, True], greedy=[True, True, True, False]))
    _write(tmp_path / "db2" / "seeds", base=_report([False, True]), tuned=_report([True, True]))
    names = ["full", "seeds"]
    res = t.collect(tmp_path, ["db1", "db2"], names)
    assert names == ["untuned@vote", "full", "full@vote", "full+rl", "full+rl@vote", "seeds"]
    d1 = res["dbs"]["db1"]
    assert d1["untuned"]["exact"] == 0.25  # the greedy half of a voted base report
    assert d1["untuned@vote"]["exact"]["after"] == 0.5 and d1["untuned@vote"]["exact"]["delta"] == 0.25
    assert d1["full+rl"]["exact"]["after"] == 0.75 and d1["full+rl@vote"]["exact"]["after"] == 1.0
    assert "seeds" not in d1 and res["dbs"]["db2"]["seeds"]["exact"]["delta"] == 0.5
    # a setting's mean is compared with the untuned mean over the databases it ran on
    assert res["mean"]["full+rl@vote"]["dbs"] == 1 and res["mean"]["full+rl@vote"]["untuned"]["exact"] == 0.25
    assert res["mean"]["untuned"]["exact"] == (0.25 + 0.5) / 2
    table = t.markdown(res, names)
    assert table.splitlines()[0].count("exact (Δ, 95 % CI)") == len(names)
    # stage against stage: what GRPO did to its start model (greedy: 2 fixed; voted: 2 fixed), and the pipeline
    # against the untuned model with the same vote; only DBs where both columns exist (db2 has no rl)
    ag = res["against"]
    assert set(ag) == {"full -> full+rl", "full@vote -> full+rl@vote", "untuned@vote -> full+rl@vote"}
    assert (ag["full -> full+rl"]["exact"]["fixed"], ag["full -> full+rl"]["exact"]["broken"]) == (2, 0)
    assert ag["full@vote -> full+rl@vote"]["dbs"] == {"db1": {"fixed": 2, "broken": 0}}
    assert ag["untuned@vote -> full+rl@vote"]["exact"]["n"] == 4
    assert "- `full -> full+rl`: 25.0% → 75.0%" in table and "db1 2/0" in table


def test_a_second_setting_reuses_the_base_reports_in_a_folder_run_accepts(tmp_path, monkeypatch):
    """The second setting of a DB starts from the first one's untuned reports, copied in; `run(resume=True)`
    must take that folder for its own (it refuses folders sqltune did not start)."""
    import sqltune.run

    t = _transfer()
    root = tmp_path / "suite"
    (root / "db1").mkdir(parents=True)
    for f in ("db1.sqlite", "train.jsonl", "valid.jsonl", "test.jsonl"):
        (root / "db1" / f).write_text("")
    seen = []

    def fake_run(recipe, out, resume=False, overrides=None):
        assert resume and sqltune.run.is_run_folder(out)
        seen.append((out.name, sorted(p.name for p in out.iterdir() if p.name.startswith("base_"))))
        (out / "base_test_report.json").write_text("{}")
        (out / "metrics.json").write_text("{}")

    monkeypatch.setattr(sqltune.run, "run", fake_run)
    first = t.run_one("default", "db1", root, tmp_path / "work", "seeds", {}, None, None)
    t.run_one("default", "db1", root, tmp_path / "work", "synth", {}, None, first)
    assert seen == [("seeds", []), ("synth", ["base_test_report.json"])]


def test_an_averaged_grpo_run_gets_its_unaveraged_step_as_a_column_and_a_pair(tmp_path):
    """`rl.average`: the run scores the GRPO step before averaging (`rl_unaveraged`); the table shows it beside
    `+rl`, and the stage-against-stage lines show what the averaging did."""
    t = _transfer()
    _write(tmp_path / "db1" / "avg",
           base=_report([False, False, True, True]), tuned=_report([False, False, True, True]),
           rl_unaveraged=_report([True, True, False, True]), rl=_report([True, False, True, True]))
    names = ["avg"]
    res = t.collect(tmp_path, ["db1"], names)
    assert names == ["avg", "avg+rl_unaveraged", "avg+rl"]
    assert res["dbs"]["db1"]["avg+rl_unaveraged"]["exact"]["after"] == 0.75
    pair = res["against"]["avg+rl_unaveraged -> avg+rl"]
    assert (pair["exact"]["fixed"], pair["exact"]["broken"]) == (1, 1) and pair["dbs"]["db1"] == {"fixed": 1, "broken": 1}
    assert "`avg+rl_unaveraged -> avg+rl`: 75.0% → 75.0%" in t.markdown(res, names)


def test_out_paths_append_the_suffixes_and_keep_dots_in_the_name(tmp_path):
    t = _transfer()
    assert t.out_paths(str(tmp_path / "ten-dbs-0.5b")) == (tmp_path / "ten-dbs-0.5b.json", tmp_path / "ten-dbs-0.5b.md")
    assert t.out_paths(str(tmp_path / "five")) == (tmp_path / "five.json", tmp_path / "five.md")
    assert t.out_paths(str(tmp_path / "five.json")) == (tmp_path / "five.json", tmp_path / "five.md")
    assert t.out_paths(str(tmp_path / "five.md")) == (tmp_path / "five.json", tmp_path / "five.md")


def test_the_first_setting_against_each_other_one_question_by_question(tmp_path):
    """Two runs of one recipe (or a setting and its baseline) on the same DBs: a line pairs the first setting's
    last stage with each other setting's last stage, and with its GRPO step before averaging where it has one."""
    t = _transfer()
    base = _report([False, False, True, True], greedy=[False, False, True, True])
    _write(tmp_path / "db1" / "ship", base=base, tuned=_report([False, False, True, True], greedy=[False, False, True, True]),
           rl=_report([True, False, True, False], greedy=[True, False, True, False]))
    _write(tmp_path / "db1" / "a50", base=base, tuned=_report([False, False, True, True], greedy=[False, False, True, True]),
           rl_unaveraged=_report([True, True, True, True], greedy=[True, True, True, True]),
           rl=_report([True, False, True, True], greedy=[True, False, True, True]))
    _write(tmp_path / "db2" / "a50", base=_report([True, False]), tuned=_report([True, False]), rl=_report([True, True]))
    names = ["ship", "a50"]
    res = t.collect(tmp_path, ["db1", "db2"], names)
    ag = res["against"]
    two = ag["ship+rl@vote -> a50+rl_unaveraged@vote"]  # the second run of the recipe: 2 fixed, none broken
    assert (two["exact"]["fixed"], two["exact"]["broken"], two["exact"]["n"]) == (2, 0, 4)
    avg = ag["ship+rl@vote -> a50+rl@vote"]  # db2 has no `ship` run: only db1 is paired
    assert avg["dbs"] == {"db1": {"fixed": 1, "broken": 0}} and avg["exact"]["n"] == 4
    assert "ship+rl@vote -> a50+rl" not in ag  # db2's a50 is not voted, and there is no ship to pair it with
    table = t.markdown(res, names)
    assert "- `ship+rl@vote -> a50+rl_unaveraged@vote`: 50.0% → 100.0%" in table


def test_a_soup_of_grpo_runs_gets_a_column_per_run_and_the_run_to_run_line(tmp_path):
    """`rl.runs: 2`: the run scores each GRPO run (`rl_run1`, `rl_run2`) and their soup (`rl`); the table shows
    them in run order (run 10 after run 2), each run against the soup, and run 1 against the other runs."""
    t = _transfer()
    v = lambda e: _report(e, greedy=e)  # noqa: E731
    _write(tmp_path / "db1" / "s2", base=v([False, False, True, True]), tuned=v([False, False, True, True]),
           rl_run1=v([True, False, True, True]), rl_run2=v([True, True, False, True]), rl_run10=v([True, True, True, True]),
           rl=v([True, True, True, True]))
    names = ["s2"]
    res = t.collect(tmp_path, ["db1"], names)
    assert names == ["untuned@vote", "s2", "s2@vote", "s2+rl_run1", "s2+rl_run1@vote", "s2+rl_run2", "s2+rl_run2@vote",
                     "s2+rl_run10", "s2+rl_run10@vote", "s2+rl", "s2+rl@vote"]
    ag = res["against"]
    spread = ag["s2+rl_run1@vote -> s2+rl_run2@vote"]
    assert (spread["exact"]["fixed"], spread["exact"]["broken"]) == (1, 1)
    assert (ag["s2+rl_run2@vote -> s2+rl@vote"]["exact"]["fixed"], ag["s2+rl_run2@vote -> s2+rl@vote"]["exact"]["broken"]) == (1, 0)
    assert "s2+rl_run2@vote -> s2+rl_run10@vote" not in ag  # runs are paired with the first run only
    assert "- `s2+rl_run1@vote -> s2+rl_run2@vote`: 75.0% → 75.0%" in t.markdown(res, names)
