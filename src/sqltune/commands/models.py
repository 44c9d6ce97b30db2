"""`sqltune ask`, `sqltune predict`, `sqltune eval` and `sqltune models`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import typer

from ..errors import SqltuneError

SHOW_ROWS = 50


def _items(spec: str) -> list[dict]:
    try:
        from ..dataset import load_items
    except ImportError:  # pragma: no cover - older dataset module
        from ..dataset import read_jsonl

        return read_jsonl(spec, required=("question",))
    return load_items(spec)


def _fewshot_pool(data: str, pool: Optional[str]) -> list[dict]:
    """Training items for few-shot examples: --fewshot-pool, else NAME:train for a packaged NAME:SPLIT."""
    if pool:
        return _items(pool)
    name, sep, split = data.partition(":")
    if sep and not Path(data).exists() and "/" not in name:
        if split == "train":
            raise SqltuneError("few-shot examples come from training data; evaluating on train leaves none (pass --fewshot-pool)")
        return _items(f"{name}:train")
    raise SqltuneError("--fewshot needs --fewshot-pool TRAIN_FILE (examples come only from training data)")


def _load(model, adapter, device, dtype, prompt_style, db, notes):
    from ..evaluate import load_for_inference
    from ..model import pick_device

    dev = pick_device(device, dtype)
    m, tok, builder = load_for_inference(model, adapter, dev, prompt_style, db, notes)
    return m, tok, builder, dev


def _slug(spec: str) -> str:
    p = Path(spec)
    return p.stem if p.suffix else re.sub(r"[^\w.-]+", "-", spec).strip("-")


def register(app: typer.Typer) -> None:
    db_opt = typer.Option(None, "--db", help="SQLite database (default: the embedded exoplanets DB).")
    model_opt = typer.Option(None, "--model", "-m", help="Packaged name, model folder, .gguf file or hub id "
                             "(default: qwen2.5-coder-0.5b, or the adapter's base model).")
    adapter_opt = typer.Option(None, "--adapter", help="Trained adapter (or fine-tuned model) folder.")
    style_opt = typer.Option(None, "--prompt-style", help="chat (default), premsql or seed; an adapter's own by default.")
    notes_opt = typer.Option(None, "--notes", help="Notes file for the schema (default: DB.notes.md beside the DB).")
    device_opt = typer.Option(None, "--device", help="cuda, mps or cpu (default: the best available).")
    dtype_opt = typer.Option(None, "--dtype", help="bfloat16, float16 or float32 (default: per device).")

    @app.command("ask")
    def ask_cmd(
        question: str = typer.Argument(..., help="A question about the database, in plain words."),
        db: Optional[str] = db_opt,
        model: Optional[str] = model_opt,
        adapter: Optional[Path] = adapter_opt,
        as_json: bool = typer.Option(False, "--json", help='Print one JSON object {"sql", "columns", "rows", "error"}.'),
        prompt_style: Optional[str] = style_opt,
        notes: Optional[Path] = notes_opt,
        retries: int = typer.Option(0, "--retries", help="Re-prompt with the error this many times if the SQL fails."),
        device: Optional[str] = device_opt,
        dtype: Optional[str] = dtype_opt,
    ):
        """Answer one question: write SQL with the model, run it read-only, print the result."""
        from rich.table import Table

        from ..cli import console
        from ..db import resolve_db
        from ..execute import execute
        from ..evaluate import EvalConfig, predict_questions

        if not question.strip():
            raise SqltuneError("the question is empty")
        dbp = resolve_db(db)
        m, tok, builder, dev = _load(model, adapter, device, dtype, prompt_style, dbp, notes)
        g = predict_questions(m, tok, builder, [question], dbp,
                              EvalConfig(retries=retries, progress=False, autocast=dev.autocast))[0]
        res = execute(dbp, g.sql)
        if as_json:
            print(json.dumps({"sql": g.sql, "columns": res.columns, "rows": [list(r) for r in res.rows],
                              "error": res.error}, default=str))
            return
        console.print(g.sql or f"[red]no SQL in the model's output:[/] {g.raw!r}", highlight=False, soft_wrap=True)
        if res.error:
            console.print(f"[red]error ({res.error_kind}):[/] {res.error}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        table = Table(show_header=True)
        for c in res.columns:
            table.add_column(c)
        for r in res.rows[:SHOW_ROWS]:
            table.add_row(*("NULL" if v is None else str(v) for v in r))
        console.print(table)
        more = len(res.rows) - SHOW_ROWS
        count = f"{len(res.rows)} row" + ("" if len(res.rows) == 1 else "s")
        console.print(count + (f" ({more} not shown)" if more > 0 else "") + f", SQL written in {g.seconds:.1f} s",
                      highlight=False)

    def _predict(data, db, model, adapter, prompt_style, notes, batch_size, retries, fewshot, fewshot_pool,
                 max_new_tokens, device, dtype, evaluate: bool):
        from ..db import resolve_db
        from ..evaluate import evaluate_items, predict_items

        dbp = resolve_db(db)
        items = _items(data)
        if not items:
            raise SqltuneError(f"{data}: no items")
        pool = _fewshot_pool(data, fewshot_pool) if fewshot > 0 else None
        m, tok, builder, dev = _load(model, adapter, device, dtype, prompt_style, dbp, notes)
        kw = dict(batch_size=batch_size, max_new_tokens=max_new_tokens, retries=retries, fewshot_k=fewshot,
                  fewshot_pool=pool, autocast=dev.autocast)
        if evaluate:
            report = evaluate_items(m, tok, builder, items, dbp, **kw)
            return report["predictions"], report
        return predict_items(m, tok, builder, items, dbp, **kw), None

    common = dict(
        db=db_opt, model=model_opt, adapter=adapter_opt, prompt_style=style_opt, notes=notes_opt,
        device=device_opt, dtype=dtype_opt,
    )

    @app.command("predict")
    def predict_cmd(
        data: str = typer.Option(..., "--data", help="Questions: NAME:SPLIT (e.g. exoplanets:valid), .jsonl, .csv or .json."),
        out: Path = typer.Option(..., "--out", help="Predictions JSONL (rows with id and sql; `sqltune score` reads it)."),
        db: Optional[str] = common["db"],
        model: Optional[str] = common["model"],
        adapter: Optional[Path] = common["adapter"],
        prompt_style: Optional[str] = common["prompt_style"],
        notes: Optional[Path] = common["notes"],
        batch_size: int = typer.Option(64, "--batch-size", min=1, help="Questions decoded together (more is faster, up to memory)."),
        retries: int = typer.Option(0, "--retries", min=0, help="Re-prompt failing SQL with its error up to N times."),
        fewshot: int = typer.Option(0, "--fewshot", min=0, help="K similar training examples in each prompt."),
        fewshot_pool: Optional[str] = typer.Option(None, "--fewshot-pool", help="Training items for --fewshot "
                                                   "(default NAME:train for NAME:SPLIT)."),
        max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1),
        device: Optional[str] = common["device"],
        dtype: Optional[str] = common["dtype"],
    ):
        """Write SQL for every question of a dataset (batched, greedy) into a JSONL file."""
        from ..cli import console
        from ..dataset import write_jsonl

        rows, _ = _predict(data, db, model, adapter, prompt_style, notes, batch_size, retries, fewshot, fewshot_pool,
                           max_new_tokens, device, dtype, evaluate=False)
        write_jsonl(out, rows)
        secs = sum(r["seconds"] for r in rows)
        ran = sum(r["error"] is None for r in rows)
        console.print(f"wrote {out}: {len(rows)} predictions, {ran} run without error; "
                      f"mean latency {secs / len(rows):.2f} s", highlight=False)

    @app.command("eval")
    def eval_cmd(
        data: str = typer.Option(..., "--data", help="Gold items: NAME:SPLIT (e.g. exoplanets:valid), .jsonl, .csv or .json."),
        out_dir: Path = typer.Option(Path("."), "--out-dir", help="Folder for <data>_pred.jsonl and <data>_report.json."),
        db: Optional[str] = common["db"],
        model: Optional[str] = common["model"],
        adapter: Optional[Path] = common["adapter"],
        prompt_style: Optional[str] = common["prompt_style"],
        notes: Optional[Path] = common["notes"],
        batch_size: int = typer.Option(64, "--batch-size", min=1, help="Questions decoded together (more is faster, up to memory)."),
        retries: int = typer.Option(0, "--retries", min=0, help="Re-prompt failing SQL with its error up to N times."),
        fewshot: int = typer.Option(0, "--fewshot", min=0, help="K similar training examples in each prompt."),
        fewshot_pool: Optional[str] = typer.Option(None, "--fewshot-pool", help="Training items for --fewshot "
                                                   "(default NAME:train for NAME:SPLIT)."),
        max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1),
        device: Optional[str] = common["device"],
        dtype: Optional[str] = common["dtype"],
        show: bool = typer.Option(False, "--show", help="Also print the per-question table."),
    ):
        """Predict and score in one step (execution accuracy); writes predictions and the report."""
        from ..cli import console, print_examples, print_summary
        from ..dataset import write_jsonl

        if out_dir.exists() and not out_dir.is_dir():
            raise SqltuneError(f"--out-dir {out_dir} is a file")
        rows, report = _predict(data, db, model, adapter, prompt_style, notes, batch_size, retries, fewshot,
                                fewshot_pool, max_new_tokens, device, dtype, evaluate=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        name = _slug(data)
        pred_file, report_file = out_dir / f"{name}_pred.jsonl", out_dir / f"{name}_report.json"
        write_jsonl(pred_file, rows)
        tmp = report_file.with_name(report_file.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
        tmp.replace(report_file)
        if show:
            print_examples(report)
        print_summary(f"{name}", report["summary"])
        t = report["timing"]
        extra = f"; retries fixed {report['summary']['retry_fixed']} of {report['summary']['retried']}" if retries else ""
        console.print(f"{len(rows)} questions in {t['seconds']:.1f} s ({t['queries_per_s']:.2f} q/s){extra}",
                      highlight=False)
        console.print(f"wrote {pred_file} and {report_file}", highlight=False)

    @app.command("models")
    def models_cmd():
        """List the packaged models, whether their parts are installed and whether they are cached."""
        import importlib.util

        from rich.markup import escape
        from rich.table import Table

        from ..cli import console
        from ..model import DEFAULT_MODEL, PACKAGED, _cached_dir

        table = Table()
        for col in ("name", "description", "installed", "cached", "install with"):
            table.add_column(col, overflow="fold")
        for name, spec in PACKAGED.items():
            installed = all(importlib.util.find_spec(p) is not None for p in spec.packages)
            cached = (_cached_dir(name) / "config.json").is_file()
            table.add_row(name + (" (default)" if name == DEFAULT_MODEL else ""), spec.description,
                          "[green]yes[/]" if installed else "[red]no[/]", "yes" if cached else "no",
                          "" if installed else escape(spec.pip))
        console.print(table)
