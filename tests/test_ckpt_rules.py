"""benchmarks/ckpt_rules.py: folders cut from a train split by skeleton (dev never shares a query with train), and
checkpoint rules replayed over a run's logged lines, each judged by the dev exact of the checkpoint it keeps."""

from __future__ import annotations

import json

from repo_scripts import load_script


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _line(step, exact, loss, n=10):
    return {"step": step, "n": n, "exact": exact, "valid_loss": loss, "fuzzy": exact, "train_loss": None}


def test_rules_replayed_over_a_tie_and_a_noise_gate(tmp_path):
    ck = load_script("benchmarks/ckpt_rules.py", "ckpt_rules_bench")
    # session 24's exoplanets shape: steps 26 and 78 tie on valid (4 of 10, enough to pass the gate at 2 of 10);
    # 26 has the lower valid loss; on dev 78 is better, and the last step (104) better still
    a = tmp_path / "work" / "exo_s1a"
    _write(a / "adapter" / "metrics.jsonl", [_line(0, 0.2, 0.6), _line(26, 0.4, 0.5), _line(52, 0.3, 0.6),
                                             _line(78, 0.4, 0.65), _line(104, 0.3, 0.7)])
    _write(a / "dev.jsonl", [{"step": s, "n": 100, "exact": e} for s, e in ((0, .10), (26, .15), (52, .2), (78, .25), (104, .3))])
    # a devsuite-shaped run: no trained step clears the gate (valid 4 questions, 3 -> 3 right)
    b = tmp_path / "work" / "singer_a"
    _write(b / "metrics.jsonl", [_line(0, 0.75, 0.5, 4), _line(2, 0.75, 0.4, 4), _line(4, 0.5, 0.3, 4)])
    _write(b / "dev.jsonl", [{"step": s, "n": 6, "exact": e} for s, e in ((0, .5), (2, 2 / 3), (4, 1 / 3))])
    per, rules = ck.read(tmp_path / "work")
    picks = {f["folder"]: {k: v[0] for k, v in f["picks"].items()} for f in per}
    first = next(iter(rules))
    assert picks["exo_s1a"][first] == 26 and picks["exo_s1a"]["noise, tie: later step"] == 78
    assert picks["exo_s1a"]["shipped noise rule (synth.choose_checkpoint)"] == 78
    assert picks["exo_s1a"]["last not worse (choose_latest)"] == 104
    assert picks["singer_a"][first] == 0 and picks["singer_a"]["last not worse (choose_latest)"] == 4
    assert picks["singer_a"]["always the last step"] == 4 and picks["singer_a"]["always untuned (step 0)"] == 0
    text = ck.report(tmp_path / "work")
    rows = [r.split("|") for r in text.splitlines() if r.startswith("| noise, tie: later step |")]
    assert [r[2].strip() for r in rows] == ["25.0", "50.0", "37.5"]  # exoplanets, devsuite, all: (25 + 50) / 2
    assert [r[3].strip() for r in rows] == ["+10.0", "+0.0", "+5.0"]  # against the first rule: 15 -> 25 on exo
    assert "(valid 10, dev 100)" in text and "### exoplanets halves: 1 folders" in text


def test_build_cuts_by_skeleton_and_copies_the_database(tmp_path):
    ck = load_script("benchmarks/ckpt_rules.py", "ckpt_rules_bench")
    from sqltune.check import sql_skeleton
    from sqltune.dataset import read_jsonl

    made = ck.build(tmp_path / "f", [3], None, 20)
    assert [m.split(":")[0] for m in made] == ["exo_s3a", "exo_s3b"]
    a, b = tmp_path / "f" / "exo_s3a", tmp_path / "f" / "exo_s3b"
    train_a, dev_a = read_jsonl(a / "train.jsonl"), read_jsonl(a / "dev.jsonl")
    assert len(train_a) + len(dev_a) == 204 and read_jsonl(b / "train.jsonl") == dev_a
    assert not {sql_skeleton(r["sql"]) for r in train_a} & {sql_skeleton(r["sql"]) for r in dev_a}
    assert len(read_jsonl(a / "valid.jsonl")) == 10 and (a / "exo_s3a.sqlite").is_file()
    assert (a / "exo_s3a.notes.md").is_file()  # the run reads the notes beside the database


def test_compare_pairs_settings_by_folder(tmp_path):
    ck = load_script("benchmarks/ckpt_rules.py", "ckpt_rules_bench")

    def run(work, folder, dev):  # valid flat at 2 of 10, so `last` keeps the last step; dev per step as given
        d = tmp_path / work / folder
        _write(d / "metrics.jsonl", [_line(s, 0.2, 0.5) for s in (0, 13, 26)])
        _write(d / "dev.jsonl", [{"step": s, "n": 100, "exact": e} for s, e in zip((0, 13, 26), dev)])

    for f, base, more in (("exo_s1a", .2, .3), ("exo_s1b", .2, .1), ("exo_s2a", .2, .4), ("tvshow_a", .5, .5)):
        run("top4", f, (.1, .15, base))
        run("top8", f, (.1, .2, more))
    run("top8", "exo_s9a", (.1, .2, .9))  # a folder the reference lacks is left out of the pairing
    text = ck.compare([tmp_path / "top4", tmp_path / "top8"])
    row = next(r for r in text.splitlines() if r.startswith("| top8 | 3 |")).split("|")
    assert row[3].strip() == "26.7" and row[4].strip() == "+6.7" and row[6].strip() == "2 / 1"
    assert row[7].strip() == "10.0 / 20.0 / 26.7"  # mean dev exact per checkpoint over the paired folders
    assert "| top8 | 1 | 50.0 | +0.0 |" in text  # the devsuite table: one folder, no change
    assert ck.main(["compare", str(tmp_path / "top4"), "--rule", "no such rule"]) == 2


def test_dev_eval_settings_parse_and_refuse_bad_specs():
    import pytest

    ck = load_script("benchmarks/ckpt_rules.py", "ckpt_rules_bench")
    assert ck.parse_dev_eval(["fs2:fewshot=2", "r1:retries=1,fewshot=4"]) == {"fs2": {"fewshot": 2},
                                                                           "r1": {"retries": 1, "fewshot": 4}}
    for bad in (["fewshot=2"], ["fs2:"], [":fewshot=2"], ["a:fewshot=1", "a:fewshot=2"]):
        with pytest.raises(SystemExit):
            ck.parse_dev_eval(bad)


def test_evals_sets_each_dev_scoring_beside_the_plain_one(tmp_path):
    ck = load_script("benchmarks/ckpt_rules.py", "ckpt_rules_bench")
    # two exoplanets runs and one devsuite run, scored plainly at every checkpoint (dev.jsonl) and with few-shot
    # at the untuned step and the last one (dev_fs2.jsonl), as `run --dev-eval` writes them
    for folder, plain, fs2 in (("exo_s1a", (.1, .2, .3), (.2, .4)), ("exo_s1b", (.1, .2, .2), (.1, .1)),
                               ("tvshow_a", (.5, .5, .5), (.25, .75))):
        d = tmp_path / "w" / folder
        _write(d / "metrics.jsonl", [_line(s, 0.2, 0.5) for s in (0, 13, 26)])
        _write(d / "dev.jsonl", [{"step": s, "n": 100, "exact": e} for s, e in zip((0, 13, 26), plain)])
        _write(d / "dev_fs2.jsonl", [{"step": s, "n": 100, "exact": e} for s, e in zip((26, 0), fs2[::-1])])
        _write(d / "dev_fs2_sql.jsonl", [{"step": 0, "sql": {}}])  # the SQL files are no scoring of their own
    assert ck.dev_settings(tmp_path / "w") == ["dev", "dev_fs2"]
    text = ck.evals(tmp_path / "w")
    rows = [r.split("|") for r in text.splitlines() if r.startswith("| dev_fs2 |")]
    # exoplanets: untuned 10 -> 15 (+5), last step 25 -> 25 (+10 and -10: 1 better, 1 worse); devsuite 50 -> 75
    assert [c.strip() for c in rows[0][2:7]] == ["2", "15.0", "+5.0", "25.0", "+0.0"] and rows[0][8].strip() == "1 / 1"
    assert [c.strip() for c in rows[1][2:7]] == ["1", "25.0", "-25.0", "75.0", "+25.0"]
    assert "| dev | 2 | 10.0 | +0.0 | 25.0 | +0.0 |" in text


def test_panel_replays_fallbacks_and_votes_over_the_answers_a_lease_wrote(tmp_path, tiny_db):
    import gzip
    import shutil

    ck = load_script("benchmarks/ckpt_rules.py", "ckpt_rules_bench")
    gold = [{"id": "a", "question": "How many authors?", "sql": "SELECT COUNT(*) FROM authors"},
            {"id": "b", "question": "Names of the UK authors?", "sql": "SELECT name FROM authors WHERE country = 'UK'"},
            {"id": "c", "question": "How many books?", "sql": "SELECT COUNT(*) FROM books"}]
    f = tmp_path / "folders" / "exo_s1a"
    f.mkdir(parents=True)
    shutil.copyfile(tiny_db, f / "exo_s1a.sqlite")
    _write(f / "dev.jsonl", gold)
    # per question: the tuned answer (right, runs wrong, fails), the untuned one, the untuned one with 4 examples
    t = {"a": gold[0]["sql"], "b": "SELECT name FROM authors", "c": "SELECT nope FROM books"}
    u0 = {"a": "SELECT COUNT(*) FROM books", "b": gold[1]["sql"], "c": gold[2]["sql"]}
    u4 = {"a": "SELECT MAX(id) + 1 FROM authors", "b": gold[1]["sql"], "c": "SELECT COUNT(*) FROM authors"}
    w = tmp_path / "work" / "exo_s1a"
    w.mkdir(parents=True)
    _write(w / "dev_sql.jsonl", [{"step": 13, "sql": {}}, {"step": 26, "sql": t}, {"step": 0, "sql": u0}])
    (w / "dev_fs4_sql.jsonl.gz").write_bytes(gzip.compress("".join(
        json.dumps(r) + "\n" for r in ({"step": 0, "sql": u4}, {"step": 26, "sql": {}})).encode()))
    text = ck.panel(tmp_path / "work", tmp_path / "folders")
    rows = {r.split("|")[1].strip(): r.split("|")[3].strip() for r in text.splitlines() if r.startswith("| ") and "---" not in r}
    assert rows["T"] == "33.3"  # a only
    assert rows["T, U0 where T fails (fallback: base)"] == "66.7"  # c from the untuned model; b's wrong answer runs
    assert rows["panel T, U0, U4 (fallback: panel)"] == "100.0"  # a: a tie, T's; b: two agree; c: U0 before U4
    assert rows["panel T, U4, U0"] == "66.7"  # c: the tie goes to U4, wrong
    assert "panel T, U0, U2" not in rows  # no fs2 answers: left out

    # a work trained with 4 examples (session 28): its own scoring is T4/U4, `fs0` the same checkpoints without them
    (w / "dev_fs4_sql.jsonl.gz").unlink()
    (w / "dev_sql.jsonl").rename(w / "dev_fs0_sql.jsonl")
    _write(w / "dev_sql.jsonl", [{"step": 0, "sql": u4}, {"step": 26, "sql": u0}])
    text = ck.panel(tmp_path / "work", tmp_path / "folders", plain_k=4)
    rows = {r.split("|")[1].strip(): r.split("|")[3].strip() for r in text.splitlines() if r.startswith("| ") and "---" not in r}
    assert rows["T4 (trained and scored with 4 examples)"] == "66.7"  # u0's answers, as the last checkpoint: b, c
    assert rows["T0 (the same checkpoint, no examples)"] == "33.3"  # t's: a
    assert rows["panel T4, U0, U4"] == "66.7"  # U0 here is t (a right); a: a three-way tie goes to T4 (wrong)


def test_panel_replays_the_repair_before_the_vote_or_as_the_last_resort(tmp_path, tiny_db):
    """`panel --repair each` repairs every failing answer before the vote; `last` only where the panel's answer fails
    (the shipped `eval.repair`); `none` scores the answers as written."""
    import shutil

    ck = load_script("benchmarks/ckpt_rules.py", "ckpt_rules_bench")
    gold = [{"id": "d", "question": "Titles with author names?",
             "sql": "SELECT books.title, authors.name FROM books JOIN authors ON books.author_id = authors.id"},
            {"id": "e", "question": "How many books?", "sql": "SELECT COUNT(*) FROM books"}]
    f = tmp_path / "folders" / "tvshow_a"
    f.mkdir(parents=True)
    shutil.copyfile(tiny_db, f / "tvshow_a.sqlite")
    _write(f / "dev.jsonl", gold)
    # d: every answer fails, the tuned one repairable; e: the tuned answer runs (wrong), both untuned ones are a
    # misspelt column away from the gold
    t = {"d": "SELECT title, name FROM books", "e": "SELECT COUNT(*) FROM authors"}
    u0 = {"d": "SELECT nope FROM books", "e": "SELECT COUNT(*) FROM books WHERE titel IS NOT NULL"}
    u4 = {"d": "SELECT nope FROM books", "e": "SELECT COUNT(*) FROM books WHERE titel IS NOT NULL"}
    w = tmp_path / "work" / "tvshow_a"
    w.mkdir(parents=True)
    _write(w / "dev_sql.jsonl", [{"step": 0, "sql": u0}, {"step": 26, "sql": t}])
    _write(w / "dev_fs4_sql.jsonl", [{"step": 0, "sql": u4}, {"step": 26, "sql": {}}])
    got = {}
    for mode in ("none", "each", "last"):
        text = ck.panel(tmp_path / "work", tmp_path / "folders", repair=mode)
        got[mode] = {r.split("|")[1].strip(): r.split("|")[3].strip() for r in text.splitlines()
                     if r.startswith("| ") and "---" not in r}["panel T, U0, U4 (fallback: panel)"]
    assert got == {"none": "0.0", "each": "100.0", "last": "50.0"}
