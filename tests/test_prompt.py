"""The prompt styles render, share a prefix, and lock an adapter to the template it was trained with."""

import json

import pytest

from sqltune.errors import SqltuneError
from sqltune.prompt import STYLES, PromptBuilder, check_fingerprint, encode

SCHEMA = "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT, year INTEGER);"
Q = "How many books were published after 1900?"


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from sqltune.model import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


def test_chat_style_goes_through_the_chat_template(tok):
    p = PromptBuilder(SCHEMA, "chat").prompt(tok, Q)
    assert p.startswith("<|im_start|>system\n") and p.endswith("<|im_start|>assistant\n")
    assert SCHEMA in p and Q in p
    assert p.index(SCHEMA) < p.index(Q)


def test_premsql_style_is_prem_1b_sqls_documented_prompt(tok):
    p = PromptBuilder(SCHEMA, "premsql").prompt(tok, Q)
    for part in ("# Follow these instruction:", "# Database and Table Schema:\n" + SCHEMA, f"# Question: {Q}"):
        assert part in p
    assert p.endswith("# SQL: ")


def test_seed_style_is_the_original_projects_string(tok):
    p = PromptBuilder(SCHEMA, "seed").prompt(tok, Q)
    assert p.endswith(f"Context: {SCHEMA}\nQuestion: {Q}\nSQL Query: ")


@pytest.mark.parametrize("style", STYLES)
def test_every_prompt_starts_with_the_shared_prefix(tok, style):
    b = PromptBuilder(SCHEMA, style)
    prefix = b.prefix(tok)
    assert SCHEMA in prefix and Q not in prefix
    for q in (Q, "List titles", "What is the newest book?"):
        assert b.prompt(tok, q).startswith(prefix)
        assert encode(tok, b.prompt(tok, q))[: len(encode(tok, prefix)) - 1] == encode(tok, prefix)[:-1]


@pytest.mark.parametrize("style", STYLES)
def test_fewshot_examples_render_in_every_style(tok, style):
    ex = [{"question": "List titles", "sql": "SELECT title FROM books"}]
    p = PromptBuilder(SCHEMA, style).prompt(tok, Q, ex)
    assert "List titles" in p and "SELECT title FROM books" in p
    assert p.index("SELECT title FROM books") < p.rindex(Q)


def test_unknown_style_is_refused():
    with pytest.raises(SqltuneError, match="unknown prompt style 'alpaca'"):
        PromptBuilder(SCHEMA, "alpaca")


def test_fingerprint_changes_with_schema_style_and_fewshot(tok):
    base = PromptBuilder(SCHEMA, "chat").fingerprint(tok)
    assert PromptBuilder(SCHEMA, "chat").fingerprint(tok) == base
    for other in (PromptBuilder(SCHEMA + " ", "chat"), PromptBuilder(SCHEMA, "seed"),
                  PromptBuilder(SCHEMA, "chat", [{"question": "q", "sql": "SELECT 1"}])):
        assert other.fingerprint(tok)["sha256"] != base["sha256"]


# ---------------------------------------------------------------- template locking on load
def _adapter(tmp_path, tiny_model_dir, prompt: dict, base=None):
    """A real (untrained) LoRA adapter folder with sqltune's checkpoint metadata."""
    from peft import LoraConfig, get_peft_model

    from sqltune.model import load_model, pick_device

    model, _, _ = load_model(str(tiny_model_dir), pick_device("cpu", "float32"))
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    out = tmp_path / "adapter"
    peft.save_pretrained(out)
    meta = {"base_model": base or str(tiny_model_dir), "prompt": prompt, "schema_db": "tiny.sqlite"}
    (out / "sqltune_checkpoint.json").write_text(json.dumps(meta))
    (out / "COMPLETE").write_text("")
    return out


def test_adapter_with_matching_template_loads(tmp_path, tiny_model_dir, tiny_db, tok):
    from sqltune.evaluate import load_for_inference
    from sqltune.schema import schema_text

    fp = PromptBuilder(schema_text(tiny_db), "seed").fingerprint(tok)
    adapter = _adapter(tmp_path, tiny_model_dir, fp)
    model, tok2, builder = load_for_inference(None, adapter, "cpu", None, tiny_db)
    assert builder.style == "seed"  # the adapter's own style by default
    assert builder.fingerprint(tok2) == fp


def test_adapter_with_another_template_is_refused(tmp_path, tiny_model_dir, tiny_db, exo_db, tok):
    from sqltune.evaluate import load_for_inference
    from sqltune.schema import schema_text

    fp = PromptBuilder(schema_text(tiny_db), "chat").fingerprint(tok)
    adapter = _adapter(tmp_path, tiny_model_dir, fp)
    with pytest.raises(SqltuneError, match="different prompt template") as e:
        load_for_inference(None, adapter, "cpu", None, exo_db)  # another database: another schema text
    first = next(i for i, (x, y) in enumerate(zip(fp["template"].splitlines(),
                                                   PromptBuilder(schema_text(exo_db), "chat").template(tok).splitlines()))
                 if x != y)
    assert f"first difference, line {first + 1}: trained with " in str(e.value)  # the user sees what changed
    assert "CREATE TABLE" in str(e.value).split("first difference")[1]
    with pytest.raises(SqltuneError, match="prompt style 'chat', not 'seed'"):
        load_for_inference(None, adapter, "cpu", "seed", tiny_db)
    tampered = dict(fp, sha256="0" * 64)
    (adapter / "sqltune_checkpoint.json").write_text(json.dumps({"base_model": str(tiny_model_dir), "prompt": tampered}))
    assert (adapter / "COMPLETE").is_file()
    with pytest.raises(SqltuneError, match="different prompt template"):
        load_for_inference(None, adapter, "cpu", None, tiny_db)


def test_adapter_folder_problems_are_one_clear_error(tmp_path, tiny_model_dir, tiny_db):
    from sqltune.evaluate import load_for_inference

    with pytest.raises(SqltuneError, match="folder not found"):
        load_for_inference(None, tmp_path / "nope", "cpu", None, tiny_db)
    with pytest.raises(SqltuneError, match="not a sqltune checkpoint"):
        load_for_inference(None, tmp_path, "cpu", None, tiny_db)
    (tmp_path / "sqltune_checkpoint.json").write_text(json.dumps({"base_model": "x/y", "prompt": {"style": "chat"}}))
    with pytest.raises(SqltuneError, match="unfinished checkpoint"):
        load_for_inference(None, tmp_path, "cpu", None, tiny_db)
    (tmp_path / "COMPLETE").write_text("")
    with pytest.raises(SqltuneError, match="trained on 'x/y', not 'other'"):
        load_for_inference("other", tmp_path, "cpu", None, tiny_db)


def test_check_fingerprint_directly(tok):
    b = PromptBuilder(SCHEMA, "premsql")
    check_fingerprint(b.fingerprint(tok), b, tok)
    with pytest.raises(SqltuneError):
        check_fingerprint(PromptBuilder(SCHEMA, "seed").fingerprint(tok), b, tok)


def test_merged_model_folder_is_locked_too(tmp_path, tiny_model_dir, tiny_db, exo_db, tok):
    """`--model MERGED` (a whole-model checkpoint) is held to its prompt like an adapter."""
    import shutil

    from sqltune.evaluate import load_for_inference
    from sqltune.schema import schema_text

    merged = tmp_path / "merged"
    shutil.copytree(tiny_model_dir, merged)
    fp = PromptBuilder(schema_text(tiny_db), "premsql").fingerprint(tok)
    (merged / "sqltune_checkpoint.json").write_text(json.dumps({"base_model": str(tiny_model_dir), "prompt": fp}))
    (merged / "COMPLETE").write_text("")
    _, _, builder = load_for_inference(str(merged), None, "cpu", None, tiny_db)
    assert builder.style == "premsql"
    with pytest.raises(SqltuneError, match="different prompt template"):
        load_for_inference(str(merged), None, "cpu", None, exo_db)


def test_first_difference_names_the_line_and_both_texts():
    from sqltune.prompt import _first_difference

    old = "schema:\nCREATE TABLE Friend (\n  student_id INT PRIMARY KEY REFERENCES Highschooler(ID),\n);"
    new = "schema:\nCREATE TABLE Friend (\n  student_id INT REFERENCES Highschooler(ID),\n);"
    msg = _first_difference(old, new)
    assert msg.startswith("; first difference, line 3: ")
    assert "'  student_id INT PRIMARY KEY REFERENCES Highschooler(ID),'" in msg
    assert "now '  student_id INT REFERENCES Highschooler(ID),'" in msg
    assert _first_difference("a", "a\nb") == "; first difference, line 2: trained with '(end)', now 'b'"
    assert _first_difference("a", "a") == "" and _first_difference(None, "a") == ""
    assert "…" in _first_difference("x" * 300, "y") and "\n" not in _first_difference("x" * 300, "y")


@pytest.mark.parametrize("style", STYLES)
def test_the_reviewer_prompt_shows_the_schema_and_the_query_and_ends_where_the_question_goes(tok, style):
    """`PromptBuilder.review`: the panel's reviewer scores the question as what follows this text, so it must hold the
    schema and the SQL, end open (chat: the assistant's turn begins), and not be the SQL-writing prompt."""
    b = PromptBuilder("CREATE TABLE books (title TEXT);", style)
    text = b.review(tok, "SELECT title\n  FROM books")
    assert "CREATE TABLE books" in text and text != b.prompt(tok, "SELECT title FROM books")
    if style == "chat":
        assert "write the question it answers" in text and "SELECT title\n  FROM books" in text
        opening = b.prompt(tok, "@@").split("@@")[-1]  # what the template puts between a user turn and the reply
        assert text.endswith(opening) and opening.strip()
    else:
        assert text.endswith("SQL Query: SELECT title FROM books\nQuestion: ")


@pytest.mark.parametrize("style", STYLES)
def test_the_reviewer_prompt_shows_examples_sql_first_before_the_query_and_the_same_prefix_for_every_query(tok, style):
    """With training pairs the reviewer sees each pair the other way round from the writing prompt (its SQL, then its
    question), in order, before the query judged; everything before the judged query is the same for two queries, so
    `vote.review_scores` runs it once."""
    b = PromptBuilder("CREATE TABLE books (title TEXT);", style)
    shots = [{"question": "How many books?", "sql": "SELECT count(*) FROM books"},
             {"question": "List the titles.", "sql": "SELECT title FROM books"}]
    one, two = b.review(tok, "SELECT 1", shots), b.review(tok, "SELECT 2", shots)
    at = [one.index(x) for x in ("SELECT count(*) FROM books", "How many books?", "SELECT title FROM books",
                                 "List the titles.", "SELECT 1")]
    assert at == sorted(at)
    cut = one.index("SELECT 1")
    assert two[:cut] == one[:cut] and b.review(tok, "SELECT 1", []) == b.review(tok, "SELECT 1")
    assert b.review(tok, "SELECT 1") != one


@pytest.mark.parametrize("style", STYLES)
def test_the_reviewer_prompt_can_show_the_query_result_as_the_correction_prompt_shows_results(tok, style):
    """`review(..., result=)`: the query's column names and first rows follow it (one formatter with the vote's
    correction prompt: `result_preview`, rows and cells cut), still before where the question goes; without a result
    the prompt is as before."""
    from sqltune.prompt import CORRECTION_ROWS, result_preview

    b = PromptBuilder("CREATE TABLE books (title TEXT, pages INT);", style)
    rows = [["A very long title " * 5, 10], ["B", None], ["C", 3], ["D", 4]]
    text = b.review(tok, "SELECT title, pages FROM books", result={"columns": ["title", "pages"], "rows": rows})
    preview = result_preview(["title", "pages"], rows)
    assert preview.startswith("First rows (title | pages):\n") and preview.count("\n") == CORRECTION_ROWS
    assert "..." in preview and "| None" in preview and "D | 4" not in preview
    assert preview in text and text.index("SELECT title, pages FROM books") < text.index("First rows")
    assert result_preview(["n"], []) == "First rows (n):\n(none)"
    plain = b.review(tok, "SELECT title, pages FROM books")
    assert "First rows" not in plain and b.review(tok, "SELECT title, pages FROM books", result=None) == plain
    if style != "chat":
        assert text.endswith(preview + "\nQuestion: ")
