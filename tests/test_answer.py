"""The Python API behind `sqltune ask` (`sqltune.load(...).ask(...)`), on the tiny model taught to write one query."""

from __future__ import annotations

import json

import pytest

import sqltune
from sqltune.errors import SqltuneError
from taught import ANSWER, QUESTIONS

pytestmark = pytest.mark.usefixtures("one_thread")

AUTHORS = [("Ada", "UK"), ("Borges", "AR"), ("Calvino", "IT"), ("Dickens", "UK")]


@pytest.fixture(scope="module")
def model(taught, taught_db):
    return sqltune.load(str(taught), db=taught_db, device="cpu")


def test_ask_writes_sql_and_runs_it_read_only(model, taught_db):
    a = model.ask(QUESTIONS[0])
    assert a.question == QUESTIONS[0] and a.sql == ANSWER.rstrip(";")
    assert a.ok and a.error is None and a.columns == ["name", "country"] and [tuple(r) for r in a.rows] == AUTHORS
    assert a.vote is None and a.fallback is None and a.seconds > 0  # the greedy SQL ran: no vote was drawn
    assert json.loads(json.dumps(a.to_dict(), default=str))["sql"] == a.sql  # to_dict leaves out what is None
    assert "vote" not in a.to_dict() and a.to_dict()["error"] is None  # as `ask --json`: error always there


def test_ask_many_answers_in_order_in_one_batch_as_one_at_a_time(model):
    got = model.ask_many(QUESTIONS)
    assert [a.question for a in got] == QUESTIONS
    for a in got:
        one = model.ask(a.question)
        assert (a.sql, a.columns, a.rows, a.error) == (one.sql, one.columns, one.rows, one.error)


def test_row_cap_and_timeout_are_the_executors(taught, taught_db):
    capped = sqltune.load(str(taught), db=taught_db, device="cpu", max_rows=2).ask(QUESTIONS[0])
    assert capped.rows == [] and capped.error_kind == "too_many_rows"  # the executor's cap, not a silent cut


def test_bad_questions_and_settings_are_one_clear_error(model, taught, taught_db, tmp_path):
    for bad in ("", "   "):
        with pytest.raises(SqltuneError, match="non-empty text"):
            model.ask(bad)
    with pytest.raises(SqltuneError, match="takes a list"):
        model.ask_many("How many books?")
    # every setting is checked before the model loads
    cases = [(dict(fallback="base"), "--fallback base needs --adapter or --run"),
             (dict(fallback="tuned"), "--fallback must be one of none, base, vote"),
             (dict(vote=0), "vote"), (dict(timeout=0), "timeout must be positive"),
             (dict(retries=-1), "retries must be >= 0"), (dict(retries=1, vote=4), "do not combine"),
             (dict(db=tmp_path / "none.sqlite"), "none.sqlite"),
             (dict(run=tmp_path, adapter=tmp_path), "give a run folder or an adapter, not both"),
             (dict(run=tmp_path), "not a sqltune run folder")]
    for kw, message in cases:
        kw = {"db": taught_db, **kw}
        with pytest.raises(SqltuneError, match=message):
            sqltune.load("/nonexistent-model", **kw)


def test_a_run_folder_gives_its_adapter_db_and_fallback(taught_db, tmp_path, monkeypatch):
    import sqltune.evaluate as ev
    from sqltune.checkpoint import CHECKPOINT_META, COMPLETE

    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / COMPLETE).write_text("")
    (run / "adapter" / CHECKPOINT_META).write_text("{}")
    (run / "recipe.json").write_text(json.dumps({"model": "m", "data": {"db": str(taught_db)}, "prompt": {"style": "seed"},
                                                 "eval": {"fallback": "base"}}))
    seen = {}

    def fake_load(model, adapter, device, style, dbp, notes, merge=True, base=None):
        seen.update(adapter=adapter, style=style, db=str(dbp), merge=merge)
        return None, None, None

    monkeypatch.setattr(ev, "load_for_inference", fake_load)
    m = sqltune.load(run=run)
    assert seen == {"adapter": str(run / "adapter"), "style": "seed", "db": str(taught_db), "merge": False}
    assert m.fallback == "base" and m.db == str(taught_db)  # the run's fallback: the adapter loads unmerged
    assert sqltune.load(run=run, fallback="none").fallback == "none" and seen["merge"] is True
    assert m.repair is True  # a run from before eval.repair: on, as the recipes are now
    (run / "recipe.json").write_text(json.dumps({"model": "m", "data": {"db": str(taught_db)}, "eval": {"repair": False}}))
    assert sqltune.load(run=run).repair is False and sqltune.load(run=run, repair=True).repair is True
    assert sqltune.load(db=taught_db).repair is True and sqltune.load(db=taught_db, repair=False).repair is False


def test_a_run_with_the_panel_gives_its_training_pairs_as_the_examples_pool(taught_db, tmp_path, monkeypatch):
    """`eval.fallback: panel` (the default recipe's): `ask --run` and `serve --run` answer as the run scored, with the
    untuned model's examples retrieved from the run's own training pairs."""
    import sqltune.evaluate as ev
    from sqltune.checkpoint import CHECKPOINT_META, COMPLETE

    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / COMPLETE).write_text("")
    (run / "adapter" / CHECKPOINT_META).write_text("{}")
    pairs = [{"question": f"How many authors {i}?", "sql": "SELECT COUNT(*) FROM authors"} for i in range(3)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    (run / "recipe.json").write_text(json.dumps({"model": "m", "data": {"db": str(taught_db), "train": str(tmp_path / "train.jsonl"),
                                                                        "valid": str(tmp_path / "train.jsonl")},
                                                 "prompt": {"style": "seed"}, "eval": {"fallback": "panel"}}))
    monkeypatch.setattr(ev, "load_for_inference", lambda *a, **k: (None, None, None))
    m = sqltune.load(run=run)
    assert m.fallback == "panel" and [(e["question"], e["sql"]) for e in m.fewshot_pool] == [(p["question"], p["sql"]) for p in pairs]
    assert sqltune.load(run=run, fallback="base").fewshot_pool is None  # only the panel reads them
    assert sqltune.load(run=run, fewshot_pool=pairs[:1]).fewshot_pool == pairs[:1]  # given: taken as given
    assert not m.untuned_model  # a trained adapter: the adapter's panel
    (run / "adapter" / CHECKPOINT_META).write_text(json.dumps({"prompt": {}, "chosen": {"step": 0, "untrained": True}}))
    assert sqltune.load(run=run).untuned_model  # training kept step 0: the untuned model's own panel
    assert not sqltune.load(run=run, fallback="base").untuned_model
    plain = sqltune.load(db=taught_db, fallback="panel", fewshot_pool=pairs)  # no adapter at all: the untuned model
    assert plain.untuned_model and plain.fewshot_pool == pairs and plain.fallback == "panel"
    # the panel's sizes as the run scored: a run from before the fourth voter had none; a newer one says its own
    assert m.panel == {"panel_fewshot": 4, "panel_tuned_fewshot": 0, "panel_judge": "vote"} and plain.panel == {}
    recipe = json.loads((run / "recipe.json").read_text())
    recipe["eval"].update(panel_fewshot=3, panel_tuned_fewshot=2, panel_judge="reviewer")
    (run / "recipe.json").write_text(json.dumps(recipe))
    m = sqltune.load(run=run)
    seen = []
    monkeypatch.setattr(ev, "predict", lambda model, tok, builder, items, db, cfg: seen.append(cfg) or
                        [{"sql": "SELECT COUNT(*) FROM authors", "error": None} for _ in items])
    assert m.ask("How many authors?").rows
    assert (seen[0].panel_fewshot, seen[0].panel_tuned_fewshot, seen[0].panel_judge) == (3, 2, "reviewer")
    assert sqltune.load(run=run, panel_judge="vote").panel["panel_judge"] == "vote"  # given: over the run's
    with pytest.raises(SqltuneError, match="--panel-judge must be one of vote, reviewer"):
        sqltune.load(run=run, panel_judge="jury")


def test_a_run_on_a_relative_db_path_says_so_from_elsewhere(taught_db, tmp_path, monkeypatch):
    """`sqltune run --db my.sqlite` records the path as given; `ask --run`/`load(run=)` from another folder said only
    'database not found: my.sqlite'. A run now records the absolute path too (inputs.json `db_path`), used where the
    path as given is not found; a run from before it, or whose database has moved, says why."""
    import sqltune.evaluate as ev
    from sqltune.checkpoint import CHECKPOINT_META, COMPLETE

    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / COMPLETE).write_text("")
    (run / "adapter" / CHECKPOINT_META).write_text("{}")
    (run / "recipe.json").write_text(json.dumps({"model": "m", "data": {"db": "my.sqlite"}, "prompt": {"style": "seed"}}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(SqltuneError, match="relative to the folder `sqltune run` was started in.*give the database"):
        sqltune.load(run=run)
    monkeypatch.setattr(ev, "load_for_inference", lambda *a, **k: (None, None, None))
    assert sqltune.load(run=run, db=taught_db).db == str(taught_db)  # the database given again
    (run / "inputs.json").write_text(json.dumps({"db": "0" * 64}))  # a run from before `db_path` was recorded: the same
    with pytest.raises(SqltuneError, match=r"no my.sqlite here \(.*\): work from that folder, or give the database"):
        sqltune.load(run=run)
    (run / "inputs.json").write_text(json.dumps({"db": "0" * 64, "db_path": str(tmp_path / "gone.sqlite")}))
    with pytest.raises(SqltuneError, match="nor at .*gone.sqlite, where the run found it: give the database"):
        sqltune.load(run=run)
    (run / "inputs.json").write_text(json.dumps({"db": "0" * 64, "db_path": str(taught_db)}))
    assert sqltune.load(run=run).db == str(taught_db)  # the absolute path the run recorded
    (elsewhere / "my.sqlite").write_bytes(taught_db.read_bytes())
    assert sqltune.load(run=run).db == "my.sqlite"  # from the folder the run was started in: the path as given


def test_a_run_on_a_relative_notes_file_and_model_folder_loads_from_elsewhere(tiny_model_dir, tmp_path, monkeypatch):
    """recipe.json keeps data.notes and `model` as `sqltune run` was given them, maybe relative to the folder it was
    started in (`--set model=models/mine`), and the run's adapter records that model as its base; `load(run=)` (as
    `ask --run` and `serve --run`, through `serve.run_settings`) from another folder read the notes file from here
    ('notes file not found', or another schema than the adapter was trained with) and the base model as a hub id. It
    finds both in the folder the run recorded (inputs.json `started_in`), and the adapter's prompt check passes."""
    import shutil

    from peft import LoraConfig, get_peft_model

    from sqltune.checkpoint import CHECKPOINT_META, COMPLETE
    from sqltune.model import load_model, pick_device
    from sqltune.prompt import PromptBuilder
    from sqltune.schema import schema_text
    from conftest import make_tiny_db

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copytree(tiny_model_dir, project / "models" / "mine")
    db = make_tiny_db(project / "my.sqlite")
    (project / "notes.md").write_text("Prices are in euros, a note only the run's notes file has.\n")
    run = project / "runs" / "r1"
    base, tok, _ = load_model(str(tiny_model_dir), pick_device("cpu", "float32"))
    get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(run / "adapter")
    trained = PromptBuilder(schema_text(db, project / "notes.md"), "seed")
    (run / "adapter" / CHECKPOINT_META).write_text(json.dumps({"base_model": "models/mine",
                                                               "prompt": trained.fingerprint(tok)}))
    (run / "adapter" / COMPLETE).write_text("")
    (run / "recipe.json").write_text(json.dumps({"model": "models/mine", "prompt": {"style": "seed"},
                                                 "data": {"db": "my.sqlite", "notes": "notes.md"}}))
    (run / "inputs.json").write_text(json.dumps({"db": "0" * 64, "db_path": str(db), "started_in": str(project)}))
    monkeypatch.chdir(elsewhere)
    m = sqltune.load(run=run, device="cpu", dtype="float32")
    assert "a note only the run's notes file has" in m.builder.schema and m.db == str(db)
    assert m.builder.fingerprint(m.tokenizer) == trained.fingerprint(tok)
    (project / "notes.md").unlink()  # moved away: one clear error, not another schema
    with pytest.raises(SqltuneError, match="data.notes notes.md, a path relative .* nor in .*project, where the run"):
        sqltune.load(run=run, device="cpu")


def test_run_model_finds_only_relative_paths_in_the_folder_the_run_was_started_in(tmp_path, monkeypatch):
    """Packaged names and hub ids stay as they are; a relative model folder (or .gguf) found from here stays too."""
    from sqltune.run import run_model

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "models" / "mine").mkdir(parents=True)
    (project / "Qwen2.5-Coder-0.5B").mkdir()
    (project / "small.gguf").write_text("")
    elsewhere.mkdir()
    run = project / "run"
    run.mkdir()
    (run / "inputs.json").write_text(json.dumps({"started_in": str(project)}))
    monkeypatch.chdir(elsewhere)
    assert run_model(run, "models/mine") == str(project / "models" / "mine")
    assert run_model(run, "small.gguf") == str(project / "small.gguf")
    for same in ("qwen2.5-coder-0.5b", "Qwen/Qwen2.5-Coder-0.5B", None, str(project / "models" / "mine"), "nowhere/x"):
        assert run_model(run, same) == same
    (elsewhere / "models" / "mine").mkdir(parents=True)
    assert run_model(run, "models/mine") == "models/mine"  # found from here: as given, as `run_file` does
    (run / "inputs.json").write_text(json.dumps({"db": "0" * 64}))  # a run from before `started_in` was recorded
    assert run_model(run, "small.gguf") == "small.gguf"


def test_the_cli_ask_is_the_api(capsys, taught, taught_db, monkeypatch):
    """`sqltune ask` prints what `load(...).ask(...)` answers (the same SQL and rows)."""
    from sqltune.cli import main

    code = main(["ask", QUESTIONS[1], "--model", str(taught), "--db", str(taught_db), "--device", "cpu", "--json"])
    out = json.loads(capsys.readouterr().out)
    a = sqltune.load(str(taught), db=taught_db, device="cpu").ask(QUESTIONS[1])
    assert code == 0 and out["sql"] == a.sql and [tuple(r) for r in out["rows"]] == [tuple(r) for r in a.rows]
    capsys.readouterr()
    code = main(["ask", QUESTIONS[1], "--run", str(taught_db.parent), "--adapter", str(taught_db.parent)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "give a run folder or an adapter, not both" in err


def test_ask_answers_with_the_schema_repair_where_the_sql_fails(tiny_db, monkeypatch):
    """Where the model's SQL fails on a column the schema has in a neighbour table, `ask` answers with the rewrite
    (`repaired` keeps what the model wrote and its error); `repair=False` answers as written."""
    from dataclasses import replace

    from sqltune.answer import SQLModel
    from sqltune.model import pick_device
    from test_evaluate import REPAIR_WRITES, _Plain, _stub_generate

    _stub_generate(monkeypatch, REPAIR_WRITES)
    q = "Book titles with their author names?"
    m = SQLModel(_Plain(), None, None, str(tiny_db), pick_device("cpu", "float32"))
    a = m.ask(q)
    assert a.ok and "JOIN authors" in a.sql and len(a.rows) == 6
    assert a.repaired["sql"] == REPAIR_WRITES[q] and "no such column" in a.repaired["error"]
    assert a.to_dict()["repaired"] == a.repaired
    ok = m.ask("How many books?")  # SQL that runs is never touched
    assert ok.ok and ok.repaired is None and ok.sql == REPAIR_WRITES["How many books?"]
    off = replace(m, repair=False).ask(q)
    assert not off.ok and off.repaired is None and off.sql == REPAIR_WRITES[q]
