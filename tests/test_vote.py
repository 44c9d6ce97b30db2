"""Execution-guided decoding: sampling with one prefill per question, and the vote over executed results."""

import time

import pytest

from sqltune.cli import main
from sqltune.errors import SqltuneError
from sqltune.generate import generate_sql
from sqltune.prompt import PromptBuilder
from sqltune.vote import Candidate, VoteSettings, choose, sample_sql

SCHEMA = "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT, year INTEGER, price REAL);"
QUESTIONS = ["How many books?", "List every title published after 1900, newest first, with the price",
             "Cheapest book?", "What is the average price per year?", "Titles"]
HANG = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r"


def cand(sql, lp=-1.0, greedy=False):
    return Candidate(sql=sql, raw=sql or "", mean_logprob=lp, greedy=greedy)


# ---------------------------------------------------------------- choose
def test_majority_result_wins_over_the_greedy_answer(tiny_db):
    cs = [cand("SELECT count(*) FROM books WHERE year > 1900", -0.1, greedy=True),
          cand("SELECT count(*) FROM books", -0.9),
          cand("SELECT COUNT(id) FROM books", -0.8),
          cand("SELECT count(1) FROM books", -0.95),
          cand("SELECT count(*) FROM books WHERE year > 1900", -0.5)]
    v = choose(tiny_db, cs)
    assert v.sql == "SELECT COUNT(id) FROM books"  # the group of 3 (6 books counted); its likeliest member
    assert v.chosen == 2 and v.overruled
    assert [g["votes"] for g in v.groups] == [3, 2]
    assert v.candidates[1]["result"] == v.candidates[2]["result"] == v.candidates[3]["result"]
    assert v.candidates[0]["result"] == v.candidates[4]["result"] != v.candidates[1]["result"]


def test_groups_compare_like_fuzzy_column_order_names_and_float_tolerance(tiny_db):
    cs = [cand("SELECT title, price FROM books WHERE price IS NOT NULL", -2.0, greedy=True),
          cand("SELECT price AS p, title AS t FROM books WHERE price > 0", -1.5),
          cand("SELECT title, price * (1 + 1e-7) FROM books WHERE price IS NOT NULL", -1.9),
          cand("SELECT title FROM books", -0.1)]
    v = choose(tiny_db, cs)
    assert v.groups[0]["votes"] == 3 and v.chosen == 1 and not v.overruled


def test_tie_goes_to_the_higher_mean_logprob(tiny_db):
    cs = [cand("SELECT name FROM authors WHERE country = 'UK'", -1.2, greedy=True),
          cand("SELECT name FROM authors WHERE country = 'AR'", -0.4)]
    assert choose(tiny_db, cs).chosen == 1
    cs[0].mean_logprob = -0.3
    assert choose(tiny_db, cs).chosen == 0


def test_failing_and_empty_candidates_lose(tiny_db):
    cs = [cand("SELECT nope FROM books", -0.1, greedy=True), cand("SELECT nope FROM books", -0.1),
          cand("SELECT title FROM books WHERE year > 3000", -0.2), cand("SELECT title FROM books WHERE year > 3000", -0.2),
          cand(None, -0.05), cand("DELETE FROM books", -0.01),
          cand("SELECT title FROM books WHERE year < 1850", -3.0)]
    v = choose(tiny_db, cs)
    assert v.sql == "SELECT title FROM books WHERE year < 1850" and v.overruled
    assert [c["votes"] for c in v.candidates] == [0, 0, 0, 0, 0, 0, 1]
    assert v.candidates[0]["error"] and v.candidates[2]["rows"] == 0


def test_without_any_non_empty_result_an_empty_one_wins_else_greedy(tiny_db):
    empty = "SELECT title FROM books WHERE year > 3000"
    assert choose(tiny_db, [cand("SELECT nope", -0.1, greedy=True), cand(empty, -2.0)]).sql == empty
    assert choose(tiny_db, [cand("SELECT nope", -5.0, greedy=True), cand("SELECT bad", -0.1)]).chosen == 0


def test_a_hanging_candidate_is_cut_by_the_timeout_and_loses(tiny_db):
    cs = [cand(HANG, -0.01, greedy=True), cand(HANG, -0.01), cand("SELECT 1", -3.0)]
    t = time.monotonic()
    v = choose(tiny_db, cs, timeout=0.3)
    assert time.monotonic() - t < 2.0  # two hangs, each cut at 0.3 s (executed once: same SQL)
    assert v.sql == "SELECT 1" and "timeout" in v.candidates[0]["error"]


# ---------------------------------------------------------------- sampling
def test_candidate_zero_is_the_greedy_answer_and_samples_differ(chaotic):
    model, tok = chaotic
    b = PromptBuilder(SCHEMA)
    greedy = generate_sql(model, tok, b, QUESTIONS, batch_size=5, max_new_tokens=10, progress=False)
    cands = sample_sql(model, tok, b, QUESTIONS, 4, max_new_tokens=10, batch_size=8)
    assert [len(c) for c in cands] == [4] * len(QUESTIONS)
    assert [c[0].raw for c in cands] == [g.raw for g in greedy]
    assert all(c[0].greedy and not any(x.greedy for x in c[1:]) for c in cands)
    assert len({x.raw for c in cands for x in c[1:]}) > len(QUESTIONS)  # samples are not copies of greedy


def test_one_prefix_forward_and_one_prefill_per_group_of_questions(chaotic):
    model, tok = chaotic
    calls = []
    hook = model.register_forward_pre_hook(lambda m, args, kw: calls.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        stats = {}
        sample_sql(model, tok, PromptBuilder(SCHEMA), QUESTIONS, 4, max_new_tokens=6, batch_size=8, stats=stats)
    finally:
        hook.remove()
    groups = -(-len(QUESTIONS) // 2)  # 8 rows per call / 4 candidates = 2 questions per call
    assert {k: stats[k] for k in ("prefix_forwards", "prefill_forwards", "generate_calls")} == \
        {"prefix_forwards": 1, "prefill_forwards": groups, "generate_calls": groups}
    assert stats["row_steps"] <= 8 * stats["decode_steps"]
    multi = [s for s in calls if s[1] > 1]
    assert multi[0][0] == 1  # the schema prefix: one row
    assert [s[0] for s in multi[1:]] == [2, 2, 1]  # question prefills: one row per question, not per candidate
    assert all(s[1] == 1 for s in calls if s[0] > 2)  # the 4-row passes only ever feed one token per row


def test_finished_rows_leave_the_batch_and_samples_stop_at_the_cap(chaotic, monkeypatch):
    import sqltune.vote as vote_mod
    from sqltune.vote import sample_cap

    model, tok = chaotic
    # the random model never ends a statement: end one at a text-determined point, so rows stop at different steps
    monkeypatch.setattr(vote_mod, "is_complete", lambda text: sum(map(ord, text)) % 5 == 0)
    stats = {}
    cands = sample_sql(model, tok, PromptBuilder(SCHEMA), QUESTIONS, 4, max_new_tokens=80, batch_size=20, stats=stats)
    lengths = [x.tokens for c in cands for x in c]
    assert len(set(lengths)) > 1
    # each row is decoded only until it stops (its tokens, plus the step that wrote EOS), not for the longest row
    assert stats["row_steps"] <= sum(n + 1 for n in lengths) < len(lengths) * stats["decode_steps"]
    for c in cands:
        assert all(x.tokens <= sample_cap(c[0].tokens, 80) for x in c[1:])
    assert sample_cap(10, 256) == 39 and sample_cap(200, 256) == 256


def test_nucleus_keeps_what_transformers_top_p_keeps_with_the_same_probabilities():
    import torch
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    from sqltune.vote import _nucleus, _sample

    g = torch.Generator().manual_seed(0)
    peaked = torch.randn(3, 5000, generator=g) * 4
    flat = torch.randn(2, 5000, generator=g) * 0.1  # the nucleus of a flat row is far wider than 64 tokens
    logits = torch.cat([peaked, flat])
    want = torch.softmax(TopPLogitsWarper(0.9)(None, TemperatureLogitsWarper(0.7)(None, logits)), -1)
    got = torch.zeros_like(want)
    parts = _nucleus(logits, 0.7, 0.9)
    idx, probs = parts[0]
    got.scatter_(1, idx, probs)
    rows, full = parts[1]
    assert rows.tolist() == [3, 4]
    got[rows] = full
    got = got / got.sum(-1, keepdim=True)
    assert torch.equal(got > 0, want > 0) and torch.allclose(got, want, atol=1e-6)
    assert 1 < int((want[0] > 0).sum()) <= 64 and int((want[3] > 0).sum()) > 64
    toks = _sample(logits, 0.7, 0.9, torch.Generator().manual_seed(1))
    assert all(want[r, t] > 0 for r, t in enumerate(toks.tolist()))


def test_top_p_one_samples_the_whole_softmax():
    """top_p = 1 (GRPO's sampling, `rl.probe`) draws from softmax(logits / T) over every token."""
    import math

    import torch

    from sqltune.vote import _sample

    logits = torch.tensor([[0.0, math.log(2), math.log(7)]]).repeat(20000, 1)
    toks = _sample(logits, 1.0, 1.0, torch.Generator().manual_seed(0))
    freq = torch.bincount(toks, minlength=3).float() / len(toks)
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.7]), atol=0.015)
    hot = _sample(logits[:2000], 0.25, 1.0, torch.Generator().manual_seed(0))  # T = 1/4: weights 1 : 16 : 2401
    assert (hot == 2).float().mean() > 0.98


def test_mean_logprob_is_the_models_own_probability_of_the_tokens(chaotic):
    import torch

    model, tok = chaotic
    b = PromptBuilder(SCHEMA)
    c = sample_sql(model, tok, b, QUESTIONS[:1], 3, max_new_tokens=8, batch_size=3, seed=3)[0][2]
    from sqltune.prompt import encode

    prompt = encode(tok, b.prompt(tok, QUESTIONS[0]))
    gen = c.ids
    assert len(gen) == c.tokens and tok.decode(gen) == c.raw
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + gen])).logits[0, len(prompt) - 1: -1]
    want = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(gen)[:, None]).mean().item()
    assert c.mean_logprob == pytest.approx(want, abs=1e-3)


def test_same_seed_same_candidates_other_seed_others(chaotic):
    model, tok = chaotic
    b = PromptBuilder(SCHEMA)
    run = lambda seed: [[x.raw for x in c] for c in sample_sql(model, tok, b, QUESTIONS[:3], 4, max_new_tokens=8,  # noqa: E731
                                                               batch_size=8, seed=seed)]
    assert run(0) == run(0)
    assert run(0) != run(1)


def test_predict_and_evaluate_items_with_a_vote(chaotic, tiny_db):
    from sqltune.evaluate import evaluate_items

    model, tok = chaotic
    items = [{"id": str(i), "question": q, "sql": "SELECT count(*) FROM books"} for i, q in enumerate(QUESTIONS[:3])]
    rep = evaluate_items(model, tok, PromptBuilder(SCHEMA), items, tiny_db, max_new_tokens=6, progress=False,
                         vote=VoteSettings(3))
    row = rep["predictions"][0]
    assert len(row["vote"]["candidates"]) == 3 and "greedy_sql" in row and "overruled" in row
    v = rep["vote"]
    assert v["n"] == 3 and v["greedy"]["n"] == 3 and v["overruled"] >= v["helped"] + v["hurt"]
    with pytest.raises(SqltuneError, match="do not combine"):
        evaluate_items(model, tok, PromptBuilder(SCHEMA), items, tiny_db, retries=1, vote=VoteSettings(3))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("args,msg", [
    (["--vote", "0"], "--vote must be at least 1"),
    (["--vote", "65"], "above the cap of 64"),
    (["--vote", "4", "--temperature", "-0.5"], "--temperature must be above 0"),
    (["--vote", "4", "--top-p", "1.5"], "--top-p must be in (0, 1]"),
    (["--vote", "4", "--retries", "1"], "do not combine"),
])
@pytest.mark.parametrize("command", [["ask", "How many planets?"], ["eval", "--data", "exoplanets:test"],
                                     ["predict", "--data", "exoplanets:test", "--out", "x.jsonl"]])
def test_cli_refuses_a_bad_vote_in_one_line(capsys, command, args, msg):
    code = main(command + args)
    out, err = capsys.readouterr()
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_recipe_refuses_a_bad_vote():
    from sqltune.recipe import load_recipe

    assert load_recipe("default", {"eval.vote": "4"}).eval.vote == 4
    with pytest.raises(SqltuneError, match="eval.vote must be at least 1"):
        load_recipe("default", {"eval.vote": "0"})
    with pytest.raises(SqltuneError, match="eval.temperature must be above 0"):
        load_recipe("default", {"eval.vote": "4", "eval.temperature": "-1"})


def test_run_evaluations_vote_only_when_the_recipe_says_so():
    from types import SimpleNamespace

    from sqltune.evaluate import EvalConfig

    dev = SimpleNamespace(autocast=False)
    assert EvalConfig.from_recipe({}, dev).vote is None
    assert EvalConfig.from_recipe({"eval": {"vote": 1}}, dev).vote is None
    v = EvalConfig.from_recipe({"eval": {"vote": 8, "temperature": 0.7, "top_p": 0.9}}, dev).vote
    assert (v.n, v.temperature, v.top_p) == (8, 0.7, 0.9)
    with pytest.raises(SqltuneError, match="--temperature must be above 0"):
        EvalConfig.from_recipe({"eval": {"vote": 4, "temperature": 0}}, dev)
    with pytest.raises(SqltuneError, match="--retries and --vote do not combine"):
        EvalConfig.from_recipe({"eval": {"vote": 4, "retries": 1}}, dev).validate()


def test_report_shows_greedy_vs_voted_only_for_runs_that_voted():
    from sqltune.report import vote_lines

    plain = {"base": {"test": {"summary": {"exact": 0.2}}}}
    assert vote_lines(plain) == []
    voted = {"tuned": {"test": {"summary": {"exact": 0.5}, "vote": {
        "n": 4, "greedy": {"exact": 0.4}, "voted": {"exact": 0.5}, "overruled": 7, "helped": 6, "hurt": 1,
        "best_of_n": 0.6}}}}
    lines = vote_lines(voted)
    assert lines[0].startswith("## Voting") and "| tuned | test | 4 | 40.0% | 50.0% | 7 | 6 | 1 | 60.0% |" in lines


# ---------------------------------------------------------------- the correction step (--vote-correct)
CLOSE = [("SELECT title FROM books WHERE year > 1900", -0.2), ("SELECT title FROM books WHERE year < 1900", -0.3),
         ("SELECT title FROM books WHERE year > 1900", -0.6)]  # 2 votes against 1: close


def close_candidates():
    return [cand(sql, lp, greedy=i == 0) for i, (sql, lp) in enumerate(CLOSE)]


def test_close_means_the_top_two_groups_are_within_one_vote(tiny_db):
    from sqltune.vote import is_close

    assert is_close(choose(tiny_db, close_candidates()))
    clear = close_candidates() + [cand(CLOSE[0][0], -0.7)]  # 3 against 1
    assert not is_close(choose(tiny_db, clear))
    assert not is_close(choose(tiny_db, [cand(CLOSE[0][0], greedy=True), cand(CLOSE[0][0])]))  # one group
    assert not is_close(choose(tiny_db, [cand(CLOSE[0][0], greedy=True), cand("SELECT nope")]))


@pytest.mark.parametrize("style", ["chat", "premsql", "seed"])
def test_correction_prompt_shows_both_sqls_and_their_first_rows_after_the_schema_prefix(chaotic, tiny_db, style):
    from sqltune.vote import correction_options

    _, tok = chaotic
    b = PromptBuilder(SCHEMA, style)
    v = choose(tiny_db, close_candidates())
    opts = correction_options(v)
    assert [o["sql"] for o in opts] == [CLOSE[0][0], CLOSE[1][0]]
    p = b.correction(tok, "Which titles are recent?", opts)
    assert CLOSE[0][0] in p and CLOSE[1][0] in p and "Which titles are recent?" in p
    assert str(opts[0]["rows"][0][0]) in p and str(opts[1]["rows"][0][0]) in p  # first rows of each
    assert p.startswith(b.prefix(tok))  # same schema prefix as every prompt (one builder, shared cache)
    long = [{"sql": "SELECT 1", "columns": ["x"], "rows": [["y" * 500]] * 10}]
    q = b.correction(tok, "Q?", long)
    assert "y" * 500 not in q and q.count("yyy...") == 3  # values truncated, first 3 rows only


def _spy_generate(monkeypatch, reply=None):
    """Record the prompts the correction step generates from; `reply` replaces the model's text."""
    import sqltune.generate as gen

    seen, real = [], gen.generate_texts

    def spy(model, tok, prompts, **kw):
        seen.extend(prompts)
        return [(reply, 3, 0.0) for _ in prompts] if reply is not None else real(model, tok, prompts, **kw)

    monkeypatch.setattr(gen, "generate_texts", spy)
    return seen


def _vote_with(monkeypatch, cands_per_q):
    import sqltune.vote as vote_mod

    monkeypatch.setattr(vote_mod, "sample_sql", lambda *a, **k: [list(c) for c in cands_per_q])


def test_a_failing_correction_keeps_the_vote(chaotic, tiny_db, monkeypatch):
    from sqltune.vote import predict_rows

    model, tok = chaotic
    _vote_with(monkeypatch, [close_candidates()])
    seen = _spy_generate(monkeypatch)  # the tiny model's own (garbage) correction
    row = predict_rows(model, tok, PromptBuilder(SCHEMA), [{"question": "Recent titles?"}], tiny_db,
                       VoteSettings(3, correct=True), max_new_tokens=8, progress=False)[0]
    assert len(seen) == 1 and CLOSE[0][0] in seen[0] and CLOSE[1][0] in seen[0]
    assert row["correction"]["ran"] and not row["correction"]["changed"] and row["correction"]["error"]
    assert row["sql"] == row["voted_sql"] == CLOSE[0][0]
    for reply in ("SELECT nope FROM books", "SELECT title FROM books WHERE year > 3000", "no sql here"):
        _spy_generate(monkeypatch, reply)  # fails / returns nothing / writes no SQL: the vote stays
        row = predict_rows(model, tok, PromptBuilder(SCHEMA), [{"question": "Recent titles?"}], tiny_db,
                           VoteSettings(3, correct=True), progress=False)[0]
        assert row["correction"]["ran"] and not row["correction"]["changed"] and row["sql"] == CLOSE[0][0]


def test_a_correction_with_another_result_replaces_the_vote_and_is_counted(chaotic, tiny_db, monkeypatch):
    from sqltune.evaluate import evaluate_items

    model, tok = chaotic
    clear = [cand("SELECT count(*) FROM books", -0.1, greedy=True)] * 3  # one group: no correction
    _vote_with(monkeypatch, [close_candidates(), clear])
    seen = _spy_generate(monkeypatch, "SELECT title FROM books WHERE year < 1900")  # the minority's result
    items = [{"id": "a", "question": "Old titles?", "sql": "SELECT title FROM books WHERE year < 1900"},
             {"id": "b", "question": "How many books?", "sql": "SELECT count(*) FROM books"}]
    rep = evaluate_items(model, tok, PromptBuilder(SCHEMA), items, tiny_db, progress=False,
                         vote=VoteSettings(3, correct=True))
    a, b = rep["predictions"]
    assert len(seen) == 1  # only the close vote is corrected
    assert a["correction"]["changed"] and a["sql"] == "SELECT title FROM books WHERE year < 1900"
    assert a["voted_sql"] == CLOSE[0][0] and b["correction"] == {"ran": False} and b["sql"] == b["voted_sql"]
    v = rep["vote"]
    assert v["voted"]["exact"] == 0.5 and rep["summary"]["exact"] == 1.0
    assert v["correction"] == {"corrected": rep["summary"], "ran": 1, "changed": 1, "helped": 1, "hurt": 0}
    assert rep["eval_config"]["vote"]["correct"] is True
    from sqltune.report import vote_lines

    text = "\n".join(vote_lines({"base": {"test": rep}}))
    assert "close votes corrected" in text and "| base | test | 1 | 1 | 1 | 0 | 50.0% | 100.0% |" in text


def test_vote_correct_needs_a_vote_of_two(capsys):
    # (`ask` votes by default where greedy fails, so there it is the explicit greedy-only --vote 1)
    for command in (["ask", "How many planets?", "--vote", "1"], ["eval", "--data", "exoplanets:test"],
                    ["predict", "--data", "exoplanets:test", "--out", "x.jsonl"]):
        code = main(command + ["--vote-correct"])
        out, err = capsys.readouterr()
        assert code == 2 and "--vote-correct needs --vote 2 or more" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SqltuneError, match="vote-correct needs"):
        VoteSettings(1, correct=True)
    from sqltune.recipe import load_recipe

    assert load_recipe("default", {"eval.vote": "4", "eval.vote_correct": "true"}).eval.vote_correct is True
    with pytest.raises(SqltuneError, match="eval.vote_correct needs eval.vote 2 or more"):
        load_recipe("default", {"eval.vote_correct": "true"})


def test_vote_when_error_votes_only_where_greedy_does_not_execute(chaotic, tiny_db, monkeypatch):
    """`when: error`: greedy for every question first; only questions whose greedy SQL fails (or is missing)
    are sampled and voted on, so a question that greedy answers with SQL that runs is never overruled."""
    import sqltune.vote as vote_mod
    from sqltune.evaluate import evaluate_items

    model, tok = chaotic
    greedy = {"ok": "SELECT title FROM books", "bad": "SELECT nope FROM books", "none": None}
    right = "SELECT count(*) FROM books"
    calls = []

    def fake_sample(model, tok, builder, questions, n, **kw):
        calls.append((list(questions), n))
        return [[cand(greedy[q], greedy=True)] + [cand(right)] * (n - 1) for q in questions]

    monkeypatch.setattr(vote_mod, "sample_sql", fake_sample)
    items = [{"id": q, "question": q, "sql": right} for q in ("ok", "bad", "none")]
    rep = evaluate_items(model, tok, PromptBuilder(SCHEMA), items, tiny_db, progress=False,
                         vote=VoteSettings(3, when="error"))
    assert calls == [(["ok", "bad", "none"], 1), (["bad", "none"], 3)]  # greedy for all, then the vote for two
    rows = {r["id"]: r for r in rep["predictions"]}
    assert rows["ok"]["sql"] == greedy["ok"] and len(rows["ok"]["vote"]["candidates"]) == 1  # runs: kept as is
    assert rows["bad"]["sql"] == right and rows["none"]["sql"] == right and rows["bad"]["overruled"]
    assert rep["vote"]["voted_questions"] == 2 and rep["vote"]["n"] == 3 and rep["vote"]["when"] == "error"
    calls.clear()  # the default votes on every question, the one that greedy got "right enough" too
    rep = evaluate_items(model, tok, PromptBuilder(SCHEMA), items, tiny_db, progress=False, vote=VoteSettings(3))
    assert calls == [(["ok", "bad", "none"], 3)] and {r["sql"] for r in rep["predictions"]} == {right}


def test_a_bad_vote_when_is_one_clear_error():
    from sqltune.recipe import load_recipe

    with pytest.raises(SqltuneError, match="eval.vote_when must be one of always, error"):
        load_recipe("default", {"eval.vote": "4", "eval.vote_when": "sometimes"})
    assert load_recipe("default", {"eval.vote": "4", "eval.vote_when": "error"}).eval.vote_when == "error"
    code = main(["ask", "How many planets?", "--vote", "4", "--vote-when", "never"])
    assert code == 2


def test_a_candidate_in_a_loop_ends_there_as_the_greedy_decoders_rows_do(looping):
    """sample_sql stops a row that has fallen into a loop (`generate.is_looping`), as `generate_texts` does: its greedy
    candidate is then the greedy decoder's text, where before it ran on to the token limit (session 20: 6 of 204 pooled
    candidates of the 0.5B on exoplanets ran to 256 tokens, each keeping its group decoding alone)."""
    from sqltune.generate import LOOP_MIN_TOKENS, generate_texts
    from sqltune.vote import sample_sql

    model, tok = looping
    builder = PromptBuilder(SCHEMA)
    questions = ["How many books?", "List every title published after 1900, newest first, with the price",
                 "Cheapest book?", "What is the average price of the books of each year, for years with more than one "
                 "book?", "Titles"]  # test_generate's: this model loops on at least three of them
    free = sample_sql(model, tok, builder, questions, 3, max_new_tokens=80, batch_size=15, loop_stop=False)
    cut = sample_sql(model, tok, builder, questions, 3, max_new_tokens=80, batch_size=15)
    greedy = generate_texts(model, tok, [builder.prompt(tok, q) for q in questions], batch_size=5, max_new_tokens=80,
                            progress=False)
    ended = [c[0].tokens for c, f in zip(cut, free) if c[0].tokens < f[0].tokens]
    assert len(ended) >= 3 and all(LOOP_MIN_TOKENS <= t < 80 for t in ended)  # loops ended early, none before one is
    for c, f, (text, n, _) in zip(cut, free, greedy):
        assert f[0].ids[:len(c[0].ids)] == c[0].ids  # the stop only cuts the greedy row
        assert (c[0].raw, c[0].tokens) == (text, n)  # the greedy candidate is the greedy decoder's answer
