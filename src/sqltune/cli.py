"""The `sqltune` command line: a thin layer over the Python API.

Every command parses options, calls one API function and prints. User errors (SqltuneError) are
one line on stderr and exit code 2; never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import SqltuneError

app = typer.Typer(
    help="Teach small open LLMs to write correct SQL for one SQLite database.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DbOption = typer.Option(None, "--db", help="SQLite database (default: the embedded exoplanets DB).")


@app.command("build-db")
def build_db_cmd(
    out: Path = typer.Argument(..., help="Where to write the exoplanets SQLite database."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
):
    """Build the embedded exoplanets database (5,250 planets + reference_planets)."""
    from .db import build_exoplanets_db

    path = build_exoplanets_db(out, force=force)
    console.print(f"wrote {path}")


@app.command("schema")
def schema_cmd(
    db: Optional[str] = DbOption,
    notes: Optional[Path] = typer.Option(None, "--notes", help="Notes file (YAML or Markdown)."),
):
    """Print the schema text a model is shown: tables, keys, samples and notes."""
    from .db import resolve_db
    from .schema import schema_text

    print(schema_text(resolve_db(db), notes))


def print_summary(title: str, summary: dict) -> None:
    table = Table(title=title)
    for key in ("n", "execution_rate", "exact", "set", "fuzzy", "vacuous"):
        table.add_column(key, justify="right")
    table.add_row(str(summary["n"]), *(f"{summary[k]:.1%}" for k in ("execution_rate", "exact", "set", "fuzzy", "vacuous")))
    console.print(table)


def print_examples(report: dict) -> None:
    table = Table(show_lines=False)
    for col in ("id", "executed", "exact", "set", "fuzzy", "error"):
        table.add_column(col)
    mark = lambda b: "[green]✓[/]" if b else "[red]✗[/]"  # noqa: E731
    for e in report["examples"]:
        table.add_row(e["id"], mark(e["executed"]), mark(e["exact"]), mark(e["set"]), mark(e["fuzzy"]),
                      (e["error_kind"] or "") if not e["executed"] else ("vacuous" if e["vacuous"] else ""))
    console.print(table)


@app.command("score")
def score_cmd(
    gold: Path = typer.Option(..., "--gold", help="Gold JSONL: question, sql, optional id."),
    pred: Path = typer.Option(..., "--pred", help="Predicted JSONL: sql (may be null), optional id."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the report JSON here."),
    db: Optional[str] = DbOption,
    timeout: float = typer.Option(5.0, help="Seconds allowed per query."),
    max_rows: int = typer.Option(10_000, help="Row cap per query."),
):
    """Score predicted SQL against gold SQL by executing both (exact, set, fuzzy)."""
    from .dataset import pair, read_jsonl
    from .db import resolve_db
    from .score import score_pairs

    dbp = resolve_db(db)
    gold_rows = read_jsonl(gold, required=("question", "sql"))
    pred_rows = read_jsonl(pred, required=("sql",))
    report = score_pairs(dbp, gold_rows, pair(gold_rows, pred_rows), timeout=timeout, max_rows=max_rows)
    print_examples(report)
    print_summary(f"{pred.name} vs {gold.name}", report["summary"])
    if out:
        out.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
        console.print(f"wrote {out}")


# Commands of later stages live beside the stage they wrap.
def _register_all() -> None:
    import importlib

    for name in ("data", "models", "train", "run", "augment", "serve"):
        try:
            mod = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.commands.{name}":
                raise
            continue
        mod.register(app)


_register_all()


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app, turning user errors into one line and a non-zero exit."""
    try:
        rc = app(args=argv, standalone_mode=False)
    except SqltuneError as e:
        err_console.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        return e.exit_code
    except FileNotFoundError as e:
        err_console.print(f"[red]error:[/] {e.strerror}: {e.filename}" if e.filename else f"error: {e}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 1
    except Exception as e:  # click usage errors arrive here with standalone_mode=False
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            return e.exit_code
        raise
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
