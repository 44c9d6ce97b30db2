"""`sqltune ask`, `sqltune predict`, `sqltune eval` and `sqltune models`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import typer

from ..answer import ASK_VOTE, ask_vote  # noqa: F401 - `ask`'s defaults live with the API it calls (sqltune.answer)
from ..answer import vote_settings as _vote
from ..errors import SqltuneError
from .options import (ADAPTER, BATCH_SIZE, DB, DEVICE, DTYPE, FALLBACK, FEWSHOT, FEWSHOT_POOL, MAX_NEW_TOKENS, MERGE,
                      MODEL, NOTES, PANEL_JUDGE, PROMPT_STYLE, REPAIR, RETRIES)

SHOW_ROWS = 50


def _fewshot_pool(data: str, pool: Optional[str]) -> list[dict]:
    """Training items for few-shot examples: --fewshot-pool, else NAME:train for a packaged NAME:SPLIT."""
    from ..dataset import load_items

    if pool:
        return load_items(pool)
    name, sep, split = data.partition(":")
    if sep and not Path(data).exists() and "/" not in name:
        if split == "train":
            raise SqltuneError("few-shot examples come from training data; evaluating on train leaves none (pass --fewshot-pool)")
        return load_items(f"{name}:train")
    raise SqltuneError("--fewshot and --fallback panel need --fewshot-pool TRAIN_FILE (examples come only from "
                       "training data)")


def _load(model, adapter, device, dtype, prompt_style, db, notes, merge: bool = True):
    from ..evaluate import load_for_inference
    from ..model import pick_device

    dev = pick_device(device, dtype)
    m, tok, builder = load_for_inference(model, adapter, dev, prompt_style, db, notes, merge=merge)
    return m, tok, builder, dev


def vote_line(vote: dict, n: int, overruled: bool) -> str:
    """`ask`'s one line about a vote: how many candidates returned the chosen result (the chosen candidate's
    group, not the first group formed), or that none returned rows."""
    agree = next((g["votes"] for g in vote["groups"] if vote["chosen"] in g["members"]), 0)
    if agree:
        line = f"vote {n}: {agree} of {n} candidates agree on this result"
    elif any(c.get("error") is None and c.get("sql") for c in vote["candidates"]):
        line = f"vote {n}: no candidate returned rows; this is the likeliest one that ran"
    else:
        line = f"vote {n}: no candidate ran"
    return line + ("; the vote overruled the greedy answer" if overruled else "")


def _slug(spec: str) -> str:
    p = Path(spec)
    return p.stem if p.suffix else re.sub(r"[^\w.-]+", "-", spec).strip("-")


def register(app: typer.Typer) -> None:
    vote_opt = typer.Option(1, "--vote", help="Execution-guided decoding: greedy + N-1 samples, executed; "
                            "the most common result wins (1 = greedy only, at most 64).")
    temp_opt = typer.Option(0.8, "--temperature", help="Sampling temperature of --vote's samples (> 0).")
    top_p_opt = typer.Option(0.95, "--top-p", help="Nucleus sampling of --vote's samples (0 < p <= 1).")
    correct_opt = typer.Option(False, "--vote-correct", help="When the top two results of --vote are within one "
                               "vote, show the model both queries and their first rows and let it write the answer.")
    when_opt = typer.Option("always", "--vote-when", help="always: vote on every question; error: answer greedily "
                            "and vote only where that SQL does not execute (samples are drawn for those questions only).")
    # `ask` answers rather than measures: by default it votes where greedy fails (ASK_VOTE candidates)
    ask_vote_opt = typer.Option(None, "--vote", help="Execution-guided decoding: greedy + N-1 samples, executed; the "
                                "most common result wins (1 = greedy only, at most 64). Default: greedy, and "
                                f"{ASK_VOTE} candidates only when the greedy SQL does not execute (with --retries: greedy).")
    ask_when_opt = typer.Option(None, "--vote-when", help="always: vote on the question; error: only when the greedy "
                                "SQL does not execute (the default without --vote; with --vote N: always).")

    @app.command("ask")
    def ask_cmd(
        question: str = typer.Argument(..., help="A question about the database, in plain words."),
        db: Optional[str] = DB,
        model: Optional[str] = MODEL,
        adapter: Optional[Path] = ADAPTER,
        as_json: bool = typer.Option(False, "--json", help='Print one JSON object {"sql", "columns", "rows", "error"}.'),
        prompt_style: Optional[str] = PROMPT_STYLE,
        notes: Optional[Path] = NOTES,
        retries: int = RETRIES,
        repair: Optional[bool] = typer.Option(None, "--repair/--no-repair", help=REPAIR.help + " Default: on, or "
                                              "the run's eval.repair with --run."),
        device: Optional[str] = DEVICE,
        dtype: Optional[str] = DTYPE,
        vote: Optional[int] = ask_vote_opt,
        temperature: float = temp_opt,
        top_p: float = top_p_opt,
        vote_correct: bool = correct_opt,
        vote_when: Optional[str] = ask_when_opt,
        merge: bool = MERGE,
        fallback: Optional[str] = typer.Option(None, "--fallback", help=FALLBACK.help + " Default: none, or the "
                                               "run's eval.fallback with --run."),
        run: Optional[Path] = typer.Option(None, "--run", help="A finished `sqltune run` folder: its final adapter "
                                           "(as `serve --run` picks it), database, notes and fallback."),
        panel_judge: Optional[str] = PANEL_JUDGE,
    ):
        """Answer one question: write SQL with the model, run it read-only, print the result.

        \b
        Examples:
          sqltune ask "How many planets were discovered in 2016?" --db exo.sqlite
          sqltune ask "Which singers are French?" --run runs/mine     # a run's final model, DB and fallback
        """
        from ..answer import load
        from ..console import echo, esc, show, table

        if not question.strip():
            raise SqltuneError("the question is empty")
        a = load(model, adapter, db, run=run, device=device, dtype=dtype, prompt_style=prompt_style, notes=notes,
                 vote=vote, vote_when=vote_when, temperature=temperature, top_p=top_p, vote_correct=vote_correct,
                 retries=retries, fallback=fallback, merge=merge, repair=repair,
                 panel_judge=panel_judge).ask(question)
        if as_json:
            out = {"sql": a.sql, "columns": a.columns, "rows": [list(r) for r in a.rows], "error": a.error}
            for key in ("vote", "correction", "fallback", "pool", "repaired"):
                if getattr(a, key) is not None:
                    out[key] = getattr(a, key)
            print(json.dumps(out, default=str, ensure_ascii=False))
            return
        if a.pool is not None and a.pool.get("untuned"):
            p = a.pool
            echo(f"the untuned model answered with and without retrieved training examples; {p['votes']} of its "
                 f"answers agreed on this result ({p['source'].replace('fewshot', '')} examples)")
        elif a.pool is not None:
            p = a.pool
            echo(f"the tuned and the untuned model answered differently; both voted ({p['votes']} candidates agreed): "
                 f"this is the {'tuned' if p['source'] == 'adapter' else 'untuned'} model's answer")
        elif a.fallback is not None:
            echo(f"the tuned model's SQL failed ({esc(a.fallback['error'] or 'no SQL')}); "
                 "this is the untuned model's answer")
        if a.repaired is not None:
            echo(f"the model's SQL failed ({esc(a.repaired['error'] or 'failed')}): {esc(a.repaired['sql'])}; "
                 "this is its repair against the schema")
        echo(esc(a.sql) if a.sql else f"[red]no SQL in the model's output:[/] {esc(repr(a.raw))}")
        if a.error:
            echo(f"[red]error ({esc(a.error_kind)}):[/] {esc(a.error)}")
            raise typer.Exit(1)
        show(table(a.columns, a.rows[:SHOW_ROWS]))
        more = len(a.rows) - SHOW_ROWS
        count = f"{len(a.rows)} row" + ("" if len(a.rows) == 1 else "s")
        echo(count + (f" ({more} not shown)" if more > 0 else "") + f", SQL written in {a.seconds:.1f} s")
        if a.vote is not None:
            echo(vote_line(a.vote, len(a.vote["candidates"]), a.overruled))
            fx = a.correction or {}
            if fx.get("ran"):
                echo("close vote: the correction step " + ("changed the answer" if fx.get("changed") else
                                                           "kept the voted answer"))

    def _predict(data, db, model, adapter, prompt_style, notes, batch_size, retries, fewshot, fewshot_pool,
                 max_new_tokens, device, dtype, evaluate: bool, test_suite=None, vote=None, merge: bool = True,
                 fallback: str = "none", repair: bool = True, panel_judge: str | None = None):
        from ..dataset import load_items
        from ..db import resolve_db
        from ..evaluate import evaluate_items, fallback_merge, predict_items

        merge = fallback_merge(fallback, adapter, merge)
        if panel_judge is not None:
            from ..evaluate import check_panel_judge

            check_panel_judge(panel_judge)
        dbp = resolve_db(db, need_tables=True)
        items = load_items(data, need_sql=evaluate)
        if not items:
            raise SqltuneError(f"{data}: no items")
        pool = _fewshot_pool(data, fewshot_pool) if fewshot > 0 or fallback == "panel" else None
        if evaluate and test_suite:  # before the model loads: a bad suite fails fast
            from ..testsuite import build_suite, load_suite

            test_suite = build_suite(dbp, items).meta if test_suite == "auto" else load_suite(test_suite)
        m, tok, builder, dev = _load(model, adapter, device, dtype, prompt_style, dbp, notes, merge)
        from ..checkpoint import is_untuned

        kw = dict(batch_size=batch_size, max_new_tokens=max_new_tokens, retries=retries, repair=repair, fewshot_k=fewshot,
                  fewshot_pool=pool, autocast=dev.autocast, vote=vote, fallback=fallback,
                  untuned_model=fallback == "panel" and is_untuned(model, adapter), panel_judge=panel_judge)
        if evaluate:
            report = evaluate_items(m, tok, builder, items, dbp, test_suite=test_suite, **kw)
            return report["predictions"], report
        return predict_items(m, tok, builder, items, dbp, **kw), None

    @app.command("predict")
    def predict_cmd(
        data: str = typer.Option(..., "--data", help="Questions: NAME:SPLIT (e.g. exoplanets:valid), .jsonl, .csv or .json."),
        out: Path = typer.Option(..., "--out", help="Predictions JSONL (rows with id and sql; `sqltune score` reads it)."),
        db: Optional[str] = DB,
        model: Optional[str] = MODEL,
        adapter: Optional[Path] = ADAPTER,
        prompt_style: Optional[str] = PROMPT_STYLE,
        notes: Optional[Path] = NOTES,
        batch_size: int = BATCH_SIZE,
        retries: int = RETRIES,
        repair: bool = REPAIR,
        fewshot: int = FEWSHOT,
        fewshot_pool: Optional[str] = FEWSHOT_POOL,
        max_new_tokens: int = MAX_NEW_TOKENS,
        device: Optional[str] = DEVICE,
        dtype: Optional[str] = DTYPE,
        vote: int = vote_opt,
        temperature: float = temp_opt,
        top_p: float = top_p_opt,
        vote_correct: bool = correct_opt,
        vote_when: str = when_opt,
        merge: bool = MERGE,
        fallback: str = FALLBACK,
        panel_judge: Optional[str] = PANEL_JUDGE,
    ):
        """Write SQL for every question of a dataset (batched, greedy) into a JSONL file.

        The questions need a `question` field (an `sql` field is not needed). Example:
        sqltune predict --data exoplanets:valid --out pred.jsonl --adapter runs/X/adapter
        """
        from ..console import echo, esc
        from ..dataset import write_jsonl
        from ..files import check_writable

        check_writable(out, inputs=(data, db, notes, fewshot_pool))
        settings = _vote(vote, temperature, top_p, retries, vote_correct, vote_when)
        rows, _ = _predict(data, db, model, adapter, prompt_style, notes, batch_size, retries, fewshot, fewshot_pool,
                           max_new_tokens, device, dtype, evaluate=False, vote=settings, merge=merge,
                           fallback=fallback, repair=repair, panel_judge=panel_judge)
        write_jsonl(out, rows)
        secs = sum(r["seconds"] for r in rows)
        ran = sum(r["error"] is None for r in rows)
        echo(f"wrote {esc(out)}: {len(rows)} predictions, {ran} run without error; "
             f"mean latency {secs / len(rows):.2f} s")

    @app.command("eval")
    def eval_cmd(
        data: str = typer.Option(..., "--data", help="Gold items: NAME:SPLIT (e.g. exoplanets:valid), .jsonl, .csv or .json."),
        out_dir: Path = typer.Option(Path("."), "--out-dir", help="Folder for <data>_pred.jsonl and <data>_report.json."),
        db: Optional[str] = DB,
        model: Optional[str] = MODEL,
        adapter: Optional[Path] = ADAPTER,
        prompt_style: Optional[str] = PROMPT_STYLE,
        notes: Optional[Path] = NOTES,
        batch_size: int = BATCH_SIZE,
        retries: int = RETRIES,
        repair: bool = REPAIR,
        fewshot: int = FEWSHOT,
        fewshot_pool: Optional[str] = FEWSHOT_POOL,
        max_new_tokens: int = MAX_NEW_TOKENS,
        device: Optional[str] = DEVICE,
        dtype: Optional[str] = DTYPE,
        show: bool = typer.Option(False, "--show", help="Also print the per-question table."),
        test_suite: Optional[str] = typer.Option(None, "--test-suite", help="A suite folder from `sqltune testsuite "
                                                 "build`, or `auto` to build (or reuse) one: adds the `suite` metric."),
        vote: int = vote_opt,
        temperature: float = temp_opt,
        top_p: float = top_p_opt,
        vote_correct: bool = correct_opt,
        vote_when: str = when_opt,
        merge: bool = MERGE,
        fallback: str = FALLBACK,
        panel_judge: Optional[str] = PANEL_JUDGE,
    ):
        """Predict and score in one step (execution accuracy); writes predictions and the report.

        Example: sqltune eval --data exoplanets:test --adapter runs/X/adapter --out-dir results
        """
        from ..cli import print_examples, print_summary
        from ..console import echo, esc
        from ..dataset import write_jsonl
        from ..files import check_writable, write_json

        check_writable(out_dir, "--out-dir", folder=True)
        settings = _vote(vote, temperature, top_p, retries, vote_correct, vote_when)
        rows, report = _predict(data, db, model, adapter, prompt_style, notes, batch_size, retries, fewshot,
                                fewshot_pool, max_new_tokens, device, dtype, evaluate=True, test_suite=test_suite,
                                vote=settings, merge=merge, fallback=fallback, repair=repair,
                                panel_judge=panel_judge)
        out_dir.mkdir(parents=True, exist_ok=True)
        name = _slug(data)
        pred_file, report_file = out_dir / f"{name}_pred.jsonl", out_dir / f"{name}_report.json"
        write_jsonl(pred_file, rows)
        write_json(report_file, report)
        if show:
            print_examples(report)
        print_summary(f"{name}", report["summary"])
        t = report["timing"]
        extra = f"; retries fixed {report['summary']['retry_fixed']} of {report['summary']['retried']}" if retries else ""
        if "vote" in report:
            v = report["vote"]
            where = (f" on the {v['voted_questions']} questions whose greedy SQL failed" if v.get("when") == "error"
                     else "")
            extra += (f"; vote {v['n']}{where}: exact {v['voted']['exact']:.1%} vs greedy {v['greedy']['exact']:.1%}, "
                      f"overruled greedy {v['overruled']} times ({v['helped']} helped, {v['hurt']} hurt), "
                      f"best of {v['n']} {v['best_of_n']:.1%}")
            if "correction" in v:
                c = v["correction"]
                extra += (f"; correction ran on {c['ran']} close votes, changed {c['changed']} "
                          f"({c['helped']} helped, {c['hurt']} hurt): exact {c['corrected']['exact']:.1%}")
        sm = report["summary"]
        ec = report.get("eval_config") or {}
        if "pool_voted" in sm and ec.get("fallback") == "panel":
            judged = sum(1 for r in rows if (r.get("pool") or {}).get("review"))
            how = (f"the reviewer judged the {judged} where its answers disagreed" if ec.get("panel_judge") == "reviewer"
                   else "by votes")
            extra += (f"; the panel weighed {sm['pool_voted']} questions ({how}): {sm['pool_changed']} changed "
                      f"({sm['pool_fixed']} fixed, {sm['pool_hurt']} broken)")
        elif "pool_voted" in sm:
            extra += (f"; both models voted on the {sm['pool_voted']} questions where the answer failed or differed "
                      f"from the untuned model's: {sm['pool_changed']} changed ({sm['pool_fixed']} fixed, "
                      f"{sm['pool_hurt']} broken)")
        elif "fallback_used" in sm:
            extra += (f"; the untuned model answered {sm['fallback_used']} questions whose answer "
                      f"failed ({sm['fallback_fixed']} now right)")
        if sm.get("repaired"):
            extra += (f"; {sm['repaired']} failing answers repaired against the schema "
                      f"({sm['repair_exact']} now right)")
        echo(f"{len(rows)} questions in {t['seconds']:.1f} s ({t['queries_per_s']:.2f} q/s){extra}")
        echo(f"wrote {esc(pred_file)} and {esc(report_file)}")

    @app.command("models")
    def models_cmd():
        """List the packaged models, whether their parts are installed and whether they are cached."""
        import importlib.util

        from ..console import show, styled, table
        from ..model import DEFAULT_MODEL, PACKAGED, _cached_dir

        rows = []
        for name, spec in PACKAGED.items():
            installed = all(importlib.util.find_spec(p) is not None for p in spec.packages)
            cached = (_cached_dir(name) / "config.json").is_file()
            rows.append([name + (" (default)" if name == DEFAULT_MODEL else ""), spec.description,
                         styled("yes", "green") if installed else styled("no", "red"), "yes" if cached else "no",
                         "" if installed else spec.pip])
        t = table(("name", "description", "installed", "cached", "install with"), rows)
        for c in t.columns:
            c.overflow = "fold"
        show(t)
