"""Stage: answer questions about one database with a model, loaded once (the Python API behind `sqltune ask`).

    import sqltune

    m = sqltune.load(run="runs/mine")            # a finished run: its final adapter, database, notes and fallback
    m = sqltune.load(adapter="runs/mine/adapter", db="my.sqlite")   # or a checkpoint (its base model and prompt)
    m = sqltune.load(db="my.sqlite")              # or the untuned default model on any database
    a = m.ask("How many planets were discovered in 2016?")
    print(a.sql, a.columns, a.rows[:5], a.error)
    answers = m.ask_many(["...", "..."])          # decoded as one batch

Every question goes through `evaluate.predict`, the one path from question to SQL that `eval` and `sqltune run` take
(greedy, the vote, the fallback to the untuned model), and its SQL through `execute.execute` (read-only connection,
one statement, timeout, row cap). As `sqltune ask` does, a question is answered greedily and, where that SQL does not
execute, `ASK_VOTE` candidates are drawn and the result most of them agree on wins (`vote=1`: greedy only).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from .errors import SqltuneError

ASK_VOTE = 8  # candidates `ask` votes over where greedy fails: on the devsuite's train splits (197 questions the
#              untuned 0.5B never saw) greedy 52.3 %, 4 candidates 61.4 %, 8 candidates 64.5 %, none broken
#              (BENCHMARKS.md, "Session 8 lease"); the cost falls only on questions whose greedy SQL fails


def ask_vote(vote: int | None, when: str | None, retries: int) -> tuple[int, str]:
    """`ask`'s (vote, vote_when) with their defaults filled: without a vote, ASK_VOTE candidates where the greedy
    SQL fails (greedy alone with retries, which do not combine with a vote); a vote of N alone votes on every
    question (`always`), as in `predict` and `eval`."""
    if vote is None:
        return (1, when or "always") if retries else (ASK_VOTE, when or "error")
    return vote, when or "always"


def vote_settings(n: int, temperature: float, top_p: float, retries: int = 0, correct: bool = False,
                  when: str = "always"):
    """`vote.VoteSettings` for a vote of n > 1, None for greedy; bad values are one clear error."""
    from .vote import VoteSettings, check_settings

    check_settings(n, temperature, top_p, correct=correct, when=when)
    if n == 1:
        return None
    if retries:
        raise SqltuneError("--retries and --vote do not combine; a vote already executes every candidate")
    return VoteSettings(n, temperature, top_p, correct=correct, when=when)


@dataclass
class Answer:
    """One question's answer: the SQL chosen and its result, run read-only."""

    question: str
    sql: str | None  # None: the model wrote nothing that looks like SQL (`raw` has what it wrote)
    columns: list[str]
    rows: list[tuple]
    error: str | None  # the executor's error (the SQL did not run), else None
    error_kind: str | None
    seconds: float  # writing the SQL (decoding, the vote, the fallback)
    raw: str = ""
    vote: dict | None = None  # the vote's candidates and groups, where one ran
    overruled: bool = False  # the vote's result replaced the greedy answer
    correction: dict | None = None  # the close-vote correction step, where it ran (`vote_correct`)
    fallback: dict | None = None  # the tuned model's answer that failed ({sql, raw, error}): the untuned model's is shown
    pool: dict | None = None  # `fallback="vote"`: both models voted on this question (whose answer won, the votes)
    repaired: dict | None = None  # the answer failed and `sql` is its rewrite against the schema: {sql, error} written

    @property
    def ok(self) -> bool:
        return self.error is None and self.sql is not None

    def to_dict(self) -> dict:
        """`ask --json`'s object: the answer's fields, the optional ones (vote, fallback, ...) where they are set."""
        core = ("question", "sql", "columns", "rows", "error")
        return {k: v for k, v in asdict(self).items() if k in core or v is not None}


@dataclass
class SQLModel:
    """A model, tokenizer and prompt builder for one database, with `ask`'s settings. Build it with `load`."""

    model: object = field(repr=False)
    tokenizer: object = field(repr=False)
    builder: object = field(repr=False)
    db: str
    device: object = field(repr=False)
    vote: object = None  # `vote.VoteSettings`, or None: greedy
    fallback: str = "none"
    retries: int = 0
    timeout: float = 5.0
    max_rows: int = 10_000
    max_new_tokens: int = 256
    batch_size: int = 16
    fewshot_pool: list[dict] | None = field(default=None, repr=False)  # `fallback="panel"`: the examples' pairs
    repair: bool = True  # where the answer fails, its schema repair (`evaluate.repair_rows`)
    untuned_model: bool = False  # the model is the untuned one (`checkpoint.is_untuned`): the panel is its own
    panel: dict = field(default_factory=dict)  # the panel's sizes (panel_fewshot, panel_tuned_fewshot): a run's, or
    #                                            EvalConfig's defaults

    def ask(self, question: str) -> Answer:
        """Write SQL for `question`, run it read-only, return both. An empty question is a SqltuneError."""
        return self.ask_many([question])[0]

    def ask_many(self, questions: list[str], progress: bool = False) -> list[Answer]:
        """`ask` for each question, decoded in batches of `batch_size`."""
        from .evaluate import EvalConfig, predict
        from .execute import connect_readonly, execute

        if isinstance(questions, str):
            raise SqltuneError("ask_many takes a list of questions (ask takes one)")
        for q in questions:
            if not isinstance(q, str) or not q.strip():
                raise SqltuneError(f"a question must be non-empty text, got {q!r}")
        cfg = EvalConfig(batch_size=self.batch_size, max_new_tokens=self.max_new_tokens, retries=self.retries,
                         progress=progress, autocast=self.device.autocast, timeout=self.timeout, vote=self.vote,
                         fallback=self.fallback, fewshot_pool=self.fewshot_pool if self.fallback == "panel" else None,
                         untuned_model=self.untuned_model, repair=self.repair, **self.panel)
        rows = predict(self.model, self.tokenizer, self.builder, [{"question": q} for q in questions], self.db, cfg)
        con = connect_readonly(self.db)
        try:
            answers = []
            for q, r in zip(questions, rows):
                res = execute(con, r["sql"], timeout=self.timeout, max_rows=self.max_rows)
                voted = self.vote is not None and len((r.get("vote") or {}).get("candidates") or ()) > 1
                answers.append(Answer(
                    question=q, sql=r["sql"], columns=list(res.columns), rows=list(res.rows), error=res.error,
                    error_kind=res.error_kind, seconds=float(r.get("seconds") or 0.0), raw=r.get("raw") or "",
                    vote=r["vote"] if voted else None, overruled=bool(voted and r.get("overruled")),
                    correction=r.get("correction") if voted else None, fallback=r.get("fallback"), pool=r.get("pool"),
                    repaired={"sql": r["model_sql"], "error": r.get("model_error")} if r.get("model_sql") else None))
            return answers
        finally:
            con.close()


def load(model: str | None = None, adapter: str | os.PathLike | None = None, db: str | os.PathLike | None = None, *,
         run: str | os.PathLike | None = None, device: str | None = None, dtype: str | None = None,
         prompt_style: str | None = None, notes: str | os.PathLike | None = None, vote: int | None = None,
         vote_when: str | None = None, temperature: float = 0.8, top_p: float = 0.95, vote_correct: bool = False,
         retries: int = 0, fallback: str | None = None, merge: bool = True, timeout: float = 5.0,
         max_rows: int = 10_000, max_new_tokens: int = 256, batch_size: int = 16,
         fewshot_pool: list[dict] | None = None, repair: bool | None = None,
         panel_judge: str | None = None) -> SQLModel:
    """A model ready to answer questions about `db` (default: the exoplanets DB; with `run`, the run's).

    `model`: a packaged name, a model folder, a .gguf file or a hub id (default: the packaged default, or the
    adapter's base model). `adapter`: a checkpoint written by training (its prompt template is checked against `db`).
    `run`: a finished `sqltune run` folder; its final adapter (as `sqltune serve --run` picks it), database, notes,
    prompt style, `eval.fallback` (and the panel's sizes) are the defaults. `vote`/`vote_when`: as `sqltune ask`
    (default: greedy, and ASK_VOTE candidates where the greedy SQL does not execute). `fallback`: none, base, vote or
    panel (`sqltune ask --fallback`); all but none load the adapter unmerged. `fewshot_pool`: the training pairs the panel retrieves its
    examples from (with `run` and a panel: the run's own training pairs; without any, the panel is the two models).
    `repair`: where the answer fails with a column the schema has elsewhere, its rewrite (`sqltune.repair`) if that
    runs (default: on; with `run`, the run's `eval.repair`). `panel_judge`: how the panel elects, vote or reviewer
    (`evaluate.EvalConfig.panel_judge`; default: vote, with `run` the run's). Bad settings and files are a
    SqltuneError, before any load.
    """
    from .db import resolve_db
    from .evaluate import check_fallback, fallback_merge, load_for_inference
    from .model import pick_device

    base = None  # the adapter's base model, where not where its checkpoint names it (a run read from elsewhere)
    panel = {}
    if run is not None:
        from .serve import run_settings

        adapter, db, notes, prompt_style, fallback, _, base, found = run_settings(run, adapter, db, notes,
                                                                                  prompt_style, fallback)
        panel = found["panel"]  # the panel answers as the run scored it
        if repair is None:
            repair = found["repair"]
        if adapter is None and model is None:  # a run that trained nothing answered with its recipe's model
            from .run import run_model

            model = run_model(run, found["model"])
    fallback = fallback or "none"
    if panel_judge is not None:
        from .evaluate import check_panel_judge

        check_panel_judge(panel_judge)
        panel = dict(panel, panel_judge=panel_judge)
    for name, value in (("retries", retries), ("timeout", timeout), ("max_rows", max_rows),
                        ("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if not isinstance(value, (int, float)) or not (value >= 0 if name == "retries" else value > 0):
            raise SqltuneError(f"{name} must be {'>= 0' if name == 'retries' else 'positive'}, got {value!r}")
    n, when = ask_vote(vote, vote_when, retries)
    settings = vote_settings(n, temperature, top_p, retries, vote_correct, when)
    merge = fallback_merge(fallback, adapter, merge, "--adapter or --run")
    check_fallback(fallback, "--fallback", vote=n)
    dbp = resolve_db(db, need_tables=True)
    if fallback == "panel" and fewshot_pool is None and run is not None:
        from .augment import run_train_items

        fewshot_pool = run_train_items(run)
    dev = pick_device(device, dtype)
    m, tok, builder = load_for_inference(model, adapter, dev, prompt_style, dbp, notes, merge=merge, base=base)
    from .checkpoint import is_untuned

    return SQLModel(m, tok, builder, str(dbp), dev, vote=settings, fallback=fallback, retries=retries, timeout=timeout,
                    max_rows=max_rows, max_new_tokens=max_new_tokens, batch_size=batch_size,
                    fewshot_pool=list(fewshot_pool) if fewshot_pool else None,
                    untuned_model=fallback == "panel" and is_untuned(model, adapter),
                    repair=True if repair is None else bool(repair), panel=panel)
