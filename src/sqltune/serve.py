"""Stage: serve a model behind an HTTP API and a web page (`sqltune serve`).

- `Engine`: the model, loaded once (`evaluate.load_for_inference`), and the KV cache of the schema
  prefix every prompt starts with, computed once (`generate.prefix_cache`) and reused by every request.
  Questions become SQL through `evaluate.predict`, as in `sqltune eval` and `sqltune run` (greedy or the vote,
  then `--fallback`'s untuned answers: `evaluate.fall_back` / `pool_vote`), so a question gets the same answer.
- `Batcher`: one worker thread owns the model. Requests wait in a queue; the worker takes the first,
  waits up to `max_wait` seconds for more (up to `batch_size`) and decodes them as one batch, so
  throughput grows with load while a lone request waits only a few ms.
- `create_app(engine, config)`: the FastAPI app. `POST /api/ask`, `GET /api/schema`, `GET /api/health`,
  `POST /api/execute` (run SQL read-only, for the page's "correct the SQL"), `POST /api/feedback`
  (validated by execution, appended to a JSONL file that `--data` reads), the page at `/`, OpenAPI at
  `/docs`. Every SQL goes through `execute.execute` (read-only, one statement, timeout, row cap).
  Bad input is a 4xx JSON `{"error", "error_kind"}`, never a traceback; bodies and questions are
  capped; an optional token is required as `Authorization: Bearer TOKEN` on `/api/*`.
"""

import asyncio
import hmac
import json
import math
import os
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import SqltuneError
from .files import check_writable

PROBE_QUESTIONS = ("What", "how", "List 1", "¿", "7")  # renderings whose common start is the prefix


@dataclass
class ServeConfig:
    db: str | None = None
    model: str | None = None
    adapter: str | None = None
    run_dir: str | None = None
    device: str | None = None
    dtype: str | None = None
    prompt_style: str | None = None
    notes: str | None = None
    feedback: str | None = None  # JSONL file; default RUN_DIR/feedback.jsonl, else <cache>/feedback.jsonl
    token: str | None = None
    batch_size: int = 16
    max_wait: float = 0.03  # seconds the worker waits for more requests after the first
    max_new_tokens: int = 256
    timeout: float = 5.0  # per query
    max_rows: int = 10_000  # executor's cap; a response shows at most `max_rows` of the request
    default_rows: int = 1_000
    max_question_chars: int = 2_000
    max_sql_chars: int = 20_000
    max_body_bytes: int = 64 * 1024
    max_vote: int = 16
    vote: int = 1  # a request without "vote": greedy (1), or greedy + N-1 samples voted by result (`--vote N`)
    vote_when: str = "always"  # a voted request: always vote, or (error) only when the greedy SQL does not execute
    merge: bool = True  # merge an adapter into the weights (faster); False: unmerged, as `run` scored it
    fallback: str | None = None  # base: where the adapter's SQL does not execute, the model under it answers;
    #                              vote: where the two models' answers differ, both vote; panel: the adapter's, the
    #                              untuned and the untuned with examples vote (`--fallback`); None: a
    #                              run's recipe's `eval.fallback` with `run_dir`, else none
    pool: int = 8  # fallback vote: candidates per model where they differ (with `run_dir`, the run's `eval.vote`)
    repair: bool | None = None  # where the answer fails, its schema repair (`evaluate.repair_rows`); None: the run's
    #                            `eval.repair` with `run_dir`, else on
    panel_judge: str | None = None  # the panel's: vote or reviewer (`--panel-judge`); None: the run's, else vote


def run_paths(run_dir: str | os.PathLike) -> dict:
    """What a run folder gives a server: db, notes, model, prompt style and its best finished adapter."""
    from .checkpoint import is_complete

    from .evaluate import PANEL_FEWSHOT
    from .run import read_recipe

    run = Path(run_dir)
    recipe = read_recipe(run)
    data = recipe.get("data") or {}
    # the run's stages and their adapters: SFT, GRPO after it, the augment-and-retrain round. GRPO's output
    # is already the run's choice between the two (its rule had the SFT model as step 0, and `last` keeps a
    # GRPO step whose valid is within the noise of SFT's: BENCHMARKS.md, "GRPO on the devsuite"), so it stands
    # for both; between it and the augmented round the higher valid exact is served (ties: the later stage)
    sft = "adapter_rl" if is_complete(run / "adapter_rl") else "adapter"
    stages = [(i, run / a, st) for i, (a, st) in enumerate(((sft, "rl" if sft == "adapter_rl" else "tuned"),
                                                             ("adapter_augmented", "augmented"))) if is_complete(run / a)]

    def valid_exact(stage: str) -> float:
        try:
            return float(json.loads((run / f"{stage}_valid_report.json").read_text())["summary"]["exact"])
        except (OSError, ValueError, KeyError, TypeError):
            return -1.0

    adapter = max(stages, key=lambda x: (valid_exact(x[2]), x[0]))[1] if stages else None
    trained = bool((recipe.get("train") or {}).get("enabled", True))
    if adapter is None and trained:
        raise SqltuneError(f"{run} has no finished adapter (adapter/ is missing or incomplete)")
    # a run that trained nothing (`train.enabled: false`) answered with the untuned model: so is it served (adapter None)
    return {"db": data.get("db"), "notes": data.get("notes"), "model": recipe.get("model"),
            "prompt_style": (recipe.get("prompt") or {}).get("style"), "adapter": adapter and str(adapter),
            # answer as the run scored it: its fallback, and the pool's size where that is the pooled vote
            "fallback": (recipe.get("eval") or {}).get("fallback") or "none",
            "pool": (recipe.get("eval") or {}).get("vote"),
            # a run from before `eval.repair` existed: on, as the recipes now are (it only rewrites failing answers)
            "repair": bool((recipe.get("eval") or {}).get("repair", True)),
            # the panel's sizes as the run scored with them; a run from before the fourth voter had none
            "panel": {"panel_fewshot": int((recipe.get("eval") or {}).get("panel_fewshot", PANEL_FEWSHOT)),
                      "panel_tuned_fewshot": int((recipe.get("eval") or {}).get("panel_tuned_fewshot", 0)),
                      "panel_judge": str((recipe.get("eval") or {}).get("panel_judge", "vote"))}}


def run_db(run_dir: str | os.PathLike, db: str | None,
           give: str | None = "give the database (--db, or db= in sqltune.load)") -> str | None:
    """The database a run folder names (`run_paths`): as `sqltune run` was given it, or, where that is a relative path
    (relative to the folder `sqltune run` was started in) not found from here, the absolute path the run recorded
    (`run.recorded_db`). A run from before that record, or whose database has moved, is one clear error, which says
    how to `give` the database (None: the caller takes none, as `augment --run`)."""
    if db in (None, "exoplanets") or Path(db).is_absolute() or Path(db).is_file():
        return db
    from .run import recorded_db

    recorded = recorded_db(run_dir)
    if recorded and Path(recorded).is_file():
        return recorded
    raise SqltuneError(f"{run_dir} was run on the database {db}, a path relative to the folder `sqltune run` was "
                       f"started in, and there is no {db} here ({Path.cwd()})"
                       + (f" nor at {recorded}, where the run found it: {give or 'put it back there'}" if recorded else
                          ": work from that folder" + (f", or {give}" if give else "")))


def run_settings(run_dir: str | os.PathLike, adapter=None, db=None, notes=None, prompt_style=None, fallback=None):
    """(adapter, db, notes, prompt_style, fallback, pool, base, found): a run folder's settings (`run_paths`) under
    those the caller gave (None: not given), as `serve --run`, `ask --run` and `sqltune.load(run=...)` take them.
    The adapter is the run's (one given beside the run is refused), the database is checked (`run_db`), the notes
    file and the base model are found as the run found them, though read from another folder (`run.run_file`,
    `run.run_base`): `base` is where the adapter's base model is, where that is not where its checkpoint names it (a
    relative model folder: `load_for_inference`'s `base`), else None; `pool` is the run's vote size where its pooled
    vote (`eval.fallback: vote`) is taken, else None; `found`: `run_paths`' dict itself (its repair and panel
    sizes), read once."""
    from .run import run_base, run_file

    if adapter is not None:
        raise SqltuneError("give a run folder or an adapter, not both: the run brings its own adapter")
    found = run_paths(run_dir)
    pool = found["pool"] if fallback is None and found["fallback"] == "vote" and isinstance(found["pool"], int) else None
    return (found["adapter"], db or run_db(run_dir, found["db"]),
            notes or (found["notes"] and run_file(run_dir, found["notes"], "data.notes")),
            prompt_style or found["prompt_style"], fallback or found["fallback"], pool,
            found["adapter"] and run_base(run_dir, found["adapter"]), found)


# ---------------------------------------------------------------- the model, loaded once
class Engine:
    """Model + tokenizer + prompt builder for one database, and the schema prefix's KV cache."""

    def __init__(self, config: ServeConfig):
        from .db import resolve_db
        from .evaluate import fallback_merge, load_for_inference
        from .generate import prefix_cache
        from .model import pick_device
        from .paths import cache_dir

        cfg = config
        self.panel = {}  # the panel's sizes: EvalConfig's defaults, or the run's
        if cfg.run_dir:
            cfg.adapter, cfg.db, cfg.notes, cfg.prompt_style, cfg.fallback, pool, base, found = run_settings(
                cfg.run_dir, cfg.adapter, cfg.db, cfg.notes, cfg.prompt_style, cfg.fallback)
            cfg.pool = pool or cfg.pool
            if cfg.repair is None:
                cfg.repair = found["repair"]
            self.panel = found["panel"]  # the panel answers as the run scored it
            if cfg.adapter is None and cfg.model is None:  # a run that trained nothing answered with its recipe's model
                from .run import run_model

                cfg.model = run_model(cfg.run_dir, found["model"])
        else:
            base = None
        cfg.repair = True if cfg.repair is None else bool(cfg.repair)
        cfg.fallback = cfg.fallback or "none"
        if cfg.panel_judge is not None:
            from .evaluate import check_panel_judge

            check_panel_judge(cfg.panel_judge)
            self.panel = dict(self.panel, panel_judge=cfg.panel_judge)
        if cfg.fallback == "vote" and cfg.pool < 2:
            raise SqltuneError(f"serve: --fallback vote needs at least 2 candidates per model (pool {cfg.pool})")
        cfg.merge = fallback_merge(cfg.fallback, cfg.adapter, cfg.merge, "an adapter (--adapter or --run)")
        self.config = cfg
        self.fewshot_pool = None  # `--fallback panel`: the untuned model's examples come from the run's training pairs
        if cfg.fallback == "panel" and cfg.run_dir:
            from .augment import run_train_items

            self.fewshot_pool = run_train_items(cfg.run_dir) or None
        self.db = resolve_db(cfg.db)
        self.device = pick_device(cfg.device, cfg.dtype)
        t = time.perf_counter()
        self.model, self.tokenizer, self.builder = load_for_inference(
            cfg.model, cfg.adapter, self.device, cfg.prompt_style, self.db, cfg.notes, merge=cfg.merge, base=base)
        self.load_seconds = time.perf_counter() - t
        from .checkpoint import is_untuned

        self.untuned_model = cfg.fallback == "panel" and is_untuned(cfg.model, cfg.adapter)  # its own panel
        t = time.perf_counter()
        probes = [self.builder.prompt(self.tokenizer, q) for q in PROBE_QUESTIONS]
        self.prefix = prefix_cache(self.model, self.tokenizer, probes, autocast=self.device.autocast)
        self.prefix_seconds = time.perf_counter() - t
        if cfg.feedback:
            self.feedback_file = Path(cfg.feedback)
        elif cfg.run_dir:
            self.feedback_file = Path(cfg.run_dir) / "feedback.jsonl"
        else:
            self.feedback_file = cache_dir() / "feedback.jsonl"
        self.model_name = cfg.model or getattr(self.model.config, "_name_or_path", None) or "default"
        self.fingerprint = self.builder.fingerprint(self.tokenizer)
        self.prefix_reused = 0  # batches that used the cached prefix

    def _answer(self, questions: list[str], vote=None, **kw) -> list[dict]:
        """`evaluate.predict`'s rows for `questions`, as it answers `sqltune eval` and `sqltune run` (greedy, or `vote`:
        a `vote.VoteSettings`; then `--fallback`), so a question gets the same answer everywhere. `--fallback vote`
        pools both models' candidates where they differ, `pool` of each whatever the request's vote; the repair
        (`--no-repair`: off) comes last, after the pool. `kw`: predict's."""
        from .evaluate import EvalConfig, pool_vote, predict, repair_rows
        from .vote import VoteSettings

        fb = self.config.fallback
        cfg = EvalConfig(batch_size=self.config.batch_size, max_new_tokens=self.config.max_new_tokens, progress=False,
                         autocast=self.device.autocast, timeout=self.config.timeout, vote=vote,
                         fallback="none" if fb == "vote" else fb, fewshot_pool=self.fewshot_pool,
                         untuned_model=self.untuned_model, repair=self.config.repair and fb != "vote",
                         **self.panel)
        items = [{"question": q} for q in questions]
        rows = predict(self.model, self.tokenizer, self.builder, items, self.db, cfg, **kw)
        if fb == "vote":
            rows = pool_vote(self.model, self.tokenizer, self.builder, items, rows, self.db,
                             cfg.with_(vote=VoteSettings(self.config.pool, when=self.config.vote_when), fallback="vote"))
            if self.config.repair:
                rows = repair_rows(rows, self.db, cfg)
        return rows

    def generate(self, questions: list[str]) -> list[dict]:
        """Greedy answers for a batch of questions (`evaluate.predict` rows), from the cached schema prefix."""
        from .generate import GenerationStats

        stats = GenerationStats()
        rows = self._answer(questions, stats=stats, prefix=self.prefix)
        self.prefix_reused += stats.prefix_tokens == 0  # else the batch's prompts did not start with it
        return rows

    def vote(self, question: str, n: int) -> dict:
        """One question voted over `n` candidates (`--vote-when` as configured), then the fallback: `evaluate.predict`'s
        row, as `sqltune eval --vote n` writes it."""
        from .vote import VoteSettings

        return self._answer([question], VoteSettings(n, when=self.config.vote_when))[0]


def response_extras(row: dict, voted: bool) -> dict:
    """What `/api/ask` adds to the SQL and its rows, from an `evaluate.predict` row: the vote (a voted request:
    candidates, groups, and whether samples were drawn; with `--vote-when error` not when greedy ran), the fallback
    ({sql, error} of the adapter's answer the untuned model's replaced) and the pool (`--fallback vote`: {sql, error:
    the adapter's answer before, base_sql, source, votes})."""
    out = {}
    if voted:
        v = row.get("vote") or {}
        cands = v.get("candidates") or []
        out.update(candidates=_plain(cands), groups=_plain(v.get("groups") or []), voted=len(cands) > 1)
    fb = row.get("fallback")
    if fb:
        out["fallback"] = {"sql": fb.get("sql"), "error": fb.get("error") or "no SQL"}
    p = row.get("pool")
    if p:
        out["pool"] = {"sql": p["sql"], "error": p.get("error"), "base_sql": p["base_sql"], "source": p["source"],
                       "votes": p["votes"], "untuned": bool(p.get("untuned"))}
    if row.get("model_sql"):  # the answer failed; `sql` is its repair against the schema
        out["repaired"] = {"sql": row["model_sql"], "error": row.get("model_error") or "failed"}
    return out


def _plain(obj):
    """A dataclass or object as JSON-friendly data."""
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _plain(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, (list, tuple)):
        return [_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    return _cell(obj)


# ---------------------------------------------------------------- batching concurrent requests
@dataclass
class _Job:
    question: str
    future: Future = field(default_factory=Future)
    vote: int = 1


class Batcher:
    """One worker thread owns the model; questions that arrive together are decoded together."""

    def __init__(self, engine: Engine, batch_size: int = 16, max_wait: float = 0.03):
        self.engine, self.batch_size, self.max_wait = engine, max(1, batch_size), max(0.0, max_wait)
        self.queue: queue.Queue = queue.Queue()
        self.batches = self.questions = 0
        self.largest = 0
        self._thread = threading.Thread(target=self._loop, name="sqltune-batcher", daemon=True)
        self._thread.start()

    def submit(self, question: str, vote: int = 1) -> Future:
        job = _Job(question, vote=vote)
        self.queue.put(job)
        return job.future

    def close(self) -> None:
        self.queue.put(None)
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            if job.vote > 1:
                self._run(job, lambda: self.engine.vote(job.question, job.vote))
                continue
            batch, later, stop = [job], [], False
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.batch_size:
                left = deadline - time.monotonic()
                try:
                    nxt = self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                (later if nxt.vote > 1 else batch).append(nxt)
            self._decode(batch)
            for j in later:
                self._run(j, lambda j=j: self.engine.vote(j.question, j.vote))
            if stop:
                return

    def _decode(self, batch: list[_Job]) -> None:
        self.batches += 1
        self.questions += len(batch)
        self.largest = max(self.largest, len(batch))
        try:
            gens = self.engine.generate([j.question for j in batch])
        except Exception as e:  # noqa: BLE001 - reported to every waiting request
            for j in batch:
                j.future.set_exception(e)
            return
        for j, g in zip(batch, gens):
            j.future.set_result(g)

    @staticmethod
    def _run(job: _Job, fn) -> None:
        try:
            job.future.set_result(fn())
        except Exception as e:  # noqa: BLE001
            job.future.set_exception(e)


# ---------------------------------------------------------------- HTTP
class BadRequest(Exception):
    def __init__(self, message: str, kind: str = "bad_request", status: int = 400):
        super().__init__(message)
        self.message, self.kind, self.status = message, kind, status


def _cell(v):
    """A result cell as JSON: bytes as hex, non-finite floats as text."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "x'" + bytes(v).hex() + "'"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def _error_response(status: int, message: str, kind: str):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message, "error_kind": kind}, status_code=status)


class BodyLimit:
    """ASGI middleware: refuse request bodies over `limit` bytes (413, JSON), declared or streamed."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = _error_response(413, f"request body over {self.limit} bytes", "too_large")
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await too_big(scope, receive, send)
        body, more = b"", True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > self.limit:
                return await too_big(scope, receive, send)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def create_app(engine: Engine, config: ServeConfig | None = None, batcher: Batcher | None = None):
    """The FastAPI app serving `engine` (a Batcher is started unless one is given)."""
    from contextlib import asynccontextmanager

    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse
    from pydantic import BaseModel
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.concurrency import run_in_threadpool

    from .dataset import is_text
    from .execute import execute
    from .schema import describe

    cfg = config or engine.config
    batcher = batcher or Batcher(engine, cfg.batch_size, cfg.max_wait)
    feedback_lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(app):
        yield
        batcher.close()

    app = FastAPI(title="sqltune serve", version="1", lifespan=lifespan,
                  description="Questions about one SQLite database, answered by a tuned model; "
                              "every query runs read-only with a timeout and a row cap.")

    class Ask(BaseModel):
        question: str
        vote: int | None = None
        max_rows: int | None = None

    class Feedback(BaseModel):
        question: str
        sql: str | None = None
        correct: bool
        fixed_sql: str | None = None

    class Execute(BaseModel):
        sql: str
        max_rows: int | None = None

    @app.exception_handler(BadRequest)
    async def _bad(request, e: BadRequest):
        return _error_response(e.status, e.message, e.kind)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e: RequestValidationError):
        errs = e.errors()
        first = errs[0] if errs else {}
        if first.get("type") == "json_invalid":
            return _error_response(400, "the body is not valid JSON", "bad_json")
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return _error_response(422, f"{where or 'body'}: {first.get('msg', 'invalid')}", "invalid")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, e: StarletteHTTPException):
        # FastAPI itself raises 400 only when it cannot parse the body
        kind = {400: "bad_json", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http")
        return _error_response(e.status_code, str(e.detail), kind)

    @app.exception_handler(Exception)
    async def _crash(request, e: Exception):  # a bug of ours: a JSON 500, no traceback to the client
        return _error_response(500, f"internal error: {type(e).__name__}", "internal")

    def auth(request: Request):
        if not cfg.token:
            return
        got = request.headers.get("authorization", "")
        scheme, _, value = got.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), cfg.token.encode()):
            raise BadRequest("missing or wrong token (send Authorization: Bearer TOKEN)", "unauthorized", 401)

    def rows_wanted(n: int | None) -> int:
        if n is None:
            return cfg.default_rows
        if n < 0:
            raise BadRequest("max_rows must be >= 0")
        return min(n, cfg.max_rows)

    def run_sql(sql: str | None, want: int) -> dict:
        res = execute(engine.db, sql, timeout=cfg.timeout, max_rows=cfg.max_rows)
        rows = [[_cell(v) for v in r] for r in res.rows[:want]]
        return {"columns": res.columns, "rows": rows, "row_count": len(res.rows),
                "truncated": len(res.rows) > want, "error": res.error, "error_kind": res.error_kind}

    def text_of(text: str | None, what: str) -> str | None:
        # JSON can carry lone surrogates ("\ud800"), which no tokenizer, SQLite or UTF-8 response can hold
        if text is not None and not text.isascii() and not is_text(text):
            raise BadRequest(f"{what} is not valid Unicode text (a lone surrogate escape)")
        return text

    def question_of(text: str) -> str:
        q = text_of(text, "the question").strip()
        if not q:
            raise BadRequest("the question is empty")
        if len(q) > cfg.max_question_chars:
            raise BadRequest(f"the question is over {cfg.max_question_chars} characters", "too_large")
        return q

    def sql_of(text: str | None, what: str) -> str:
        text = text_of(text, what)
        if text is None or not text.strip():
            raise BadRequest(f"{what} is empty")
        if len(text) > cfg.max_sql_chars:
            raise BadRequest(f"{what} is over {cfg.max_sql_chars} characters", "too_large")
        return text

    api = [Depends(auth)]

    @app.post("/api/ask", dependencies=api)
    async def ask(body: Ask):
        """Write SQL for a question, run it read-only, return the result."""
        q = question_of(body.question)
        want = rows_wanted(body.max_rows)
        n = cfg.vote if body.vote is None else body.vote
        if n < 1 or n > cfg.max_vote:
            raise BadRequest(f"vote must be between 1 and {cfg.max_vote}")
        t = time.perf_counter()
        if n > 1:
            try:
                from . import vote  # noqa: F401
            except ImportError:
                raise BadRequest("voting is not available in this installation (sqltune.vote is missing)",
                                 "unavailable")
        row = await asyncio.wrap_future(batcher.submit(q, vote=n))
        sql, extra = row["sql"], response_extras(row, voted=n > 1)
        res = await run_in_threadpool(run_sql, sql, want)
        if sql is None:
            res["error"], res["error_kind"] = "no SQL in the model's output", "no_sql"
        return {"question": q, "sql": sql, **res, "seconds": round(time.perf_counter() - t, 4), **extra}

    @app.post("/api/execute", dependencies=api)
    def run(body: Execute):
        """Run one SQL statement read-only (the page's "correct the SQL" runs it before saving)."""
        t = time.perf_counter()
        res = run_sql(sql_of(body.sql, "sql"), rows_wanted(body.max_rows))
        return {"sql": body.sql, **res, "seconds": round(time.perf_counter() - t, 4)}

    @app.get("/api/schema", dependencies=api)
    def schema():
        """The database's tables and columns, and the schema text the model is shown."""
        s = describe(engine.db, engine.config.notes)
        return {"db": str(engine.db), "text": engine.builder.schema,
                "tables": [{"name": t.name, "rows": t.rows,
                            "columns": [{"name": c.name, "type": c.type, "pk": c.pk, "fk": c.fk} for c in t.columns]}
                           for t in s.tables]}

    @app.get("/api/health", dependencies=api)
    def health():
        """Model, adapter, prompt fingerprint, database, and what the server has done so far."""
        fp = engine.fingerprint
        return {"status": "ok", "model": str(engine.model_name),
                "adapter": str(engine.config.adapter) if engine.config.adapter else None,
                "prompt": {"style": fp["style"], "sha256": fp["sha256"]}, "db": str(engine.db),
                "feedback_file": str(engine.feedback_file), "device": engine.device.device,
                "prefix_tokens": len(engine.prefix.ids), "load_seconds": round(engine.load_seconds, 3),
                "prefix_seconds": round(engine.prefix_seconds, 3),
                "served": {"questions": batcher.questions, "batches": batcher.batches, "largest_batch": batcher.largest,
                           "prefix_reused_batches": engine.prefix_reused},
                "batch_size": cfg.batch_size, "max_wait_s": cfg.max_wait, "fallback": engine.config.fallback,
                **({"pool": engine.config.pool} if engine.config.fallback == "vote" else {})}

    @app.post("/api/feedback", dependencies=api)
    def feedback(body: Feedback):
        """Save a question with SQL a person confirmed (`correct`) or corrected (`fixed_sql`) as a training pair.

        The SQL to save is run read-only first and must succeed; nothing touches the database.
        """
        q = question_of(body.question)
        if body.fixed_sql is not None:
            sql = sql_of(body.fixed_sql, "fixed_sql")
        elif body.correct:
            sql = sql_of(body.sql, "sql")
        else:
            raise BadRequest("an answer marked wrong needs fixed_sql (the corrected SQL) to be saved")
        res = run_sql(sql, 0)
        if res["error"]:
            raise BadRequest(f"the SQL does not run: {res['error']}", "sql_error")
        row = {"question": q, "sql": sql.strip(), "model_sql": text_of(body.sql, "sql"), "correct": body.correct,
               "fixed": body.fixed_sql is not None, "row_count": res["row_count"],
               "model": str(engine.model_name), "adapter": engine.config.adapter and str(engine.config.adapter),
               "prompt_sha256": engine.fingerprint["sha256"], "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        line = json.dumps(row, ensure_ascii=False) + "\n"
        try:
            with feedback_lock:
                engine.feedback_file.parent.mkdir(parents=True, exist_ok=True)
                with open(engine.feedback_file, "a", encoding="utf-8") as f:
                    f.write(line)
        except OSError as e:  # the server's file, not the request: a 500 that says what is wrong with it
            raise BadRequest(f"cannot save feedback to {engine.feedback_file}: {e.strerror or e}", "unwritable", 500)
        return {"saved": True, "file": str(engine.feedback_file), "row_count": res["row_count"]}

    page = resources.files("sqltune").joinpath("web/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        return HTMLResponse(page)

    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    app.state.batcher, app.state.engine = batcher, engine
    return app


def _check_port(host: str, port: int) -> None:
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as e:
        raise SqltuneError(f"cannot listen on {host}:{port}: {e.strerror or e}")


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, log=print) -> None:
    """Load the model, then serve until interrupted."""
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1"):
        log(f"warning: listening on {host}: anyone who can reach this machine can query the database"
            + ("" if config.token else " (no --token set)"))
    _check_port(host, port)  # before the model load, not after it
    if config.feedback:
        check_writable(config.feedback, "--feedback")
    engine = Engine(config)
    log(f"model loaded in {engine.load_seconds:.1f} s; schema prefix ({len(engine.prefix.ids)} tokens) cached in "
        f"{engine.prefix_seconds:.1f} s; feedback goes to {engine.feedback_file}")
    app = create_app(engine, config)
    fb = engine.config.fallback
    if fb != "none":  # what answers besides the adapter, and what it costs a request
        log("fallback: " + ("the untuned model answers where the adapter's SQL does not execute" if fb == "base" else
                            f"where the untuned model's answer differs from the adapter's, both draw "
                            f"{engine.config.pool} candidates and the majority wins (slower on those questions)"
                            if fb == "vote" else
                            "panel: the untuned model's answers with and without retrieved training examples vote "
                            "(the model is the untuned one)" if engine.untuned_model else
                            "panel: the adapter's answer, the untuned model's and the untuned model's with retrieved "
                            "training examples vote")
            + ("; where they disagree the untuned model reviews which query the question fits (--panel-judge "
               "reviewer)" if fb == "panel" and engine.panel.get("panel_judge") == "reviewer" else ""))
    log("repair: " + ("where the answer fails, it is rewritten against the schema (a column qualified with the table "
                      "that has it, a join along a foreign key, a near spelling) if the rewrite runs"
                      if engine.config.repair else "off: answers as the model wrote them"))
    log(f"serving {engine.db} on http://{host}:{port}/ (API docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
