"""The one evaluator: a checkpoint's score is reproducible, and every caller reads the same settings."""

import json

import pytest

from sqltune.errors import SqltuneError
from sqltune.evaluate import EvalConfig, evaluate
from sqltune.model import pick_device
from sqltune.recipe import load_recipe
from sqltune.run import run

pytestmark = pytest.mark.usefixtures("one_thread")


def test_eval_config_from_a_recipe_and_from_its_train_config_agree():
    recipe = load_recipe("default", {"eval.retries": 2, "eval.batch_size": 7, "eval.timeout": 3, "eval.fewshot": 1})
    dev = pick_device("cpu", "float32")
    pool = [{"question": "q", "sql": "SELECT 1"}]
    a = EvalConfig.from_recipe(recipe, dev, fewshot_pool=pool)
    b = EvalConfig.from_train_config(recipe.train_config(), dev, fewshot_pool=pool)
    # all but the fallback and the repair: training scores its checkpoints on the tuned model's own greedy answers
    assert (a.fallback, b.fallback, a.repair, b.repair) == ("panel", "none", True, False)
    assert a.with_(fallback="none", repair=False) == b
    assert (a.retries, a.batch_size, a.timeout, a.fewshot, a.autocast) == (2, 7, 3.0, 1, dev.autocast)
    assert EvalConfig.from_recipe(recipe.to_dict(), dev, fewshot_pool=pool) == a  # the run folder's recipe.json form


def test_eval_config_refuses_fewshot_without_a_pool():
    with pytest.raises(Exception, match="pool"):
        EvalConfig(fewshot=2).validate()


def test_chosen_checkpoint_score_equals_the_runs_evaluation_of_it(tiny_model_dir, tiny_db, tmp_path):
    """The valid score training logged for the checkpoint it chose is what `run` measures for that
    adapter: same evaluator, same precision, same settings (retries included), same predictions."""
    from test_run import overrides

    ov = overrides(tiny_model_dir, tiny_db, tmp_path)
    ov["eval"]["retries"] = 1
    out = tmp_path / "run"
    metrics = run("default", out, overrides=ov)
    info = json.loads((out / "adapter" / "sqltune_checkpoint.json").read_text())
    trained = json.loads((out / "adapter" / "valid_report.json").read_text())
    tuned = json.loads((out / "tuned_valid_report.json").read_text())
    preds = [json.loads(line) for line in (out / "tuned_valid_pred.jsonl").read_text().splitlines()]
    assert info["chosen"]["exact"] == metrics["tuned"]["valid"]["exact"]
    assert info["chosen"]["execution_rate"] == metrics["tuned"]["valid"]["execution_rate"]
    assert [e["pred_sql"] for e in trained["examples"]] == [e["pred_sql"] for e in tuned["examples"]]
    assert [e["raw"] for e in trained["examples"]] == [p["raw"] for p in preds]
    # the recipe's eval section reached training and the run's evaluations alike
    base = json.loads((out / "base_valid_report.json").read_text())
    for rep in (trained, tuned, base):
        assert rep["eval_config"]["retries"] == 1 and rep["eval_config"]["batch_size"] == 4
        assert rep["eval_config"]["autocast"] == pick_device("cpu", "float32").autocast


def test_evaluate_report_has_predictions_timing_and_settings(tiny_model_dir, tiny_db):
    from sqltune.model import load
    from sqltune.prompt import PromptBuilder
    from sqltune.schema import schema_text

    loaded = load(str(tiny_model_dir), "cpu", builder=PromptBuilder(schema_text(tiny_db)))
    items = [{"id": "a", "question": "How many books?", "sql": "SELECT COUNT(*) FROM books"}]
    rep = evaluate(loaded.model, loaded.tokenizer, loaded.builder, items, tiny_db,
                   EvalConfig(max_new_tokens=6, progress=False, max_rows=5))
    assert rep["summary"]["n"] == 1 and [p["id"] for p in rep["predictions"]] == ["a"]
    assert rep["eval_config"]["max_rows"] == 5 and rep["timing"]["generation"]["n"] == 1


# ---------------------------------------------------------------- eval.fallback: base
class _Adapted:
    """Stands in for a peft model: `disable_adapter()` switches the adapter off while its block runs."""

    peft_config = {"default": object()}

    def __init__(self):
        self.off = False

    def disable_adapter(self):
        from contextlib import contextmanager

        @contextmanager
        def off():
            self.off = True
            try:
                yield
            finally:
                self.off = False

        return off()


FB_ITEMS = [{"id": "a", "question": "How many authors?", "sql": "SELECT COUNT(*) FROM authors"},
            {"id": "b", "question": "Names of the UK authors?", "sql": "SELECT name FROM authors WHERE country = 'UK'"},
            {"id": "c", "question": "Titles after 1900?", "sql": "SELECT title FROM books WHERE year > 1900"}]
# what each model writes: with the adapter, a right answer for a and a missing column for b and c; without it,
# the gold for b and another missing column for c
WRITES = {False: {"How many authors?": "SELECT COUNT(*) FROM authors",
                  "Names of the UK authors?": "SELECT nam FROM authors WHERE country = 'UK'",
                  "Titles after 1900?": "SELECT titel FROM books"},
          True: {"How many authors?": "SELECT COUNT(*) FROM authors",
                 "Names of the UK authors?": "SELECT name FROM authors WHERE country = 'UK'",
                 "Titles after 1900?": "SELECT ttl FROM books WHERE year > 1900"}}


def _fake_generation(monkeypatch, asked, write=None, record=None):
    """`predict_questions` replaced: `write(model, question, examples)` is the SQL (default: `WRITES[model.off]`),
    executed for its error as the real one does; each call is recorded in `asked` as `record(model, questions,
    examples)` (default: (adapter off?, questions))."""
    import sqltune.evaluate as ev
    from sqltune.generate import Generation

    write = write or (lambda model, q, examples: WRITES[model.off][q])
    record = record or (lambda model, questions, examples: (model.off, list(questions)))

    def fake(model, tok, builder, questions, db, cfg, examples=None, stats=None, prefix=None):
        from sqltune.execute import connect_readonly, execute

        asked.append(record(model, questions, examples))
        con = connect_readonly(db)
        try:
            sqls = [write(model, q, None if examples is None else examples[i]) for i, q in enumerate(questions)]
            gens = [Generation(q, raw=sql, sql=sql, seconds=0.01) for q, sql in zip(questions, sqls)]
            for g in gens:
                g.error = execute(con, g.sql).error
        finally:
            con.close()
        return gens

    monkeypatch.setattr(ev, "predict_questions", fake)


def test_fallback_answers_with_the_model_under_the_adapter_where_the_answer_fails(tiny_db, monkeypatch):
    from sqltune.run import greedy_view

    asked = []
    _fake_generation(monkeypatch, asked)
    rep = evaluate(_Adapted(), None, None, FB_ITEMS, tiny_db, EvalConfig(fallback="base", progress=False))
    # the untuned model is asked only the two questions whose answers failed
    assert asked == [(False, [it["question"] for it in FB_ITEMS]), (True, ["Names of the UK authors?", "Titles after 1900?"])]
    ex = {e["id"]: e for e in rep["examples"]}
    assert ex["a"]["exact"] and "fallback" not in ex["a"]
    assert ex["b"]["exact"] and ex["b"]["pred_sql"] == WRITES[True]["Names of the UK authors?"]
    assert ex["b"]["fallback"]["sql"] == WRITES[False]["Names of the UK authors?"] and "no such column" in ex["b"]["fallback"]["error"]
    assert not ex["c"]["executed"] and ex["c"]["pred_sql"] == WRITES[False]["Titles after 1900?"]  # both failed: the adapter's stays
    assert rep["summary"]["fallback_used"] == 1 and rep["summary"]["fallback_fixed"] == 1
    assert rep["summary"]["exact"] == pytest.approx(2 / 3) and rep["eval_config"]["fallback"] == "base"
    # training and GRPO compare greedy answers: the view without the fallback's answer
    g = greedy_view(rep)
    assert g["summary"]["exact"] == pytest.approx(1 / 3) and not {e["id"]: e for e in g["examples"]}["b"]["exact"]
    assert g["summary"]["execution_rate"] == pytest.approx(1 / 3)


def test_fallback_takes_the_untuned_answers_it_is_given_instead_of_decoding_them(tiny_db, monkeypatch):
    """`cfg.untuned` (`sqltune run` passes its base stage's rows): the fallback's answers come from there, the
    untuned model is asked only what it does not hold, and the answers are those it would have decoded."""
    asked = []
    _fake_generation(monkeypatch, asked)
    cfg = EvalConfig(fallback="base", progress=False)
    decoded = evaluate(_Adapted(), None, None, FB_ITEMS, tiny_db, cfg)
    asked.clear()
    base = evaluate(_Plain(), None, None, FB_ITEMS, tiny_db,
                    EvalConfig(progress=False))["predictions"]
    assert asked == [(True, [it["question"] for it in FB_ITEMS])]
    asked.clear()
    known = {r["question"]: r for r in base}
    rep = evaluate(_Adapted(), None, None, FB_ITEMS, tiny_db, cfg.with_(untuned=known))
    assert asked == [(False, [it["question"] for it in FB_ITEMS])]  # the adapter only: nothing decoded again
    assert [e["pred_sql"] for e in rep["examples"]] == [e["pred_sql"] for e in decoded["examples"]]
    assert rep["summary"]["fallback_used"] == decoded["summary"]["fallback_used"] == 1
    assert "untuned" not in rep["eval_config"]
    asked.clear()  # a question it does not hold is decoded, and only that one
    partial = {q: r for q, r in known.items() if q != "Titles after 1900?"}
    rep = evaluate(_Adapted(), None, None, FB_ITEMS, tiny_db, cfg.with_(untuned=partial))
    assert asked == [(False, [it["question"] for it in FB_ITEMS]), (True, ["Titles after 1900?"])]
    assert [e["pred_sql"] for e in rep["examples"]] == [e["pred_sql"] for e in decoded["examples"]]


class _Plain:
    """A model without an adapter that writes what the untuned model does (`WRITES[True]`)."""
    off = True


def test_fallback_leaves_a_model_without_an_adapter_and_the_default_alone(tiny_db, monkeypatch):
    class Plain:
        off = False

    asked = []
    _fake_generation(monkeypatch, asked)
    rep = evaluate(Plain(), None, None, FB_ITEMS, tiny_db, EvalConfig(fallback="base", progress=False))
    assert len(asked) == 1 and rep["summary"]["fallback_used"] == 0 and rep["summary"]["exact"] == pytest.approx(1 / 3)
    asked.clear()
    rep = evaluate(_Adapted(), None, None, FB_ITEMS, tiny_db, EvalConfig(progress=False))  # fallback: none
    assert len(asked) == 1 and "fallback_used" not in rep["summary"]
    with pytest.raises(SqltuneError, match="fallback must be one of none, base, vote, panel"):
        EvalConfig(fallback="untuned").validate()
    with pytest.raises(SqltuneError, match="eval.fallback"):
        load_recipe("default", {"eval.fallback": "untuned"})
    assert EvalConfig.from_recipe(load_recipe("default", {"eval.fallback": "base"}), pick_device("cpu", "float32")).fallback == "base"


# ---------------------------------------------------------------- eval.fallback: panel (three greedy voters)
PANEL_ITEMS = [
    {"id": "a", "question": "How many authors?", "sql": "SELECT COUNT(*) FROM authors"},
    {"id": "b", "question": "Names of the UK authors?", "sql": "SELECT name FROM authors WHERE country = 'UK'"},
    {"id": "c", "question": "Titles after 1900?", "sql": "SELECT title FROM books WHERE year > 1900"},
    {"id": "d", "question": "How many books?", "sql": "SELECT COUNT(*) FROM books"}]
# per voter and question: what it writes greedily
PANEL_WRITES = {
    "adapter": {"How many authors?": "SELECT COUNT(*) FROM authors",  # right, the others wrong two ways: a tie
                "Names of the UK authors?": "SELECT name FROM authors",  # runs, wrong; both untuned answers right
                "Titles after 1900?": "SELECT titel FROM books",  # fails, as the untuned model's; the examples help
                "How many books?": "SELECT COUNT(*) FROM books"},  # right, outvoted by two untuned answers that agree
    "base": {"How many authors?": "SELECT COUNT(*) FROM books",
             "Names of the UK authors?": "SELECT name FROM authors WHERE country = 'UK'",
             "Titles after 1900?": "SELECT ttl FROM books",
             "How many books?": "SELECT COUNT(*) FROM authors"},
    "fewshot": {"How many authors?": "SELECT MAX(id) + 1 FROM authors",
                "Names of the UK authors?": "SELECT name FROM authors WHERE country = 'UK'",
                "Titles after 1900?": "SELECT title FROM books WHERE year > 1900",
                "How many books?": "SELECT COUNT(*) FROM authors"}}
PANEL_POOL = [{"id": f"t{i}", "question": f"Training question {i} about authors?", "sql": "SELECT 1"} for i in range(6)]
PANEL_POOL_PAIRS = [{"question": e["question"], "sql": e["sql"]} for e in PANEL_POOL]


def _panel_voter(model, examples) -> str:
    if examples:  # retrieved from the pool only, never an evaluated question
        assert all({"question": e["question"], "sql": e["sql"]} in PANEL_POOL_PAIRS for e in examples)
    if not model.off:
        return "adapter_fewshot" if examples else "adapter"
    return "fewshot" if examples else "base"


def _fake_panel(monkeypatch, asked):
    """`_fake_generation` writing `PANEL_WRITES[voter]`; `asked` records (voter, questions, examples per question)."""
    def write(model, q, examples):
        return PANEL_WRITES[_panel_voter(model, examples)][q]

    def record(model, questions, examples):
        return (_panel_voter(model, examples[0] if examples else None), list(questions),
                [len(e) for e in examples] if examples else None)

    _fake_generation(monkeypatch, asked, write, record)


def test_panel_votes_the_adapter_and_both_untuned_answers_by_result(tiny_db, monkeypatch):
    """`fallback: panel`: the adapter's, the untuned model's and the untuned model's with retrieved examples vote;
    ties go to the adapter (a), two untuned answers that agree overrule it, right (b) or wrong (d), and where the
    adapter and the untuned model fail the examples' answer is taken (c). The report counts what it fixed and broke."""
    asked = []
    _fake_panel(monkeypatch, asked)
    cfg = EvalConfig(fallback="panel", fewshot_pool=PANEL_POOL, progress=False, panel_tuned_fewshot=0)
    rep = evaluate(_Adapted(), None, None, PANEL_ITEMS, tiny_db, cfg)
    qs = [it["question"] for it in PANEL_ITEMS]
    assert asked == [("adapter", qs, None), ("base", qs, None), ("fewshot", qs, [4] * 4)]
    ex = {e["id"]: e for e in rep["examples"]}
    assert ex["a"]["exact"] and ex["a"]["pool"]["source"] == "adapter" and "fallback" not in ex["a"]
    assert ex["b"]["exact"] and ex["b"]["pool"]["source"] == "base" and ex["b"]["pool"]["votes"] == 2
    assert ex["b"]["fallback"]["sql"] == "SELECT name FROM authors"
    assert ex["c"]["exact"] and ex["c"]["pool"]["source"] == "fewshot"
    assert "no such column" in ex["c"]["fallback"]["error"]
    assert not ex["d"]["exact"] and ex["d"]["fallback"]["sql"] == PANEL_ITEMS[3]["sql"]
    s = rep["summary"]
    assert (s["pool_voted"], s["pool_changed"], s["pool_fixed"], s["pool_hurt"]) == (4, 3, 2, 1)
    assert s["exact"] == pytest.approx(3 / 4) and rep["eval_config"]["fallback"] == "panel"
    assert rep["eval_config"]["panel_fewshot"] == 4


def test_panel_takes_known_untuned_answers_and_works_without_a_pool(tiny_db, monkeypatch):
    """The untuned answers `cfg.untuned` holds are not decoded again; without training pairs to retrieve (or with
    `panel_fewshot: 0`) the panel is the two models: a tie keeps the adapter's answer, a failing one is replaced."""
    asked = []
    _fake_panel(monkeypatch, asked)
    qs = [it["question"] for it in PANEL_ITEMS]
    known = {q: {"question": q, "sql": PANEL_WRITES["base"][q]} for q in qs}
    cfg = EvalConfig(fallback="panel", fewshot_pool=PANEL_POOL, progress=False, untuned=known, panel_tuned_fewshot=0)
    with_known = evaluate(_Adapted(), None, None, PANEL_ITEMS, tiny_db, cfg)
    assert [a[0] for a in asked] == ["adapter", "fewshot"]
    assert with_known["summary"]["exact"] == pytest.approx(3 / 4)
    for two in (cfg.with_(fewshot_pool=None), cfg.with_(panel_fewshot=0)):
        asked.clear()
        rep = evaluate(_Adapted(), None, None, PANEL_ITEMS, tiny_db, two)
        assert [a[0] for a in asked] == ["adapter"]
        ex = {e["id"]: e for e in rep["examples"]}
        assert not ex["b"]["exact"] and ex["b"]["pool"]["source"] == "adapter"  # one vote each: the adapter's
        assert not ex["c"]["executed"] and ex["c"]["pool"]["fewshot_sql"] is None  # both fail: the adapter's stays
        assert ex["d"]["exact"] and rep["summary"]["exact"] == pytest.approx(1 / 2)
    asked.clear()  # a model without an adapter: its own answers, nothing else decoded
    rep = evaluate(_Plain(), None, None, PANEL_ITEMS, tiny_db, cfg)
    assert len(asked) == 1 and "pool_voted" in rep["summary"] and rep["summary"]["pool_voted"] == 0
    for key in ("panel_fewshot", "panel_tuned_fewshot"):
        with pytest.raises(SqltuneError, match="cannot be negative"):
            cfg.with_(**{key: -1}).validate()


def test_panel_decodes_the_examples_pass_only_where_the_two_models_disagree(tiny_db, monkeypatch):
    """Two agreeing answers (both run, with rows) win whatever the third says, so the untuned model with examples is
    asked only the other questions; an agreement on no rows is no majority (no vote), so that question is asked."""
    asked = []
    _fake_panel(monkeypatch, asked)
    agree = {"id": "e", "question": "Titles of the books?", "sql": "SELECT title FROM books"}
    empty = {"id": "f", "question": "Books after 3000?", "sql": "SELECT title FROM books WHERE year > 3000"}
    for voter in PANEL_WRITES:
        monkeypatch.setitem(PANEL_WRITES[voter], agree["question"], agree["sql"] if voter != "fewshot" else "SELECT 1")
        monkeypatch.setitem(PANEL_WRITES[voter], empty["question"], empty["sql"])
    items = PANEL_ITEMS + [agree, empty]
    rep = evaluate(_Adapted(), None, None, items, tiny_db, EvalConfig(fallback="panel", fewshot_pool=PANEL_POOL,
                                                                     progress=False, panel_tuned_fewshot=0))
    qs = [it["question"] for it in items]
    assert asked[2] == ("fewshot", qs[:4] + [empty["question"]], [4] * 5)
    ex = {e["id"]: e for e in rep["examples"]}
    assert ex["e"]["exact"] and ex["e"]["pool"] == {"sql": agree["sql"], "raw": agree["sql"], "error": None,
                                                   "base_sql": agree["sql"], "fewshot_sql": None,
                                                   "source": "adapter", "votes": 2}
    assert ex["f"]["exact"] and ex["f"]["pool"]["source"] == "adapter" and rep["summary"]["exact"] == pytest.approx(5 / 6)


def test_panel_fourth_voter_the_adapter_with_examples_decoded_only_where_it_can_change_the_answer(tiny_db, monkeypatch):
    """`panel_tuned_fewshot: 2`: the adapter's own answer with 2 retrieved examples votes fourth, last in tie order.
    It is decoded only where the adapter's answer is not in a group of two already (e: the untuned model agrees; f:
    the examples' answer agrees): there two of four win or tie. Elsewhere it can keep the adapter's right answer
    against two untuned answers that agree (d: a 2-2 tie goes to the adapter), or keep its wrong one the same way
    (b), or side with the examples' answer where the adapter and the untuned model fail (c)."""
    asked = []
    _fake_panel(monkeypatch, asked)
    same = {"id": "e", "question": "Titles of the books?", "sql": "SELECT title FROM books"}
    four = {"id": "f", "question": "Books after 1900, counted?", "sql": "SELECT COUNT(*) FROM books WHERE year > 1900"}
    writes = {"adapter": {same["question"]: same["sql"], four["question"]: four["sql"]},
              "base": {same["question"]: same["sql"], four["question"]: "SELECT COUNT(*) FROM books"},
              "fewshot": {same["question"]: "SELECT 1", four["question"]: four["sql"]},
              "adapter_fewshot": {"How many authors?": "SELECT COUNT(*) FROM authors",
                                  "Names of the UK authors?": "SELECT name FROM authors",
                                  "Titles after 1900?": "SELECT title FROM books WHERE year > 1900",
                                  "How many books?": "SELECT COUNT(*) FROM books"}}
    for voter, by_q in writes.items():
        monkeypatch.setitem(PANEL_WRITES, voter, dict(PANEL_WRITES.get(voter, {}), **by_q))
    items = PANEL_ITEMS + [same, four]
    qs = [it["question"] for it in items]
    cfg = EvalConfig(fallback="panel", fewshot_pool=PANEL_POOL, progress=False)
    assert cfg.panel_tuned_fewshot == 2  # the default, as the default recipe's
    rep = evaluate(_Adapted(), None, None, items, tiny_db, cfg)
    assert asked == [("adapter", qs, None), ("base", qs, None), ("fewshot", qs[:4] + [four["question"]], [4] * 5),
                     ("adapter_fewshot", qs[:4], [2] * 4)]
    ex = {e["id"]: e for e in rep["examples"]}
    assert ex["a"]["exact"] and ex["a"]["pool"]["source"] == "adapter"
    assert ex["a"]["pool"]["adapter_fewshot_sql"] == "SELECT COUNT(*) FROM authors"
    assert not ex["b"]["exact"] and ex["b"]["pool"]["source"] == "adapter"  # 2-2: the adapter's wrong answer stays
    assert ex["c"]["exact"] and ex["c"]["pool"]["source"] == "fewshot" and ex["c"]["pool"]["votes"] == 2
    assert ex["d"]["exact"] and ex["d"]["pool"]["source"] == "adapter" and "fallback" not in ex["d"]
    assert ex["e"]["pool"]["adapter_fewshot_sql"] is None and ex["f"]["pool"]["adapter_fewshot_sql"] is None
    assert ex["e"]["exact"] and ex["f"]["exact"] and rep["summary"]["exact"] == pytest.approx(5 / 6)
    assert rep["eval_config"]["panel_tuned_fewshot"] == 2
    asked.clear()  # without it (the default) the panel of three: d is outvoted, and no pool key for the fourth
    rep = evaluate(_Adapted(), None, None, items, tiny_db, cfg.with_(panel_tuned_fewshot=0))
    assert [a[0] for a in asked] == ["adapter", "base", "fewshot"]
    ex = {e["id"]: e for e in rep["examples"]}
    assert not ex["d"]["exact"] and "adapter_fewshot_sql" not in ex["d"]["pool"]


# the untuned model's own panel: what it writes with 0, 4 and 2 retrieved examples
UNTUNED_WRITES = {
    0: {"How many authors?": "SELECT COUNT(*) FROM books",  # wrong; 4 and 2 agree on the right answer
        "Names of the UK authors?": "SELECT name FROM authors WHERE country = 'UK'",  # right, 4 agrees: 2 not asked
        "Titles after 1900?": "SELECT ttl FROM books",  # fails; 4 and 2 disagree: a tie, 4's answer first
        "How many books?": "SELECT COUNT(*) FROM books"},  # right; 4 and 2 agree on a wrong answer: outvoted
    4: {"How many authors?": "SELECT COUNT(*) FROM authors",
        "Names of the UK authors?": "SELECT name FROM authors WHERE country = 'UK'",
        "Titles after 1900?": "SELECT title FROM books WHERE year > 1900",
        "How many books?": "SELECT COUNT(*) FROM authors"},
    2: {"How many authors?": "SELECT COUNT(*) FROM authors",
        "Names of the UK authors?": "SELECT name FROM authors",
        "Titles after 1900?": "SELECT title FROM books",
        "How many books?": "SELECT COUNT(*) FROM authors"}}


def _fake_untuned(monkeypatch, asked):
    """`_fake_generation` writing `UNTUNED_WRITES[number of examples]`; `asked` records (examples, questions)."""
    def shots(examples):
        if examples:
            assert all({"question": e["question"], "sql": e["sql"]} in PANEL_POOL_PAIRS for e in examples)
        return len(examples or ())

    _fake_generation(monkeypatch, asked, lambda model, q, examples: UNTUNED_WRITES[shots(examples)][q],
                     lambda model, questions, examples: (shots(examples[0] if examples else None), list(questions)))


def test_untuned_panel_votes_the_untuned_answers_with_4_0_and_2_examples(tiny_db, monkeypatch):
    """`fallback: panel` with the untuned model (`untuned_model`): its answers with 4, 0 and 2 retrieved examples vote
    by result, ties in that order; the answer with 2 is decoded only where the first two do not agree. Two answers
    with examples that agree overrule the one without, right (a) or wrong (d); where the one without fails and the
    others disagree, the tie goes to 4's (c). A plain model without the flag keeps its own answers."""
    asked = []
    _fake_untuned(monkeypatch, asked)
    cfg = EvalConfig(fallback="panel", fewshot_pool=PANEL_POOL, progress=False, untuned_model=True)
    rep = evaluate(_Plain(), None, None, PANEL_ITEMS, tiny_db, cfg)
    qs = [it["question"] for it in PANEL_ITEMS]
    assert asked == [(0, qs), (4, qs), (2, [qs[0], qs[2], qs[3]])]
    ex = {e["id"]: e for e in rep["examples"]}
    assert ex["a"]["exact"] and ex["a"]["pool"]["source"] == "fewshot4" and ex["a"]["pool"]["votes"] == 2
    assert ex["a"]["fallback"]["sql"] == "SELECT COUNT(*) FROM books" and ex["a"]["pool"]["untuned"]
    assert ex["b"]["exact"] and "fallback" not in ex["b"] and set(ex["b"]["pool"]["answers"]) == {"4", "0"}
    assert ex["c"]["exact"] and ex["c"]["pool"]["source"] == "fewshot4" and ex["c"]["pool"]["votes"] == 1
    assert ex["c"]["pool"]["answers"] == {"4": UNTUNED_WRITES[4][qs[2]], "0": UNTUNED_WRITES[0][qs[2]],
                                          "2": UNTUNED_WRITES[2][qs[2]]}
    assert not ex["d"]["exact"] and ex["d"]["fallback"]["sql"] == PANEL_ITEMS[3]["sql"]
    s = rep["summary"]
    assert (s["pool_voted"], s["pool_changed"], s["pool_fixed"], s["pool_hurt"]) == (4, 3, 2, 1)
    assert s["exact"] == pytest.approx(3 / 4) and rep["eval_config"]["untuned_model"] is True
    asked.clear()  # the same model without the flag (a whole fine-tuned model, say): its own answers, as before
    rep = evaluate(_Plain(), None, None, PANEL_ITEMS, tiny_db, cfg.with_(untuned_model=False))
    assert asked == [(0, qs)] and rep["summary"]["pool_voted"] == 0 and rep["summary"]["exact"] == pytest.approx(1 / 2)


def test_untuned_panel_reuses_known_answers_and_needs_examples_to_vote_with(tiny_db, monkeypatch):
    """With every question's untuned answer known (`sqltune run`'s base stage) nothing is decoded again but the
    answers with examples, and the result is the same as decoding; without training pairs (or `panel_fewshot: 0`)
    there is no second voter: the rows stay the model's own. An adapter kept at step 0 is switched off while the
    examples' answers are decoded (the same weights), and the row's answers come first in a user's `fewshot`."""
    asked = []
    _fake_untuned(monkeypatch, asked)
    qs = [it["question"] for it in PANEL_ITEMS]
    cfg = EvalConfig(fallback="panel", fewshot_pool=PANEL_POOL, progress=False, untuned_model=True)
    decoded = evaluate(_Plain(), None, None, PANEL_ITEMS, tiny_db, cfg)
    asked.clear()
    known = {r["question"]: r for r in evaluate(_Plain(), None, None, PANEL_ITEMS, tiny_db,
                                                EvalConfig(progress=False))["predictions"]}
    asked.clear()
    rep = evaluate(_Plain(), None, None, PANEL_ITEMS, tiny_db, cfg.with_(untuned=known))
    assert [a[0] for a in asked] == [4, 2]
    assert [e["pred_sql"] for e in rep["examples"]] == [e["pred_sql"] for e in decoded["examples"]]
    assert [e["id"] for e in rep["examples"]] == ["a", "b", "c", "d"]
    for none in (cfg.with_(fewshot_pool=None), cfg.with_(panel_fewshot=0)):
        asked.clear()
        rep = evaluate(_Plain(), None, None, PANEL_ITEMS, tiny_db, none)
        assert asked == [(0, qs)] and rep["summary"]["pool_voted"] == 0
    asked.clear()
    model = _Adapted()
    states = []
    import sqltune.evaluate as ev

    real = ev.predict_questions

    def watch(m, *a, **kw):
        states.append(m.off)
        return real(m, *a, **kw)

    monkeypatch.setattr(ev, "predict_questions", watch)
    rep = evaluate(model, None, None, PANEL_ITEMS, tiny_db, cfg)
    assert states == [False, True, True] and rep["summary"]["exact"] == pytest.approx(3 / 4)
    asked.clear()  # the user asks for 2 examples already: the voters are 4 and 2 (the row's)
    rep = evaluate(_Plain(), None, None, PANEL_ITEMS[:1], tiny_db, cfg.with_(fewshot=2, panel_fewshot=4))
    assert [a[0] for a in asked] == [2, 4] and set(rep["predictions"][0]["pool"]["answers"]) == {"4", "2"}
    asked.clear()  # ... or 4 itself: the row's answer is the first voter, and 2 the second
    rep = evaluate(_Plain(), None, None, PANEL_ITEMS, tiny_db, cfg.with_(fewshot=4))
    assert [a[0] for a in asked] == [4, 2] and rep["summary"]["pool_voted"] == 4
    assert {e["pool"]["source"] for e in rep["examples"]} <= {"fewshot4", "fewshot2"}


def test_panel_from_a_recipe_gets_the_training_pairs_as_its_pool():
    dev = pick_device("cpu", "float32")
    pool = [{"question": "q", "sql": "SELECT 1"}]
    cfg = EvalConfig.from_recipe(load_recipe("default", {"eval.fallback": "panel", "eval.panel_fewshot": 2}), dev,
                                 fewshot_pool=pool)
    assert (cfg.fallback, cfg.panel_fewshot, cfg.fewshot, cfg.fewshot_pool) == ("panel", 2, 0, pool)
    assert EvalConfig.from_recipe(load_recipe("default", {"eval.fallback": "base"}), dev, fewshot_pool=pool).fewshot_pool is None
    four = EvalConfig.from_recipe(load_recipe("default", {"eval.panel_tuned_fewshot": 3}), dev, fewshot_pool=pool)
    assert four.panel_tuned_fewshot == 3
    for bad in (-1, 1.5, True, "two"):
        with pytest.raises(SqltuneError, match="eval.panel_tuned_fewshot must be"):
            load_recipe("default", {"eval.panel_tuned_fewshot": bad})


# ---------------------------------------------------------------- eval.fallback: vote (both models' candidates)
POOL_ITEMS = [{"id": "a", "question": "How many authors?", "sql": "SELECT COUNT(*) FROM authors"},
              {"id": "b", "question": "Names of the UK authors?", "sql": "SELECT name FROM authors WHERE country = 'UK'"},
              {"id": "c", "question": "Titles after 1900?", "sql": "SELECT title FROM books WHERE year > 1900"},
              {"id": "d", "question": "How many books?", "sql": "SELECT COUNT(*) FROM books"}]
# per model (adapter off?) and question: the greedy SQL, then what every sample writes
POOL_WRITES = {
    False: {"How many authors?": ["SELECT COUNT(*) FROM authors"] * 2,  # both models agree: never pooled
            "Names of the UK authors?": ["SELECT name FROM authors", POOL_ITEMS[1]["sql"]],  # executes, wrong
            "Titles after 1900?": [POOL_ITEMS[2]["sql"]] * 2,  # right
            "How many books?": [POOL_ITEMS[3]["sql"], "SELECT COUNT(*) FROM authors"]},  # right, samples wrong
    True: {"How many authors?": ["SELECT COUNT(*) FROM authors"] * 2,
           "Names of the UK authors?": [POOL_ITEMS[1]["sql"]] * 2,
           "Titles after 1900?": ["SELECT title FROM books", POOL_ITEMS[2]["sql"]],
           "How many books?": ["SELECT COUNT(*) FROM authors"] * 2}}


def _fake_sampling(monkeypatch, asked):
    import sqltune.vote as vote_mod
    from sqltune.vote import Candidate

    def fake(model, tok, builder, questions, n, **kw):
        asked.append((model.off, list(questions), n))
        out = []
        for q in questions:
            first, rest = POOL_WRITES[model.off][q]
            out.append([Candidate(sql=s, raw=s, mean_logprob=-0.1 if j == 0 else -0.5, greedy=j == 0)
                        for j, s in enumerate([first] + [rest] * (n - 1))])
        return out

    monkeypatch.setattr(vote_mod, "sample_sql", fake)


def test_pooled_vote_weighs_both_models_where_their_results_differ(tiny_db, monkeypatch):
    """`fallback: vote`: the untuned model's greedy answers every question; where its result differs from the
    adapter's, both draw n candidates and the majority of all 2n wins; a right answer can be outvoted (d), and the
    report counts what the pool fixed and broke."""
    from sqltune.vote import VoteSettings

    asked = []
    _fake_sampling(monkeypatch, asked)
    cfg = EvalConfig(fallback="vote", vote=VoteSettings(4, when="error"), progress=False)
    rep = evaluate(_Adapted(), None, None, POOL_ITEMS, tiny_db, cfg)
    qs = [it["question"] for it in POOL_ITEMS]
    assert asked == [(False, qs, 1), (True, qs, 1), (False, qs[1:], 4), (True, qs[1:], 4)]
    ex = {e["id"]: e for e in rep["examples"]}
    assert "pool" not in ex["a"] and ex["a"]["exact"]
    assert ex["b"]["exact"] and ex["b"]["pool"]["sql"] == "SELECT name FROM authors"  # 7 of 8 say the gold
    assert ex["c"]["exact"] and ex["c"]["pred_sql"] == POOL_ITEMS[2]["sql"]  # weighed, kept
    assert not ex["d"]["exact"] and ex["d"]["pool"]["source"] == "base"  # the adapter's right answer outvoted
    assert ex["d"]["fallback"]["sql"] == POOL_ITEMS[3]["sql"]
    s = rep["summary"]
    assert (s["pool_voted"], s["pool_changed"], s["pool_fixed"], s["pool_hurt"]) == (3, 2, 1, 1)
    assert s["exact"] == pytest.approx(3 / 4) and rep["eval_config"]["fallback"] == "vote"


def test_pooled_vote_takes_the_untuned_greedy_answers_it_is_given(tiny_db, monkeypatch):
    """With `cfg.untuned`, the pool's trigger reads the untuned model's greedy answers from there (`greedy_answer`:
    a voted row's greedy candidate, a retried row's first attempt) and skips that pass; the outcome is the same."""
    from sqltune.evaluate import greedy_answer
    from sqltune.vote import VoteSettings

    asked = []
    _fake_sampling(monkeypatch, asked)
    cfg = EvalConfig(fallback="vote", vote=VoteSettings(4, when="error"), progress=False)
    decoded = evaluate(_Adapted(), None, None, POOL_ITEMS, tiny_db, cfg)
    qs = [it["question"] for it in POOL_ITEMS]
    # the base stage voted: its answer may be a sample, its greedy answer is the trigger's
    known = {q: {"question": q, "sql": "SELECT 1", "greedy_sql": POOL_WRITES[True][q][0]} for q in qs}
    asked.clear()
    rep = evaluate(_Adapted(), None, None, POOL_ITEMS, tiny_db, cfg.with_(untuned=known))
    assert asked == [(False, qs, 1), (False, qs[1:], 4), (True, qs[1:], 4)]  # no greedy pass of the untuned model
    assert [e["pred_sql"] for e in rep["examples"]] == [e["pred_sql"] for e in decoded["examples"]]
    assert [e.get("pool") for e in rep["examples"]] == [e.get("pool") for e in decoded["examples"]]
    assert greedy_answer({"sql": "B", "first_sql": "A", "retries": 1}) == "A"
    assert greedy_answer({"sql": "B", "first_sql": "A", "retries": 0}) == "B"
    assert greedy_answer({"sql": "B", "greedy_sql": None}) is None


def test_vote_summary_judges_the_vote_before_the_pool(tiny_db, monkeypatch):
    """The report's `vote` block scores the vote's own answers: a question the pool fixed with one of the adapter's
    own candidates (no `fallback` record) still counts as the vote's miss there, as one the untuned model's won does."""
    import sqltune.vote as vote_mod
    from sqltune.vote import Candidate, VoteSettings

    def fake(model, tok, builder, questions, n, **kw):  # POOL_WRITES, the adapter's samples likelier than the rest
        return [[Candidate(sql=s, raw=s, mean_logprob=-0.2 if (j and not model.off) else -0.9, greedy=j == 0)
                 for j, s in enumerate([POOL_WRITES[model.off][q][0]] + [POOL_WRITES[model.off][q][1]] * (n - 1))]
                for q in questions]

    monkeypatch.setattr(vote_mod, "sample_sql", fake)
    cfg = EvalConfig(fallback="vote", vote=VoteSettings(4, when="error"), progress=False)
    rep = evaluate(_Adapted(), None, None, POOL_ITEMS[:2], tiny_db, cfg)
    b = rep["examples"][1]
    assert b["exact"] and "fallback" not in b and b["pool"]["source"] == "adapter"  # fixed by the adapter's samples
    assert rep["summary"]["exact"] == 1.0 and rep["summary"]["pool_fixed"] == 1
    assert rep["vote"]["voted"]["exact"] == pytest.approx(1 / 2)  # before the pool: b was wrong
    assert rep["vote"]["greedy"]["exact"] == pytest.approx(1 / 2)


def test_pooled_vote_needs_a_vote_and_an_adapter(tiny_db, monkeypatch):
    from sqltune.vote import VoteSettings

    with pytest.raises(SqltuneError, match="fallback vote needs a vote of 2 or more"):
        EvalConfig(fallback="vote").validate()
    with pytest.raises(SqltuneError, match="fallback vote needs a vote"):
        load_recipe("default", {"eval.fallback": "vote"})  # the default recipe is greedy
    assert load_recipe("default", {"eval.fallback": "vote", "eval.vote": 4}).eval.fallback == "vote"

    class Plain:
        off = False

    asked = []
    _fake_sampling(monkeypatch, asked)
    rep = evaluate(Plain(), None, None, POOL_ITEMS, tiny_db,
                   EvalConfig(fallback="vote", vote=VoteSettings(4, when="error"), progress=False))
    assert asked == [(False, [it["question"] for it in POOL_ITEMS], 1)] and rep["summary"]["pool_voted"] == 0


def test_fallback_after_a_vote_keeps_the_votes_own_score(tiny_db, monkeypatch):
    """With `vote_when: error`, the adapter's vote runs first; the untuned model (voting the same way) answers
    only what still fails, and the vote's summary judges the vote's own answers, not the fallback's."""
    import sqltune.vote as vote
    from sqltune.vote import Candidate, VoteSettings

    asked = []

    def fake_sample(model, tok, builder, questions, n, **kw):
        asked.append((model.off, n, list(questions)))
        return [[Candidate(WRITES[model.off][q], WRITES[model.off][q], -0.1, greedy=j == 0) for j in range(n)]
                for q in questions]

    monkeypatch.setattr(vote, "sample_sql", fake_sample)
    # repair off: WRITES's misspelt columns (`nam`, `titel`) are what this test needs to fail
    cfg = EvalConfig(fallback="base", progress=False, vote=VoteSettings(4, 0.8, 0.95, when="error"), repair=False)
    rep = evaluate(_Adapted(), None, None, FB_ITEMS, tiny_db, cfg)
    two = ["Names of the UK authors?", "Titles after 1900?"]
    assert asked == [(False, 1, [it["question"] for it in FB_ITEMS]), (False, 4, two), (True, 1, two), (True, 4, ["Titles after 1900?"])]
    assert rep["summary"]["fallback_used"] == 1 and rep["summary"]["exact"] == pytest.approx(2 / 3)
    assert rep["vote"]["voted"]["exact"] == pytest.approx(1 / 3) and rep["vote"]["greedy"]["exact"] == pytest.approx(1 / 3)


def test_the_untuned_pass_of_a_real_adapter_is_the_untuned_model(tiny_model_dir, tiny_db):
    """`fall_back` predicts under `disable_adapter()`: with a real peft adapter (random, so it changes the
    outputs) the same questions read exactly as the model read them before the adapter was put on."""
    from peft import LoraConfig, get_peft_model

    from sqltune.evaluate import has_adapter, predict
    from sqltune.model import load_model
    from sqltune.prompt import PromptBuilder
    from sqltune.schema import schema_text

    model, tok, _ = load_model(str(tiny_model_dir), pick_device("cpu", "float32"))
    builder = PromptBuilder(schema_text(tiny_db))
    cfg = EvalConfig(batch_size=4, max_new_tokens=8, progress=False)
    before = [r["raw"] for r in predict(model, tok, builder, FB_ITEMS, tiny_db, cfg)]
    assert not has_adapter(model)  # a plain model: `fall_back` leaves its rows alone
    import torch

    torch.manual_seed(0)  # the adapter's random weights
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    assert has_adapter(peft)
    adapted = [r["raw"] for r in predict(peft, tok, builder, FB_ITEMS, tiny_db, cfg)]
    with peft.disable_adapter():
        off = [r["raw"] for r in predict(peft, tok, builder, FB_ITEMS, tiny_db, cfg)]
    assert off == before and adapted != before
    # the pooled vote on the real adapter: the tiny model writes no SQL, so every question is pooled (its answer
    # fails), both models draw their candidates, and the report counts them
    from sqltune.vote import VoteSettings

    rep = evaluate(peft, tok, builder, FB_ITEMS, tiny_db, cfg.with_(fallback="vote", vote=VoteSettings(2, when="error")))
    assert rep["summary"]["pool_voted"] == len(FB_ITEMS) and rep["eval_config"]["fallback"] == "vote"
    assert all(e["pool"]["source"] in ("adapter", "base") for e in rep["examples"])


def test_the_reviewer_through_a_real_adapter_switched_off_scores_as_the_untuned_model(tiny_model_dir, tiny_db):
    """`review_outcomes` scores under `disable_adapter()`: with a real peft adapter (random, so it changes the scores)
    the shared-prefix reviewer run through the PEFT wrapper reads exactly what the plain model read before the adapter
    was put on, and with the adapter on it reads something else."""
    import torch
    from peft import LoraConfig, get_peft_model

    from sqltune.model import load_model
    from sqltune.prompt import PromptBuilder
    from sqltune.schema import schema_text
    from sqltune.vote import review_scores

    model, tok, _ = load_model(str(tiny_model_dir), pick_device("cpu", "float32"))
    builder = PromptBuilder(schema_text(tiny_db))
    sqls = ["SELECT COUNT(*) FROM books", "SELECT title FROM books WHERE genre = 'x'", "SELECT 1"]
    before = review_scores(model, tok, builder, "How many books?", sqls, batch_size=2)
    torch.manual_seed(0)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    on = review_scores(peft, tok, builder, "How many books?", sqls, batch_size=2)
    with peft.disable_adapter():
        off = review_scores(peft, tok, builder, "How many books?", sqls, batch_size=2)
    assert off == pytest.approx(before, abs=1e-4) and on != pytest.approx(before, abs=1e-2)


# ---------------------------------------------------------------- eval.repair
REPAIR_ITEMS = [
    {"id": "a", "question": "Titles of the UK authors' books?",
     "sql": "SELECT T2.title FROM authors AS T1 JOIN books AS T2 ON T1.id = T2.author_id WHERE T1.country = 'UK'"},
    {"id": "b", "question": "Book titles with their author names?",
     "sql": "SELECT books.title, authors.name FROM books JOIN authors ON books.author_id = authors.id"},
    {"id": "c", "question": "Genres of the books?", "sql": "SELECT title FROM books"},
    {"id": "d", "question": "How many books?", "sql": "SELECT COUNT(*) FROM books"}]
REPAIR_WRITES = {  # a swapped alias, a column of the neighbour table, an invented column, a query that runs
    "Titles of the UK authors' books?":
        "SELECT T1.title FROM authors AS T1 JOIN books AS T2 ON T1.id = T2.author_id WHERE T1.country = 'UK'",
    "Book titles with their author names?": "SELECT title, name FROM books",
    "Genres of the books?": "SELECT genre FROM books",
    "How many books?": "SELECT COUNT(*) FROM books"}


def _stub_generate(monkeypatch, writes):
    """`generate.generate_sql` replaced below the real `predict_questions`, which executes and repairs."""
    import sqltune.generate as gen
    from sqltune.generate import Generation

    def fake(model, tok, builder, questions, **kw):
        return [Generation(q, raw=writes[q], sql=writes[q], seconds=0.01) for q in questions]

    monkeypatch.setattr(gen, "generate_sql", fake)


def test_repair_rewrites_a_failing_answer_when_the_rewrite_runs(tiny_db, monkeypatch):
    """`eval.repair` (the recipes' default; off in a bare EvalConfig): where the answer fails, `predict` rewrites it
    against the schema (a swapped alias, a neighbour's column) and keeps the model's SQL and error beside the rewrite;
    an invented column stays a failure, an answer that runs is never touched; the report counts the rewrites and how
    many are right. Off: the answers as written."""
    _stub_generate(monkeypatch, REPAIR_WRITES)
    rep = evaluate(_Plain(), None, None, REPAIR_ITEMS, tiny_db, EvalConfig(progress=False, repair=True))
    ex = {e["id"]: e for e in rep["examples"]}
    assert ex["a"]["exact"] and ex["a"]["model_sql"] == REPAIR_WRITES[REPAIR_ITEMS[0]["question"]]
    assert "T2.title" in ex["a"]["pred_sql"]
    assert ex["b"]["exact"] and "JOIN authors" in ex["b"]["pred_sql"]
    assert not ex["c"]["executed"] and "model_sql" not in ex["c"]
    assert ex["d"]["exact"] and "model_sql" not in ex["d"]
    assert (rep["summary"]["repaired"], rep["summary"]["repair_exact"]) == (2, 2)
    assert rep["eval_config"]["repair"] is True
    row = {p["id"]: p for p in rep["predictions"]}["a"]
    assert "no such column" in row["model_error"] and row["error"] is None
    from sqltune.evaluate import as_written, greedy_answer

    assert greedy_answer(row) == REPAIR_WRITES[REPAIR_ITEMS[0]["question"]]  # what the model wrote
    assert as_written(row)["error"] == row["model_error"]
    off = evaluate(_Plain(), None, None, REPAIR_ITEMS, tiny_db, EvalConfig(progress=False))
    assert off["summary"]["exact"] == pytest.approx(1 / 4) and "repaired" not in off["summary"]
    assert [p["sql"] for p in off["predictions"]] == [REPAIR_WRITES[it["question"]] for it in REPAIR_ITEMS]


def test_panel_repairs_only_where_every_voter_fails_in_tie_order(tiny_db, monkeypatch):
    """In the panel the voters vote as written; only a question where no answer runs is repaired, its voters tried
    in tie order (the adapter's first): a question where one voter runs keeps that answer, even if a failing
    voter's repair would have been right."""
    import sqltune.generate as gen
    from sqltune.generate import Generation

    items = REPAIR_ITEMS[:2]
    model = _Adapted()
    writes = {  # (adapter?, examples?) -> question -> SQL
        (True, False): {items[0]["question"]: "SELECT T1.title FROM authors AS T1 JOIN books AS T2 ON T1.id = T2.author_id "
                                             "WHERE T1.country = 'UK'",
                        items[1]["question"]: "SELECT title, name FROM books"},
        (False, False): {items[0]["question"]: "SELECT title FROM authors WHERE country = 'UK'",
                         items[1]["question"]: "SELECT title FROM books"},  # runs (wrong): it is the answer
        (False, True): {items[0]["question"]: "SELECT genre FROM books",
                        items[1]["question"]: "SELECT title, name FROM books"},
        (True, True): {items[0]["question"]: "SELECT genre, title FROM books",  # the fourth voter fails too
                       items[1]["question"]: "SELECT titel FROM books"}}
    asked = []

    def fake(m, tok, builder, questions, examples=None, **kw):
        key = (not model.off, bool(examples))
        asked.append(key)
        return [Generation(q, raw=writes[key][q], sql=writes[key][q], seconds=0.01) for q in questions]

    monkeypatch.setattr(gen, "generate_sql", fake)
    cfg = EvalConfig(fallback="panel", fewshot_pool=PANEL_POOL, progress=False, repair=True)
    rep = evaluate(model, None, None, items, tiny_db, cfg)
    a, b = rep["examples"]
    assert a["exact"] and a["model_sql"] == writes[True, False][items[0]["question"]] and "T2.title" in a["pred_sql"]
    assert a["pool"]["votes"] == 0  # nobody ran: the repair of the first voter in tie order
    assert not b["exact"] and "model_sql" not in b and b["pred_sql"] == "SELECT title FROM books"
    assert rep["summary"]["repaired"] == 1 and rep["summary"]["repair_exact"] == 1


# ---------------------------------------------------------------- eval.panel_judge: reviewer
def _fake_reviewer(monkeypatch, judged, prefer):
    """`vote.review_scores` replaced: 0 for the SQL `prefer[question]`, -10 for any other; each call is recorded in
    `judged` as (question, sorted SQL, adapter off?) -- the reviewer is the untuned model."""
    import sqltune.vote as vote

    def fake(model, tokenizer, builder, question, sqls, autocast=False):
        judged.append((question, sorted(sqls), getattr(model, "off", None)))
        return [0.0 if s == prefer.get(question) else -10.0 for s in sqls]

    monkeypatch.setattr(vote, "review_scores", fake)


def test_panel_with_the_reviewer_elects_the_result_the_question_fits_votes_aside(tiny_db, monkeypatch):
    """`panel_judge: reviewer`: the examples' pass is decoded for every question (the reviewer weighs every voter's
    result, so two agreeing answers no longer settle it: e), and where the voters give two or more results the
    untuned model (the adapter switched off) scores each and the best-scored result wins, even against two votes
    (d: the adapter's right count against two untuned wrong ones). One result (c: the others fail): no review."""
    asked, judged = [], []
    _fake_panel(monkeypatch, asked)
    agree = {"id": "e", "question": "Titles of the books?", "sql": "SELECT title FROM books"}
    for voter in PANEL_WRITES:
        monkeypatch.setitem(PANEL_WRITES[voter], agree["question"], agree["sql"] if voter != "fewshot" else "SELECT 1")
    items = PANEL_ITEMS + [agree]
    _fake_reviewer(monkeypatch, judged, {it["question"]: it["sql"] for it in items})
    cfg = EvalConfig(fallback="panel", fewshot_pool=PANEL_POOL, progress=False, panel_tuned_fewshot=0,
                     panel_judge="reviewer")
    rep = evaluate(_Adapted(), None, None, items, tiny_db, cfg)
    qs = [it["question"] for it in items]
    assert asked[2] == ("fewshot", qs, [4] * 5)
    ex = {e["id"]: e for e in rep["examples"]}
    assert ex["d"]["exact"] and ex["d"]["pool"]["source"] == "adapter" and "fallback" not in ex["d"]
    assert ex["d"]["pool"]["review"] == {"SELECT COUNT(*) FROM authors": -10.0, "SELECT COUNT(*) FROM books": 0.0}
    assert ex["b"]["exact"] and ex["b"]["pool"]["source"] == "base"
    assert ex["c"]["exact"] and "review" not in ex["c"]["pool"]
    assert ex["e"]["exact"] and ex["e"]["pool"]["source"] == "adapter"  # "SELECT 1" is a second result: reviewed
    assert {q for q, _, _ in judged} == {qs[1], qs[3], qs[4]} | ({qs[0]} if "review" in ex["a"]["pool"] else set())
    assert all(off is True for _, _, off in judged)
    assert rep["summary"]["exact"] == pytest.approx(1.0) and rep["eval_config"]["panel_judge"] == "reviewer"
    with pytest.raises(SqltuneError, match="panel_judge must be one of vote, reviewer"):
        cfg.with_(panel_judge="llm").validate()


def test_untuned_panel_with_the_reviewer_decodes_every_voter_and_elects_by_review(tiny_db, monkeypatch):
    """The untuned model's own panel with the reviewer: the answer with 2 examples is decoded for every question,
    and the reviewer overrules two agreeing answers (d: 4 and 2 agree on a wrong count, 0 is right)."""
    asked, judged = [], []
    _fake_untuned(monkeypatch, asked)
    _fake_reviewer(monkeypatch, judged, {it["question"]: it["sql"] for it in PANEL_ITEMS})
    cfg = EvalConfig(fallback="panel", fewshot_pool=PANEL_POOL, progress=False, untuned_model=True,
                     panel_judge="reviewer")
    rep = evaluate(_Plain(), None, None, PANEL_ITEMS, tiny_db, cfg)
    qs = [it["question"] for it in PANEL_ITEMS]
    assert asked == [(0, qs), (4, qs), (2, qs)]
    ex = {e["id"]: e for e in rep["examples"]}
    assert ex["d"]["exact"] and ex["d"]["pool"]["source"] == "fewshot0" and "review" in ex["d"]["pool"]
    assert ex["a"]["exact"] and ex["b"]["exact"] and ex["c"]["exact"]
    assert rep["summary"]["exact"] == pytest.approx(1.0)
    vote_rep = evaluate(_Plain(), None, None, PANEL_ITEMS, tiny_db, cfg.with_(panel_judge="vote"))
    assert vote_rep["summary"]["exact"] == pytest.approx(3 / 4)  # by votes d stays wrong
