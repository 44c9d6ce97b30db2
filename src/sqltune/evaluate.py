"""Stage: predict and evaluate. The one evaluator: every score in sqltune comes from `evaluate`.

- `EvalConfig`: how questions become SQL and how it is scored (batch size, token budget,
  self-correction retries, few-shot examples, bf16 autocast, executor timeout and row cap, the
  execution-guided vote of `vote.py`, the fallback to the model under an adapter where the answer does not
  execute (`fall_back`), the last-resort schema repair of an answer that still fails (`repair_rows`,
  `sqltune.repair`), and an optional test suite for the `suite` metric). A
  recipe's `eval` section gives one (`EvalConfig.from_recipe`), as does a `train.TrainConfig`
  (`EvalConfig.from_train_config`), so `run`, training's checkpoint choice and the CLI score a
  model the same way: the same predictions, the same precision (autocast as `model.pick_device`
  decided it).
- `predict(model, tok, builder, items, db, cfg)` -> rows {id, question, sql, raw, seconds,
  retries, retry_changed, error, ...} that `sqltune score` reads; `predict_questions` is the one
  place where questions turn into `Generation`s (generate, execute, re-prompt failures).
- `evaluate(model, tok, builder, items, db, cfg)` = `predict` + `score.score_pairs`, with timing.
- `load_for_inference(model, adapter_dir=...)`: model (base, adapter or merged folder), tokenizer
  and the prompt builder for a database, through the one loader (`model.load`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, fields, replace

from .errors import SqltuneError
from .execute import DEFAULT_TIMEOUT
from .generate import Generation, GenerationStats, fewshot_for
from .prompt import PromptBuilder


FALLBACKS = ("none", "base", "vote", "panel")
PANEL_FEWSHOT = 4  # the panel's third voter: the untuned model with this many retrieved training examples
PANEL_TUNED_FEWSHOT = 2  # the panel's fourth voter: the adapter's answer with this many retrieved examples (0: none)
PANEL_JUDGES = ("vote", "reviewer")  # how the panel elects among its voters' results (`eval.panel_judge`)


def check_fallback(fallback: str, name: str = "fallback", vote: int | None = None) -> None:
    """One clear error for a fallback setting that is not one of `FALLBACKS` (`name`: how the user set it), or for
    `vote` (which pools both models' candidates) with a vote of fewer than 2 (`vote`: the vote's n, where known)."""
    if fallback not in FALLBACKS:
        raise SqltuneError(f"{name} must be one of {', '.join(FALLBACKS)}, got {fallback!r}")
    if fallback == "vote" and vote is not None and vote < 2:
        raise SqltuneError(f"{name} vote needs a vote of 2 or more (eval.vote, --vote): it votes over both models' "
                           "candidates")


def check_panel_judge(judge: str, name: str = "--panel-judge") -> None:
    """One clear error for a panel judge that is not one of `PANEL_JUDGES` (`name`: how the user set it)."""
    if judge not in PANEL_JUDGES:
        raise SqltuneError(f"{name} must be one of {', '.join(PANEL_JUDGES)}, got {judge!r}")


def fallback_merge(fallback: str, adapter, merge: bool, adapter_flags: str = "--adapter") -> bool:
    """A command's --fallback checked against its adapter; returns whether to merge the adapter into the weights:
    never with `base`, since a merged adapter cannot be switched off."""
    check_fallback(fallback, "--fallback")
    if fallback != "none":
        if not adapter and fallback == "panel":  # no adapter: the untuned model's own panel (`untuned_panel`)
            return merge
        if not adapter:
            raise SqltuneError(f"--fallback {fallback} needs {adapter_flags}: the model under the adapter answers "
                               + ("where the adapter's SQL does not execute" if fallback == "base" else
                                  "beside it and the answers vote" if fallback == "panel" else
                                  "beside it where their results differ"))
        return False
    return merge


@dataclass
class EvalConfig:
    """Every setting of one evaluation. Defaults are the CLI's, but for `repair`: off here (a bare evaluation scores
    the answers as written, as training's checkpoint choice does), on in the recipes and the CLI."""

    batch_size: int = 16
    max_new_tokens: int = 256
    retries: int = 0  # self-correction: re-prompt a failing query with its error this many times
    repair: bool = False  # the last resort (`repair_rows`): where the answer fails, the answers weighed are rewritten
    #                       against the schema (`repair.fix`) and the first rewrite that runs is taken
    fewshot: int = 0  # k similar training examples per question (0: the builder's own, usually none)
    fewshot_pool: list[dict] | None = field(default=None, repr=False)  # training items the examples come from
    fewshot_exclude: list = field(default_factory=list, repr=False)  # never shown (the evaluated items always are)
    autocast: bool = False  # bf16 autocast: take it from `model.pick_device(...).autocast`, never decide it here
    timeout: float = DEFAULT_TIMEOUT  # seconds per query, predictions and gold alike
    max_rows: int | None = None  # row cap when scoring (None: the scorer's default)
    progress: bool = True
    vote: object = None  # a `vote.VoteSettings` with n > 1: greedy + n-1 samples, executed, majority result wins
    fallback: str = "none"  # base: where the answer's SQL (after the vote, if any) does not execute, the model
    #                         under the adapter answers too (`disable_adapter`), and its answer is taken if it
    #                         executes. An answer that does not execute is wrong, so this cannot cost one; it needs
    #                         an unmerged adapter (none: nothing to fall back to, the rows stay as they are).
    #                         vote: where the answer does not execute or its result differs from the untuned model's
    #                         greedy answer, both models draw `vote.n` candidates and the majority result of all of
    #                         them wins (`pool_vote`); needs a vote (n > 1) and an unmerged adapter
    #                         panel: three greedy answers vote by result: the adapter's, the untuned model's, and the
    #                         untuned model's with `panel_fewshot` retrieved examples from `fewshot_pool`; ties go
    #                         to the adapter's (`panel_vote`); needs an unmerged adapter, or the untuned model
    #                         (`untuned_model`): then its answers with panel_fewshot, 0 and panel_fewshot // 2
    #                         retrieved examples vote (`untuned_panel`)
    panel_fewshot: int = PANEL_FEWSHOT
    panel_tuned_fewshot: int = PANEL_TUNED_FEWSHOT  # panel with an adapter: a fourth voter, the adapter's own answer
    #                         with this many retrieved examples, last in tie order (0: the panel of three)
    panel_judge: str = "vote"  # vote: the most-voted result wins (ties in tie order); reviewer: where the voters give
    #                         two or more results, the one whose SQL makes the question likeliest under the untuned
    #                         model wins (`vote.review_scores`), votes aside; every voter is then decoded everywhere
    untuned_model: bool = False  # the model answering is the untuned one (no adapter given, or training kept step 0:
    #                         `checkpoint.is_untuned`); only the panel reads it. `sqltune run`'s base stage leaves it
    #                         off: that stage is the untuned model as it answers without sqltune
    test_suite: object = field(default=None, repr=False)  # a built suite (`testsuite`): adds the `suite` metric
    untuned: dict | None = field(default=None, repr=False)  # {question: the untuned model's `predict` row under these
    #                         same settings}, where already known (`sqltune run`'s base stage): the fallbacks take
    #                         the untuned answers from here instead of decoding them again (`untuned_rows`)

    def validate(self) -> "EvalConfig":
        for name in ("batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise SqltuneError(f"eval: {name} must be at least 1, got {getattr(self, name)}")
        if self.retries < 0 or self.fewshot < 0 or self.panel_fewshot < 0 or self.panel_tuned_fewshot < 0:
            raise SqltuneError("eval: retries, fewshot, panel_fewshot and panel_tuned_fewshot cannot be negative")
        if self.fewshot and not self.fewshot_pool:
            raise SqltuneError("few-shot examples need a pool of training items")
        if self.vote is not None and getattr(self.vote, "n", 1) <= 1:
            self.vote = None
        if self.vote is not None and self.retries:
            raise SqltuneError("--retries and --vote do not combine; a vote already executes every candidate")
        check_fallback(self.fallback, "eval: fallback", vote=1 if self.vote is None else self.vote.n)
        check_panel_judge(self.panel_judge, "eval: panel_judge")
        return self

    def with_(self, **kw) -> "EvalConfig":
        return replace(self, **kw)

    @classmethod
    def from_recipe(cls, recipe, device, fewshot_pool: list[dict] | None = None, **kw) -> "EvalConfig":
        """From a `recipe.Recipe` (or its dict form) and the `model.DeviceConfig` the run picked."""
        ev = recipe.eval if hasattr(recipe, "eval") else (recipe.get("eval") or {})
        get = (lambda k, d: getattr(ev, k, d)) if not isinstance(ev, dict) else (lambda k, d: ev.get(k, d))
        vote = None
        if int(get("vote", 1)) > 1:
            from .vote import VoteSettings

            vote = VoteSettings(int(get("vote", 1)), float(get("temperature", 0.8)), float(get("top_p", 0.95)),
                                correct=bool(get("vote_correct", False)), when=str(get("vote_when", "always")))
        kw.setdefault("vote", vote)
        return cls(batch_size=int(get("batch_size", 64)), max_new_tokens=int(get("max_new_tokens", 256)),
                   retries=int(get("retries", 0)), repair=bool(get("repair", True)), fewshot=int(get("fewshot", 0)),
                   timeout=float(get("timeout", DEFAULT_TIMEOUT)),
                   autocast=bool(device.autocast),
                   fewshot_pool=fewshot_pool if int(get("fewshot", 0)) or get("fallback", "none") == "panel" else None,
                   fallback=str(get("fallback", "none")), panel_fewshot=int(get("panel_fewshot", PANEL_FEWSHOT)),
                   panel_tuned_fewshot=int(get("panel_tuned_fewshot", PANEL_TUNED_FEWSHOT)),
                   panel_judge=str(get("panel_judge", "vote")), **kw)

    @classmethod
    def from_train_config(cls, cfg, device, fewshot_pool: list[dict] | None = None, **kw) -> "EvalConfig":
        """From a `train.TrainConfig` (its eval_* keys, which a recipe fills from its `eval` section)."""
        k = int(getattr(cfg, "eval_fewshot", 0))
        return cls(batch_size=cfg.eval_batch_size, max_new_tokens=cfg.eval_max_new_tokens,
                   retries=int(getattr(cfg, "eval_retries", 0)), fewshot=k,
                   timeout=float(getattr(cfg, "eval_timeout", DEFAULT_TIMEOUT)), autocast=bool(device.autocast),
                   fewshot_pool=fewshot_pool if k else None, **kw)

    def to_dict(self) -> dict:
        """The settings that shape predictions and scores (no pools, no progress bar)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)
             if f.name not in ("fewshot_pool", "fewshot_exclude", "progress", "vote", "test_suite", "untuned")}
        d["vote"] = None if self.vote is None else {"n": self.vote.n, "temperature": self.vote.temperature,
                                                    "top_p": self.vote.top_p, "seed": self.vote.seed,
                                                    "correct": bool(getattr(self.vote, "correct", False)),
                                                    "when": getattr(self.vote, "when", "always")}
        d["test_suite"] = self.test_suite is not None
        return d


# ---------------------------------------------------------------- loading
def load_for_inference(
    model_name: str | None = None,
    adapter_dir: str | os.PathLike | None = None,
    device=None,
    prompt_style: str | None = None,
    db: str | os.PathLike | None = None,
    notes: str | os.PathLike | None = None,
    merge: bool = True,
    base: str | None = None,
):
    """(model, tokenizer, builder) ready to generate SQL for `db`.

    `device`: a `model.DeviceConfig`, a device name, or None (picked automatically). With
    `adapter_dir` (a checkpoint folder written by training: an adapter or a whole model, with
    `sqltune_checkpoint.json`), the base model and prompt style default to the checkpoint's, and the
    prompt rendered now for `db` must match the template it was trained with exactly
    (`prompt.check_fingerprint`); adapters are merged into the weights for speed unless
    `merge=False`. A `model_name` folder that is itself a sqltune checkpoint (a merged adapter) is
    checked the same way. Loading goes through `model.load`, the one loader. `base`: where the adapter's base
    model is, where not where its checkpoint names it (a relative model folder of a run read from another folder:
    `serve.run_settings`); `model_name` may be either.
    """
    from .checkpoint import read_info
    from .db import resolve_db
    from .model import load
    from .schema import schema_text

    db_path = resolve_db(db)
    schema = schema_text(db_path, notes)
    if adapter_dir is not None:
        info = read_info(adapter_dir)
        trained_on = info.get("base_model")
        if model_name and trained_on and str(model_name) not in (str(trained_on), str(base)):
            raise SqltuneError(f"checkpoint {adapter_dir} was trained on '{trained_on}', not '{model_name}'; "
                               "leave out --model")
    loaded = load(adapter_dir if adapter_dir is not None else model_name, device, merge=merge, base=base,
                  builder=lambda info: _builder(schema, prompt_style, info))
    return loaded.model, loaded.tokenizer, loaded.builder


def _builder(schema: str, style: str | None, info: dict | None) -> PromptBuilder:
    p = (info or {}).get("prompt") or {}
    return PromptBuilder(schema, style or p.get("style") or "chat", fewshot=list(p.get("fewshot") or []))


# ---------------------------------------------------------------- predict
def predict_questions(model, tokenizer, builder: PromptBuilder, questions: list[str], db, cfg: EvalConfig,
                      examples: list[list[dict]] | None = None,
                      stats: GenerationStats | None = None, prefix=None) -> list[Generation]:
    """The one place where questions become SQL: generate (greedy, batched), execute each query
    read-only, and re-prompt the failing ones with the executor's error up to `cfg.retries` times.

    `retry_changed` is True when a retry changed the outcome: the first SQL failed and the final SQL
    runs. `retries` counts the re-prompts a question used; `first_sql`/`first_error` keep the first try.
    `prefix`: a precomputed schema-prefix KV cache (`generate.prefix_cache`, e.g. a server's).
    """
    from . import generate as gen
    from .execute import connect_readonly, execute
    from .extract import extract_sql

    gens = gen.generate_sql(model, tokenizer, builder, questions, batch_size=cfg.batch_size,
                            max_new_tokens=cfg.max_new_tokens, progress=cfg.progress, autocast=cfg.autocast,
                            examples=examples, stats=stats, prefix=prefix)
    con = connect_readonly(db)
    try:
        for g in gens:
            g.error = execute(con, g.sql, timeout=cfg.timeout).error
        for _ in range(cfg.retries):
            todo = [i for i, g in enumerate(gens) if g.error]
            if not todo:
                break
            prompts = [gen.retry_prompt(builder, tokenizer, gens[i].question, gens[i].sql, gens[i].error,
                                        None if examples is None else examples[i]) for i in todo]
            outs = gen.generate_texts(model, tokenizer, prompts, batch_size=cfg.batch_size,
                                      max_new_tokens=cfg.max_new_tokens, progress=cfg.progress, autocast=cfg.autocast)
            for i, (raw, ntok, sec) in zip(todo, outs):
                g = gens[i]
                if g.retries == 0:
                    g.first_sql, g.first_error = g.sql, g.error
                g.raw, g.sql, g.tokens = raw, extract_sql(raw), ntok
                g.seconds += sec
                g.retries += 1
                g.error = execute(con, g.sql, timeout=cfg.timeout).error
                g.retry_changed = g.error is None
    finally:
        con.close()
    return gens


def _examples(questions: list[str], items: list[dict], cfg: EvalConfig) -> list[list[dict]] | None:
    """Each question's few-shot examples (`cfg.fewshot` > 0), from `cfg.fewshot_pool` only: the items being
    predicted and everything in `cfg.fewshot_exclude` are never shown. None without few-shot."""
    if cfg.fewshot <= 0:
        return None
    return fewshot_for(questions, cfg.fewshot_pool, cfg.fewshot, exclude=list(cfg.fewshot_exclude) + list(items))


def predict(model, tokenizer, builder: PromptBuilder, items: list[dict], db, cfg: EvalConfig | None = None,
            stats: GenerationStats | None = None, prefix=None) -> list[dict]:
    """One row per item: {id, question, sql, raw, seconds, retries, retry_changed, error, ...}.

    Few-shot examples (`cfg.fewshot` > 0) come from `cfg.fewshot_pool` (training data) only; the
    items being predicted and everything in `cfg.fewshot_exclude` are never shown. `prefix`: the schema
    prefix's KV cache under the model as it is (a server's, `generate.prefix_cache`) for the greedy pass; the
    fallbacks' untuned answers never use it (it holds the adapter's keys and values).
    """
    cfg = (cfg or EvalConfig()).validate()
    rows = _answers(model, tokenizer, builder, items, db, cfg, stats, prefix)
    return repair_rows(rows, db, cfg) if cfg.repair else rows


def _answers(model, tokenizer, builder: PromptBuilder, items: list[dict], db, cfg: EvalConfig,
             stats: GenerationStats | None = None, prefix=None) -> list[dict]:
    """`predict`'s rows before the last-resort repair."""
    questions = [it["question"] for it in items]
    known = cfg.untuned or {}
    if cfg.untuned_model and questions and all(q in known for q in questions):
        # the untuned model with its answers already known (`sqltune run`'s base stage, when training kept step 0):
        # those are the rows, as the model wrote them; the panel decodes only the answers with examples
        rows = [{k: v for k, v in as_written(known[q]).items() if k not in ("pool", "fallback")} for q in questions]
        return fall_back(model, tokenizer, builder, items, [dict(r, id=str(it.get("id", i)))
                                                             for i, (it, r) in enumerate(zip(items, rows))], db, cfg)
    examples = _examples(questions, items, cfg)
    if cfg.vote is not None:  # execution-guided decoding (issue 15): rows carry greedy_sql, overruled, candidates
        from .vote import predict_rows

        rows = predict_rows(model, tokenizer, builder, items, db, cfg.vote, examples=examples,
                            batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, timeout=cfg.timeout,
                            progress=cfg.progress, autocast=cfg.autocast)
        return fall_back(model, tokenizer, builder, items, rows, db, cfg)
    gens = predict_questions(model, tokenizer, builder, questions, db, cfg, examples=examples, stats=stats,
                             prefix=prefix)
    rows = []
    for i, (it, g) in enumerate(zip(items, gens)):
        row = {"id": str(it.get("id", i)), "question": g.question, "sql": g.sql, "raw": g.raw,
               "seconds": round(g.seconds, 4), "retries": g.retries, "retry_changed": g.retry_changed,
               "error": g.error}
        if g.retries:
            row["first_sql"], row["first_error"] = g.first_sql, g.first_error
        if examples is not None:
            row["fewshot"] = [e["question"] for e in examples[i]]
        rows.append(row)
    return fall_back(model, tokenizer, builder, items, rows, db, cfg)


def as_written(row: dict) -> dict:
    """A `predict` row as the model answered, before `repair_rows` (the row itself when it holds no repair)."""
    if row.get("model_sql") is None:
        return row
    out = {k: v for k, v in row.items() if k not in ("model_sql", "model_error")}
    out["sql"], out["error"] = row["model_sql"], row.get("model_error")
    return out


def _row_answers(row: dict) -> list[str]:
    """Every answer a row weighed, in its tie order: its own, the one the fallback replaced, the panel's voters
    (adapter, untuned, with examples; or the untuned panel's by number of examples), the vote's candidates."""
    pool, vote = row.get("pool") or {}, row.get("vote") or {}
    out = [row.get("sql"), (row.get("fallback") or {}).get("sql"), pool.get("sql"), pool.get("base_sql"),
           pool.get("fewshot_sql"), pool.get("adapter_fewshot_sql"), *(pool.get("answers") or {}).values(),
           *(c.get("sql") for c in vote.get("candidates") or ())]
    return [a for a in dict.fromkeys(out) if isinstance(a, str) and a.strip()]


def repair_rows(rows: list[dict], db, cfg: EvalConfig) -> list[dict]:
    """`cfg.repair`, the last resort: where a row's answer fails, the answers it weighed (`_row_answers`, in tie
    order) are rewritten against the schema in turn (`repair.fix`: the column qualified with the FROM's table that
    has it, a join along a foreign key, a near spelling) and the first rewrite that runs becomes the answer;
    `model_sql`/`model_error` keep what the row answered. Only failing answers are replaced, so no right answer turns
    wrong. Why last and not every voter before the vote: on session 27's dev halves repairing each voter first gave
    the panel -0.2 (a repaired wrong answer then votes), while a single answer gained up to +13 (BENCHMARKS.md,
    "Session 30")."""
    from .execute import connect_readonly, execute
    from .repair import fix

    todo = [r for r in rows if r.get("error") or not r.get("sql")]
    if not todo or not isinstance(db, (str, os.PathLike)):
        return rows
    con = connect_readonly(db)
    try:
        for r in todo:
            own = execute(con, r["sql"], timeout=cfg.timeout) if r.get("sql") else None
            if own is not None and own.ok:
                continue  # the row's error was stale
            for sql in _row_answers(r):  # the row's own answer first: its result is known already
                new, _res, repaired = fix(db, sql, own if sql == r.get("sql") else None, timeout=cfg.timeout, con=con)
                if repaired:
                    r["model_sql"], r["model_error"] = r.get("sql"), r.get("error")
                    r["sql"], r["error"] = new, None
                    break
    finally:
        con.close()
    return rows


def has_adapter(model) -> bool:
    """Whether `model` is a peft model with an adapter that `disable_adapter()` can switch off."""
    return bool(getattr(model, "peft_config", None)) and callable(getattr(model, "disable_adapter", None))


def greedy_answer(row: dict) -> str | None:
    """A `predict` row's greedy answer: the vote's greedy candidate, else the first attempt before any retry,
    else the answer as the model wrote it (before `repair_rows`)."""
    row = as_written(row)
    if "greedy_sql" in row:
        return row["greedy_sql"]
    return row.get("first_sql") if row.get("retries") else row.get("sql")


def untuned_rows(model, tokenizer, builder: PromptBuilder, items: list[dict], cfg: EvalConfig, db,
                 evaluated: list[dict]) -> list[dict]:
    """The untuned model's `predict` rows for `items` (some of `evaluated`, the items being evaluated) under
    `cfg`'s settings (the adapter switched off, no fallback, `evaluated` kept out of few-shot examples as in the
    first pass): those `cfg.untuned` holds (by question) are taken from there, only the others are decoded."""
    known = cfg.untuned or {}
    rows: list = [known.get(it["question"]) for it in items]
    todo = [i for i, r in enumerate(rows) if r is None]
    if todo:
        sub_cfg = cfg.with_(fallback="none", untuned=None, repair=False,
                            fewshot_exclude=list(cfg.fewshot_exclude) + list(evaluated))
        with model.disable_adapter():
            for i, r in zip(todo, predict(model, tokenizer, builder, [items[i] for i in todo], db, sub_cfg)):
                rows[i] = r
    return rows


def fall_back(model, tokenizer, builder: PromptBuilder, items: list[dict], rows: list[dict], db,
              cfg: EvalConfig) -> list[dict]:
    """`cfg.fallback == "base"`: the rows whose SQL is missing or does not execute are predicted again by the model under
    the adapter (the same settings, the vote included), and where that SQL executes it becomes the row's answer (the
    untuned rows `cfg.untuned` holds are not decoded again: `untuned_rows`); `row["fallback"]` keeps what the adapter
    wrote ({sql, raw, error}). Session 14's singer: after GRPO three questions read `SELECT Title, Name FROM song` (no
    such column), every vote sample the same, where the untuned model had joined. Other rows, a model without an
    adapter, or `fallback: none`: `rows` unchanged."""
    if cfg.untuned_model and cfg.fallback != "panel":
        return rows  # the untuned model (a step-0 adapter included) has no other model to fall back on
    if cfg.fallback == "vote":
        return pool_vote(model, tokenizer, builder, items, rows, db, cfg)
    if cfg.fallback == "panel":
        return panel_vote(model, tokenizer, builder, items, rows, db, cfg)
    todo = [i for i, r in enumerate(rows) if r.get("error") or not r.get("sql")]
    if cfg.fallback != "base" or not todo or not has_adapter(model):
        return rows
    t = time.perf_counter()
    base_rows = untuned_rows(model, tokenizer, builder, [items[i] for i in todo], cfg, db, items)
    per_q = (time.perf_counter() - t) / len(todo)
    for i, b in zip(todo, base_rows):
        r = rows[i]
        r["seconds"] = round(r.get("seconds", 0.0) + per_q, 4)
        if b.get("sql") and not b.get("error"):
            r["fallback"] = {"sql": r.get("sql"), "raw": r.get("raw"), "error": r.get("error")}
            r["sql"], r["raw"], r["error"] = b["sql"], b.get("raw"), None
    return rows


def pool_vote(model, tokenizer, builder: PromptBuilder, items: list[dict], rows: list[dict], db,
              cfg: EvalConfig) -> list[dict]:
    """`cfg.fallback == "vote"`: the untuned model (the same weights under `disable_adapter`) answers every question
    greedily (where `cfg.untuned` does not hold its answer already: `greedy_answer`); where the row's answer does not
    execute, or executes to another result than the untuned answer (when that executes), both models draw `cfg.vote.n`
    candidates (greedy + samples, the vote's settings) and the result most of all 2n agree on wins (`vote.choose`; the
    adapter's greedy is the greedy candidate, ties go to the likelier SQL). Why: after GRPO the 0.5B's wrong answers
    where the untuned model was right all execute (18 of 18 on the devsuite, BENCHMARKS.md "Session 18 lease"), so
    `base`, which looks only at answers that fail, never sees them. `row["pool"]` records every pooled question ({sql,
    raw, error: the answer before; base_sql; source: adapter or base; votes}); `row["fallback"]` is set where the answer
    taken is the untuned model's. A model without an adapter: `rows` unchanged."""
    if not has_adapter(model) or cfg.vote is None:
        return rows
    from .execute import connect_readonly, execute
    from .vote import choose, same_result, sample_sql

    questions = [it["question"] for it in items]
    examples = _examples(questions, items, cfg)
    kw = dict(temperature=cfg.vote.temperature, top_p=cfg.vote.top_p, seed=cfg.vote.seed, max_new_tokens=cfg.max_new_tokens,
              batch_size=cfg.batch_size, progress=cfg.progress, autocast=cfg.autocast)
    t = time.perf_counter()
    known = cfg.untuned or {}
    base = [greedy_answer(known[q]) if q in known else None for q in questions]
    todo = [i for i, q in enumerate(questions) if q not in known]
    if todo:
        ex = None if examples is None else [examples[i] for i in todo]
        with model.disable_adapter():
            for i, cs in zip(todo, sample_sql(model, tokenizer, builder, [questions[i] for i in todo], 1,
                                              examples=ex, **kw)):
                base[i] = cs[0].sql
    con = connect_readonly(db)
    try:
        todo = []
        for i, (r, b) in enumerate(zip(rows, base)):
            mine = execute(con, r["sql"], timeout=cfg.timeout) if r.get("sql") else None
            if mine is None or not mine.ok:
                todo.append(i)
                continue
            theirs = execute(con, b, timeout=cfg.timeout) if b else None
            if theirs is not None and theirs.ok and not same_result(mine.rows, theirs.rows):
                todo.append(i)
        if todo:
            sub = [questions[i] for i in todo]
            ex = None if examples is None else [examples[i] for i in todo]
            own = sample_sql(model, tokenizer, builder, sub, cfg.vote.n, examples=ex, **kw)
            with model.disable_adapter():
                other = sample_sql(model, tokenizer, builder, sub, cfg.vote.n, examples=ex, **kw)
            for i, mine_c, base_c in zip(todo, own, other):
                for c in base_c:
                    c.greedy = False  # one greedy candidate: the adapter's
                pooled = mine_c + base_c
                out = choose(con, pooled, timeout=cfg.timeout)
                r = rows[i]
                source = "adapter" if out.chosen < len(mine_c) else "base"
                r["pool"] = {"sql": r.get("sql"), "raw": r.get("raw"), "error": r.get("error"), "base_sql": base[i],
                             "source": source, "votes": max((g["votes"] for g in out.groups), default=0)}
                if out.sql != r.get("sql"):
                    if source == "base":
                        r["fallback"] = {"sql": r.get("sql"), "raw": r.get("raw"), "error": r.get("error")}
                    r["sql"], r["raw"], r["error"] = out.sql, pooled[out.chosen].raw, out.candidates[out.chosen]["error"]
    finally:
        con.close()
    return _spread_seconds(rows, t)


def _with_examples(model, tokenizer, builder: PromptBuilder, items: list[dict], idx: list[int], db, cfg: EvalConfig,
                   k: int) -> list[str | None]:
    """A panel voter's greedy answers to `items[i]` for i in `idx`, with `k` retrieved training examples (the items
    being evaluated never shown), as written: no vote, fallback, retry or repair. The caller switches the adapter."""
    sub_cfg = cfg.with_(fallback="none", untuned=None, untuned_model=False, vote=None, retries=0, repair=False,
                        fewshot=k, fewshot_exclude=list(cfg.fewshot_exclude) + list(items))
    return [r.get("sql") for r in predict(model, tokenizer, builder, [items[i] for i in idx], db, sub_cfg)]


def panel_vote(model, tokenizer, builder: PromptBuilder, items: list[dict], rows: list[dict], db,
               cfg: EvalConfig) -> list[dict]:
    """`cfg.fallback == "panel"`: three greedy answers per question vote by result (`vote.choose`): the adapter's (the
    row's answer), the untuned model's (the same weights under `disable_adapter`; `cfg.untuned`'s where known) and the
    untuned model's with `cfg.panel_fewshot` training examples retrieved from `cfg.fewshot_pool` (the questions being
    evaluated never shown; decoded only where the first two do not agree already, since two agreeing answers win). An
    answer that fails or returns no rows does not vote; ties go to the adapter's answer, then the untuned model's. Two untuned answers that agree thus overrule the adapter, and either one answers where
    the adapter's fails. Why: on held-out halves of the exoplanets and devsuite train splits the adapter and the
    untuned model with examples were right on different questions (each about a quarter of the exoplanets halves,
    together 36 %), and the panel answered 3-4 points more of the exoplanets halves and 5 more of the devsuite halves
    than `base` (BENCHMARKS.md, "Session 27"). Without a pool (or `panel_fewshot: 0`) the panel is the two models.
    `cfg.panel_tuned_fewshot` > 0 adds a fourth voter, last in tie order: the adapter's own answer with that many
    retrieved examples, decoded only where the adapter's answer is not in a group of two already (there two of four
    win or tie, and ties go to the adapter). `row["pool"]` records every question ({sql, raw, error: the adapter's
    answer; base_sql, fewshot_sql, adapter_fewshot_sql (with a fourth voter); source: adapter, base, fewshot or
    adapter_fewshot; votes}); `row["fallback"]` is set where the answer taken is not the adapter's. A model without
    an adapter: `rows` unchanged."""
    if cfg.untuned_model:
        return untuned_panel(model, tokenizer, builder, items, rows, db, cfg)
    if not has_adapter(model):
        return rows
    from .execute import connect_readonly
    from .vote import Candidate, choose

    t = time.perf_counter()
    base = [greedy_answer(r) for r in untuned_rows(model, tokenizer, builder, items, cfg, db, items)]
    names = ("adapter", "base", "fewshot", "adapter_fewshot")

    def vote(con, sqls) -> object:  # the answers in tie order: the adapter's first
        return choose(con, [Candidate(sql=sql, raw="", mean_logprob=-float(k), greedy=k == 0)
                            for k, sql in enumerate(sqls)], timeout=cfg.timeout)

    con = connect_readonly(db)
    try:
        # where the two models' answers agree (both run, with rows), they are the majority whatever the third says:
        # the examples' pass decodes only the other questions (the outcome is the same, for less time)
        outs = [vote(con, (r.get("sql"), b)) for r, b in zip(rows, base)]
        judge = cfg.panel_judge == "reviewer"  # the reviewer weighs every voter's result: all are decoded
        todo = [i for i, o in enumerate(outs) if judge or not any(g["votes"] == 2 for g in o.groups)]
        shots = [None] * len(items)
        if cfg.panel_fewshot > 0 and cfg.fewshot_pool and todo:
            with model.disable_adapter():
                sqls = _with_examples(model, tokenizer, builder, items, todo, db, cfg, cfg.panel_fewshot)
            for i, sql in zip(todo, sqls):
                shots[i] = sql
                outs[i] = vote(con, (rows[i].get("sql"), base[i], shots[i]))
        own = [None] * len(items)
        if cfg.panel_tuned_fewshot > 0 and cfg.fewshot_pool:
            # the fourth voter, the adapter's answer with examples, last in tie order: where the adapter's answer is
            # in a group of two already, two of four win or tie (ties go to the adapter), so it is decoded elsewhere
            fourth = [i for i, o in enumerate(outs)
                      if judge or not any(g["votes"] >= 2 and 0 in g["members"] for g in o.groups)]
            if fourth:
                for i, sql in zip(fourth, _with_examples(model, tokenizer, builder, items, fourth, db, cfg,
                                                         cfg.panel_tuned_fewshot)):
                    own[i] = sql
                    outs[i] = vote(con, (rows[i].get("sql"), base[i], shots[i], own[i]))
        reviews = review_outcomes(model, tokenizer, builder, items, outs, cfg) if judge else [None] * len(items)
        for r, b, f, o, out, rev in zip(rows, base, shots, own, outs, reviews):
            chosen = elected_candidate(out, rev)
            r["pool"] = {"sql": r.get("sql"), "raw": r.get("raw"), "error": r.get("error"), "base_sql": b,
                         "fewshot_sql": f, "source": names[chosen],
                         "votes": max((g["votes"] for g in out.groups), default=0)}
            if cfg.panel_tuned_fewshot > 0:
                r["pool"]["adapter_fewshot_sql"] = o
            _take_elected(r, out, chosen, own=chosen == 0, review=rev)
    finally:
        con.close()
    return _spread_seconds(rows, t)


def untuned_panel(model, tokenizer, builder: PromptBuilder, items: list[dict], rows: list[dict], db,
                  cfg: EvalConfig) -> list[dict]:
    """`cfg.fallback == "panel"` when the model answering is the untuned one (`cfg.untuned_model`: no adapter was
    given, or training kept step 0): three greedy answers of that model vote by result (`vote.choose`): with
    `cfg.panel_fewshot` retrieved training examples, with `cfg.fewshot` (the row's own answer, usually none), and with
    `cfg.panel_fewshot // 2`, ties in that order (the same number twice votes once). The third is decoded only where
    the first two do not agree already. An answer that fails or returns no rows does not vote. Why: on held-out halves
    of the exoplanets and devsuite train splits these answers were right on different questions, and their panel
    answered 30.0 / 68.8 % where the answer without examples answered 19.6 / 52.0 % (BENCHMARKS.md, "Noticed after
    the read", session 28); when training keeps step 0 the adapter's panel has no adapter to vote with. `row["pool"]`
    records every question ({sql, raw, error: the row's answer; base_sql: the same; answers: {k: sql}; source: the
    k chosen, as "fewshot<k>"; votes; untuned: True}); `row["fallback"]` is set where the answer taken is not the
    row's. Without a pool of training pairs (or `panel_fewshot: 0`) there is nothing to vote with: `rows` unchanged."""
    ks = list(dict.fromkeys((cfg.panel_fewshot, cfg.fewshot, cfg.panel_fewshot // 2)))
    if cfg.panel_fewshot <= 0 or not cfg.fewshot_pool or len(ks) < 2:
        return rows
    from contextlib import nullcontext

    from .execute import connect_readonly
    from .vote import Candidate, choose

    t = time.perf_counter()
    answers = {cfg.fewshot: [r.get("sql") for r in rows]}

    def decode(k: int, idx: list[int]) -> None:
        answers.setdefault(k, [None] * len(items))
        with model.disable_adapter() if has_adapter(model) else nullcontext():  # an adapter kept at step 0
            for i, sql in zip(idx, _with_examples(model, tokenizer, builder, items, idx, db, cfg, k)):
                answers[k][i] = sql

    def vote(con, i: int, voters: list[int]):  # the answers in tie order
        return choose(con, [Candidate(sql=answers[k][i], raw="", mean_logprob=-float(n), greedy=n == 0)
                            for n, k in enumerate(voters)], timeout=cfg.timeout)

    for k in ks[:2]:  # the row's answer is one of them unless a user's `fewshot` is `panel_fewshot` itself
        if k not in answers:
            decode(k, list(range(len(items))))
    con = connect_readonly(db)
    try:
        outs = [vote(con, i, ks[:2]) for i in range(len(items))]
        # where the first two agree (both run, with rows) they are the majority whatever the third says
        judge = cfg.panel_judge == "reviewer"  # the reviewer weighs every voter's result: all are decoded
        third = ({i for i, o in enumerate(outs) if judge or not any(g["votes"] == 2 for g in o.groups)}
                 if len(ks) > 2 else set())
        if third:
            decode(ks[2], sorted(third))
            for i in third:
                outs[i] = vote(con, i, ks)
        reviews = review_outcomes(model, tokenizer, builder, items, outs, cfg) if judge else [None] * len(items)
        for i, (r, out, rev) in enumerate(zip(rows, outs, reviews)):
            voters = ks if i in third else ks[:2]
            chosen = elected_candidate(out, rev)
            k = voters[chosen]
            r["pool"] = {"sql": r.get("sql"), "raw": r.get("raw"), "error": r.get("error"), "base_sql": r.get("sql"),
                         "answers": {str(v): answers[v][i] for v in voters}, "source": f"fewshot{k}",
                         "votes": max((g["votes"] for g in out.groups), default=0), "untuned": True}
            _take_elected(r, out, chosen, own=k == cfg.fewshot, review=rev)
    finally:
        con.close()
    return _spread_seconds(rows, t)


def _take_elected(row: dict, out, chosen: int, *, own: bool, review: dict | None) -> None:
    """A panel's election written into `row` (whose `pool` is set): the reviewer's scores, if it judged, and the
    elected candidate's SQL as the row's answer unless it is the row's own (`own`) or the same text; the answer it
    replaces is kept in `row["fallback"]`."""
    if review:
        row["pool"]["review"] = review
    sql = out.candidates[chosen]["sql"]
    if not own and sql and sql != row.get("sql"):
        row["fallback"] = {"sql": row.get("sql"), "raw": row.get("raw"), "error": row.get("error")}
        row["sql"], row["raw"], row["error"] = sql, sql, out.candidates[chosen]["error"]


def review_outcomes(model, tokenizer, builder: PromptBuilder, items: list[dict], outs: list, cfg: EvalConfig) -> list:
    """`cfg.panel_judge == "reviewer"`: per question whose voters give two or more result groups, {sql: log P(question
    | sql)} for each SQL in a group, under the untuned model (an adapter is switched off); None elsewhere. Why: on
    session 32's dev halves the untuned 1.5B's panel with the reviewer electing answered 87.0 % per folder against
    84.1 % by votes (6 fixed, 2 broken), where more voters (samples, a larger example pool) had not helped: its wrong
    answers were the model's habit, which votes repeat (BENCHMARKS.md, "Session 32")."""
    from contextlib import nullcontext

    from .generate import _progress
    from .vote import review_scores

    out: list = [None] * len(items)
    todo = [i for i, o in enumerate(outs) if len(o.groups) >= 2]
    if not todo:
        return out
    bar = _progress(len(todo), cfg.progress, "reviewing")
    with model.disable_adapter() if has_adapter(model) else nullcontext():
        for i in todo:
            sqls = sorted({c["sql"] for c in outs[i].candidates if c["votes"]})
            out[i] = {s: round(v, 4) for s, v in zip(sqls, review_scores(model, tokenizer, builder,
                                                                         items[i]["question"], sqls,
                                                                         autocast=cfg.autocast))}
            bar.update(1)
    bar.close()
    return out


def elected_candidate(out, review: dict | None) -> int:
    """The candidate the panel takes: the reviewer's where it judged (`vote.review_pick`), else the vote's."""
    if review:
        from .vote import review_pick

        k = review_pick(out, review)
        if k is not None:
            return k
    return out.chosen


def _spread_seconds(rows: list[dict], t: float) -> list[dict]:
    """Add the time since `t` (a vote or panel over all `rows`) to each row's seconds, in equal shares."""
    per_q = (time.perf_counter() - t) / max(1, len(rows))
    for r in rows:
        r["seconds"] = round(r.get("seconds", 0.0) + per_q, 4)
    return rows


# ---------------------------------------------------------------- evaluate
def evaluate(model, tokenizer, builder: PromptBuilder, items: list[dict], db, cfg: EvalConfig | None = None) -> dict:
    """Predict, then score by execution. Returns the report.

    The report is `score_pairs`'s ({summary, examples}) plus `timing` {seconds, queries_per_s,
    generation: where the time went}, `eval_config` (the settings), `predictions` (the `predict`
    rows) and, per example, the prediction's raw text, latency and retry fields.
    `summary.retried`/`summary.retry_fixed` count questions re-prompted / turned from wrong to exact.
    """
    from .score import score_pairs

    cfg = (cfg or EvalConfig()).validate()
    limits = {"timeout": cfg.timeout, **({"max_rows": cfg.max_rows} if cfg.max_rows is not None else {})}
    stats = GenerationStats()
    t = time.perf_counter()
    rows = predict(model, tokenizer, builder, items, db, cfg, stats=stats)
    seconds = time.perf_counter() - t
    report = score_pairs(db, items, [r["sql"] for r in rows], test_suite=cfg.test_suite, **limits)
    retried = [i for i, r in enumerate(rows) if r.get("retries")]
    first = {}
    if retried:
        sub = score_pairs(db, [items[i] for i in retried], [rows[i]["first_sql"] for i in retried], **limits)
        first = dict(zip(retried, sub["examples"]))
    for i, (ex, r) in enumerate(zip(report["examples"], rows)):
        ex.update(raw=r["raw"], seconds=r["seconds"], retries=r.get("retries", 0), retry_changed=r.get("retry_changed", False))
        if r.get("model_sql") is not None:
            ex["model_sql"] = r["model_sql"]
        if i in first:
            ex["first_sql"] = r["first_sql"]
            ex["first_exact"] = first[i]["exact"]
    if cfg.fallback != "none":  # which answers came from the model under the adapter (`fall_back`)
        used = [i for i, r in enumerate(rows) if "fallback" in r]
        for i in used:
            report["examples"][i]["fallback"] = rows[i]["fallback"]
        report["summary"]["fallback_used"] = len(used)
        report["summary"]["fallback_fixed"] = sum(1 for i in used if report["examples"][i]["exact"])
    if cfg.fallback in ("vote", "panel"):  # the pooled vote or the panel: questions weighed, changed, fixed, broken
        pooled = [i for i, r in enumerate(rows) if "pool" in r]
        changed = [i for i in pooled if rows[i]["pool"]["sql"] != rows[i]["sql"]]
        before = dict(zip(changed, score_pairs(db, [items[i] for i in changed], [rows[i]["pool"]["sql"] for i in changed],
                                               **limits)["examples"])) if changed else {}
        for i in pooled:
            report["examples"][i]["pool"] = rows[i]["pool"]
        report["summary"].update(
            pool_voted=len(pooled), pool_changed=len(changed),
            pool_fixed=sum(1 for i in changed if report["examples"][i]["exact"] and not before[i]["exact"]),
            pool_hurt=sum(1 for i in changed if before[i]["exact"] and not report["examples"][i]["exact"]))
    if cfg.repair:  # answers that are a rewrite of a failing answer (`repair_rows`), and how many of them are right
        repaired = [i for i, r in enumerate(rows) if r.get("model_sql") is not None]
        report["summary"]["repaired"] = len(repaired)
        report["summary"]["repair_exact"] = sum(1 for i in repaired if report["examples"][i]["exact"])
    report["summary"]["retried"] = len(retried)
    report["summary"]["retry_fixed"] = sum(1 for i in retried if report["examples"][i]["exact"] and not first[i]["exact"])
    report["timing"] = {"seconds": round(seconds, 3), "queries_per_s": round(len(items) / seconds, 4) if seconds else 0.0,
                        "generation": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.to_dict().items()}}
    if cfg.vote is not None:
        from .vote import vote_summary

        report["vote"] = vote_summary(db, items, rows, report, timeout=cfg.timeout)
        report["vote"].update(n=cfg.vote.n, when=cfg.vote.when)  # the setting (`when: error` votes on some questions)
    report["eval_config"] = cfg.to_dict()
    report["predictions"] = rows
    return report


# ---------------------------------------------------------------- keyword forms (older call sites)
def _config(kw: dict) -> EvalConfig:
    kw = dict(kw)
    if "fewshot_k" in kw:
        kw["fewshot"] = kw.pop("fewshot_k")
    if kw.get("fewshot_exclude") is not None:
        kw["fewshot_exclude"] = list(kw["fewshot_exclude"])
    return EvalConfig(**{k: v for k, v in kw.items() if v is not None or k == "max_rows"})


def predict_items(model, tokenizer, builder: PromptBuilder, items: list[dict], db, *,
                  stats: GenerationStats | None = None, **kw) -> list[dict]:
    """`predict` with the EvalConfig given as keywords (`fewshot_k` = `fewshot`)."""
    return predict(model, tokenizer, builder, items, db, _config(kw), stats=stats)


def evaluate_items(model, tokenizer, builder: PromptBuilder, items: list[dict], db, **kw) -> dict:
    """`evaluate` with the EvalConfig given as keywords (`fewshot_k` = `fewshot`)."""
    return evaluate(model, tokenizer, builder, items, db, _config(kw))
