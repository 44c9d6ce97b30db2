"""benchmarks/panel_replay.py: a run's stored tuned answers and the untuned model's answers (without and with
examples) voted with the shipped `vote.choose`, repaired with the shipped `repair_rows`, scored with `score_pairs`."""

from __future__ import annotations

import json

import pytest
from repo_scripts import load_script

from sqltune.dataset import write_jsonl
from sqltune.score import score_pairs

GOLD = [{"id": "a", "question": "How many books?", "sql": "SELECT COUNT(*) FROM books"},
        {"id": "b", "question": "Titles?", "sql": "SELECT title FROM books"},
        {"id": "c", "question": "How many authors?", "sql": "SELECT COUNT(*) FROM authors"}]
# the run's rows: c's tuned answer failed and the `base` fallback replaced it with the untuned model's
ROWS = [{"id": "a", "sql": "SELECT COUNT(*) FROM authors", "error": None},
        {"id": "b", "sql": "SELECT title FROM books", "error": None},
        {"id": "c", "sql": "SELECT COUNT(*) FROM authors", "error": None,
         "fallback": {"sql": "SELECT genre FROM books", "error": "no such column: genre"}}]
UNTUNED = {0: ["SELECT COUNT(*) FROM books", "SELECT titel FROM books", "SELECT COUNT(*) FROM authors"],
           4: ["SELECT COUNT(*) FROM books", "SELECT name FROM authors", "SELECT COUNT(*) FROM books"],
           2: ["SELECT COUNT(*) FROM books", "SELECT title FROM books", "SELECT COUNT(*) FROM authors"]}


def _one_db_suite(tmp_path, tiny_db, train: list[dict], test: list[dict], **extra: list[dict]):
    """A devsuite-shaped folder with one DB, `one`: its train and test splits, and any other named JSONL files."""
    suite = tmp_path / "suite"
    (suite / "one").mkdir(parents=True)
    (suite / "one" / "one.sqlite").write_bytes(tiny_db.read_bytes())
    write_jsonl(suite / "one" / "train.jsonl", train)
    write_jsonl(suite / "one" / "test.jsonl", test)
    for name, rows in extra.items():
        write_jsonl(suite / "one" / name, rows)
    return suite


def _review_answers(tmp_path, right: str, wrong: str, vote: int) -> None:
    """Session 32's answer files for one DB, `one`, under tmp_path/answers: for question a, U4 and U0 answer `wrong`
    and U2 `right`; every other question is answered with its gold SQL. `vote` 2 adds the gold SQL as a sample."""
    answers = tmp_path / "answers" / "one"
    answers.mkdir(parents=True)
    for k, first in {4: wrong, 0: wrong, 2: right}.items():
        rows = []
        for g in GOLD:
            sql = first if g["id"] == "a" else g["sql"]
            samples = [{"sql": g["sql"], "mean_logprob": -0.2}] if vote == 2 else []
            rows.append({"id": g["id"], "question": g["question"], "sql": sql,
                         "candidates": [{"sql": sql, "mean_logprob": -0.1}, *samples]})
        write_jsonl(answers / f"test_k{k}_v{vote}.jsonl", rows)


def _spy_examples(monkeypatch) -> list:
    """`evaluate.predict_questions` kept, with 4 new tokens at most; returns the list each call's examples go to."""
    import sqltune.evaluate as ev

    shown = []
    real = ev.predict_questions

    def spy(model, tok, builder, questions, db, cfg, examples=None, **kw):
        shown.append(examples)
        return real(model, tok, builder, questions, db, cfg.with_(max_new_tokens=4), examples=examples, **kw)

    monkeypatch.setattr(ev, "predict_questions", spy)
    return shown


def test_the_panel_replay_votes_the_tuned_answer_before_its_fallback_with_both_untuned_answers(tiny_db, tmp_path,
                                                                                                capsys):
    bench = load_script("benchmarks/panel_replay.py")
    suite, runs, untuned = tmp_path / "suite", tmp_path / "runs", tmp_path / "untuned"
    (suite / "one").mkdir(parents=True)
    db = suite / "one" / "one.sqlite"
    db.write_bytes(tiny_db.read_bytes())
    (runs / "one").mkdir(parents=True)
    (runs / "one" / "rl_test_report.json").write_text(json.dumps(score_pairs(db, GOLD, [r["sql"] for r in ROWS])))
    write_jsonl(runs / "one" / "rl_test_pred.jsonl", [dict(r, question=g["question"]) for r, g in zip(ROWS, GOLD)])
    for k, sqls in UNTUNED.items():
        write_jsonl(untuned / "one" / f"test_k{k}.jsonl",
                    [{"id": g["id"], "question": g["question"], "sql": s, "error": None} for g, s in zip(GOLD, sqls)])
    out = tmp_path / "out.json"
    assert bench.main(["--runs", str(runs), "--stage", "rl", "--untuned", str(untuned), "--devsuite", str(suite),
                       "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    # U0 | untuned panel (U4, U0, U2) | tuned as written (c: the answer before the fallback, failing) | shipped | panel
    assert "| one | 3 | 2 | 2 | 1 | 2 | 3 |" in printed, printed
    got = json.loads(out.read_text())["one"]
    assert got["panel"] == [True, True, True] and got["shipped"] == [False, True, True]
    assert got["untuned_panel"] == [True, False, True]  # b: U4 and U2 one vote each, the tie goes to U4 (wrong)
    (untuned / "one" / "test_k2.jsonl").unlink()
    with pytest.raises(SystemExit, match="test_k2.jsonl is missing"):
        bench.main(["--runs", str(runs), "--stage", "rl", "--untuned", str(untuned), "--devsuite", str(suite)])


def test_untuned_answers_writes_every_split_and_k_with_the_db_own_train_pairs(tiny_db, tiny_model_dir, tmp_path,
                                                                           monkeypatch):
    """benchmarks/untuned_answers.py decodes through the shipped `evaluate.predict` (here the tests' tiny random
    model): one file per split and k, the split's ids in order; examples come from the DB's train split only."""
    bench = load_script("benchmarks/untuned_answers.py")
    train = [{"id": f"t{i}", "question": f"Training question {i} about books?", "sql": "SELECT 1"} for i in range(3)]
    suite = _one_db_suite(tmp_path, tiny_db, train, GOLD)
    shown = _spy_examples(monkeypatch)
    out = tmp_path / "out"
    assert bench.main(["--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32", "--devsuite",
                       str(suite), "--splits", "test", "--k", "0", "2", "--out", str(out)]) == 0
    for k in (0, 2):
        rows = [json.loads(x) for x in (out / "one" / f"test_k{k}.jsonl").read_text().splitlines()]
        assert [r["id"] for r in rows] == ["a", "b", "c"] and all(set(r) == {"id", "question", "sql", "error"}
                                                                 for r in rows)
    assert shown[0] is None and [len(e) for e in shown[1]] == [2, 2, 2]
    assert all({"question": e["question"], "sql": e["sql"]} in [{"question": t["question"], "sql": t["sql"]}
                                                               for t in train] for e in shown[1][0])
    runs = json.loads((out / "timing.json").read_text())["runs"]
    assert [(r["db"], r["split"], r["k"], r["n"]) for r in runs] == [("one", "test", 0, 3), ("one", "test", 2, 3)]


def test_untuned_answers_with_a_vote_keeps_the_greedy_answer_and_every_sample(tiny_db, tiny_model_dir, tmp_path):
    """`--vote N`: the shipped `predict` with `eval.vote N` (every question voted); each row keeps the greedy answer
    as `sql` and all N candidates (greedy first, as `vote.sample_sql` draws them) with their mean log-probability;
    the files are named apart from the greedy ones, so both can sit in one folder."""
    bench = load_script("benchmarks/untuned_answers.py")
    suite = _one_db_suite(tmp_path, tiny_db, [{"id": f"t{i}", "question": f"Question {i}?", "sql": "SELECT 1"}
                                              for i in range(3)], GOLD)
    out = tmp_path / "out"
    assert bench.main(["--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32", "--devsuite",
                       str(suite), "--splits", "test", "--k", "2", "--vote", "3", "--temperature", "1.5",
                       "--out", str(out)]) == 0
    assert not (out / "one" / "test_k2.jsonl").exists()
    rows = [json.loads(x) for x in (out / "one" / "test_k2_v3.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    for r in rows:
        assert len(r["candidates"]) == 3 and r["candidates"][0]["sql"] == r["sql"]
        assert all(set(c) == {"sql", "mean_logprob"} and isinstance(c["mean_logprob"], float) for c in r["candidates"])
    runs = json.loads((out / "timing_v3.json").read_text())["runs"]
    assert [(r["split"], r["k"], r["n"], r["vote"]) for r in runs] == [("test", 2, 3, 3)]
    with pytest.raises(SystemExit):  # a vote of 0 is refused before a model is loaded
        bench.main(["--model", str(tiny_model_dir), "--devsuite", str(suite), "--vote", "0", "--out", str(out)])


def _candidates(k_answers: dict[int, list[list[str]]], suite, folder, split="test", n=3, tag=None):
    """Write `untuned_answers.py`-shaped files: per k, per GOLD item, the greedy answer then the samples."""
    for k, per_item in k_answers.items():
        name = f"{split}_k{k}_v{n}.jsonl" if tag is None else f"{split}_k{k}{tag}.jsonl"
        rows = []
        for g, sqls in zip(GOLD, per_item):
            row = {"id": g["id"], "question": g["question"], "sql": sqls[0], "error": None}
            if tag is None:
                row["candidates"] = [{"sql": s, "mean_logprob": -0.1} for s in sqls]
            rows.append(row)
        write_jsonl(folder / name, rows)


def test_sampled_panel_votes_greedy_answers_then_samples_in_the_rule_order(tiny_db, tmp_path, capsys):
    """benchmarks/sampled_panel.py: A = U4, U0, U2; D = U4 and its samples; G = A then V4 (the larger pool's answer).
    Question a: two greedy voters agree on a wrong count, so A is wrong; U4's two samples side with the right one,
    so D (U4 + S4: right 2, wrong 1) is right; V4 is right, which ties G at 2-2 and the tie goes to the earliest
    voter of each group (U4, wrong, before U0): G stays wrong. Question c: every greedy answer fails; the repair is
    the last resort over the same list."""
    bench = load_script("benchmarks/sampled_panel.py")
    suite, answers = tmp_path / "suite", tmp_path / "answers"
    (suite / "one").mkdir(parents=True)
    db = suite / "one" / "one.sqlite"
    db.write_bytes(tiny_db.read_bytes())
    write_jsonl(suite / "one" / "test.jsonl", GOLD)
    right, wrong = "SELECT COUNT(*) FROM books", "SELECT COUNT(*) FROM authors"
    _candidates({4: [[wrong, right, right], ["SELECT title FROM books"] * 3, ["SELECT COUNT(*) FROM author"] * 3],
                 0: [[right, wrong, wrong], ["SELECT title FROM books"] * 3, ["SELECT nope FROM authors"] * 3],
                 2: [[wrong, wrong, wrong], ["SELECT name FROM authors"] * 3, ["SELECT nope FROM authors"] * 3]},
                suite, answers / "one")
    _candidates({4: [[right], ["SELECT title FROM books"], ["SELECT nope FROM authors"]],
                 2: [[right], ["SELECT title FROM books"], ["SELECT nope FROM authors"]]},
                suite, answers / "one", tag="_syn")
    out = tmp_path / "out.json"
    assert bench.main(["--answers", str(answers), "--suite", str(suite), "--split", "test", "--vote", "3",
                       "--pool-tag", "_syn", "--oracle", "--json", str(out)]) == 0
    got = json.loads(out.read_text())["one"]
    # the ceilings: a's right answer is in every list (A wrong, oA right); c has no answer that runs
    assert got["oA"] == [True, True, False] and got["oC"] == [True, True, False]
    assert got["U0"] == [True, True, False]
    assert got["A"][0] is False and got["D"][0] is True and got["G"][0] is False
    assert got["F"][0] is True  # V4, U0, V2: right 3 of 3
    assert all(got[s][1] for s in ("A", "B", "C", "D", "E", "F", "G"))  # b: title is the majority everywhere
    assert got["A"][2] is False  # c: no answer runs and no repair finds a `nope` column
    printed = capsys.readouterr().out
    assert "| one | 3 |" in printed and "G vs A, pooled" in printed
    (answers / "one" / "test_k2_syn.jsonl").unlink()
    with pytest.raises(SystemExit, match="test_k2_syn.jsonl is missing"):
        bench.main(["--answers", str(answers), "--suite", str(suite), "--vote", "3", "--pool-tag", "_syn"])


def test_untuned_answers_extra_pool_adds_the_folder_pairs_to_what_examples_come_from(tiny_db, tiny_model_dir,
                                                                                     tmp_path, monkeypatch):
    """`--extra-pool NAME`: examples are retrieved from the DB's train pairs and the pairs in NAME; a missing NAME is
    one clear error; `--tag` names the files apart."""
    bench = load_script("benchmarks/untuned_answers.py")
    suite = _one_db_suite(tmp_path, tiny_db, [{"id": "t0", "question": "Which colour is the sky?", "sql": "SELECT 1"}],
                          GOLD[:1], **{"synth.jsonl": [{"id": "s0", "question": "How many books are there?",
                                                        "sql": "SELECT COUNT(*) FROM books"}]})
    shown = _spy_examples(monkeypatch)
    out = tmp_path / "out"
    args = ["--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32", "--devsuite", str(suite),
            "--splits", "test", "--k", "2", "--out", str(out)]
    assert bench.main(args + ["--extra-pool", "synth.jsonl", "--tag", "_syn"]) == 0
    assert sorted(e["question"] for e in shown[0][0]) == ["How many books are there?", "Which colour is the sky?"]
    assert (out / "one" / "test_k2_syn.jsonl").is_file() and not (out / "one" / "test_k2.jsonl").exists()
    with pytest.raises(SystemExit, match="missing.jsonl is missing"):
        bench.main(args + ["--extra-pool", "missing.jsonl"])


def test_review_scores_pad_without_changing_a_score_and_pick_follows_the_scheme(tiny_db, tiny_model_dir):
    """The reviewer (`vote.review_scores`, read by benchmarks/review_replay.py): log P(question | SQL) is the same for
    a SQL scored alone or in a padded batch beside a longer one (the padding is masked and the question's positions
    are the row's own); `pick` elects the best-scored group (R1) or the most-voted group with the score breaking ties
    (R2)."""
    from sqltune.model import load_model, pick_device
    from sqltune.prompt import PromptBuilder
    from sqltune.vote import Candidate, choose, review_scores

    bench = load_script("benchmarks/review_replay.py")
    model, tok, _ = load_model(str(tiny_model_dir), pick_device("cpu", "float32"))
    short, long_ = "SELECT 1", "SELECT title, genre FROM books WHERE title LIKE '%a%' ORDER BY title"
    builder = PromptBuilder("CREATE TABLE books (title TEXT);", "chat")
    alone = review_scores(model, tok, builder, "How many books?", [short])
    both = review_scores(model, tok, builder, "How many books?", [long_, short])
    assert len(both) == 2 and all(s < 0 for s in both)
    assert both[1] == pytest.approx(alone[0], abs=1e-4)
    # the shared prefix (system turn + schema) run once equals each whole sequence run through the model
    import torch

    q = "How many books?"
    sqls = [short, long_, books := "SELECT COUNT(*) FROM books"]
    tail = tok(q, add_special_tokens=False)["input_ids"]
    plain = []
    for s in sqls:
        head = tok(builder.review(tok, s), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=torch.tensor([head + tail])).logits[0].float(), -1)
        plain.append(float(sum(lp[len(head) - 1 + t, x] for t, x in enumerate(tail))))
    for size in (1, 2, 16):
        assert review_scores(model, tok, builder, q, sqls, batch_size=size) == pytest.approx(plain, abs=1e-4)
    assert review_scores(model, tok, builder, q, [books]) == pytest.approx(plain[2:], abs=1e-4)
    shots = [{"question": "List the titles.", "sql": "SELECT title FROM books"}]
    head = tok(builder.review(tok, short, shots), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=torch.tensor([head + tail])).logits[0].float(), -1)
    want = float(sum(lp[len(head) - 1 + t, x] for t, x in enumerate(tail)))
    assert review_scores(model, tok, builder, q, [short, long_], examples=shots)[0] == pytest.approx(want, abs=1e-4)
    result = {"columns": ["title"], "rows": [["Dune"], ["Emma"]]}
    head = tok(builder.review(tok, short, None, result), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=torch.tensor([head + tail])).logits[0].float(), -1)
    want = float(sum(lp[len(head) - 1 + t, x] for t, x in enumerate(tail)))
    got = review_scores(model, tok, builder, q, [short, long_], results=[result, None])
    assert got[0] == pytest.approx(want, abs=1e-4) and got[1] == pytest.approx(plain[1], abs=1e-4)
    with pytest.raises(ValueError, match="1 results for 2 SQL"):
        review_scores(model, tok, builder, q, [short, long_], results=[result])

    authors = "SELECT COUNT(*) FROM authors"
    o = choose(tiny_db, [Candidate(sql=s, raw="", mean_logprob=-float(k)) for k, s in
                         enumerate([authors, books, authors, "SELECT nope FROM books"])])
    scores = {books: -1.0, authors: -5.0}
    assert bench.pick(o, scores, "R1") == 1  # R1: the better-scored group, though outvoted
    assert bench.pick(o, scores, "R2") == 0  # R2: two votes beat one
    o = choose(tiny_db, [Candidate(sql=s, raw="", mean_logprob=-float(k)) for k, s in enumerate([authors, books])])
    assert bench.pick(o, scores, "R2") == 1  # R2 at a tie: the score instead of the order
    assert bench.pick(choose(tiny_db, [Candidate(sql="SELECT nope", raw="", mean_logprob=0.0)]), scores, "R2") is None
    o = choose(tiny_db, [Candidate(sql=s, raw="", mean_logprob=-float(k)) for k, s in
                         enumerate([authors, books, authors])])
    close = {books: -1.0, authors: -1.5}
    assert bench.pick(o, close, "R1") == 1  # the better score alone
    assert bench.pick(o, close, "R3") == 0  # -1.5 + log 2 > -1.0 + log 1: votes count as the coder's probability
    assert bench.pick(o, {books: -1.0, authors: -2.0}, "R3") == 1


@pytest.mark.parametrize("style", ["chat", "seed"])
def test_coder_scores_equal_each_whole_sequence_and_count_the_completion_tokens(tiny_model_dir, style):
    """The coder's score (`vote.coder_scores`): log P(SQL + end-of-turn | the writing prompt), the prompt (examples
    too) run once for every candidate: equal to running each prompt + completion through the model whole, whatever the
    batch size and the candidates' lengths, and the token count is the completion's."""
    import torch

    from sqltune.model import load_model, pick_device
    from sqltune.prompt import PromptBuilder, encode
    from sqltune.vote import coder_scores, tail_logprobs

    model, tok, _ = load_model(str(tiny_model_dir), pick_device("cpu", "float32"))
    builder = PromptBuilder("CREATE TABLE books (title TEXT, genre TEXT);", style)
    q = "How many books?"
    sqls = ["SELECT 1", "SELECT title, genre FROM books WHERE title LIKE '%a%' ORDER BY title",
            "SELECT COUNT(*) FROM books"]
    shots = [{"question": "List the titles.", "sql": "SELECT title FROM books"}]
    for examples in (None, shots):
        head = encode(tok, builder.prompt(tok, q, examples))
        plain = []
        for s in sqls:
            tail = encode(tok, builder.completion(tok, q, s, examples))
            with torch.no_grad():
                lp = torch.log_softmax(model(input_ids=torch.tensor([head + tail])).logits[0].float(), -1)
            plain.append((float(sum(lp[len(head) - 1 + t, x] for t, x in enumerate(tail))), len(tail)))
        assert all(n > 1 for _, n in plain) and len({n for _, n in plain}) == 3
        for size in (1, 2, 16):
            got = coder_scores(model, tok, builder, q, sqls, batch_size=size, examples=examples)
            assert [n for _, n in got] == [n for _, n in plain]
            assert [x for x, _ in got] == pytest.approx([x for x, _ in plain], abs=1e-4)
    assert coder_scores(model, tok, builder, q, []) == []
    with pytest.raises(ValueError, match="scored span"):
        tail_logprobs(model, [[1, 2, 3]], [3])
    with pytest.raises(ValueError, match="1 spans for 2 rows"):
        tail_logprobs(model, [[1, 2, 3], [1, 2]], [1])


def test_review_halves_replays_the_default_panel_by_votes_and_by_the_reviewer(tiny_db, tiny_model_dir, tmp_path,
                                                                              capsys, monkeypatch):
    """benchmarks/review_halves.py over a stored lease (T0, U0, U4, T2 from `dev*_sql.jsonl`): where the voters
    disagree the reviewer (here a stand-in preferring the gold SQL) elects; by votes, two agreeing wrong answers win."""
    import sqltune.vote as vote

    bench = load_script("benchmarks/review_halves.py")
    work, folders = tmp_path / "work" / "one_a", tmp_path / "folders" / "one_a"
    work.mkdir(parents=True)
    folders.mkdir(parents=True)
    (folders / "one_a.sqlite").write_bytes(tiny_db.read_bytes())
    write_jsonl(folders / "dev.jsonl", GOLD[:1])
    right, wrong = GOLD[0]["sql"], "SELECT COUNT(*) FROM authors"
    for suffix, (u, t) in (("", (wrong, right)), ("_fs2", (wrong, wrong)), ("_fs4", (wrong, wrong))):
        write_jsonl(work / f"dev{suffix}_sql.jsonl", [{"step": 0, "sql": {"a": u}}, {"step": 9, "sql": {"a": t}}])
    monkeypatch.setattr(vote, "review_scores", lambda m, tok, b, q, sqls, autocast=False:
                        [0.0 if s == right else -5.0 for s in sqls])
    assert bench.main(["--work", str(tmp_path / "work"), "--folders", str(tmp_path / "folders"), "--model",
                       str(tiny_model_dir), "--device", "cpu", "--dtype", "float32"]) == 0
    assert "| one_a | 1 | 0 | 1 |" in capsys.readouterr().out


def test_review_speed_times_the_reviewer_on_stored_pools_and_keeps_its_scores(tiny_db, tiny_model_dir, tmp_path,
                                                                              capsys):
    """benchmarks/review_speed.py scores each stored pool (at most --max-sql SQL) with the shipped reviewer and says
    how long it took; a folder without pools is one clear line."""
    bench = load_script("benchmarks/review_speed.py")
    suite = _one_db_suite(tmp_path, tiny_db, GOLD[:1], GOLD)
    pools = tmp_path / "rv.json"
    pools.write_text(json.dumps({"one": {"a": {"SELECT COUNT(*) FROM books": 0, "SELECT COUNT(*) FROM authors": 0,
                                               "SELECT 1": 0}, "c": {"SELECT 2": 0}}}))
    out = tmp_path / "scores.json"
    args = ["--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32", "--scores", str(pools),
            "--suite", str(suite), "--max-sql", "2", "--out", str(out)]
    assert bench.main(args + ["--folders", "one"]) == 0
    assert "2 questions, 3 SQL" in capsys.readouterr().out
    got = json.loads(out.read_text())
    assert [len(x) for x in got] == [2, 1] and all(s < 0 for x in got for s in x)
    assert bench.main(args + ["--folders", "two"]) == 2
    assert "has no pools for two" in capsys.readouterr().err


def test_review_replay_elects_by_the_cached_reviewer_and_refuses_a_cache_of_another_setting(tiny_db, tiny_model_dir,
                                                                                            tmp_path, capsys,
                                                                                            monkeypatch):
    """benchmarks/review_replay.py over stored answers: where two voters agree on a wrong result and the third is right,
    the vote (A) takes the wrong one and R1 the one the reviewer's cached scores prefer; --scores-only prints no
    accuracy; a cache scored with another --review-fewshot is one clear error, not mixed scores; with --review-results
    each disputed SQL's columns and first rows (at most 3) reach the reviewer, and the new cache records it."""
    bench = load_script("benchmarks/review_replay.py")
    suite = _one_db_suite(tmp_path, tiny_db, GOLD[:1], GOLD)
    books, authors = GOLD[0]["sql"], "SELECT COUNT(*) FROM authors"
    _review_answers(tmp_path, books, authors, vote=2)
    cache = tmp_path / "rv.json"
    cache.write_text(json.dumps({"one": {"a": {books: -1.0, authors: -5.0}}}))
    args = ["--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32", "--answers",
            str(tmp_path / "answers"), "--suite", str(suite), "--split", "test", "--vote", "2", "--cache", str(cache)]
    out = tmp_path / "out.json"
    assert bench.main(args + ["--json", str(out)]) == 0
    got = json.loads(out.read_text())["one"]
    assert got["A"] == [False, True, True] and got["R1"] == [True, True, True]
    assert "reviewer model time: 0 s" in capsys.readouterr().out  # every disputed SQL was in the cache
    assert bench.main(args + ["--scores-only"]) == 0
    assert "| A |" not in capsys.readouterr().out
    with pytest.raises(SystemExit, match="holds scores for .'review_fewshot': 0., not .'review_fewshot': 2."):
        bench.main(args + ["--review-fewshot", "2"])
    with pytest.raises(SystemExit, match="not .'review_fewshot': 0, 'canonical': True."):
        bench.main(args + ["--review-canonical"])
    seen = []
    import sqltune.vote as vote

    real = vote.review_scores

    def spy(m, tok, b, q, sqls, autocast=False, examples=None, results=None):
        seen.append(results)
        return real(m, tok, b, q, sqls, autocast=autocast, examples=examples, results=results)

    monkeypatch.setattr(vote, "review_scores", spy)
    fresh = tmp_path / "rr.json"
    assert bench.main(args[:-1] + [str(fresh), "--review-results", "--scores-only"]) == 0
    assert seen and all(r["rows"] and len(r["rows"]) <= 3 and r["columns"] for r in seen[0])
    assert json.loads(fresh.read_text())["_settings"] == {"review_fewshot": 0, "results": True}


def test_review_replay_counts_the_untuned_panel_for_a_run_that_kept_step_0(tiny_db, tiny_model_dir, tmp_path,
                                                                            capsys):
    """A run whose training kept step 0 answered with the untuned panel (its rows say `pool.untuned`): its tuned forms
    are the untuned ones (TA = A, TR1 = R1), not a panel with the untuned greedy answer in the adapter's seat. A run
    with an adapter still puts its own answer (before the panel replaced it) first."""
    bench = load_script("benchmarks/review_replay.py")
    suite = _one_db_suite(tmp_path, tiny_db, GOLD[:1], GOLD)
    books, authors = GOLD[0]["sql"], "SELECT COUNT(*) FROM authors"
    _review_answers(tmp_path, books, authors, vote=1)
    cache = tmp_path / "rv.json"
    cache.write_text(json.dumps({"one": {"a": {books: -1.0, authors: -5.0}}}))

    def run(name: str, rows: list[dict]):
        folder = tmp_path / "runs" / name / "x"
        folder.mkdir(parents=True)
        write_jsonl(folder / "tuned_test_pred.jsonl", rows)
        (folder / "tuned_test_report.json").write_text(json.dumps({"examples": [
            {"id": g["id"], "question": g["question"], "gold_sql": g["sql"], "pred_sql": r["sql"]}
            for g, r in zip(GOLD, rows)]}))

    # kept step 0: the untuned panel elected `authors` for a (its own greedy answer, U0, sits in pool.sql)
    run("kept0", [{"id": g["id"], "sql": authors if g["id"] == "a" else g["sql"], "error": None,
                   "pool": {"untuned": True, "sql": authors if g["id"] == "a" else g["sql"], "source": "fewshot4"}}
                  for g in GOLD])
    # an adapter that answered `books` (right) for a, replaced by the panel with `authors`
    run("adapter", [{"id": g["id"], "sql": authors if g["id"] == "a" else g["sql"], "error": None,
                     **({"fallback": {"sql": books, "error": None}} if g["id"] == "a" else {}),
                     "pool": {"sql": books if g["id"] == "a" else g["sql"], "source": "fewshot" if g["id"] == "a"
                              else "adapter"}} for g in GOLD])
    got = {}
    for name in ("kept0", "adapter"):
        out = tmp_path / f"{name}.json"
        assert bench.main(["--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32", "--answers",
                           str(tmp_path / "answers"), "--suite", str(suite), "--split", "test", "--vote", "1",
                           "--cache", str(cache), "--runs", str(tmp_path / "runs" / name), "--pattern", "x",
                           "--stage", "tuned", "--json", str(out)]) == 0
        got[name] = json.loads(out.read_text())["one"]
    said = capsys.readouterr().out
    assert said.count("kept step 0") == 1
    k0, ad = got["kept0"], got["adapter"]
    assert k0["A"] == [False, True, True] and k0["R1"] == [True, True, True]
    assert k0["TA"] == k0["A"] and k0["TR1"] == k0["R1"] and k0["TR2"] == k0["R2"]
    # with the adapter's right answer first, TA (T, U0, U4) ties 1-2 against it by votes, and TR1 elects it
    assert ad["TA"] == [False, True, True] and ad["TR1"] == [True, True, True]


def test_review_replay_canonical_shows_the_reviewer_one_spelling_and_coder_scores_judge_r4_r5(tiny_db, tiny_model_dir,
                                                                                              tmp_path, monkeypatch):
    """--review-canonical: the reviewer is given `check.normalize_sql` of each disputed SQL (the scores are kept under
    the SQL as the voter wrote it); --coder-fewshot: the coder's scores (cached with their token counts and the
    question's) elect R4/R5, and the coder cache refuses scores of another K."""
    import sqltune.vote as vote

    bench = load_script("benchmarks/review_replay.py")
    suite = _one_db_suite(tmp_path, tiny_db, GOLD[:1], GOLD)
    books, authors = "select  count(*)   from BOOKS", "SELECT COUNT(*) FROM authors"
    _review_answers(tmp_path, books, authors, vote=2)
    shown = []
    monkeypatch.setattr(vote, "review_scores", lambda m, tok, b, q, sqls, autocast=False, examples=None, results=None:
                        shown.extend(sqls) or [0.0 if "books" in x else -50.0 for x in sqls])
    monkeypatch.setattr(vote, "coder_scores", lambda m, tok, b, q, sqls, autocast=False, examples=None:
                        [(-60.0, 30) if "books" in x.lower() else (-1.0, 5) for x in sqls])
    cache, coder = tmp_path / "rv.json", tmp_path / "cs.json"
    args = ["--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32", "--answers",
            str(tmp_path / "answers"), "--suite", str(suite), "--split", "test", "--vote", "2", "--cache", str(cache),
            "--review-canonical", "--coder-fewshot", "1", "--coder-cache", str(coder)]
    out = tmp_path / "out.json"
    assert bench.main(args + ["--json", str(out)]) == 0
    assert sorted(shown) == ["SELECT COUNT(*) FROM authors", "SELECT COUNT(*) FROM books"]
    assert set(json.loads(cache.read_text())["one"]["a"]) == {books, authors}  # kept under the voters' spelling
    got = json.loads(out.read_text())["one"]
    # the reviewer prefers books (0 vs -50); summed, the coder's -60 outweighs that (R4), per token (-2 a token) not (R5)
    assert (got["A"][0], got["R1"][0], got["R4"][0], got["R5"][0]) == (False, True, False, True)
    cached = json.loads(coder.read_text())
    assert cached["_settings"] == {"coder_fewshot": 1} and cached["one"]["a"][books] == [-60.0, 30]
    assert cached["one"]["a"]["_qlen"] > 0
    with pytest.raises(SystemExit, match="coder_fewshot 2"):
        bench.main(args[:-4] + ["--coder-fewshot", "2", "--coder-cache", str(coder)])


def test_verifier_builds_labelled_rows_trains_a_lora_and_judges_the_panel(tiny_db, tiny_model_dir, tmp_path, capsys):
    """benchmarks/verifier.py (session 40): the seeds' answers found by id in --pool become train rows labelled by
    execution against the seed's gold (its gold SQL right, a wrong answer wrong, an answer that fails left out); every
    distinct running SQL of scheme C for the judged questions becomes a score row; `train` fits a LoRA on the tiny
    model and scores every score row. review_replay.py --verifier then elects by it (V2: the best log-odds), and a
    folder whose verifier saw fewer than 5 wrong answers keeps R1's election."""
    import gzip

    bench = load_script("benchmarks/verifier.py")
    replay = load_script("benchmarks/review_replay.py")
    seeds = [{"id": "s1", "question": "How many books are there?", "sql": "SELECT COUNT(*) FROM books"}]
    suite = _one_db_suite(tmp_path, tiny_db, seeds, GOLD)
    books, authors = GOLD[0]["sql"], "SELECT COUNT(*) FROM authors"
    _review_answers(tmp_path, books, authors, vote=2)
    pool = tmp_path / "pool" / "other"
    pool.mkdir(parents=True)
    write_jsonl(pool / "test_k0_v2.jsonl", [{"id": "s1", "question": seeds[0]["question"], "sql": authors,
                                              "candidates": [{"sql": authors}, {"sql": "SELECT nope FROM books"},
                                                             {"sql": books}]}])
    data = tmp_path / "rows.jsonl.gz"
    assert bench.main(["build", "--answers", str(tmp_path / "answers"), "--pool", str(tmp_path / "pool"), "--suite",
                       str(suite), "--vote", "2", "--tokenizer", str(tiny_model_dir), "--out", str(data)]) == 0
    rows = [json.loads(x) for x in gzip.open(data, "rt")]
    train = {r["sql"]: r["label"] for r in rows if r["role"] == "train"}
    assert train == {books: 1, authors: 0}  # the failing answer is left out, the gold SQL is a right answer
    scored = {(r["id"], r["sql"]) for r in rows if r["role"] == "score"}
    assert scored == {("a", books), ("a", authors), ("b", GOLD[1]["sql"]), ("c", GOLD[2]["sql"])}
    text = next(r["text"] for r in rows if r["role"] == "score" and r["sql"] == authors)
    assert "How many books?" in text and authors in text and "First rows (COUNT(*)):" in text
    out = tmp_path / "ver.json"
    assert bench.main(["train", "--data", str(data), "--model", str(tiny_model_dir), "--device", "cpu", "--dtype",
                       "float32", "--epochs", "1", "--out", str(out)]) == 0
    got = json.loads(out.read_text())["one"]
    assert got["train"] == 2 and got["right"] == 1 and got["steps"] == 1
    assert {(i, s) for i, d in got["scores"].items() for s in d} == scored
    # the judge: the reviewer's cache prefers the wrong answer, the verifier the right one
    cache = tmp_path / "rv.json"
    cache.write_text(json.dumps({"one": {"a": {books: -5.0, authors: -1.0}}}))
    ver = {"one": {"train": 12, "right": 6, "scores": {"a": {books: 2.0, authors: -3.0}}}}
    vpath = tmp_path / "v.json"
    vpath.write_text(json.dumps(ver))
    args = ["--model", str(tiny_model_dir), "--answers", str(tmp_path / "answers"), "--suite", str(suite), "--vote",
            "2", "--cache", str(cache), "--verifier", str(vpath), "--json", str(tmp_path / "o.json")]
    assert replay.main(args) == 0
    got = json.loads((tmp_path / "o.json").read_text())["one"]
    assert got["R1"][0] is False and got["V2"][0] is True and got["V1"][0] is True
    ver["one"]["right"] = 8  # 4 wrong answers: too few to have learnt from, R1 elects
    vpath.write_text(json.dumps(ver))
    assert replay.main(args) == 0
    got = json.loads((tmp_path / "o.json").read_text())["one"]
    assert got["V2"] == got["R1"] and got["V1"] == got["R1"]
    capsys.readouterr()


def test_verifier_pick_sums_p_right_over_voters_for_v1_and_takes_the_best_member_for_v2():
    """V1 (LEVER): two voters at P(right) 0.6 each (sum 1.2) beat one at 0.9; V2: the best log-odds, the one at 0.9.
    A tie goes to the group with the earliest member; one group alone is nothing to judge (None)."""
    import math
    from types import SimpleNamespace

    bench = load_script("benchmarks/review_replay.py")
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    o = SimpleNamespace(candidates=[{"sql": "x"}, {"sql": "y1"}, {"sql": "y2"}],
                        groups=[{"members": [0], "votes": 1}, {"members": [1, 2], "votes": 2}])
    scores = {"x": logit(0.9), "y1": logit(0.6), "y2": logit(0.6)}
    assert bench.verifier_pick(o, scores, "V1") == 1
    assert bench.verifier_pick(o, scores, "V2") == 0
    assert bench.verifier_pick(o, {"x": 0.0, "y1": 0.0, "y2": 0.0}, "V2") == 0
    assert bench.verifier_pick(SimpleNamespace(candidates=o.candidates, groups=o.groups[:1]), scores, "V1") is None


def test_verifier_build_cross_trains_each_group_on_the_other_groups_databases_only(tiny_db, tiny_model_dir, tmp_path):
    """build-cross (session 41): the databases are dealt round-robin into groups; a group's verifier is trained on
    the labelled train/valid answers of every database outside it and scores its own databases' valid/test answers
    (and its dev halves'); `train` fits one LoRA per group and files the scores by folder, with the group named."""
    import gzip

    bench = load_script("benchmarks/verifier.py")
    assert bench.groups_of(["c", "a", "b"], 2) == {"a": "g0", "b": "g1", "c": "g0"}
    suite, answers, train_answers = tmp_path / "suite", tmp_path / "answers", tmp_path / "tr"
    books, authors = GOLD[0]["sql"], "SELECT COUNT(*) FROM authors"
    for name in ("alpha", "beta"):
        (suite / name).mkdir(parents=True)
        (suite / name / f"{name}.sqlite").write_bytes(tiny_db.read_bytes())
        seed = {"id": f"{name}-s", "question": "How many books are there?", "sql": books}
        write_jsonl(suite / name / "train.jsonl", [seed])
        write_jsonl(suite / name / "valid.jsonl", [dict(GOLD[1], id=f"{name}-v")])
        write_jsonl(suite / name / "test.jsonl", [dict(GOLD[0], id=f"{name}-t")])
        (train_answers / name).mkdir(parents=True)
        write_jsonl(train_answers / name / "train_k0_v2.jsonl", [dict(seed, candidates=[{"sql": authors}])])
        (answers / name).mkdir(parents=True)
        for sp, q in (("valid", GOLD[1]), ("test", GOLD[0])):
            for k in (4, 0, 2):
                sql = authors if (sp, k) == ("test", 0) else q["sql"]
                write_jsonl(answers / name / f"{sp}_k{k}_v2.jsonl",
                            [{"id": f"{name}-{sp[0]}", "question": q["question"], "sql": sql,
                              "candidates": [{"sql": sql}, {"sql": q["sql"]}]}])
    data = tmp_path / "x.jsonl.gz"
    assert bench.main(["build-cross", "--suite", str(suite), "--answers", str(answers), "--train-answers",
                       str(train_answers), "--groups", "2", "--vote", "2", "--tokenizer", str(tiny_model_dir),
                       "--out", str(data)]) == 0
    rows = [json.loads(x) for x in gzip.open(data, "rt")]
    train = sorted((r["unit"], r["db"], r["id"], r["label"]) for r in rows if r["role"] == "train")
    # alpha is g0 and beta g1: g0's verifier learns from beta's rows only, and the reverse
    assert train == [("g0", "beta", "beta-s", 0), ("g0", "beta", "beta-s", 1), ("g0", "beta", "beta-v", 1),
                     ("g1", "alpha", "alpha-s", 0), ("g1", "alpha", "alpha-s", 1), ("g1", "alpha", "alpha-v", 1)]
    scored = sorted((r["unit"], r["folder"], r["id"], r["sql"]) for r in rows if r["role"] == "score")
    assert scored == sorted([("g0", "alpha", "alpha-t", books), ("g0", "alpha", "alpha-t", authors),
                             ("g0", "alpha", "alpha-v", GOLD[1]["sql"]), ("g1", "beta", "beta-t", books),
                             ("g1", "beta", "beta-t", authors), ("g1", "beta", "beta-v", GOLD[1]["sql"])])
    out = tmp_path / "ver.json"
    assert bench.main(["train", "--data", str(data), "--model", str(tiny_model_dir), "--device", "cpu", "--dtype",
                       "float32", "--epochs", "1", "--batch", "2", "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["_units"] == ["g0", "g1"] and got["_settings"]["batch"] == 2
    assert got["alpha"]["unit"] == "g0" and got["alpha"]["train"] == 3 and got["alpha"]["steps"] == 2
    assert set(got["alpha"]["scores"]) == {"alpha-t", "alpha-v"} and set(got["beta"]["scores"]) == {"beta-t", "beta-v"}
    assert "g0" not in got  # a group is a unit of training, not a folder
    # a second run finds every group done and trains nothing; resuming with other settings is refused
    again = ["train", "--data", str(data), "--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32",
             "--out", str(out)]
    assert bench.main(again) == 0
    assert json.loads(out.read_text()) == got
    part = dict(got, _units=["g0"])
    del part["beta"]
    out.write_text(json.dumps(part))
    with pytest.raises(SystemExit, match="trained with"):
        bench.main(again)


def test_verifier_pairs_counts_right_above_wrong_within_each_question(tiny_db, tmp_path, capsys):
    """verifier.py pairs: every scored SQL labelled against its question's gold; the rate at which the verifier (and
    the cached reviewer, on the pairs it scored) puts a right answer above a wrong one to the same question."""
    bench = load_script("benchmarks/verifier.py")
    suite = _one_db_suite(tmp_path, tiny_db, GOLD[:1], GOLD)
    books, authors, other = GOLD[0]["sql"], "SELECT COUNT(*) FROM authors", "SELECT 42"
    ver = tmp_path / "v.json"
    # question a: right books vs wrong authors and other; the verifier gets (books, authors) right, (books, other) wrong
    ver.write_text(json.dumps({"_settings": {}, "one": {"scores": {"a": {books: 1.0, authors: -1.0, other: 2.0}}}}))
    cache = tmp_path / "rv.json"
    cache.write_text(json.dumps({"one": {"a": {books: -1.0, authors: -2.0}}}))
    assert bench.main(["pairs", "--verifier", str(ver), "--suite", str(suite), "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "one: 1 right, 2 wrong, AUC 0.500" in out
    assert "verifier 0.500 of 2 pairs; reviewer 1.000 of 1" in out
    # on the one pair both scored (books, authors): z-scores over {books, authors} are +-1 for each judge, summed 2/-2
    assert "on the 1 pairs both scored: verifier 1.000, reviewer 1.000, z(reviewer) + z(verifier) 1.000" in out


def test_verifier_pick_v3_sums_the_judges_z_scores_over_the_sql_both_scored():
    """V3 (session 41): z(reviewer) + z(verifier) over every SQL of the question both scored, not only the panel's:
    a judge's margin counts in units of its own spread. A SQL one judge did not score cannot win."""
    from types import SimpleNamespace

    bench = load_script("benchmarks/review_replay.py")
    z = bench.zsum({"a": 1.0, "b": 3.0, "only_v": 9.0}, {"a": -10.0, "b": -30.0, "only_r": 0.0})
    assert z == {"a": 0.0, "b": 0.0}  # a is 1 sd above on the reviewer, 1 below on the verifier; b the reverse
    assert bench.zsum({"a": 2.0, "b": 2.0}, {"a": 0.0, "b": 1.0}) == {"a": -1.0, "b": 1.0}  # no spread: z 0
    assert bench.zsum({}, {"a": 1.0}) == {}
    o = SimpleNamespace(candidates=[{"sql": "x"}, {"sql": "y"}],
                        groups=[{"members": [0], "votes": 1}, {"members": [1], "votes": 1}])
    # the verifier is sure of y (far above its spread), the reviewer mildly prefers x: V3 follows the verifier
    ver = {"x": 0.0, "y": 4.0, "s1": 0.0, "s2": 0.0}
    rev = {"x": -10.0, "y": -10.5, "s1": -10.0, "s2": -11.0}
    assert bench.verifier_pick(o, ver, "V2") == 1 and bench.verifier_pick(o, rev, "V2") == 0
    assert bench.verifier_pick(o, ver, "V3", rev) == 1
    # the same panel where the verifier's margin is small against its spread: the reviewer's margin decides
    ver2 = {"x": 0.0, "y": 0.5, "s1": -8.0, "s2": 8.0}
    assert bench.verifier_pick(o, ver2, "V3", rev) == 0
    # y has no reviewer score: it cannot win whatever the verifier says
    assert bench.verifier_pick(o, ver, "V3", {"x": -10.0, "s1": -10.0, "s2": -11.0}) == 0
