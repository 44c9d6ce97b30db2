"""`sqltune ask / predict / eval / models`: bad input is one line and a non-zero exit; outputs chain."""

import json

import pytest

from sqltune.cli import main


@pytest.fixture(autouse=True)
def _one_thread(request):
    import torch

    if request.node.get_closest_marker("slow"):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model gains nothing from threads on a shared CPU
    yield
    torch.set_num_threads(threads)


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err, match):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip() and "Loading weights" not in line]
    assert len(lines) == 1 and match in lines[0], err


def test_ask_missing_db(capsys, tmp_path):
    code, _, err = _run(capsys, "ask", "How many?", "--db", str(tmp_path / "nope.sqlite"))
    _one_line_error(code, err, "database not found")


def test_ask_not_a_sqlite_file(capsys, tmp_path):
    bad = tmp_path / "x.sqlite"
    bad.write_text("hello")
    code, _, err = _run(capsys, "ask", "How many?", "--db", str(bad))
    _one_line_error(code, err, "not a SQLite database")


def test_ask_unknown_model(capsys, tiny_db):
    code, _, err = _run(capsys, "ask", "How many?", "--db", str(tiny_db), "--model", "no-such-model")
    _one_line_error(code, err, "unknown model 'no-such-model'")


def test_ask_unknown_prompt_style(capsys, tiny_db, tiny_model_dir):
    code, _, err = _run(capsys, "ask", "How many?", "--db", str(tiny_db), "--model", str(tiny_model_dir),
                        "--prompt-style", "alpaca")
    _one_line_error(code, err, "unknown prompt style")


def test_ask_missing_adapter(capsys, tiny_db, tmp_path):
    code, _, err = _run(capsys, "ask", "How many?", "--db", str(tiny_db), "--adapter", str(tmp_path / "nope"))
    _one_line_error(code, err, "folder not found")


def test_predict_missing_data(capsys, tiny_db, tmp_path):
    code, _, err = _run(capsys, "predict", "--data", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "p.jsonl"),
                        "--db", str(tiny_db))
    _one_line_error(code, err, "not found")


def test_fewshot_needs_training_data(capsys, tiny_db, tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"id": "1", "question": "How many books?", "sql": "SELECT COUNT(*) FROM books"}) + "\n")
    code, _, err = _run(capsys, "predict", "--data", str(data), "--out", str(tmp_path / "p.jsonl"),
                        "--db", str(tiny_db), "--fewshot", "2")
    _one_line_error(code, err, "--fewshot-pool")
    code, _, err = _run(capsys, "predict", "--data", "exoplanets:train", "--out", str(tmp_path / "p.jsonl"), "--fewshot", "2")
    _one_line_error(code, err, "training data")


def test_ask_json_with_the_tiny_model(capsys, tiny_db, tiny_model_dir):
    """By default `ask` votes only where the greedy SQL fails: the tiny random model's greedy SQL does not
    run, so 8 candidates were drawn and voted, the greedy one first; `--vote 1` is greedy alone."""
    code, out, _ = _run(capsys, "ask", "How many books?", "--db", str(tiny_db), "--model", str(tiny_model_dir), "--json")
    assert code == 0
    obj = json.loads(out)
    assert set(obj) == {"sql", "columns", "rows", "error", "vote"}
    cands = obj["vote"]["candidates"]
    assert len(cands) == 8 and cands[0]["greedy"] and cands[0]["error"] and not any(c["greedy"] for c in cands[1:])
    code, out, _ = _run(capsys, "ask", "How many books?", "--db", str(tiny_db), "--model", str(tiny_model_dir),
                        "--json", "--vote", "1")
    assert code == 0 and set(json.loads(out)) == {"sql", "columns", "rows", "error"}


def test_ask_vote_defaults():
    """`ask`'s --vote / --vote-when defaults: 8 where greedy fails; --vote N alone votes always; --retries alone
    stays greedy (it does not combine with a vote); an explicit --vote-when is kept."""
    from sqltune.commands.models import ASK_VOTE, ask_vote

    assert ASK_VOTE == 8
    assert ask_vote(None, None, 0) == (8, "error")
    assert ask_vote(None, "always", 0) == (8, "always")
    assert ask_vote(4, None, 0) == (4, "always")
    assert ask_vote(4, "error", 0) == (4, "error")
    assert ask_vote(1, None, 0) == (1, "always")
    assert ask_vote(None, None, 2) == (1, "always")


def test_predict_then_score_and_eval(capsys, tiny_db, tiny_model_dir, tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "a", "question": "How many books?", "sql": "SELECT COUNT(*) FROM books"},
        {"id": "b", "question": "List the authors", "sql": "SELECT name FROM authors"},
        {"id": "c", "question": "Titles of UK authors", "sql": "SELECT title FROM books JOIN authors ON author_id = authors.id WHERE country = 'UK'"},
    ]))
    deep = tmp_path.joinpath(*["a-long-folder-name-that-makes-the-path-wider-than-a-terminal"] * 3)
    deep.mkdir(parents=True)
    pred = deep / "pred.jsonl"  # printed on one line however long: output to a pipe is never hard-wrapped
    code, out, _ = _run(capsys, "predict", "--data", str(gold), "--out", str(pred), "--db", str(tiny_db),
                        "--model", str(tiny_model_dir), "--batch-size", "2", "--max-new-tokens", "6", "--retries", "1")
    assert code == 0 and f"wrote {pred}: 3 predictions" in out
    rows = [json.loads(line) for line in pred.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert all({"id", "question", "sql", "raw", "seconds", "retries", "retry_changed"} <= set(r) for r in rows)
    code, out, _ = _run(capsys, "score", "--gold", str(gold), "--pred", str(pred), "--db", str(tiny_db))
    assert code == 0

    out_dir = tmp_path / "ev"
    code, out, _ = _run(capsys, "eval", "--data", str(gold), "--out-dir", str(out_dir), "--db", str(tiny_db),
                        "--model", str(tiny_model_dir), "--max-new-tokens", "6")
    assert code == 0 and "q/s" in out
    report = json.loads((out_dir / "gold_report.json").read_text())
    assert report["summary"]["n"] == 3 and report["timing"]["queries_per_s"] > 0
    assert report["timing"]["generation"]["prefix_tokens"] > 0
    assert len((out_dir / "gold_pred.jsonl").read_text().splitlines()) == 3
    assert report["eval_config"]["repair"] is True and "repaired" in report["summary"]  # on by default, as in run
    code, out, _ = _run(capsys, "eval", "--data", str(gold), "--out-dir", str(out_dir), "--db", str(tiny_db),
                        "--model", str(tiny_model_dir), "--max-new-tokens", "6", "--no-repair")
    report = json.loads((out_dir / "gold_report.json").read_text())
    assert code == 0 and report["eval_config"]["repair"] is False and "repaired" not in report["summary"]


def test_models_lists_the_packaged_models(capsys, monkeypatch):
    import importlib.util

    from sqltune.model import PACKAGED

    parts = {p for spec in PACKAGED.values() for p in spec.packages}
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in parts else real(name, *a))
    code, out, _ = _run(capsys, "models")
    assert code == 0
    names = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
    assert names == ["qwen2.5-coder-0.5b (default)", "qwen2.5-coder-1.5b", "smollm2-135m"]  # whole names, one row each
    for spec in PACKAGED.values():  # the install hints print literally, brackets included
        assert spec.pip in out


@pytest.mark.slow
def test_ask_the_done_when_question(capsys):
    code, out, _ = _run(capsys, "ask", "How many exoplanets were discovered in 2016?", "--json")
    assert code == 0
    assert json.loads(out)["rows"] == [[1517]]


def test_ask_vote_line_names_the_chosen_group():
    """The count is the chosen candidate's group (the winner need not be the first group formed); a vote where
    nothing returned rows says so instead of '0 of 8 agree'."""
    from sqltune.commands.models import vote_line

    cands = [{"sql": f"S{i}", "error": None} for i in range(4)]
    v = {"chosen": 2, "candidates": cands, "groups": [{"votes": 1, "members": [0]}, {"votes": 3, "members": [1, 2, 3]}]}
    assert vote_line(v, 4, True) == "vote 4: 3 of 4 candidates agree on this result; the vote overruled the greedy answer"
    empty = {"chosen": 1, "candidates": [{"sql": "S0", "error": "no such column: x"}, {"sql": "S1", "error": None}],
             "groups": []}
    assert vote_line(empty, 2, False) == "vote 2: no candidate returned rows; this is the likeliest one that ran"
    none = {"chosen": 0, "candidates": [{"sql": None, "error": "no SQL"}], "groups": []}
    assert vote_line(none, 1, False) == "vote 1: no candidate ran"


def _stop_at_load(monkeypatch, tmp_path, command):
    """The model load of `command` records whether it would merge the adapter, then stops with "stop here".
    Returns (the merge flags seen, the command's arguments before --db)."""
    import sqltune.evaluate as ev

    seen = []

    def fake_load(*args, merge=True, **kw):
        seen.append(merge)
        raise ev.SqltuneError("stop here")

    monkeypatch.setattr(ev, "load_for_inference", fake_load)
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "How many books?", "sql": "SELECT COUNT(*) FROM books"}) + "\n")
    args = {"eval": ["--data", str(data), "--out-dir", str(tmp_path)],
            "predict": ["--data", str(data), "--out", str(tmp_path / "p.jsonl")], "ask": ["How many books?"]}[command]
    return seen, args


@pytest.mark.parametrize("command", ["eval", "predict", "ask"])
def test_eval_predict_and_ask_merge_the_adapter_unless_no_merge(capsys, tiny_db, tmp_path, monkeypatch, command):
    """`--no-merge` uses the adapter unmerged, as `sqltune run` and training score it (under bf16 the two differ)."""
    seen, args = _stop_at_load(monkeypatch, tmp_path, command)
    for flag in ([], ["--no-merge"], ["--merge"]):
        code, _, err = _run(capsys, command, *args, "--db", str(tiny_db), *flag)
        _one_line_error(code, err, "stop here")
    assert seen == [True, False, True]


@pytest.mark.parametrize("command", ["eval", "predict", "ask"])
def test_fallback_loads_the_adapter_unmerged_and_needs_one(capsys, tiny_db, tmp_path, monkeypatch, command):
    """`--fallback base` switches the adapter off for the failing answers, which a merged adapter cannot do: it
    loads it unmerged; without --adapter, or with an unknown value, one clear line."""
    seen, args = _stop_at_load(monkeypatch, tmp_path, command)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    code, _, err = _run(capsys, command, *args, "--db", str(tiny_db), "--adapter", str(adapter), "--fallback", "base")
    _one_line_error(code, err, "stop here")
    assert seen == [False]
    code, _, err = _run(capsys, command, *args, "--db", str(tiny_db), "--fallback", "base")
    _one_line_error(code, err, "--fallback base needs --adapter")
    code, _, err = _run(capsys, command, *args, "--db", str(tiny_db), "--adapter", str(adapter), "--fallback", "tuned")
    _one_line_error(code, err, "--fallback must be one of none, base, vote, panel")
    assert seen == [False]


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_fallback_panel_needs_training_pairs_for_a_data_file(capsys, tiny_db, tmp_path, monkeypatch, command):
    """`--fallback panel` retrieves the untuned model's examples from training pairs: for a data file, --fewshot-pool
    names them (before any model loads), else one clear line; with them it loads the adapter unmerged."""
    seen, args = _stop_at_load(monkeypatch, tmp_path, command)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    code, _, err = _run(capsys, command, *args, "--db", str(tiny_db), "--adapter", str(adapter), "--fallback", "panel")
    _one_line_error(code, err, "--fallback panel need --fewshot-pool TRAIN_FILE")
    assert seen == []
    pool = tmp_path / "train.jsonl"
    pool.write_text(json.dumps({"question": "How many authors?", "sql": "SELECT COUNT(*) FROM authors"}) + "\n")
    code, _, err = _run(capsys, command, *args, "--db", str(tiny_db), "--adapter", str(adapter), "--fallback", "panel",
                        "--fewshot-pool", str(pool))
    _one_line_error(code, err, "stop here")
    assert seen == [False]
    # without an adapter the model is the untuned one: its own panel (`evaluate.untuned_panel`); nothing to unmerge
    code, _, err = _run(capsys, command, *args, "--db", str(tiny_db), "--fallback", "panel", "--fewshot-pool", str(pool))
    _one_line_error(code, err, "stop here")
    assert seen == [False, True]


def test_ask_says_when_the_untuned_model_answered(capsys, tiny_db, tmp_path, monkeypatch):
    import sqltune.evaluate as ev
    from test_evaluate import _Adapted, _fake_generation

    monkeypatch.setattr(ev, "load_for_inference", lambda *a, **kw: (_Adapted(), None, None))
    _fake_generation(monkeypatch, asked := [])
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    code, out, _ = _run(capsys, "ask", "Names of the UK authors?", "--db", str(tiny_db), "--adapter", str(adapter),
                        "--fallback", "base", "--vote", "1")
    assert code == 0 and [off for off, _ in asked] == [False, True]
    assert "the tuned model's SQL failed (no such column: nam); this is the untuned model's answer" in out
    assert "Ada" in out and "Dickens" in out
    code, out, _ = _run(capsys, "ask", "Names of the UK authors?", "--db", str(tiny_db), "--adapter", str(adapter),
                        "--fallback", "base", "--vote", "1", "--json")
    got = json.loads(out)
    assert got["sql"] == "SELECT name FROM authors WHERE country = 'UK'" and got["fallback"]["sql"].startswith("SELECT nam ")


def test_ask_says_when_both_models_voted(capsys, tiny_db, tmp_path, monkeypatch):
    """`ask --fallback vote --vote 4`: the tuned answer executes but differs from the untuned one; both models vote
    and `ask` says whose answer it prints (and `--json` carries the pool record); without a vote, one clear line."""
    import sqltune.evaluate as ev
    from test_evaluate import _Adapted, _fake_sampling

    monkeypatch.setattr(ev, "load_for_inference", lambda *a, **kw: (_Adapted(), None, None))
    _fake_sampling(monkeypatch, asked := [])
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    args = ("ask", "How many books?", "--db", str(tiny_db), "--adapter", str(adapter), "--fallback", "vote",
            "--vote", "4", "--vote-when", "error")
    code, out, _ = _run(capsys, *args)
    assert code == 0 and [(off, n) for off, _, n in asked] == [(False, 1), (True, 1), (False, 4), (True, 4)]
    assert "both voted (7 candidates agreed): this is the untuned model's answer" in out
    code, out, _ = _run(capsys, *args, "--json")
    got = json.loads(out)
    assert got["sql"] == "SELECT COUNT(*) FROM authors" and got["pool"]["sql"] == "SELECT COUNT(*) FROM books"
    code, _, err = _run(capsys, "ask", "How many books?", "--db", str(tiny_db), "--adapter", str(adapter),
                        "--fallback", "vote", "--vote", "1")
    _one_line_error(code, err, "fallback vote needs a vote of 2 or more")


def test_predict_with_the_panel_and_no_adapter_runs_the_untuned_models_own_panel(capsys, tiny_db, tmp_path,
                                                                                   monkeypatch):
    """`predict --fallback panel --fewshot-pool TRAIN` with no adapter: the model is the untuned one, so its answers
    with 4, 0 and 2 retrieved examples vote (`evaluate.untuned_panel`); the rows say so."""
    import sqltune.evaluate as ev
    from test_evaluate import PANEL_ITEMS, PANEL_POOL, UNTUNED_WRITES, _fake_untuned, _Plain

    monkeypatch.setattr(ev, "load_for_inference", lambda *a, **kw: (_Plain(), None, None))
    _fake_untuned(monkeypatch, asked := [])
    data, pool, out = tmp_path / "q.jsonl", tmp_path / "train.jsonl", tmp_path / "pred.jsonl"
    data.write_text("".join(json.dumps(it) + "\n" for it in PANEL_ITEMS))
    pool.write_text("".join(json.dumps(it) + "\n" for it in PANEL_POOL))
    code, _, err = _run(capsys, "predict", "--data", str(data), "--out", str(out), "--db", str(tiny_db),
                        "--fallback", "panel", "--fewshot-pool", str(pool))
    assert code == 0, err
    assert [a[0] for a in asked] == [0, 4, 2]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["sql"] for r in rows] == [UNTUNED_WRITES[4][it["question"]] for it in PANEL_ITEMS]  # see the evaluator's test
    assert all(r["pool"]["untuned"] for r in rows)


def test_predict_with_the_panel_judge_reviewer_elects_by_review_and_a_bad_judge_is_one_line(capsys, tiny_db, tmp_path,
                                                                                          monkeypatch):
    """`--panel-judge reviewer`: the untuned model's own panel with every voter decoded and the reviewer electing
    where its answers disagree (d: the answer without examples, outvoted, is the one the question fits); an unknown
    judge is refused before any model is loaded."""
    import sqltune.evaluate as ev
    from test_evaluate import PANEL_ITEMS, PANEL_POOL, _fake_reviewer, _fake_untuned, _Plain

    loads = []
    monkeypatch.setattr(ev, "load_for_inference", lambda *a, **kw: loads.append(1) or (_Plain(), None, None))
    _fake_untuned(monkeypatch, asked := [])
    _fake_reviewer(monkeypatch, judged := [], {it["question"]: it["sql"] for it in PANEL_ITEMS})
    data, pool, out = tmp_path / "q.jsonl", tmp_path / "train.jsonl", tmp_path / "pred.jsonl"
    data.write_text("".join(json.dumps(it) + "\n" for it in PANEL_ITEMS))
    pool.write_text("".join(json.dumps(it) + "\n" for it in PANEL_POOL))
    args = ["predict", "--data", str(data), "--out", str(out), "--db", str(tiny_db), "--fallback", "panel",
            "--fewshot-pool", str(pool)]
    code, _, err = _run(capsys, *args, "--panel-judge", "reviewer")
    assert code == 0, err
    assert [a[0] for a in asked] == [0, 4, 2] and all(len(a[1]) == 4 for a in asked) and judged
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["sql"] for r in rows] == [it["sql"] for it in PANEL_ITEMS]
    code, out_text, err = _run(capsys, "eval", "--data", str(data), "--out-dir", str(tmp_path / "ev"), "--db",
                               str(tiny_db), "--fallback", "panel", "--fewshot-pool", str(pool), "--panel-judge",
                               "reviewer")
    assert code == 0, err
    assert "the panel weighed 4 questions (the reviewer judged the" in out_text and "both models voted" not in out_text
    loads.clear()
    code, _, err = _run(capsys, *args, "--panel-judge", "jury")
    assert code != 0 and "--panel-judge must be one of vote, reviewer" in err and not loads
    assert "Traceback" not in err
