"""`sqltune serve`: the JSON API through FastAPI's TestClient, with the tiny model taught one answer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from taught import ANSWER, QUESTIONS  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SQL = ANSWER.rstrip(";")
AUTHORS = [["Ada", "UK"], ["Borges", "AR"], ["Calvino", "IT"], ["Dickens", "UK"]]


@pytest.fixture(scope="module")
def engine(taught, taught_db, tmp_path_factory):
    from sqltune.serve import Engine, ServeConfig

    fb = tmp_path_factory.mktemp("serve_fb") / "feedback.jsonl"
    return Engine(ServeConfig(model=str(taught), db=str(taught_db), device="cpu", feedback=str(fb), max_question_chars=200,
                              max_body_bytes=4096))


@pytest.fixture(scope="module")
def client(engine):
    from sqltune.serve import create_app

    with TestClient(create_app(engine)) as c:
        yield c


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def error_of(r, status: int, kind: str | None = None) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert "Traceback" not in r.text and isinstance(body["error"], str) and body["error"]
    if kind:
        assert body["error_kind"] == kind, body
    return body["error"]


# ---------------------------------------------------------------- answers
def test_ask_writes_sql_runs_it_and_returns_rows(client):
    r = client.post("/api/ask", json={"question": "Which authors are there?"})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["sql"] == SQL and a["error"] is None and a["error_kind"] is None
    assert a["columns"] == ["name", "country"] and a["rows"] == AUTHORS
    assert a["row_count"] == 4 and a["truncated"] is False and a["seconds"] > 0


def test_ask_max_rows_truncates_the_rows_sent(client):
    a = client.post("/api/ask", json={"question": "Which authors are there?", "max_rows": 2}).json()
    assert a["rows"] == AUTHORS[:2] and a["row_count"] == 4 and a["truncated"] is True


def test_the_cached_prefix_gives_the_same_tokens_without_recomputing_it(engine):
    from sqltune.generate import GenerationStats, generate_texts

    prompts = [engine.builder.prompt(engine.tokenizer, q) for q in ("Who wrote Aleph?", "Any books from 1972?")]
    assert engine.prefix.covers([engine.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts])
    fresh, reused = GenerationStats(), GenerationStats()
    kw = dict(progress=False, autocast=engine.device.autocast)  # the prefix was computed under the same setting
    a = generate_texts(engine.model, engine.tokenizer, prompts, stats=fresh, **kw)
    b = generate_texts(engine.model, engine.tokenizer, prompts, stats=reused, prefix=engine.prefix, **kw)
    assert [x[0] for x in a] == [x[0] for x in b]
    assert fresh.prefix_tokens > 0 and reused.prefix_tokens == 0  # the prefix forward was skipped
    one = generate_texts(engine.model, engine.tokenizer, prompts[:1], prefix=engine.prefix, **kw)
    assert one[0][0] == a[0][0]  # a lone question (no sharing of its own) uses the cache too


def test_concurrent_questions_are_decoded_as_one_batch(engine):
    from sqltune.serve import Batcher

    b = Batcher(engine, batch_size=8, max_wait=1.0)
    try:
        questions = [QUESTIONS[0]] * 5  # the same question: rows of one batch must not disturb each other
        futures = [b.submit(q) for q in questions]
        gens = [f.result(timeout=60) for f in futures]
    finally:
        b.close()
    assert [g["question"] for g in gens] == questions
    assert [g["raw"] for g in gens] == [engine.generate(questions[:1])[0]["raw"]] * 5 and gens[0]["sql"] == SQL
    assert b.batches == 1 and b.largest == 5
    assert engine.prefix_reused >= 2  # the batch and the lone question both started from the cached prefix


def test_schema_and_health(client, engine, taught_db):
    s = client.get("/api/schema").json()
    assert [t["name"] for t in s["tables"]] == ["authors", "books", "sales"]
    assert {"name": "title", "type": "TEXT", "pk": False, "fk": None} in s["tables"][1]["columns"]
    assert "CREATE TABLE" in s["text"] or "authors" in s["text"]
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["db"] == str(taught_db) and h["adapter"] is None
    assert h["prompt"]["sha256"] == engine.builder.fingerprint(engine.tokenizer)["sha256"]
    assert h["prefix_tokens"] > 50 and h["served"]["questions"] >= 0


def test_page_and_openapi_docs(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="question"' in page.text and "/api/ask" in page.text
    assert "http://" not in page.text.replace("http://www.w3.org", "")  # nothing fetched from elsewhere: works offline
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/ask", "/api/schema", "/api/health", "/api/feedback", "/api/execute"} <= set(paths)


# ---------------------------------------------------------------- bad input: 4xx JSON, never a 500
@pytest.mark.parametrize("body, status, kind", [
    ({"question": ""}, 400, "bad_request"),
    ({"question": "   \n"}, 400, "bad_request"),
    ({"question": "x" * 201}, 400, "too_large"),
    ({}, 422, "invalid"),
    ({"question": ["a"]}, 422, "invalid"),
    ({"question": "ok?", "max_rows": -1}, 400, "bad_request"),
    ({"question": "ok?", "vote": 0}, 400, "bad_request"),
    ({"question": "ok?", "vote": 1000}, 400, "bad_request"),
])
def test_bad_questions_are_json_errors(client, body, status, kind):
    error_of(client.post("/api/ask", json=body), status, kind)


def test_a_body_that_is_not_json(client):
    assert "JSON" in error_of(client.post("/api/ask", content=b"question=hi",
                                          headers={"content-type": "application/json"}), 400, "bad_json")
    error_of(client.post("/api/ask", content=b"\xff\xfe{", headers={"content-type": "application/json"}), 400, "bad_json")


def test_lone_surrogates_are_refused_not_a_500(client, engine):
    """JSON may escape half a UTF-16 pair; no tokenizer, SQLite or UTF-8 response can hold it."""
    f = engine.feedback_file
    size = f.stat().st_size if f.exists() else 0
    for path, body in [("/api/ask", b'{"question": "Who \\ud800?"}'),
                       ("/api/execute", b'{"sql": "SELECT \'\\udc80\'"}'),
                       ("/api/feedback", b'{"question": "\\ud800", "sql": "SELECT 1", "correct": true}'),
                       ("/api/feedback", b'{"question": "q", "sql": "SELECT \'\\ud800\'", "correct": false, '
                                         b'"fixed_sql": "SELECT 1"}')]:
        assert "surrogate" in error_of(client.post(path, content=body, headers={"content-type": "application/json"}),
                                       400, "bad_request")
    assert (f.stat().st_size if f.exists() else 0) == size


def test_oversized_bodies_are_refused_declared_or_streamed(client):
    big = json.dumps({"question": "x" * 5000}).encode()
    error_of(client.post("/api/ask", content=big, headers={"content-type": "application/json"}), 413, "too_large")

    def chunks():  # no content-length: the server counts while reading
        for _ in range(10):
            yield b" " * 1000

    error_of(client.post("/api/ask", content=chunks(), headers={"content-type": "application/json"}), 413, "too_large")


def test_unknown_paths_and_methods_are_json(client):
    error_of(client.get("/api/nothing"), 404, "not_found")
    error_of(client.get("/api/ask"), 405, "method_not_allowed")


def test_vote_goes_through_the_evaluator(client, engine, monkeypatch):
    """A request with `vote` > 1 is `sqltune eval --vote n`'s answer (`evaluate.predict` -> `vote.predict_rows`:
    n candidates sampled, executed, the majority result wins), with the candidates and groups in the response."""
    import sqltune.evaluate as ev
    import sqltune.vote as vote_mod
    from sqltune.vote import Candidate

    calls, rows = [], []
    real = ev.predict

    def sample(model, tok, builder, questions, n, **kw):
        calls.append((questions, n))
        count = "SELECT count(*) AS n FROM books"
        return [[Candidate(SQL, SQL, -0.1, greedy=True)] + [Candidate(count, count, -0.5)] * (n - 1)]

    monkeypatch.setattr(vote_mod, "sample_sql", sample)
    monkeypatch.setattr(ev, "predict", lambda *a, **kw: rows.extend(out := real(*a, **kw)) or out)
    a = client.post("/api/ask", json={"question": "How many books?", "vote": 3}).json()
    assert calls == [(["How many books?"], 3)] and len(rows) == 1  # one evaluator call, n candidates
    assert a["sql"] == "SELECT count(*) AS n FROM books" and a["rows"] == [[6]] and a["voted"] is True
    assert len(a["candidates"]) == 3 and [g["votes"] for g in a["groups"]] == [2, 1]
    assert a["sql"] == rows[0]["sql"] and rows[0]["overruled"]  # the vote outvoted the greedy candidate


def test_serve_vote_is_the_default_for_requests_that_name_none(engine, monkeypatch):
    """`sqltune serve --vote 4` (ServeConfig.vote): a request without "vote" is voted over 4; "vote": 1 is greedy."""
    from dataclasses import replace

    from sqltune.serve import create_app

    seen = []
    monkeypatch.setattr(engine, "vote", lambda q, n: seen.append(n) or {"sql": SQL, "candidates": [], "groups": []})
    with TestClient(create_app(engine, replace(engine.config, vote=4))) as c:
        assert c.post("/api/ask", json={"question": "How many books?"}).json()["sql"] == SQL
        assert seen == [4]
        assert "candidates" not in c.post("/api/ask", json={"question": "How many books?", "vote": 1}).json()
        assert seen == [4]


def test_a_token_is_required_when_set(engine):
    from dataclasses import replace

    from sqltune.serve import create_app

    with TestClient(create_app(engine, replace(engine.config, token="s3cret"))) as c:
        error_of(c.get("/api/health"), 401, "unauthorized")
        error_of(c.get("/api/health", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        error_of(c.post("/api/ask", json={"question": "hi"}, headers={"Authorization": "Basic s3cret"}), 401)
        assert c.get("/api/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        r = c.post("/api/ask", json={"question": "Which authors are there?"}, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and r.json()["rows"] == AUTHORS
        assert c.get("/").status_code == 200  # the page loads, then asks for the token


# ---------------------------------------------------------------- feedback and hostile SQL
def test_feedback_saves_pairs_that_run_and_training_reads_them(client, engine):
    from sqltune.dataset import load_items

    f = engine.feedback_file
    before = f.read_text().count("\n") if f.exists() else 0
    r = client.post("/api/feedback", json={"question": "Which authors are there?", "sql": SQL, "correct": True})
    assert r.status_code == 200 and r.json()["saved"] is True, r.text
    fixed = "SELECT title FROM books WHERE year > 1900"
    r = client.post("/api/feedback", json={"question": "Books after 1900?", "sql": SQL, "correct": False,
                                           "fixed_sql": fixed})
    assert r.status_code == 200 and r.json()["row_count"] == 3, r.text
    error_of(client.post("/api/feedback", json={"question": "Wrong?", "sql": SQL, "correct": False}), 400)
    error_of(client.post("/api/feedback", json={"question": "", "sql": SQL, "correct": True}), 400)
    error_of(client.post("/api/feedback", json={"question": "q", "sql": "SELEC nothing", "correct": True}), 400, "sql_error")
    error_of(client.post("/api/feedback", json={"question": "q", "correct": "maybe"}), 422)
    rows = [json.loads(x) for x in f.read_text().splitlines()]
    assert len(rows) == before + 2
    assert rows[-1]["sql"] == fixed and rows[-1]["model_sql"] == SQL and rows[-1]["fixed"] is True
    items = load_items(f)  # what `sqltune run --data FILE` reads
    assert [(i["question"], i["sql"]) for i in items[-2:]] == [("Which authors are there?", SQL), ("Books after 1900?", fixed)]


def test_a_feedback_file_that_cannot_be_written_says_so(client, engine, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("mine\n")
    monkeypatch.setattr(engine, "feedback_file", blocker / "feedback.jsonl")
    r = client.post("/api/feedback", json={"question": "Which authors are there?", "sql": SQL, "correct": True})
    assert f"cannot save feedback to {blocker / 'feedback.jsonl'}" in error_of(r, 500, "unwritable")
    assert blocker.read_text() == "mine\n"


def test_serve_feedback_that_cannot_be_written_is_one_line_before_any_model_load(tmp_path, capsys):
    from sqltune.cli import main

    assert main(["serve", "--model", str(tmp_path / "no-such-model"), "--feedback", str(tmp_path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert f"--feedback {tmp_path} is a folder" in err and "Traceback" not in err


HOSTILE = [
    "DROP TABLE authors",
    "DELETE FROM authors",
    "INSERT INTO authors VALUES (9, 'Eve', 'XX')",
    "UPDATE books SET price = 0",
    "CREATE TABLE t (x)",
    "ATTACH DATABASE 'evil.sqlite' AS evil",
    "PRAGMA writable_schema = 1",
    "VACUUM",
    "SELECT 1; DROP TABLE authors",
    "SELECT load_extension('/tmp/evil')",
    "REPLACE INTO authors VALUES (1, 'X', 'Y')",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
]


def test_hostile_fixed_sql_leaves_the_database_byte_identical(client, engine, taught_db):
    f = engine.feedback_file
    size = f.stat().st_size if f.exists() else 0
    before, mtime = digest(taught_db), taught_db.stat().st_mtime_ns
    engine.config.timeout = 0.5  # the endless recursive query is stopped by the executor's timeout
    try:
        for sql in HOSTILE:
            error_of(client.post("/api/feedback", json={"question": "q", "sql": SQL, "correct": False, "fixed_sql": sql}),
                     400, "sql_error")
            r = client.post("/api/execute", json={"sql": sql})
            assert r.status_code == 200 and r.json()["error"] and r.json()["rows"] == [], sql
    finally:
        engine.config.timeout = 5.0
    assert digest(taught_db) == before and taught_db.stat().st_mtime_ns == mtime
    assert (f.stat().st_size if f.exists() else 0) == size
    ok = client.post("/api/execute", json={"sql": "SELECT count(*) AS n FROM authors"}).json()
    assert ok["rows"] == [[4]] and ok["error"] is None


def test_cells_that_json_cannot_hold_are_sent_as_text(client):
    r = client.post("/api/execute", json={"sql": "SELECT x'00ff' AS b, 1e999 AS inf, -1e999 AS ninf, NULL AS n"})
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [["x'00ff'", "inf", "-inf", None]]


# ---------------------------------------------------------------- the command
def test_serve_warns_off_loopback_and_loads_once(monkeypatch, taught, taught_db, tmp_path):
    import uvicorn

    from sqltune.serve import ServeConfig, serve

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: seen.update(app=app, host=host, port=port))
    logs: list[str] = []
    serve(ServeConfig(model=str(taught), db=str(taught_db), device="cpu", feedback=str(tmp_path / "f.jsonl")),
          host="0.0.0.0", port=8123, log=logs.append)
    assert logs[0].startswith("warning: listening on 0.0.0.0") and "--token" in logs[0]
    assert seen["host"] == "0.0.0.0" and seen["port"] == 8123
    logs.clear()
    serve(ServeConfig(model=str(taught), db=str(taught_db), device="cpu"), host="127.0.0.1", log=logs.append)
    assert not any(m.startswith("warning") for m in logs)


def test_serve_run_that_is_not_a_run_is_one_line(tmp_path, capsys):
    from sqltune.cli import main

    assert main(["serve", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a sqltune run folder" in err and "Traceback" not in err


def test_serve_run_beside_an_adapter_is_one_line(tmp_path, capsys):
    """`serve --run` with `--adapter` is refused in the words `ask --run` and `sqltune.load(run=..., adapter=...)` use:
    one function (`run_settings`) applies a run folder's settings for all three."""
    from sqltune.cli import main

    assert main(["serve", "--run", str(tmp_path), "--adapter", str(tmp_path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "give a run folder or an adapter, not both" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("text", ["{broken", "[1]", '{"data": 5}', '{"prompt": "chat"}'])
def test_serve_run_with_a_damaged_recipe_is_one_line(tmp_path, capsys, text):
    from sqltune.cli import main

    (tmp_path / "recipe.json").write_text(text)
    assert main(["serve", "--run", str(tmp_path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "is not a sqltune run's recipe" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_port_in_use_is_one_line_before_any_model_load(tmp_path, capsys):
    import socket

    from sqltune.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--model", str(tmp_path / "no-such-model"), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


def test_run_paths_picks_the_runs_adapter_and_db(tmp_path):
    from sqltune.errors import SqltuneError
    from sqltune.serve import run_paths

    (tmp_path / "recipe.json").write_text(json.dumps({"model": "m", "data": {"db": "x.sqlite"}, "prompt": {"style": "seed"}}))
    with pytest.raises(SqltuneError, match="no finished adapter"):
        run_paths(tmp_path)
    from sqltune.checkpoint import CHECKPOINT_META, COMPLETE

    for name in ("adapter", "adapter_augmented"):
        (tmp_path / name).mkdir()
        (tmp_path / name / COMPLETE).write_text("")
        (tmp_path / name / CHECKPOINT_META).write_text("{}")
        got = run_paths(tmp_path)
        assert got["adapter"] == str(tmp_path / name) and got["db"] == "x.sqlite" and got["prompt_style"] == "seed"
        assert got["fallback"] == "none"  # a recipe without eval.fallback
        assert got["panel"] == {"panel_fewshot": 4, "panel_tuned_fewshot": 0,  # from before the fourth voter
                                "panel_judge": "vote"}  # and the reviewer
    # with GRPO's adapter and the stages' valid reports: GRPO's output stands for SFT (its rule already chose
    # between them), and between it and the augmented round the best valid exact is served (ties: the later)
    (tmp_path / "adapter_rl").mkdir()
    (tmp_path / "adapter_rl" / COMPLETE).write_text("")
    (tmp_path / "adapter_rl" / CHECKPOINT_META).write_text("{}")

    def valid(stage, exact):
        (tmp_path / f"{stage}_valid_report.json").write_text(json.dumps({"summary": {"exact": exact}}))

    valid("tuned", 0.5), valid("rl", 0.7), valid("augmented", 0.6)
    assert run_paths(tmp_path)["adapter"] == str(tmp_path / "adapter_rl")
    valid("augmented", 0.7)
    assert run_paths(tmp_path)["adapter"] == str(tmp_path / "adapter_augmented")
    valid("rl", 0.45), valid("augmented", 0.1)  # within the noise below SFT's 0.5: the GRPO rule kept that step
    assert run_paths(tmp_path)["adapter"] == str(tmp_path / "adapter_rl")
    import shutil

    shutil.rmtree(tmp_path / "adapter_rl")  # no GRPO stage: SFT against the augmented round
    assert run_paths(tmp_path)["adapter"] == str(tmp_path / "adapter")


def test_serve_vote_when_error_votes_only_when_greedy_fails(engine, monkeypatch):
    """`sqltune serve --vote 4 --vote-when error`: the greedy SQL that runs is the answer (one candidate, no
    samples drawn); greedy SQL that fails is replaced by the vote's choice."""
    from dataclasses import replace

    import sqltune.vote as vote_mod
    from sqltune.serve import create_app
    from sqltune.vote import Candidate

    calls = []

    def fake(model, tok, builder, questions, n, **kw):
        calls.append(n)
        greedy = "SELECT count(*) AS n FROM books" if "books" in questions[0] else "SELECT nope FROM books"
        return [[Candidate(greedy, greedy, -0.1, greedy=True)] + [Candidate(SQL, SQL, -0.5)] * (n - 1)]

    monkeypatch.setattr(vote_mod, "sample_sql", fake)
    cfg = replace(engine.config, vote=4, vote_when="error")
    monkeypatch.setattr(engine, "config", cfg)  # as `serve` builds them: Engine(config), create_app(engine, config)
    with TestClient(create_app(engine, cfg)) as c:
        a = c.post("/api/ask", json={"question": "How many books?"}).json()
        assert calls == [1] and a["voted"] is False and a["sql"] == "SELECT count(*) AS n FROM books"
        assert len(a["candidates"]) == 1 and a["error"] is None
        calls.clear()
        b = c.post("/api/ask", json={"question": "Something odd?"}).json()
        assert calls == [1, 4] and b["voted"] is True and b["sql"] == SQL and len(b["candidates"]) == 4


def test_cli_serve_refuses_a_bad_vote_when(capsys):
    from sqltune.cli import main

    assert main(["serve", "--vote", "4", "--vote-when", "sometimes"]) == 2
    err = capsys.readouterr().err
    assert "--vote-when must be one of always, error" in err and "Traceback" not in err


def test_engine_merges_the_adapter_unless_told_not_to(tiny_db, monkeypatch):
    """`sqltune serve --no-merge`: the adapter stays unmerged, as `sqltune run` scored it."""
    import sqltune.evaluate as ev
    from sqltune.errors import SqltuneError
    from sqltune.serve import Engine, ServeConfig

    seen = []

    def fake_load(*args, merge=True, **kw):
        seen.append(merge)
        raise SqltuneError("stop here")

    monkeypatch.setattr(ev, "load_for_inference", fake_load)
    for cfg in (ServeConfig(db=str(tiny_db)), ServeConfig(db=str(tiny_db), merge=False)):
        with pytest.raises(SqltuneError, match="stop here"):
            Engine(cfg)
    assert seen == [True, False]


def test_serve_run_from_another_folder_finds_the_runs_notes_and_model_folder(tiny_db, tmp_path, monkeypatch):
    """`serve --run` reads a run's settings through `run_settings`, as `ask --run` and `sqltune.load(run=)` do: a
    relative data.notes and a relative model folder (the adapter's recorded `base_model`) are found in the folder the
    run was started in (inputs.json `started_in`), not read from here, so the prompt is the one the adapter learned."""
    import sqltune.evaluate as ev
    from sqltune.checkpoint import CHECKPOINT_META, COMPLETE
    from sqltune.errors import SqltuneError
    from sqltune.serve import Engine, ServeConfig

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "models" / "mine").mkdir(parents=True)
    elsewhere.mkdir()
    (project / "notes.md").write_text("a note\n")
    run = project / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / COMPLETE).write_text("")
    (run / "adapter" / CHECKPOINT_META).write_text(json.dumps({"base_model": "models/mine", "prompt": {}}))
    (run / "recipe.json").write_text(json.dumps({"model": "models/mine", "data": {"db": str(tiny_db), "notes": "notes.md"}}))
    (run / "inputs.json").write_text(json.dumps({"db": "0" * 64, "started_in": str(project)}))
    seen = {}

    def fake_load(model, adapter, device, style, db, notes, merge=True, base=None):
        seen.update(notes=notes, base=base)
        raise SqltuneError("stop here")

    monkeypatch.setattr(ev, "load_for_inference", fake_load)
    monkeypatch.chdir(elsewhere)
    with pytest.raises(SqltuneError, match="stop here"):
        Engine(ServeConfig(run_dir=str(run)))
    assert seen == {"notes": str(project / "notes.md"), "base": str(project / "models" / "mine")}
    (elsewhere / "models" / "mine").mkdir(parents=True)  # found from here: the checkpoint's record loads as it is
    with pytest.raises(SqltuneError, match="stop here"):
        Engine(ServeConfig(run_dir=str(run), notes=str(project / "notes.md")))
    assert seen == {"notes": str(project / "notes.md"), "base": None}


def test_engine_fallback_needs_an_adapter_and_loads_it_unmerged(tiny_db, tmp_path, monkeypatch):
    import sqltune.evaluate as ev
    from sqltune.errors import SqltuneError
    from sqltune.serve import Engine, ServeConfig

    seen = []

    def fake_load(*args, merge=True, **kw):
        seen.append(merge)
        raise SqltuneError("stop here")

    monkeypatch.setattr(ev, "load_for_inference", fake_load)
    with pytest.raises(SqltuneError, match="--fallback base needs an adapter"):
        Engine(ServeConfig(db=str(tiny_db), fallback="base"))
    with pytest.raises(SqltuneError, match="--fallback must be one of none, base"):
        Engine(ServeConfig(db=str(tiny_db), adapter=str(tmp_path), fallback="tuned"))
    with pytest.raises(SqltuneError, match="--fallback vote needs at least 2 candidates per model"):
        Engine(ServeConfig(db=str(tiny_db), adapter=str(tmp_path), fallback="vote", pool=1))
    with pytest.raises(SqltuneError, match="stop here"):
        Engine(ServeConfig(db=str(tiny_db), adapter=str(tmp_path), fallback="base"))  # --merge is the default
    with pytest.raises(SqltuneError, match="stop here"):
        Engine(ServeConfig(db=str(tiny_db), adapter=str(tmp_path), fallback="vote"))
    assert seen == [False, False]


def test_serving_a_run_scored_with_the_pooled_vote_serves_it_the_same_way(tiny_db, tmp_path, monkeypatch, capsys):
    """`sqltune run qwen0.5b-gpu` (`eval.fallback: vote`) then `sqltune serve --run`: the run's adapter is served
    with the pooled vote, its pool as large as the run's `eval.vote`, loaded unmerged; `--fallback base` still wins."""
    import sqltune.evaluate as ev
    from sqltune.checkpoint import CHECKPOINT_META, COMPLETE
    from sqltune.errors import SqltuneError
    from sqltune.serve import Engine, ServeConfig

    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / COMPLETE).write_text("")
    (run / "adapter" / CHECKPOINT_META).write_text("{}")
    (run / "recipe.json").write_text(json.dumps({"model": "m", "data": {"db": str(tiny_db)}, "prompt": {"style": "chat"},
                                                 "eval": {"fallback": "vote", "vote": 4}}))
    seen = []

    def fake_load(*args, merge=True, **kw):
        seen.append(merge)
        raise SqltuneError("stop here")

    monkeypatch.setattr(ev, "load_for_inference", fake_load)
    cfg = ServeConfig(run_dir=str(run))
    with pytest.raises(SqltuneError, match="stop here"):
        Engine(cfg)
    assert (cfg.fallback, cfg.pool) == ("vote", 4) and seen == [False]
    assert "note:" not in capsys.readouterr().err
    cfg = ServeConfig(run_dir=str(run), fallback="base")
    with pytest.raises(SqltuneError, match="stop here"):
        Engine(cfg)
    assert (cfg.fallback, cfg.pool) == ("base", 8)


@pytest.mark.parametrize("vote", [1, 4])
def test_serve_pooled_vote_weighs_both_models_where_their_answers_differ(engine, monkeypatch, vote):
    """`sqltune serve --fallback vote`, greedy (vote 1) or voted: the untuned model answers too; where the results
    differ both draw `pool` candidates and the majority wins (the evaluator's `pool_vote`), and the response says
    what was pooled and whose answer it is."""
    from dataclasses import replace

    import sqltune.evaluate as ev
    from sqltune.generate import Generation
    from sqltune.serve import create_app
    from test_evaluate import POOL_WRITES, _Adapted, _fake_sampling

    def greedy(model, tok, builder, questions, db, cfg, examples=None, stats=None, prefix=None):
        from sqltune.execute import execute

        gens = [Generation(q, raw=POOL_WRITES[model.off][q][0], sql=POOL_WRITES[model.off][q][0], seconds=0.01)
                for q in questions]
        for g in gens:
            g.error = execute(db, g.sql).error
        return gens

    monkeypatch.setattr(ev, "predict_questions", greedy)
    _fake_sampling(monkeypatch, asked := [])
    monkeypatch.setattr(engine, "model", _Adapted())
    cfg = replace(engine.config, fallback="vote", pool=4, vote=vote, vote_when="error")
    monkeypatch.setattr(engine, "config", cfg)
    with TestClient(create_app(engine, cfg)) as c:
        a = c.post("/api/ask", json={"question": "How many authors?"}).json()  # both models agree: not pooled
        assert a["sql"] == "SELECT COUNT(*) FROM authors" and "pool" not in a and "fallback" not in a
        assert asked[-1] == (True, ["How many authors?"], 1)  # the untuned model's greedy answer, and no more
        b = c.post("/api/ask", json={"question": "Names of the UK authors?"}).json()
        assert b["sql"] == "SELECT name FROM authors WHERE country = 'UK'" and sorted(r[0] for r in b["rows"]) == ["Ada", "Dickens"]
        assert b["pool"]["sql"] == "SELECT name FROM authors" and b["pool"]["votes"] == 7
        assert [(off, n) for off, _, n in asked[-2:]] == [(False, 4), (True, 4)]
        d = c.post("/api/ask", json={"question": "How many books?"}).json()  # the adapter's right answer outvoted
        assert d["sql"] == "SELECT COUNT(*) FROM authors" and d["pool"]["source"] == "base"
        assert d["fallback"]["sql"] == "SELECT COUNT(*) FROM books"
        h = c.get("/api/health").json()
        assert (h["fallback"], h["pool"]) == ("vote", 4)


@pytest.mark.parametrize("vote", [1, 4])
def test_serve_fallback_answers_with_the_untuned_model_where_the_adapters_sql_fails(engine, monkeypatch, vote):
    """`sqltune serve --fallback base`: greedy (vote 1) or voted, an answer whose SQL fails is asked again with the
    adapter switched off; the response carries the untuned model's SQL, its rows and what the adapter wrote."""
    from dataclasses import replace

    import sqltune.vote as vote_mod
    from sqltune.serve import create_app
    from sqltune.vote import Candidate
    from test_evaluate import WRITES, _Adapted, _fake_generation

    _fake_generation(monkeypatch, asked := [])
    monkeypatch.setattr(vote_mod, "sample_sql", lambda model, tok, builder, questions, n, **kw: [
        [Candidate(WRITES[model.off][q], WRITES[model.off][q], -0.1, greedy=j == 0) for j in range(n)] for q in questions])
    monkeypatch.setattr(engine, "model", _Adapted())
    cfg = replace(engine.config, fallback="base", vote=vote, vote_when="error", repair=False)
    monkeypatch.setattr(engine, "config", cfg)
    with TestClient(create_app(engine, cfg)) as c:
        a = c.post("/api/ask", json={"question": "Names of the UK authors?"}).json()
        assert a["sql"] == "SELECT name FROM authors WHERE country = 'UK'" and a["error"] is None
        assert sorted(r[0] for r in a["rows"]) == ["Ada", "Dickens"]
        assert a["fallback"]["sql"] == WRITES[False]["Names of the UK authors?"] and "nam" in a["fallback"]["error"]
        b = c.post("/api/ask", json={"question": "How many authors?"}).json()  # the adapter's SQL runs: its answer
        assert b["sql"] == "SELECT COUNT(*) FROM authors" and "fallback" not in b
        d = c.post("/api/ask", json={"question": "Titles after 1900?"}).json()  # both fail: the adapter's stays
        assert d["sql"] == WRITES[False]["Titles after 1900?"] and d["error"] and "fallback" not in d


@pytest.mark.parametrize("vote", [1, 4])
def test_serve_repairs_an_answer_that_fails_where_the_fallback_failed_too(engine, monkeypatch, vote):
    """`serve` (repair on by default): where the adapter's SQL and the untuned model's both fail, the adapter's is
    rewritten against the schema (`titel` is `books.title`); the response says what the model wrote."""
    from dataclasses import replace

    import sqltune.vote as vote_mod
    from sqltune.serve import create_app
    from sqltune.vote import Candidate
    from test_evaluate import WRITES, _Adapted, _fake_generation

    _fake_generation(monkeypatch, [])
    monkeypatch.setattr(vote_mod, "sample_sql", lambda model, tok, builder, questions, n, **kw: [
        [Candidate(WRITES[model.off][q], WRITES[model.off][q], -0.1, greedy=j == 0) for j in range(n)] for q in questions])
    monkeypatch.setattr(engine, "model", _Adapted())
    cfg = replace(engine.config, fallback="base", vote=vote, vote_when="error")
    assert cfg.repair is True  # ServeConfig's None, made on by Engine
    monkeypatch.setattr(engine, "config", cfg)
    with TestClient(create_app(engine, cfg)) as c:
        d = c.post("/api/ask", json={"question": "Titles after 1900?"}).json()
        assert d["sql"] == "SELECT title FROM books" and d["error"] is None and len(d["rows"]) == 6
        assert d["repaired"]["sql"] == WRITES[False]["Titles after 1900?"] and "titel" in d["repaired"]["error"]
        b = c.post("/api/ask", json={"question": "How many authors?"}).json()
        assert "repaired" not in b


def test_serve_run_answers_with_the_runs_fallback_unless_told_otherwise(tiny_db, tmp_path, monkeypatch):
    """`sqltune serve --run RUN` answers as the run scored its model: the recipe's `eval.fallback` (so the adapter
    loads unmerged), unless `--fallback` says otherwise."""
    import sqltune.evaluate as ev
    from sqltune.checkpoint import CHECKPOINT_META, COMPLETE
    from sqltune.errors import SqltuneError
    from sqltune.serve import Engine, ServeConfig

    (tmp_path / "recipe.json").write_text(json.dumps({"data": {"db": str(tiny_db)}, "eval": {"fallback": "base"}}))
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / COMPLETE).write_text("")
    (tmp_path / "adapter" / CHECKPOINT_META).write_text("{}")
    seen = []

    def fake_load(*args, merge=True, **kw):
        seen.append(merge)
        raise SqltuneError("stop here")

    monkeypatch.setattr(ev, "load_for_inference", fake_load)
    for fallback in (None, "none", "base"):
        cfg = ServeConfig(run_dir=str(tmp_path), fallback=fallback)
        with pytest.raises(SqltuneError, match="stop here"):
            Engine(cfg)
        assert cfg.fallback == (fallback or "base")
    assert seen == [False, True, False]


def test_serve_panel_with_the_untuned_model_votes_its_own_answers(engine, monkeypatch):
    """`sqltune serve --fallback panel` with the untuned model (no adapter, or a run that kept step 0): its answers
    with 4, 0 and 2 retrieved examples vote; the response's pool says it was the untuned model's own panel."""
    from dataclasses import replace

    from sqltune.serve import create_app
    from test_evaluate import PANEL_POOL, UNTUNED_WRITES, _fake_untuned, _Plain

    _fake_untuned(monkeypatch, asked := [])
    monkeypatch.setattr(engine, "model", _Plain())
    monkeypatch.setattr(engine, "untuned_model", True)
    monkeypatch.setattr(engine, "fewshot_pool", PANEL_POOL)
    cfg = replace(engine.config, fallback="panel")
    monkeypatch.setattr(engine, "config", cfg)
    with TestClient(create_app(engine, cfg)) as c:
        a = c.post("/api/ask", json={"question": "How many authors?"}).json()
        assert a["sql"] == UNTUNED_WRITES[4]["How many authors?"] and [n for n, _ in asked] == [0, 4, 2]
        assert a["pool"]["untuned"] and a["pool"]["sql"] == UNTUNED_WRITES[0]["How many authors?"]
        assert a["pool"]["source"] == "fewshot4" and a["pool"]["votes"] == 2


def test_serve_panel_judge_reaches_the_panel_and_a_bad_one_is_refused_before_loading(taught, taught_db, monkeypatch):
    """`serve --panel-judge reviewer` sets the panel's judge over a run's (or the default vote); an unknown judge is
    one clear error raised before any model is loaded."""
    import sqltune.evaluate as ev
    from sqltune.errors import SqltuneError
    from sqltune.serve import Engine, ServeConfig

    loads = []
    real = ev.load_for_inference
    monkeypatch.setattr(ev, "load_for_inference", lambda *a, **kw: loads.append(1) or real(*a, **kw))
    with pytest.raises(SqltuneError, match="--panel-judge must be one of vote, reviewer"):
        Engine(ServeConfig(model=str(taught), db=str(taught_db), device="cpu", panel_judge="jury"))
    assert not loads
    e = Engine(ServeConfig(model=str(taught), db=str(taught_db), device="cpu", panel_judge="reviewer"))
    assert e.panel == {"panel_judge": "reviewer"}
