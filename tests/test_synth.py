"""Synthetic pairs (issue 14): every source yields valid SQL, the shared filters reject with reasons,
zero seeds works, bad input is one clear line, the checkpoint rule keeps the untuned model on noise."""

import json
import random
import re
import sqlite3

import pytest

from sqltune.check import LeakIndex
from sqltune.cli import main
from sqltune.dataset import write_jsonl
from sqltune.execute import execute
from sqltune.errors import SqltuneError
from sqltune.pairs import (SHAPES, Validator, balanced_cut, shape_counts, sql_shape, extreme_not_computed, filter_candidates, name_words, quoted_value_missing,
                           zero_result)
from sqltune.synth import (SynthConfig, interleave, candidates, catalog, checkpoint_rule, choose_checkpoint, choose_latest,
                           from_schema, instantiate, retarget_question, split_heldout, synth,
                           weighted_training_items)

SEEDS = [
    {"id": "s1", "question": "Which authors are from the UK?", "sql": "SELECT name FROM authors WHERE country = 'UK'"},
    {"id": "s2", "question": "How many books did Borges write?",
     "sql": "SELECT COUNT(*) FROM books AS b JOIN authors AS a ON b.author_id = a.id WHERE a.name = 'Borges'"},
    {"id": "s3", "question": "What is the price of the newest book?", "sql": "SELECT price FROM books ORDER BY year DESC LIMIT 1"},
    {"id": "s4", "question": "Total copies sold per month?", "sql": "SELECT month, SUM(copies) FROM sales GROUP BY month"},
]
TEST = [{"id": "x1", "question": "Which book is the most expensive?",
         "sql": "SELECT title FROM books ORDER BY price DESC LIMIT 1"}]


def _runs_with_rows(db, sql):
    res = execute(db, sql)
    return res.ok and len(res.rows) > 0


def test_schema_source_covers_every_level_with_valid_sql(tiny_db):
    cands = from_schema(catalog(tiny_db), random.Random(0))
    levels = {c["provenance"]["level"] for c in cands}
    assert levels == {"single", "join", "aggregate", "nested", "window"}
    assert all(execute(tiny_db, c["sql"]).ok for c in cands)
    assert sum(_runs_with_rows(tiny_db, c["sql"]) for c in cands) > len(cands) * 0.7
    # joins follow the declared foreign keys
    joins = [c for c in cands if c["provenance"]["level"] == "join"]
    assert joins and all(set(c["provenance"]["tables"]) in ({"books", "authors"}, {"sales", "books"}) for c in joins)


def test_schema_source_writes_the_common_join_forms(tiny_db):
    """Along each foreign key: a column of each table side by side, the child's rows filtered on a value of the
    parent, the parent of the child row with the highest number (session 14: the kept sets were poor in joins)."""
    joins = [c for c in from_schema(catalog(tiny_db), random.Random(0)) if c["provenance"]["level"] == "join"]
    forms = {"side by side": r"^SELECT T1\.\S+, T2\.\S+ FROM \S+ AS T1 JOIN \S+ AS T2 ON [^W]*$",
             "parent's value": r"^SELECT T1\.\S+ FROM .* JOIN .* WHERE T2\.\S+ = ",
             "parent of the top row": r"^SELECT T2\.\S+ FROM .* JOIN .* ORDER BY T1\.\S+ DESC LIMIT 1$"}
    for form, pattern in forms.items():
        found = [c for c in joins if re.match(pattern, c["sql"])]
        assert found, form
        assert all(_runs_with_rows(tiny_db, c["sql"]) and sql_shape(c["sql"]) == "join" for c in found), form
    top = next(c for c in joins if re.match(forms["parent of the top row"], c["sql"]))
    assert "highest" in top["template_question"] and not extreme_not_computed(top["template_question"], top["sql"])


def test_schema_source_joins_through_a_link_table(tmp_path):
    """course_teach's course_arrange(Course_ID, Teacher_ID, Grade), every column in its key: the templates found no
    column of it to filter on and wrote no join at all; now a link table joins its two parents side by side, and
    its key column that is no identifier (Grade) serves as a filter. A link to one table twice (Friend) too."""
    db = tmp_path / "ct.sqlite"
    con = sqlite3.connect(db)
    con.executescript(
        "CREATE TABLE course(Course_ID int primary key, Course text);"
        "CREATE TABLE teacher(Teacher_ID int primary key, Name text, Hometown text);"
        "CREATE TABLE course_arrange(Course_ID int, Teacher_ID int, Grade int, primary key (Course_ID, Teacher_ID, Grade),"
        " foreign key(Course_ID) references course(Course_ID), foreign key(Teacher_ID) references teacher(Teacher_ID));"
        "CREATE TABLE Highschooler(ID int primary key, name text);"
        "CREATE TABLE Friend(student_id int, friend_id int, primary key (student_id, friend_id),"
        " foreign key(student_id) references Highschooler(ID), foreign key(friend_id) references Highschooler(ID));"
        "INSERT INTO course VALUES (1, 'Math'), (2, 'Art');"
        "INSERT INTO teacher VALUES (1, 'Ann', 'Leeds'), (2, 'Bo', 'York');"
        "INSERT INTO course_arrange VALUES (1, 1, 5), (2, 1, 6), (2, 2, 7);"
        "INSERT INTO Highschooler VALUES (1, 'Cy'), (2, 'Di');"
        "INSERT INTO Friend VALUES (1, 2);")
    con.commit()
    con.close()
    joins = [c for c in from_schema(catalog(db), random.Random(0)) if c["provenance"]["level"] == "join"]
    link = [c for c in joins if len(c["provenance"]["tables"]) == 3]
    assert {c["provenance"]["tables"][0] for c in link} == {"course_arrange", "Friend"}
    assert any("T2.Course, T3." in c["sql"] for c in link)  # a column of each parent side by side
    assert all(execute(db, c["sql"]).ok for c in joins) and all(_runs_with_rows(db, c["sql"]) for c in link)
    assert any("T1.Grade" in c["sql"] for c in joins)  # the link table's own key column, filtered or shown
    assert not [c for c in joins if re.search(r"(WHERE|ORDER BY) T1\.\W?(Course_ID|Teacher_ID|student_id)", c["sql"])]
    friend = next(c for c in link if c["provenance"]["tables"][0] == "Friend")
    assert "of its student and the" in friend["template_question"] and "of its friend." in friend["template_question"]


def test_schema_source_does_no_arithmetic_on_identifiers(tmp_path):
    """network_1's Friend(student_id, friend_id): every column a key, so the templates fell back to them and
    wrote AVG(friend_id) / MAX(liked_id), which the writer then described as 'friends per student'."""
    from sqltune.synth import _id_like

    db = tmp_path / "net.sqlite"
    con = sqlite3.connect(db)
    con.executescript(
        "CREATE TABLE Highschooler(ID int primary key, name text, grade int);"
        "CREATE TABLE Friend(student_id int, friend_id int, primary key (student_id, friend_id),"
        " foreign key(student_id) references Highschooler(ID), foreign key(friend_id) references Highschooler(ID));"
        "INSERT INTO Highschooler VALUES (1, 'Ann', 9), (2, 'Bo', 10), (3, 'Cy', 11);"
        "INSERT INTO Friend VALUES (1, 2), (2, 3), (1, 3);")
    con.commit()
    con.close()
    cands = from_schema(catalog(db), random.Random(0))
    sqls = [c["sql"] for c in cands]
    assert any(re.search(r"(AVG|SUM|MAX|MIN)\(\W?grade", q) for q in sqls)  # a real number still is aggregated
    for agg in ("AVG", "SUM", "MAX", "MIN"):
        assert not [q for q in sqls if re.search(agg + r"\(\W?(student_id|friend_id|ID)\W?\)", q, re.I)], agg
    assert not [q for q in sqls if re.search(r"(>|ORDER BY|OVER \(ORDER BY) \W?(student_id|friend_id)\b", q)]
    assert all(_id_like(n) for n in ("id", "ID", "student_id", "Template_ID", "StudentID", "liked id"))
    assert not any(_id_like(n) for n in ("paid", "grade", "Valid", "idle", "rapid"))


def test_instantiate_changes_values_columns_or_table_and_runs(tiny_db):
    cat = catalog(tiny_db)
    out = instantiate(SEEDS[0]["sql"], cat, random.Random(1), n=8)
    hows = {how.split()[0] for _, how, _ in out}
    assert "other" in hows  # other values of `country`
    assert all(execute(tiny_db, sql).ok for sql, _, _ in out)
    vals = [v for sql, how, v in out if how == "other values"]
    assert vals and all(set(v) == {"UK"} and v["UK"] in {"AR", "IT", "UK"} for v in vals)
    # the join seed keeps its join and changes the compared name to a real one
    joined = instantiate(SEEDS[1]["sql"], cat, random.Random(0), n=4)
    assert joined and all("JOIN" in sql and execute(tiny_db, sql).ok for sql, _, _ in joined)


def test_spider_double_quoted_literals_are_instantiated(tiny_db):
    out = instantiate('SELECT name FROM authors WHERE country = "UK"', catalog(tiny_db), random.Random(0), n=6)
    assert any(how == "other values" and v == {"UK": v["UK"]} for _, how, v in out)


def test_retarget_question_only_when_the_value_is_in_the_question():
    assert retarget_question("Which authors are from the UK?", {"UK": "IT"}) == "Which authors are from the IT?"
    assert retarget_question("Which authors are British?", {"UK": "IT"}) is None
    assert retarget_question("Books after 1900 or 19000?", {"1900": "1950"}) == "Books after 1950 or 19000?"


def test_each_source_yields_candidates_that_run(tiny_db):
    cands = candidates(tiny_db, SEEDS, SynthConfig(sources=("instantiate", "mutate", "schema")))
    methods = {c["provenance"]["method"] for c in cands}
    assert methods == {"instantiate", "mutation", "schema"}
    for m in methods:
        sqls = [c["sql"] for c in cands if c["provenance"]["method"] == m]
        assert sum(execute(tiny_db, s).ok for s in sqls) >= len(sqls) * 0.6, m


@pytest.mark.parametrize("cand,reason", [
    ({"question": "Price of each title?", "sql": "SELECT title, cost FROM books"}, "fails"),
    ({"question": "Books from the future?", "sql": "SELECT title FROM books WHERE year > 3000"}, "empty result"),
    # a count of nothing: any wrong filter gives the same 0, so the read-back could not check it
    ({"question": "How many books from the future?", "sql": "SELECT COUNT(*) FROM books WHERE year > 3000"},
     "zero result"),
    ({"question": "Latest year of a future book?", "sql": "SELECT MAX(year), COUNT(*) FROM books WHERE year > 3000"},
     "zero result"),
    ({"question": "How many books are there?", "sql": "SELECT COUNT(*) FROM books"}, None),
    ({"question": "Any random author at all?", "sql": "SELECT name FROM authors ORDER BY random() LIMIT 1"},
     "nondeterministic"),
    ({"question": "Top two titles by price?", "sql": "SELECT title FROM books ORDER BY price DESC LIMIT 2"},
     "leak: same SQL skeleton"),
    ({"question": "Which authors are from the UK?", "sql": "SELECT name FROM authors WHERE country = 'IT'"},
     "duplicate: same question"),
    ({"question": "Names of the British authors", "sql": "select name from authors where country='UK'"},
     "duplicate: same SQL"),
    ({"question": "Which authors are from Italy?", "sql": "SELECT name FROM authors WHERE country = 'IT'",
      "_q": "Italian authors please"}, None),
])
def test_filters_reject_with_reasons(tiny_db, cand, reason):
    v = Validator(tiny_db, LeakIndex(TEST, "test"), dedupe_results=True)
    for s in SEEDS:
        v.add(s)
    cand = dict(cand, question=cand.pop("_q", cand["question"]))
    got = v.reject_reason(cand)
    assert (got if reason is None else (got or "")[: len(reason)]) == reason


def test_same_skeleton_same_result_is_a_duplicate_other_result_is_not(tiny_db):
    v = Validator(tiny_db, LeakIndex(), dedupe_results=True)
    v.add({"question": "Titles of books published after 1900?", "sql": "SELECT title FROM books WHERE year > 1900"})
    res = filter_candidates([
        {"id": "same-rows", "question": "Titles of books from after 1920?", "sql": "SELECT title FROM books WHERE year > 1920"},
        {"id": "other-rows", "question": "Titles of books from after 1945?", "sql": "SELECT title FROM books WHERE year > 1945"},
        {"id": "same-sql", "question": "Book titles, after 1945 please", "sql": "select title from books where year>1945"},
    ], v, max_keep=10)
    assert [c["id"] for c in res.kept] == ["other-rows"]
    assert res.rejected == {"duplicate: same skeleton and result as a kept pair": 1, "duplicate: same SQL as a kept pair": 1}


def test_zero_seeds_from_schema_alone_writes_validated_pairs(tiny_db, tmp_path):
    out = tmp_path / "syn.jsonl"
    res = synth(tiny_db, out, [], {"test": TEST}, cfg=SynthConfig(k=15, questions="template", progress=False))
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert 0 < len(rows) == len(res.kept) <= 15
    for r in rows:
        assert _runs_with_rows(tiny_db, r["sql"]) and r["question"] and r["provenance"]["method"] == "schema"
        assert not LeakIndex(TEST).leaks(r)
    summary = json.loads((tmp_path / "syn.summary.json").read_text())
    assert summary["kept"] == len(rows) and summary["tried"] >= len(rows)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_model_path_writes_questions_and_reads_them_back(tiny_db, tiny_model_dir, tmp_path):
    """The tiny random model writes nonsense: the read-back rejects it, and the summary says so."""
    out = tmp_path / "syn.jsonl"
    cfg = SynthConfig(k=3, progress=False, batch_size=8, max_new_tokens=8, model_sql_per_level=1)
    res = synth(tiny_db, out, SEEDS, {"test": TEST}, model=str(tiny_model_dir), device=None, cfg=cfg)
    assert out.is_file() and res.tried > 0
    assert res.kept == [] or all(c["provenance"]["readback"] for c in res.kept)
    assert sum(res.rejected.values()) > 0


def test_interleave_keeps_every_item_of_the_longer_pool():
    # the model-written SQL can outnumber the deterministic candidates (sql_per_level 100): none may be dropped
    assert interleave([1, 2, 3, 4], ["a"]) == [1, "a", 2, 3, 4]
    assert interleave(["a"], [1, 2, 3]) == ["a", 1, 2, 3]
    assert interleave([], []) == [] and interleave([1], [], [2, 3]) == [1, 2, 3]


@pytest.mark.parametrize("sql,shape", [
    ("SELECT name FROM authors WHERE country = 'UK'", "single"),
    ("SELECT title FROM books ORDER BY price DESC LIMIT 1", "single"),
    ("SELECT COUNT(*) FROM books", "aggregate"),
    ("SELECT month, SUM(copies) FROM sales GROUP BY month HAVING SUM(copies) > 3", "aggregate"),
    ("SELECT COUNT(*) FROM books AS b JOIN authors AS a ON b.author_id = a.id WHERE a.name = 'Borges'", "join"),
    ("SELECT title FROM books, authors WHERE books.author_id = authors.id", "join"),  # a comma join is a join
    ("SELECT title FROM books WHERE author_id IN (SELECT id FROM authors WHERE country = 'UK')", "nested"),
    ("SELECT title FROM books WHERE price > (SELECT AVG(price) FROM books)", "nested"),
    ("SELECT t FROM (SELECT title AS t FROM books)", "nested"),
    ("SELECT title, RANK() OVER (ORDER BY price) FROM books", "window"),
    ("SELECT name FROM authors UNION SELECT title FROM books", "compound"),
    ("SELECT name FROM authors INTERSECT SELECT name FROM authors EXCEPT SELECT title FROM books", "compound"),
    # the first of SHAPES wins: a join with a subquery is a join, a subquery in a compound query is nested
    ("SELECT a.name FROM books AS b JOIN authors AS a ON b.author_id = a.id WHERE b.price > (SELECT AVG(price) "
     "FROM books)", "join"),
    ("SELECT name FROM authors WHERE id IN (SELECT author_id FROM books) UNION SELECT 'x'", "nested"),
    ("SELEC name FROM", "unparsed"), ("", "unparsed"), ("hello", "unparsed"),
])
def test_sql_shape(sql, shape):
    assert sql_shape(sql) == shape


def test_balanced_cut_lets_the_common_shape_give_way_and_keeps_the_order():
    single = [{"id": f"s{i}", "sql": f"SELECT title FROM books WHERE year > {i}"} for i in range(6)]
    join = [{"id": f"j{i}", "sql": f"SELECT title FROM books JOIN authors ON author_id = authors.id WHERE year > {i}"}
            for i in range(2)]
    agg = [{"id": f"a{i}", "sql": f"SELECT COUNT(*) FROM books WHERE year > {i}"} for i in range(3)]
    pairs = single[:4] + join[:1] + single[4:] + agg + join[1:]
    cut = balanced_cut(pairs, 7)
    # the shapes in turn (single, join, aggregate, single, join, aggregate, single): both joins stay, 6 singles give 3
    assert shape_counts(cut) == {"join": 2, "aggregate": 2, "single": 3}
    assert [p["id"] for p in cut] == ["s0", "s1", "s2", "j0", "a0", "a1", "j1"]  # the first of each, in order
    assert balanced_cut(pairs, 11) == pairs and balanced_cut(pairs, 50) == pairs and balanced_cut(pairs, 0) == []
    assert list(shape_counts(pairs)) == [s for s in SHAPES if s in {"join", "aggregate", "single"}]


def test_model_sql_prompts_take_the_levels_in_turn(tiny_db, tmp_path, monkeypatch):
    """The SQL filters stop at `want` survivors: with the prompts written level by level, that cut fell on the last
    levels (session 14: no model-written nested or window query among tvshow's 300 kept pairs). The prompts take
    the levels in turn, and the summary counts the kept pairs' shapes beside the seeds'."""
    import sqltune.synth as synth_mod

    asked = []
    per_level = {"single": "SELECT title FROM books WHERE year > {i}",
                 "join": "SELECT title FROM books JOIN authors ON books.author_id = authors.id WHERE year > {i}",
                 "aggregate": "SELECT COUNT(*) FROM books WHERE year > {i}",
                 "nested": "SELECT title FROM books WHERE price >= (SELECT MIN(price) FROM books WHERE year > {i})",
                 "window": "SELECT title, RANK() OVER (ORDER BY price) FROM books WHERE year > {i}"}
    text_level = {text: level for level, text in synth_mod.LEVELS.items()}

    def fake_chat(model, tok, prompts, desc="", **kw):
        if "SQL" not in desc:
            return ["Which rows does " + p.rsplit("SQL:\n", 1)[1].split("\n\n")[0] + " give?" for p in prompts]
        levels = [next(lv for text, lv in text_level.items() if text in p) for p in prompts]
        asked.extend(levels)
        return [f"```sql\n{per_level[lv].format(i=1900 + i)}\n```" for i, lv in enumerate(levels)]

    monkeypatch.setattr(synth_mod, "_load_writer", lambda name, device=None, role="writer": (role, None))
    monkeypatch.setattr(synth_mod, "chat", fake_chat)
    monkeypatch.setattr(synth_mod, "readback_sql", lambda model, tok, builder, qs, db, cfg:
                        [q.removeprefix("Which rows does ").removesuffix(" give?") for q in qs])
    cfg = SynthConfig(k=5, overgenerate=1.0, sources=("model",), model_sql_per_level=4, progress=False,
                      sql_max_new_tokens=64)
    res = synth(tiny_db, tmp_path / "m.jsonl", SEEDS, {"test": TEST}, model="w", cfg=cfg)
    assert asked == list(synth_mod.LEVELS) * 4
    kept = {sql_shape(c["sql"]) for c in res.kept}
    assert {"join", "nested", "window"} <= kept, kept  # a cut at 5 of 20 still holds the later levels
    summary = json.loads((tmp_path / "m.summary.json").read_text())
    assert summary["kept_by_shape"] == shape_counts(res.kept)
    assert summary["seed_shapes"] == {"join": 1, "aggregate": 1, "single": 2}


def test_sampled_model_sql_is_recorded_and_a_negative_temperature_refused(tiny_db, tiny_model_dir, tmp_path):
    out = tmp_path / "syn.jsonl"
    cfg = SynthConfig(k=3, progress=False, batch_size=8, max_new_tokens=8, model_sql_per_level=1, sql_temperature=0.9)
    synth(tiny_db, out, SEEDS, {"test": TEST}, model=str(tiny_model_dir), device=None, cfg=cfg)
    summary = json.loads((tmp_path / "syn.summary.json").read_text())
    assert summary["sql_temperature"] == 0.9 and summary["model_sql_per_level"] == 1
    gen = summary["model_sql_generation"]  # one SQL prompt per level; every row ended for one reason
    assert gen["n"] == 5 and gen["stopped_eos"] + gen["stopped_statement"] + gen["stopped_length"] + gen["stopped_loop"] == 5
    assert {"templates", "model_sql", "sql_filters"} <= set(summary["seconds"]) and summary["seconds"]["model_sql"] > 0
    with pytest.raises(SqltuneError, match="temperature"):
        synth(tiny_db, tmp_path / "x.jsonl", SEEDS, cfg=SynthConfig(k=3, sql_temperature=-1, progress=False))
    assert not (tmp_path / "x.jsonl").exists()


def test_model_written_sql_rows_end_with_their_statement(tiny_db, tmp_path, monkeypatch):
    """The SQL-writing call gets a stop that ends a row once its statement is complete (prose after a
    query would otherwise keep a sampled batch decoding) and its own token limit; the question-writing
    call gets no stop."""
    import sqltune.synth as synth_mod

    stops, limits = {}, {}

    def fake_chat(model, tok, prompts, desc="", stop=None, max_new_tokens=None, **kw):
        stops[desc], limits[desc] = stop, max_new_tokens
        if "SQL" in desc:
            return ["```sql\nSELECT title FROM books\n```\nThis query lists the titles."] * len(prompts)
        return ["Which rows does " + p.rsplit("SQL:\n", 1)[1].split("\n\n")[0] + " give?" for p in prompts]

    monkeypatch.setattr(synth_mod, "_load_writer", lambda name, device=None, role="writer": (role, None))
    monkeypatch.setattr(synth_mod, "chat", fake_chat)
    monkeypatch.setattr(synth_mod, "readback_sql", lambda model, tok, builder, qs, db, cfg:
                        [q.removeprefix("Which rows does ").removesuffix(" give?") for q in qs])
    cfg = SynthConfig(k=20, sources=("model",), model_sql_per_level=2, progress=False, sql_max_new_tokens=100)
    res = synth(tiny_db, tmp_path / "m.jsonl", [], {"test": TEST}, model="w", cfg=cfg)
    assert limits["synth: model-written SQL"] == 100 and limits["synth: questions"] == 96
    stop = stops["synth: model-written SQL"]
    assert stop("```sql\nSELECT title FROM books\n```") and stop("SELECT title FROM books;")
    assert not stop("SELECT title FROM") and stops["synth: questions"] is None
    assert [c["sql"] for c in res.kept] == ["SELECT title FROM books"]  # 10 replies, one distinct query
    assert json.loads((tmp_path / "m.summary.json").read_text())["sql_max_new_tokens"] == 100


def test_model_written_sql_limit_left_open_follows_the_seeds(tiny_db, tiny_model_dir, tmp_path, monkeypatch):
    """With no limit set, the SQL-writing call gets `sql_token_limit` of the writer's tokenizer and the seeds,
    and the summary records the limit used."""
    import sqltune.synth as synth_mod
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    limits = {}

    def fake_chat(model, tok, prompts, desc="", max_new_tokens=None, **kw):
        limits[desc] = max_new_tokens
        return ["```sql\nSELECT title FROM books\n```"] * len(prompts)

    monkeypatch.setattr(synth_mod, "_load_writer", lambda name, device=None, role="writer": (role, tok))
    monkeypatch.setattr(synth_mod, "chat", fake_chat)
    monkeypatch.setattr(synth_mod, "readback_sql", lambda model, tok, builder, qs, db, cfg: [None] * len(qs))
    long_seed = {"id": "long", "question": "All the titles, many times?",
                 "sql": "SELECT " + ", ".join(f"title AS t{i}" for i in range(60)) + " FROM books"}
    for seeds in ([], [*SEEDS, long_seed]):
        cfg = SynthConfig(k=5, sources=("model",), model_sql_per_level=1, progress=False)
        synth(tiny_db, tmp_path / "m.jsonl", seeds, {"test": TEST}, model="w", cfg=cfg)
        want = synth_mod.sql_token_limit(tok, seeds)
        assert limits["synth: model-written SQL"] == want
        assert json.loads((tmp_path / "m.summary.json").read_text())["sql_max_new_tokens"] == want
    assert want > synth_mod.SQL_TOKENS_FLOOR


def test_a_second_reader_must_agree_too(tiny_db, tmp_path, monkeypatch):
    """`reader`: after the writer's own read-back, a second model reads each question back; a pair whose
    second reading returns another result is rejected under its own reason, the others keep both SQLs.
    The models are stand-ins (questions carry their SQL; the reader misreads every other one); the
    execution, the filters and the writing are real."""
    import sqltune.synth as synth_mod

    loaded = []

    def fake_load(name, device=None, role="writer"):
        loaded.append((role, name))
        return role, None

    def fake_chat(model, tok, prompts, **kw):
        return ["Which rows does " + p.rsplit("SQL:\n", 1)[1].split("\n\n")[0] + " give?" for p in prompts]

    def fake_readback(model, tok, builder, questions, db, cfg):
        sqls = [q.removeprefix("Which rows does ").removesuffix(" give?") for q in questions]
        if model == "reader":
            return [sql if i % 2 == 0 else "SELECT 12345" for i, sql in enumerate(sqls)]
        return sqls

    monkeypatch.setattr(synth_mod, "_load_writer", fake_load)
    monkeypatch.setattr(synth_mod, "chat", fake_chat)
    monkeypatch.setattr(synth_mod, "readback_sql", fake_readback)
    cfg = SynthConfig(k=50, sources=("schema",), progress=False)
    alone = synth(tiny_db, tmp_path / "one.jsonl", [], {"test": TEST}, model="w", cfg=cfg)
    assert loaded == [("writer", "w")] and alone.kept and "second reader" not in " ".join(alone.rejected)
    loaded.clear()
    both = synth(tiny_db, tmp_path / "two.jsonl", [], {"test": TEST}, model="w", reader="r", cfg=cfg)
    assert loaded == [("reader", "r"), ("writer", "w")]  # both loaded before any work
    second = both.rejected["second reader: its SQL for the question returns another result"]
    assert len(alone.kept) == 50 and second > 0
    assert second == (len(both.kept) + second) // 2  # every other question misread by the reader, rejected
    assert len(both.kept) > 25  # the writer's read-back did not cut at k before the reader: more reached it
    assert all(c["provenance"]["reader"] == "r" and c["provenance"]["reader_sql"] == c["sql"]
               and c["provenance"]["roundtrip_sql"] == c["sql"] for c in both.kept)
    summary = json.loads((tmp_path / "two.summary.json").read_text())
    assert summary["reader"] == "r" and summary["kept"] == len(both.kept)
    # what the reader rejected is written beside the pairs, with the reason and its reading: with the kept pairs
    # it is the writer-only set (the set a run without --reader keeps: its shape-balanced cut to k)
    rejected = [json.loads(line) for line in (tmp_path / "two.rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == second == summary["rejected_pairs"]
    assert all(r["provenance"]["rejected"].startswith("second reader") and r["provenance"]["reader_sql"] ==
               "SELECT 12345" and r["provenance"]["roundtrip_sql"] == r["sql"] for r in rejected)
    union = sorted(both.kept + rejected, key=lambda c: c["id"])
    assert [(c["id"], c["sql"], c["question"]) for c in balanced_cut(union, 50)] == \
        [(c["id"], c["sql"], c["question"]) for c in alone.kept]
    assert (tmp_path / "one.rejected.jsonl").read_text() == ""  # nothing rejected once it had a question


def test_question_attempts_give_a_rejected_sql_a_question_in_the_next_style(tiny_db, tmp_path, monkeypatch):
    """`question_attempts`: the SQL whose question the read-back rejected gets a new question in the next style;
    a rejection is counted only when the last attempt fails too. Stand-in models: the writer's questions carry
    their SQL and their style, and its read-back misreads every question in the `plain` style."""
    import sqltune.synth as synth_mod
    from sqltune.synth import STYLES

    def fake_chat(model, tok, prompts, **kw):
        def sql_of(p):
            return p.rsplit("SQL:\n", 1)[1].split("\n\n")[0]

        def style(p):
            return next(name for name, text in STYLES.items() if text in p)
        return [f"Which rows does {sql_of(p)} give ({style(p)})?" for p in prompts]

    def fake_readback(model, tok, builder, questions, db, cfg):
        return ["SELECT 12345" if q.endswith("(plain)?") else q.removeprefix("Which rows does ").rsplit(" give (", 1)[0]
                for q in questions]

    monkeypatch.setattr(synth_mod, "_load_writer", lambda name, device=None, role="writer": (role, None))
    monkeypatch.setattr(synth_mod, "chat", fake_chat)
    monkeypatch.setattr(synth_mod, "readback_sql", fake_readback)
    runs = {}
    for n in (1, 2):
        cfg = SynthConfig(k=200, sources=("schema",), styles=("plain", "terse"), question_attempts=n, progress=False)
        runs[n] = synth(tiny_db, tmp_path / f"a{n}.jsonl", [], {"test": TEST}, model="w", cfg=cfg)
    one, two = runs[1], runs[2]
    rejected = one.rejected["round trip: the model's SQL for the question returns another result"]
    assert rejected > 0 and all(c["provenance"]["style"] == "terse" for c in one.kept)
    assert "question_attempt" not in one.kept[0]["provenance"]  # one attempt: the pairs are as before
    assert len(two.kept) == len(one.kept) + rejected  # every misread SQL got a terse question, read right
    assert "round trip: the model's SQL for the question returns another result" not in two.rejected
    retried = [c for c in two.kept if c["provenance"]["question_attempt"] == 2]
    assert len(retried) == rejected and all(c["provenance"]["style"] == "terse" and c["question"].endswith("(terse)?")
                                            for c in retried)
    assert all(set(c) == {"id", "question", "sql", "provenance"} for c in two.kept)  # no working keys left
    rows = [json.loads(line) for line in (tmp_path / "a2.jsonl").read_text().splitlines()]
    assert len(rows) == len(two.kept) and json.loads((tmp_path / "a2.summary.json").read_text())["question_attempts"] == 2
    # the rejected file holds the last attempt's failures only, each with the reading that failed it
    rej = [json.loads(line) for line in (tmp_path / "a1.rejected.jsonl").read_text().splitlines()]
    assert len(rej) == rejected and all(r["provenance"]["roundtrip_sql"] == "SELECT 12345"
                                        and r["provenance"]["style"] == "plain" for r in rej)
    assert (tmp_path / "a2.rejected.jsonl").read_text() == ""
    with pytest.raises(SqltuneError, match="question_attempts"):
        SynthConfig(question_attempts=0).validate()


def _cli(args, capsys):
    rc = main(args)
    return rc, capsys.readouterr()


def test_cli_bad_input_is_one_line_and_nothing_written(tiny_db, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "syn.jsonl"
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).execute("CREATE TABLE t (a INT)").connection.commit()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all")
    bad_seeds = write_jsonl(tmp_path / "bad.jsonl", [{"id": "b1", "question": "q?", "sql": "SELECT nope FROM books"}])
    for args, words in [
        (["--db", str(empty), "--template-questions"], "no tables with rows"),
        (["--db", str(garbage), "--template-questions"], "not a SQLite database"),
        (["--db", str(tiny_db), "--seeds", str(bad_seeds), "--template-questions"], "seed pair b1"),
        (["--db", str(tiny_db), "--seeds", str(tmp_path / "missing.jsonl"), "--template-questions"], "not found"),
        (["--db", str(tiny_db), "--teacher", str(tmp_path / "no-such-model")], "cannot be loaded"),
        (["--db", str(tiny_db), "--model", str(tiny_model_dir), "--reader", str(tmp_path / "no-such-model")],
         "the reader model"),
        (["--db", str(tiny_db), "--reader", str(tiny_model_dir), "--template-questions"], "needs model questions"),
        (["--db", str(tiny_db), "--reader", str(tiny_model_dir), "--no-readback"], "needs model questions"),
    ]:
        rc, cap = _cli(["synth", "--out", str(out), *args], capsys)
        assert rc != 0, args
        assert words in cap.err and "Traceback" not in cap.err and len(cap.err.strip().splitlines()) == 1, cap.err
        assert not out.exists() and not list(tmp_path.glob("syn.jsonl*"))


def test_cli_synth_template_questions(tiny_db, tmp_path, capsys):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    rc, cap = _cli(["synth", "--db", str(tiny_db), "--seeds", str(seeds), "--k", "10", "--template-questions",
                    "--overgenerate", "3", "--batch-size", "8", "--sql-max-new-tokens", "128",
                    "--out", str(tmp_path / "s.jsonl")], capsys)
    assert rc == 0 and "kept" in cap.out
    assert 0 < len((tmp_path / "s.jsonl").read_text().splitlines()) <= 10
    summary = json.loads((tmp_path / "s.summary.json").read_text())
    assert (summary["overgenerate"], summary["batch_size"], summary["sql_max_new_tokens"]) == (3.0, 8, 128)
    assert set(summary["seconds"]) == {"templates", "sql_filters"}  # no model: no model stages
    assert "seconds: templates " in cap.out and "sql filters" in cap.out
    kept = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    mix = ", ".join(f"{n} {shape}" for shape, n in shape_counts(kept).items())
    assert f"shapes: kept {mix}; seeds 1 join, 1 aggregate, 2 single" in cap.out
    assert summary["kept_by_shape"] == shape_counts(kept)
    rc, cap = _cli(["synth", "--db", str(tiny_db), "--template-questions", "--overgenerate", "0.5",
                    "--out", str(tmp_path / "bad.jsonl")], capsys)
    assert rc != 0 and "overgenerate" in cap.err and not (tmp_path / "bad.jsonl").exists()


def test_cli_synth_never_writes_over_an_input(tiny_db, tmp_path, capsys):
    """Not the pairs file, nor the summary or rejected pairs it writes beside them (`--out s.jsonl` writes
    s.summary.json: a seeds file of that name would be replaced)."""
    seeds = write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    held = write_jsonl(tmp_path / "s.summary.json", TEST)
    before = {p: p.read_bytes() for p in (seeds, held, tiny_db)}
    for args, words in [(["--seeds", str(seeds), "--out", str(seeds)], "--out"),
                        (["--holdout", str(held), "--out", str(tmp_path / "s.jsonl")], "--out's summary"),
                        (["--seeds", str(seeds), "--out", str(tiny_db)], "--out")]:
        rc, cap = _cli(["synth", "--db", str(tiny_db), "--k", "3", "--template-questions", *args], capsys)
        assert rc == 2 and f"{words} " in cap.err and "is also an input" in cap.err, cap.err
        assert len(cap.err.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.summary.json", "seeds.jsonl", "tiny.sqlite"]


def test_cli_synth_writes_into_a_folder_it_creates(tiny_db, tmp_path, capsys):
    """`--out new/sub/s.jsonl`: the folders are made. (Session 16: `check_writable` let the missing folder through
    as creatable, and the writer failed after the work with "No such file or directory".)"""
    out = tmp_path / "new" / "sub" / "s.jsonl"
    rc, cap = _cli(["synth", "--db", str(tiny_db), "--k", "5", "--template-questions", "--out", str(out)], capsys)
    assert rc == 0, cap.err
    assert out.read_text().strip() and json.loads((out.parent / "s.summary.json").read_text())["kept"] >= 1
    assert sorted(p.name for p in out.parent.iterdir()) == ["s.jsonl", "s.rejected.jsonl", "s.summary.json"]


# ----------------------------------------------------------------------------- checkpoint rule
def line(step, exact, loss=1.0):
    return {"step": step, "exact": exact, "valid_loss": loss}


def test_checkpoint_rule_keeps_untuned_model_on_noise():
    # 4 questions: one more right (+25 points) is within the noise of 4 questions (SE 0.25 at p0 = 0.5)
    assert choose_checkpoint([line(0, 0.5), line(10, 0.75)], n=4)["step"] == 0
    assert choose_checkpoint([line(0, 0.5), line(10, 1.0)], n=4)["step"] == 10
    # 100 questions: +10 points beats one SE (0.05); +3 does not
    assert choose_checkpoint([line(0, 0.5), line(10, 0.6), line(20, 0.55)], n=100)["step"] == 10
    assert choose_checkpoint([line(0, 0.5), line(10, 0.53)], n=100)["step"] == 0
    # at p0 = 1 the margin is still one question
    assert choose_checkpoint([line(0, 1.0), line(10, 1.0)], n=50)["step"] == 0
    # a worse tuned model never wins; no untuned line: plain best
    assert choose_checkpoint([line(0, 0.5), line(10, 0.2)], n=10)["step"] == 0
    assert choose_checkpoint([line(10, 0.2), line(20, 0.4)], n=10)["step"] == 20


def test_checkpoint_rule_breaks_a_tie_for_the_later_step():
    # session 24's exoplanets run on a bf16 CPU: steps 26 and 78 both 4 of 10; the earlier one had the lower valid
    # loss and was kept; dev halves (BENCHMARKS.md "Session 25") favour the later one
    h = [line(0, 0.2, 0.59), line(26, 0.4, 0.546), line(52, 0.3, 0.60), line(78, 0.4, 0.653), line(104, 0.3, 0.67)]
    assert choose_checkpoint(h, 10)["step"] == 78
    assert choose_checkpoint(h[:3], 10)["step"] == 26


def test_checkpoint_rule_judges_gains_on_valid_and_guards_with_the_synthetic_slice():
    """Lines scored on 10 valid + 20 synthetic questions. Step 0 answers every synthetic pair (they passed
    its own read-back): pooled, no trained checkpoint could beat it; split, valid decides the gain and the
    slice only vetoes forgetting."""
    valid = [f"v{i}" for i in range(10)]
    syn = [f"s{i}" for i in range(20)]

    def ln(step, v_right, s_right, loss=1.0):
        ids = valid[:v_right] + syn[:s_right]
        return {"step": step, "n": 30, "exact": len(ids) / 30, "valid_loss": loss, "exact_ids": ids}

    h = [ln(0, 5, 20), ln(10, 8, 19), ln(20, 9, 12)]
    assert choose_checkpoint(h, 30)["step"] == 0  # pooled: 25/30 vs 27/30 is within the noise of 30
    got = choose_checkpoint(h, 10, valid_ids=valid)
    assert got["step"] == 10 and got is h[1]  # +3 valid (margin 0.16); step 20's +4 forgot 8 synthetic pairs
    assert choose_checkpoint([ln(0, 5, 20), ln(10, 6, 20)], 10, valid_ids=valid)["step"] == 0  # +1 is noise
    assert choose_checkpoint([ln(0, 5, 20), ln(10, 9, 10)], 10, valid_ids=valid)["step"] == 0  # all forgot: keep 0
    assert choose_checkpoint([ln(10, 5, 20), ln(20, 6, 20)], 10, valid_ids=valid)["step"] == 20  # no step 0: best


def test_the_last_rule_takes_the_latest_step_unless_valid_or_the_slice_show_a_loss():
    """`rl.choose: last` (choose_latest): a trained step needs no proven gain, only no loss beyond the noise."""
    # valid at 100 % from the start (7 of 12 devsuite DBs): `noise` can never move, `last` takes the latest step
    h = [line(0, 1.0), line(10, 1.0), line(20, 1.0)]
    assert choose_checkpoint(h, 4)["step"] == 0 and choose_latest(h, 4)["step"] == 20
    # 4 questions: one fewer right (-25) is within one question of the margin, two fewer is a loss
    assert choose_latest([line(0, 0.75), line(10, 0.5)], 4)["step"] == 10
    assert choose_latest([line(0, 0.75), line(10, 0.25)], 4)["step"] == 0
    # the latest line that shows no loss, not the best one
    assert choose_latest([line(0, 0.5), line(10, 0.9), line(20, 0.6), line(30, 0.1)], 10)["step"] == 20
    # 100 questions: -10 points is a loss (margin 0.05), -3 is not
    assert choose_latest([line(0, 0.5), line(10, 0.4)], 100)["step"] == 0
    assert choose_latest([line(0, 0.5), line(10, 0.47)], 100)["step"] == 10
    assert choose_latest([], 4) is None
    assert choose_latest([line(10, 0.2), line(20, 0.1)], 10)["step"] == 20  # no step 0: the latest


def test_the_last_rule_is_vetoed_by_forgetting_the_synthetic_slice():
    valid = [f"v{i}" for i in range(4)]
    syn = [f"s{i}" for i in range(20)]

    def ln(step, v_right, s_right):
        ids = valid[:v_right] + syn[:s_right]
        return {"step": step, "n": 24, "exact": len(ids) / 24, "exact_ids": ids}

    h = [ln(0, 4, 20), ln(10, 4, 19), ln(20, 4, 10)]  # step 20 forgot half the slice
    got = choose_latest(h, 4, valid_ids=valid)
    assert got is h[1]  # the trainer's own line comes back
    assert choose_latest([ln(0, 4, 20), ln(10, 4, 5)], 4, valid_ids=valid)["step"] == 0


def test_checkpoint_rule_modes():
    h = [line(0, 1.0), line(10, 1.0)]
    assert checkpoint_rule(4)(h)["step"] == 0 and checkpoint_rule(4, mode="last")(h)["step"] == 10
    with pytest.raises(SqltuneError, match="unknown checkpoint rule"):
        checkpoint_rule(4, mode="best")


def test_heldout_split_and_seed_weighting():
    pairs = [{"id": f"p{i}", "question": f"q {i}", "sql": "SELECT 1", "provenance": {}} for i in range(10)]
    tr, held = split_heldout(pairs, 0.2, seed=0)
    assert len(held) == 2 and len(tr) == 8 and not {p["id"] for p in tr} & {p["id"] for p in held}
    items = weighted_training_items(SEEDS[:2], tr, 3)
    assert len(items) == 6 + 8 and len({i["id"] for i in items}) == 14
    assert [i["question"] for i in items[:6]].count(SEEDS[0]["question"]) == 3


def test_run_with_synth_stage(tiny_model_dir, tiny_db, tmp_path):
    from test_run import overrides

    from sqltune.run import run

    ov = overrides(tiny_model_dir, tiny_db, tmp_path)
    ov["train"]["epochs"] = 1
    ov["train"]["choose"] = "noise"  # the default recipe's is `last`; this checks the noise rule on the pooled lines
    ov["synth"] = {"enabled": True, "k": 10, "questions": "template", "heldout_fraction": 0.3, "seed_weight": 2}
    out = tmp_path / "run"
    metrics = run("default", out, overrides=ov)
    pairs = [json.loads(x) for x in (out / "synth.jsonl").read_text().splitlines()]
    assert 0 < len(pairs) <= 10 and "synth" in metrics["timings"]
    held = round(len(pairs) * 0.3)
    # the checkpoint was chosen on valid (2) + the held-out synthetic slice, by the noise rule
    history = [json.loads(x) for x in (out / "adapter" / "metrics.jsonl").read_text().splitlines()]
    assert history[0]["step"] == 0 and all(r["n"] == 2 + held for r in history)
    chosen = json.loads((out / "adapter" / "sqltune_checkpoint.json").read_text())
    want = choose_checkpoint(history, 2 + held)
    assert chosen["chosen"]["step"] == want["step"]


def test_synth_stage_k0_only_applies_the_checkpoint_rule(tmp_path, tiny_db):
    from sqltune.run import RunFolder, synth_stage

    items = {"train": SEEDS, "valid": TEST}
    c = {"synth": {"enabled": True, "k": 0, "select_z": 1.0}}
    tr, sel, base, choose = synth_stage(RunFolder(tmp_path / "r"), c, tiny_db, items, None, {"b": 1})
    assert tr == SEEDS and sel == TEST and base == {"b": 1} and not (tmp_path / "r" / "synth.jsonl").exists()
    assert choose([line(0, 0.0), line(5, 1.0)])["step"] == 0  # one question: +100 % is one question, not more
    # without synthetic pairs the same rule chooses (a tiny valid split must not pick a lucky checkpoint)
    off = synth_stage(RunFolder(tmp_path / "r2"), {"synth": {"enabled": False}}, tiny_db, items, None, None)
    assert off[:3] == (SEEDS, TEST, None) and not (tmp_path / "r2" / "synth.jsonl").exists()
    assert off[3]([line(0, 0.0), line(5, 1.0)])["step"] == 0


@pytest.mark.parametrize("rows,zero", [
    ([(0,)], True), ([(None,)], True), ([(0, None, 0.0)], True),   # COUNT of nothing, MAX over no rows, a zero sum
    ([(1,)], False), ([(0, "x")], False), ([("0",)], False),       # a non-zero value or any text is evidence
    ([(0,), (0,)], False), ([], False), ([()], False),             # two rows; empty results have their own reason
])
def test_zero_result(rows, zero):
    assert zero_result(rows) is zero


@pytest.mark.parametrize("question,sql,flagged", [
    # the 0.5B's misreading (session 9): "highest" for every qualifying row
    ("What is the highest Money_Rank where Best_Finish is greater than 2?",
     "SELECT Money_Rank FROM poker_player WHERE Best_Finish > 2", True),
    ("Which nationality has made the most money?", "SELECT Nationality FROM people", True),
    # an extreme the SQL computes: MAX/MIN, ORDER BY (with or without LIMIT), a window
    ("What is the highest Money_Rank where Best_Finish > 2?",
     "SELECT MAX(Money_Rank) FROM poker_player WHERE Best_Finish > 2", False),
    ("Who earned the most?", "SELECT name FROM people ORDER BY earnings DESC LIMIT 1", False),
    ("Eccentricity of each planet, from most to least eccentric", "SELECT name FROM p ORDER BY ecc DESC", False),
    ("The oldest person per country", "SELECT name, RANK() OVER (PARTITION BY country ORDER BY age) FROM p", False),
    # bounds and the schema's own words are not extremes; SQL that does not parse is not judged
    ("Players with at most 3 wins and at least 2 losses", "SELECT name FROM p WHERE wins <= 3 AND losses >= 2", False),
    ("What is the best finish of each player?", "SELECT Best_Finish FROM poker_player", False),
    ("What is the highest rank?", "SELECT FROM WHERE (", False),
    # the opposite extreme (session 11's flight_2 pairs): ascending order or MIN for "most" / "highest"
    ("Which country has the most airports?", "SELECT Country FROM airports GROUP BY Country ORDER BY count(*) LIMIT 1", True),
    ("The country with the highest number of airports", "SELECT c FROM a GROUP BY c ORDER BY count(*) ASC LIMIT 1", True),
    ("Who has the fewest wins?", "SELECT name FROM p WHERE wins = (SELECT MAX(wins) FROM p)", True),
    ("Which country has the most airports?", "SELECT c FROM a GROUP BY c ORDER BY count(*) DESC LIMIT 1", False),
    ("Who has the fewest wins?", "SELECT name FROM p ORDER BY wins LIMIT 1", False),
    # both directions asked, a direction that depends on the column, or both computed: not judged
    ("The highest and the lowest price", "SELECT MIN(price) FROM b", False),
    ("The earliest cartoon, NULL dates treated as the highest", "SELECT t FROM c ORDER BY d ASC NULLS LAST LIMIT 1", False),
    ("The oldest person", "SELECT name FROM p ORDER BY birth_year LIMIT 1", False),
    ("The most expensive book, ties by title", "SELECT t FROM b ORDER BY price DESC, title ASC LIMIT 1", False),
])
def test_extreme_not_computed(question, sql, flagged):
    skip = name_words(["poker_player", "Best_Finish", "Money_Rank", "FlightNo"])
    assert extreme_not_computed(question, sql, skip) is flagged


def test_name_words_split_snake_and_camel_case():
    assert name_words(["Best_Finish", "FlightNo", "people"]) == {"best", "finish", "flight", "no", "people"}


def test_validator_rejects_an_extreme_the_sql_lacks(tiny_db):
    v = Validator(tiny_db, LeakIndex(TEST, "test"), dedupe_results=True)
    lacks = {"question": "What is the highest price of a book after 1900?", "sql": "SELECT price FROM books WHERE year > 1900"}
    has = {"question": "What is the highest price of a book after 1900?", "sql": "SELECT MAX(price) FROM books WHERE year > 1900"}
    assert v.reject_reason(lacks).startswith("question asks for an extreme")
    assert v.reject_reason(has) is None


def test_question_prompts_of_all_styles_share_the_schema_prefix(tiny_db):
    """The KV cache of the prompts' common prefix is computed once per call (`generate_texts`): the styles
    and the SQL come after the schema, so every question prompt of a batch shares it."""
    import os

    from sqltune.schema import schema_text
    from sqltune.synth import QUESTION_PROMPT, STYLES

    schema = schema_text(tiny_db)
    prompts = [QUESTION_PROMPT.format(style=text, schema=schema, sql=f"SELECT {i} FROM books")
               for i, text in enumerate(STYLES.values())]
    assert schema in os.path.commonprefix(prompts)


def test_the_cli_and_a_recipe_take_their_synthesis_defaults_from_synthconfig():
    """One place for the defaults: `sqltune synth`'s options and a recipe's `synth:` section equal `SynthConfig`'s."""
    from dataclasses import asdict, fields

    import typer.main

    from sqltune.cli import app
    from sqltune.recipe import SynthSection

    cfg = SynthConfig()
    assert SynthConfig.from_section(asdict(SynthSection())) == cfg
    shared = [f.name for f in fields(SynthSection) if hasattr(cfg, f.name)]
    assert len(shared) >= 12  # k, sources, styles, questions, readback, ... seed
    cmd = typer.main.get_command(app).commands["synth"]
    given = {p.name: p.default for p in cmd.params}
    as_cli = {"model_sql_per_level": "sql_per_level", "questions": "template_questions"}
    for name in [f.name for f in fields(SynthConfig) if f.name not in ("progress", "max_new_tokens")]:
        value, option = getattr(cfg, name), given[as_cli.get(name, name)]
        if name in ("sources", "styles"):
            assert option.split(",") == list(value), name
        elif name == "questions":
            assert option is (value == "template"), name
        else:
            assert option == value, name


@pytest.mark.parametrize("question, sql, missing", [
    # session 11's flight_2 pairs: the value swapped, the question's wording kept
    ("List the countries of airlines that operate with the abbreviation 'UAL'.",
     "SELECT Country FROM airlines WHERE Airline = 'Frontier Airlines'", "ual"),
    ("How many airlines have the abbreviation 'Delta'?", 'SELECT count(*) FROM Airlines WHERE Airline = "Delta Airlines"',
     "delta"),
    ("Which airline is “JetBlue Airways”?", "SELECT uid FROM airlines WHERE Airline = 'United Airlines'", "jetblue airways"),
    # an apostrophe inside the quotes is part of the value (session 14: the SQL names no song at all)
    ('What is the birth year of the singer with the highest sales in the song "Do They Know It\'s Christmas"?',
     "SELECT T2.Birth_Year FROM song AS T1 JOIN singer AS T2 ON T1.Singer_ID = T2.Singer_ID ORDER BY T1.Sales DESC "
     "LIMIT 1", "do they know it's christmas"),
    ("Sales of the song 'Do They Know It's Christmas'?", "SELECT Sales FROM song WHERE Title = 'Do They Know It''s "
     "Christmas'", None),
    ("Sales of 'F**k It (I Don''t Want You Back)'?", "SELECT Sales FROM song WHERE Title = 'F**k It (I Don''t Want "
     "You Back)'", None),  # the SQL's escaped '' copied into the question
    # the value is there: as a literal (any case, LIKE's %, end punctuation, spaces), a number, or a name
    ("How many airlines have the abbreviation 'UAL'?", 'SELECT count(*) FROM airlines WHERE Abbreviation = "UAL"', None),
    ("Names that contain the substring 'Al' .", 'select name from contestants where name like "%al%"', None),
    ('The series of the cartoon "The Rise of the Blue Beetle"?', 'SELECT s FROM c WHERE Title = "The Rise of the Blue Beetle!"', None),
    ("Airports in 'Aberdeen'", "SELECT AirportCode FROM airports WHERE City = 'Aberdeen '", None),
    ("Flights with number '37'", "SELECT * FROM flights WHERE FlightNo = 37", None),
    ("Show the 'Best_Finish' of each player", "SELECT Best_Finish FROM poker_player", None),
    # no quotes, apostrophes only, or SQL that does not parse: nothing to judge
    ("What's the airline's name for uid 1?", "SELECT Airline FROM airlines WHERE uid = 1", None),
    ("Which airline is UAL?", "SELECT Airline FROM airlines WHERE Airline = 'Delta'", None),
    ("Abbreviation 'UAL'?", "SELECT FROM WHERE (", None),
])
def test_quoted_value_missing(question, sql, missing):
    assert quoted_value_missing(question, sql) == missing


def test_no_gold_question_of_exoplanets_quotes_a_value_its_sql_lacks():
    from sqltune.dataset import load_items

    items = [it for split in ("train", "valid", "test") for it in load_items(f"exoplanets:{split}")]
    quoting = [it for it in items if "'" in it["question"] or '"' in it["question"]]
    assert len(items) > 200 and quoting  # the check has quoted questions to judge
    assert [it["id"] for it in items if quoted_value_missing(it["question"], it["sql"])] == []


def test_validator_rejects_a_question_that_quotes_a_value_the_sql_lacks(tiny_db):
    v = Validator(tiny_db, LeakIndex(TEST, "test"), dedupe_results=True)
    swapped = {"question": "What is the price of the book titled 'Dune'?", "sql": "SELECT price FROM books WHERE title = 'Emma'"}
    assert v.question_reason(swapped) == "question quotes a value the SQL does not use"
    assert v.question_reason({**swapped, "sql": "SELECT price FROM books WHERE title = 'Dune'"}) is None


def test_sql_token_limit_follows_the_longest_seed(tiny_model_dir):
    """Left open, the model-written SQL's limit is the floor, or the longest seed (fenced) + the margin when
    that is more; a recipe or the CLI can still set it."""
    from transformers import AutoTokenizer

    from sqltune.synth import sql_token_limit
    from sqltune.synth_config import SQL_TOKENS_FLOOR, SQL_TOKENS_MARGIN

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert sql_token_limit(tok, []) == sql_token_limit(tok, SEEDS) == SQL_TOKENS_FLOOR
    cols = ", ".join(f"title AS t{i}" for i in range(60))
    long_sql = f"SELECT {cols} FROM books"
    n = len(tok(f"```sql\n{long_sql}\n```", add_special_tokens=False)["input_ids"])
    assert n > SQL_TOKENS_FLOOR
    assert sql_token_limit(tok, [*SEEDS, {"question": "q?", "sql": long_sql}]) == n + SQL_TOKENS_MARGIN
    assert SynthConfig().sql_max_new_tokens is None and SynthConfig(sql_max_new_tokens=64).validate()
    with pytest.raises(SqltuneError, match="sql_max_new_tokens"):
        SynthConfig(sql_max_new_tokens=8).validate()


def test_schema_source_spells_odd_names_as_the_schema_text_does(tmp_path):
    """Names a user's database may have (a space, brackets, a keyword SQLite refuses bare) are quoted in the
    generated SQL exactly as the prompt's schema text shows them, and the SQL runs; plain names stay bare."""
    from sqltune.schema import schema_text

    db = tmp_path / "odd.sqlite"
    con = sqlite3.connect(db)
    con.executescript(
        'CREATE TABLE "order" (id INT PRIMARY KEY, "Order Date" TEXT, "Ratings_(millions)" REAL, Year INT);'
        "INSERT INTO \"order\" VALUES (1, '2020-01-01', 5.2, 2020), (2, '2021-02-02', 6.7, 2021), "
        "(3, '2021-02-02', 7.1, 2022);")
    con.commit()
    con.close()
    cands = from_schema(catalog(db), random.Random(0))
    assert cands and all(execute(db, c["sql"]).ok for c in cands)
    text = schema_text(db)
    assert 'CREATE TABLE "order"' in text and '"Order Date" TEXT' in text and "  Year INT" in text
    sqls = " ".join(c["sql"] for c in cands)
    assert 'FROM "order"' in sqls and '"Year"' not in sqls  # a plain name is not quoted where the schema shows it bare
