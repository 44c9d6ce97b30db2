"""Batched generation with a shared prefix cache == one question at a time; retries; few-shot leakage."""

import pytest

from sqltune.generate import (
    Generation,
    GenerationStats,
    fewshot_for,
    generate_one_by_one,
    generate_sql,
    generate_texts,
    retry_prompt,
    select_fewshot,
)
from sqltune.evaluate import EvalConfig, predict_questions
from sqltune.prompt import PromptBuilder

SCHEMA = "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT, year INTEGER, price REAL);"
QUESTIONS = [
    "How many books?",
    "List every title published after 1900, newest first, with the price",
    "Cheapest book?",
    "What is the average price of the books of each year, for years with more than one book?",
    "Titles",
]


@pytest.mark.parametrize("style", ["chat", "premsql", "seed"])
def test_batched_with_prefix_cache_equals_one_by_one(chaotic, style):
    model, tok = chaotic
    b = PromptBuilder(SCHEMA, style)
    prompts = [b.prompt(tok, q) for q in QUESTIONS]
    alone = generate_one_by_one(model, tok, prompts, max_new_tokens=12)
    assert len({t for t, _, _ in alone}) == len(QUESTIONS)  # the outputs differ, so equality means something
    for batch_size in (1, 2, 5):
        stats = GenerationStats()
        batched = generate_texts(model, tok, prompts, batch_size=batch_size, max_new_tokens=12, progress=False, stats=stats)
        assert [t for t, _, _ in batched] == [t for t, _, _ in alone]
        assert stats.prefix_tokens > 10 and stats.batches == -(-len(QUESTIONS) // batch_size)
    plain = generate_texts(model, tok, prompts, batch_size=5, max_new_tokens=12, progress=False, share_prefix=False)
    assert [t for t, _, _ in plain] == [t for t, _, _ in alone]


def test_stopping_per_row_in_a_batch(chaotic):
    model, tok = chaotic
    prompts = [PromptBuilder(SCHEMA).prompt(tok, q) for q in QUESTIONS]
    stop = lambda text: len(text) >= 8 * (1 + len(text) % 3)  # noqa: E731 - rows stop at different steps
    alone = generate_one_by_one(model, tok, prompts, max_new_tokens=20, stop=stop)
    stats = GenerationStats()
    batched = generate_texts(model, tok, prompts, batch_size=5, max_new_tokens=20, progress=False, stop=stop, stats=stats)
    assert [t for t, _, _ in batched] == [t for t, _, _ in alone]
    assert [n for _, n, _ in batched] == [n for _, n, _ in alone]
    assert stats.stopped_statement + stats.stopped_length + stats.stopped_eos == len(prompts)
    assert stats.stopped_statement > 0 and stats.new_tokens == sum(n for _, n, _ in batched)
    assert all(n <= 20 for _, n, _ in batched)


def test_generate_sql_returns_generations_in_order(chaotic):
    model, tok = chaotic
    gens = generate_sql(model, tok, PromptBuilder(SCHEMA), QUESTIONS, batch_size=2, max_new_tokens=4, progress=False)
    assert [g.question for g in gens] == QUESTIONS
    assert all(isinstance(g, Generation) and g.seconds > 0 and g.tokens <= 4 for g in gens)


def test_peft_wrapped_model_generates_like_the_base(chaotic):
    """A fresh LoRA adapter is a no-op (B = 0): the wrapped model must decode the same tokens."""
    from peft import LoraConfig, get_peft_model

    model, tok = chaotic
    prompts = [PromptBuilder(SCHEMA).prompt(tok, q) for q in QUESTIONS[:3]]
    want = [t for t, _, _ in generate_texts(model, tok, prompts, max_new_tokens=6, progress=False)]
    import copy

    wrapped = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    wrapped.train()
    got = [t for t, _, _ in generate_texts(wrapped, tok, prompts, max_new_tokens=6, progress=False)]
    assert got == want
    assert wrapped.training  # the caller's mode is restored


def test_per_question_fewshot_examples_still_match_one_by_one(chaotic):
    model, tok = chaotic
    b = PromptBuilder(SCHEMA, "seed")
    pool = [{"question": f"Question number {i} about books", "sql": f"SELECT {i}"} for i in range(6)]
    examples = fewshot_for(QUESTIONS, pool, 2)
    gens = generate_sql(model, tok, b, QUESTIONS, examples=examples, max_new_tokens=6, progress=False)
    alone = generate_one_by_one(model, tok, [b.prompt(tok, q, ex) for q, ex in zip(QUESTIONS, examples)], max_new_tokens=6)
    assert [g.raw for g in gens] == [t for t, _, _ in alone]


# ---------------------------------------------------------------- self-correction
def test_retry_prompt_carries_the_sql_and_the_error(chaotic):
    _, tok = chaotic
    for style in ("chat", "premsql", "seed"):
        b = PromptBuilder(SCHEMA, style)
        p = retry_prompt(b, tok, "How many books?", "SELECT COUNT(*) FROM bokks", "no such table: bokks")
        assert "SELECT COUNT(*) FROM bokks" in p and "no such table: bokks" in p
        assert p.startswith(b.prefix(tok))  # retries share the schema prefix cache too


def test_predict_retries_failing_sql_with_the_error(monkeypatch, tiny_db, chaotic):
    import sqltune.generate as gen

    model, tok = chaotic
    answers = {
        "How many books?": ["SELECT COUNT(*) FROM bokks", "SELECT COUNT(*) FROM books"],
        "Titles": ["SELECT title FROM books"],
        "Prices": ["SELECT nope FROM books", "SELECT still_nope FROM books"],
    }
    seen_prompts = []

    def fake(model, tokenizer, prompts, **kw):
        seen_prompts.extend(prompts)
        out = []
        for p in prompts:
            q = next(q for q in answers if q in p)
            out.append((answers[q].pop(0) if len(answers[q]) > 1 else answers[q][0], 5, 0.1))
        return out

    monkeypatch.setattr(gen, "generate_texts", fake)
    gens = predict_questions(model, tok, PromptBuilder(SCHEMA, "seed"), ["How many books?", "Titles", "Prices"], tiny_db,
                             EvalConfig(retries=2, progress=False))
    fixed, ok, broken = gens
    assert (fixed.sql, fixed.retries, fixed.retry_changed, fixed.error) == ("SELECT COUNT(*) FROM books", 1, True, None)
    assert fixed.first_sql == "SELECT COUNT(*) FROM bokks" and "no such table" in fixed.first_error
    assert (ok.retries, ok.retry_changed, ok.first_sql) == (0, False, None)
    assert broken.retries == 2 and not broken.retry_changed and "no such column" in broken.error
    assert any("no such table: bokks" in p for p in seen_prompts)


# ---------------------------------------------------------------- few-shot selection and leakage
POOL = [
    {"id": "train-1", "question": "How many books were published in 1944?", "sql": "SELECT COUNT(*) FROM books WHERE year = 1944"},
    {"id": "train-2", "question": "List the titles of books by Borges.", "sql": "SELECT title FROM books"},
    {"id": "train-3", "question": "What is the most expensive book?", "sql": "SELECT title FROM books ORDER BY price DESC LIMIT 1"},
    {"id": "train-4", "question": "How many authors come from the UK?", "sql": "SELECT COUNT(*) FROM authors WHERE country = 'UK'"},
    {"id": "valid-1", "question": "How many books were published in 1853?", "sql": "SELECT COUNT(*) FROM books WHERE year = 1853"},
]


def test_fewshot_picks_similar_training_examples():
    got = select_fewshot("How many books were published in 1972?", POOL[:4], 2)
    assert got[0]["question"] == "How many books were published in 1944?"
    assert len(got) == 2 and set(got[0]) == {"question", "sql"}


def test_fewshot_never_shows_the_question_itself():
    q = POOL[0]["question"]
    for asked in (q, q.upper(), q.rstrip("?") + " ?"):
        assert all(e["question"] != q for e in select_fewshot(asked, POOL, 5))


def test_fewshot_never_shows_the_split_under_evaluation():
    evaluated = [POOL[4], {"id": "train-3", "question": "something else entirely"}]
    got = select_fewshot("How many books were published in 1972?", POOL, 5, exclude=evaluated)
    shown = {e["question"] for e in got}
    assert POOL[4]["question"] not in shown  # by question
    assert POOL[2]["question"] not in shown  # by id
    assert len(got) == 3
    assert select_fewshot("x", POOL, 5, exclude=[p["question"] for p in POOL]) == []  # plain strings work too


def test_fewshot_for_a_batch_excludes_every_batch_question():
    questions = [POOL[0]["question"], POOL[1]["question"]]
    for exs in fewshot_for(questions, POOL, 5):
        assert not {e["question"] for e in exs} & set(questions)


def test_predict_items_fewshot_leaks_nothing_from_the_evaluated_items(monkeypatch, tiny_db, chaotic):
    import sqltune.generate as gen
    from sqltune.evaluate import predict_items

    model, tok = chaotic
    prompts = []
    monkeypatch.setattr(gen, "generate_texts", lambda m, t, ps, **kw: prompts.extend(ps) or [("SELECT 1", 1, 0.0)] * len(ps))
    items = [POOL[4], {"id": "v2", "question": "List the titles of books by Borges.", "sql": "SELECT 1"}]
    rows = predict_items(model, tok, PromptBuilder(SCHEMA, "seed"), items, tiny_db, fewshot_k=3, fewshot_pool=POOL,
                         fewshot_exclude=[{"id": "train-4"}], progress=False)
    for row, prompt in zip(rows, prompts):
        assert row["fewshot"] and len(row["fewshot"]) <= 3
        for it in items:
            assert it["question"] not in row["fewshot"]
            assert prompt.count(it["question"]) == (1 if it["question"] == row["question"] else 0)
        assert POOL[3]["question"] not in row["fewshot"]


# ---------------------------------------------------------------- the real model (slow)
@pytest.mark.slow
def test_real_model_batched_equals_one_by_one_and_answers(exo_db):
    from sqltune.model import load_model
    from sqltune.schema import schema_text

    model, tok, _ = load_model(None)
    b = PromptBuilder(schema_text(exo_db), "chat")
    qs = ["How many exoplanets were discovered in 2016?", "List the 3 closest exoplanets.", "Average eccentricity?"]
    gens = predict_questions(model, tok, b, qs, exo_db, EvalConfig(progress=False))
    alone = generate_one_by_one(model, tok, [b.prompt(tok, q) for q in qs])
    assert [g.raw for g in gens] == [t for t, _, _ in alone]
    from sqltune.execute import execute

    assert execute(exo_db, gens[0].sql).rows == [(1517,)]


def test_stop_gate_never_delays_the_stop(chaotic):
    """Asking `is_complete` only at tokens that can end a statement stops at the very same token."""
    from test_extract import CASES

    from sqltune.extract import is_complete
    from sqltune.generate import _StopGate

    _, tok = chaotic
    for raw, _ in CASES:
        ids = tok(raw, add_special_tokens=False)["input_ids"]
        gate = _StopGate(tok, 1, exact=False)
        every = gated = None
        for i in range(len(ids)):
            text = tok.decode(ids[: i + 1], skip_special_tokens=False)
            asked = gate.worth_asking(0, ids[i])
            if every is None and is_complete(text):
                every = i
            if gated is None and asked and is_complete(text):
                gated = i
        assert gated == every, raw


# ---------------------------------------------------------------- transformers' batched generate (issue 13)
@pytest.mark.parametrize("style", ["chat", "seed"])
def test_model_generate_with_the_prefix_cache_equals_one_by_one(chaotic, style):
    model, tok = chaotic
    b = PromptBuilder(SCHEMA, style)
    prompts = [b.prompt(tok, q) for q in QUESTIONS]
    alone = generate_one_by_one(model, tok, prompts, max_new_tokens=12)
    for bs in (2, 5):
        stats = GenerationStats()
        got = generate_texts(model, tok, prompts, batch_size=bs, max_new_tokens=12, progress=False, stats=stats)
        assert [t for t, _, _ in got] == [t for t, _, _ in alone]
        assert stats.prefix_tokens > 10
    plain = generate_texts(model, tok, prompts, batch_size=5, max_new_tokens=12, progress=False, share_prefix=False)
    assert [t for t, _, _ in plain] == [t for t, _, _ in alone]
    stop = lambda text: len(text) >= 8 * (1 + len(text) % 3)  # noqa: E731 - rows stop at different steps
    a2 = generate_one_by_one(model, tok, prompts, max_new_tokens=20, stop=stop)
    g2 = generate_texts(model, tok, prompts, batch_size=5, max_new_tokens=20, progress=False, stop=stop)
    assert [t for t, _, _ in g2] == [t for t, _, _ in a2] and [n for _, n, _ in g2] == [n for _, n, _ in a2]


def test_sampled_chat_is_reproducible_per_seed_and_differs_from_greedy(chaotic):
    """`pairs.chat` at temperature > 0 (synth's model-written SQL): the same seed gives the same replies,
    another seed other replies, and the replies are not the greedy ones."""
    from sqltune.pairs import chat

    model, tok = chaotic
    prompts = [f"Write SQL over {SCHEMA} for: {q}" for q in QUESTIONS]
    greedy = chat(model, tok, prompts, max_new_tokens=12, batch_size=5, progress=False)
    assert greedy == chat(model, tok, prompts, max_new_tokens=12, batch_size=5, progress=False)
    a = chat(model, tok, prompts, max_new_tokens=12, batch_size=5, progress=False, temperature=1.0, seed=3)
    b = chat(model, tok, prompts, max_new_tokens=12, batch_size=5, progress=False, temperature=1.0, seed=3)
    c = chat(model, tok, prompts, max_new_tokens=12, batch_size=5, progress=False, temperature=1.0, seed=4)
    assert a == b
    assert a != c and a != greedy
    import torch

    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    chat(model, tok, prompts[:2], max_new_tokens=4, batch_size=2, progress=False, temperature=1.0, seed=5)
    assert torch.equal(torch.rand(3), expected)  # the caller's random state is left as it was
    # the same prompt repeated: greedy writes one reply, sampling several
    same = [prompts[0]] * 6
    assert len(set(chat(model, tok, same, max_new_tokens=12, batch_size=6, progress=False))) == 1
    # a stop ends each row where it says, and the other rows' samples stay the same (synth's SQL writing)
    cut = chat(model, tok, prompts, max_new_tokens=12, batch_size=5, progress=False, temperature=1.0, seed=3,
               stop=lambda text: len(text) >= 6)
    assert all(full.startswith(short) for short, full in zip(cut, a))
    assert any(len(short) < len(full) for short, full in zip(cut, a))
    assert len(set(chat(model, tok, same, max_new_tokens=12, batch_size=6, progress=False, temperature=1.0))) > 1


# ---------------------------------------------------------------- a row in a loop ends there
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sqltune.generate import LOOP_MAX_PERIOD, LOOP_MIN_REPEATS, LOOP_MIN_TOKENS, is_looping  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(head=st.lists(st.integers(0, 50), max_size=20), piece=st.lists(st.integers(100, 200), min_size=1,
       max_size=LOOP_MAX_PERIOD, unique=True), extra=st.integers(0, 40))
def test_a_short_piece_repeated_long_enough_is_a_loop_and_one_token_less_is_not(head, piece, extra):
    p = len(piece)
    need = max(LOOP_MIN_TOKENS, p * LOOP_MIN_REPEATS)  # tokens of the loop that make it one
    tail = (piece * (need // p + 2))[-need:]  # exactly `need` tokens of the loop, ending anywhere in the piece
    assert is_looping(head + tail)
    assert not is_looping(head + tail[1:])  # one token short (the head's tokens differ from the piece's)
    loop = (piece * (need // p + 2 + extra))
    assert is_looping(head + loop)


@settings(max_examples=200, deadline=None)
@given(tokens=st.lists(st.integers(0, 10_000), max_size=300, unique=True))
def test_tokens_that_never_repeat_are_no_loop(tokens):
    assert not is_looping(tokens)


def test_no_gold_query_of_the_packaged_data_looks_like_a_loop(tiny_model_dir):
    """Every prefix of every gold SQL (exoplanets, every split) and a long legitimate IN list: no loop."""
    from transformers import AutoTokenizer

    from sqltune.dataset import load_items

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    sqls = [it["sql"] for split in ("train", "valid", "test") for it in load_items(f"exoplanets:{split}")]
    sqls.append("SELECT name FROM t WHERE id IN (" + ", ".join(str(i) for i in range(200)) + ")")
    sqls.append("SELECT " + " + ".join(f"c{i}" for i in range(60)) + " FROM t")
    assert len(sqls) > 200
    for sql in sqls:
        ids = tok(sql, add_special_tokens=False)["input_ids"]
        assert not any(is_looping(ids[:i]) for i in range(1, len(ids) + 1)), sql


def test_a_looping_row_ends_at_its_loop_in_a_batch_as_alone(looping):
    model, tok = looping
    prompts = [PromptBuilder(SCHEMA).prompt(tok, q) for q in QUESTIONS]
    free = GenerationStats()
    unbounded = generate_texts(model, tok, prompts, batch_size=5, max_new_tokens=80, progress=False, stop=None,
                               loop_stop=False, stats=free)
    assert free.stopped_length == len(prompts) and free.stopped_loop == 0
    # what ran to the limit is kept for a look (the first rows, their tails)
    assert len(free.at_limit) == 3 and all(t and len(t) <= 240 for t in free.at_limit)
    stats = GenerationStats()
    batched = generate_texts(model, tok, prompts, batch_size=5, max_new_tokens=80, progress=False, stop=None, stats=stats)
    alone = generate_one_by_one(model, tok, prompts, max_new_tokens=80, stop=None)
    assert [(t, n) for t, n, _ in batched] == [(t, n) for t, n, _ in alone]
    assert stats.stopped_loop >= 3 and stats.stopped_loop + stats.stopped_length == len(prompts)
    assert stats.new_tokens < free.new_tokens
    assert all(any(full.endswith(t) for full, _, _ in unbounded) for t in free.at_limit)
    assert len(stats.at_limit) == stats.stopped_length
    for (text, n, _), (full, _, _) in zip(batched, unbounded):
        assert full.startswith(text)  # the loop stop only cuts; it never changes a token
        assert n == 80 or LOOP_MIN_TOKENS <= n < 80
