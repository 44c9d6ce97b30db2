"""The `sqltune` command line: a thin layer over the Python API.

Every command parses options, calls one API function and prints through `sqltune.console` (data is
printed literally, never as markup). Usage errors are click's one-line message with exit code 2;
user errors (SqltuneError) are one line on stderr; never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .commands.options import DB, MAX_ROWS, TIMEOUT
from .console import echo, esc, mark, show, table
from .errors import Interrupted, SqltuneError

app = typer.Typer(
    help="Teach small open LLMs to write correct SQL for one SQLite database.\n\n"
         "Start with `sqltune run` (the whole job on the embedded exoplanets DB), or on your own database: "
         "`sqltune run --db mydb.sqlite --train pairs.jsonl`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        print(f"sqltune {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")):
    """Teach small open LLMs to write correct SQL for one SQLite database."""


@app.command("build-db")
def build_db_cmd(
    out: Path = typer.Argument(..., help="Where to write the exoplanets SQLite database."),
    force: bool = typer.Option(False, "--force", help="Replace an exoplanets DB that build-db wrote before "
                               "(any other file is refused)."),
):
    """Build the embedded exoplanets database (5,250 planets + reference_planets).

    Example: sqltune build-db exo.sqlite
    """
    from .db import build_exoplanets_db

    path = build_exoplanets_db(out, force=force)
    echo(f"wrote {esc(path)}")


@app.command("schema")
def schema_cmd(
    db: Optional[str] = DB,
    notes: Optional[Path] = typer.Option(None, "--notes", help="Notes file, YAML or Markdown (default: the first of DB.notes.md, DB.notes.yaml, DB.md, DB.yaml beside the DB)."),
):
    """Print the schema text a model is shown: tables, keys, samples and notes.

    Example: sqltune schema --db mydb.sqlite
    """
    from .db import resolve_db
    from .schema import schema_text

    print(schema_text(resolve_db(db, need_tables=True), notes))


def print_summary(title: str, summary: dict) -> None:
    keys = ("execution_rate", "exact", "set", "fuzzy", "vacuous") + (("suite",) if "suite" in summary else ())
    t = table(("n",) + keys, [[str(summary["n"])] + [f"{summary[k]:.1%}" for k in keys]], title=title)
    for c in t.columns:
        c.justify = "right"
    show(t)
    if summary.get("right_by_accident"):
        echo(f"{summary['right_by_accident']} exact matches are right only by accident (the test suite rejects them)")


def print_examples(report: dict) -> None:
    from .console import Text

    suite = any("suite" in e for e in report["examples"])
    rows = []
    for e in report["examples"]:
        note = (e["error_kind"] or "") if not e["executed"] else ("vacuous" if e["vacuous"] else "")
        if suite and e["exact"] and not e.get("suite"):
            note = "right by accident"
        rows.append([e["id"], mark(e["executed"]), mark(e["exact"]), mark(e["set"]), mark(e["fuzzy"]),
                     *((mark(e.get("suite")),) if suite else ()), Text(note)])
    show(table(("id", "executed", "exact", "set", "fuzzy") + (("suite",) if suite else ()) + ("error",), rows))


@app.command("score")
def score_cmd(
    gold: str = typer.Option(..., "--gold", help="Gold items: .jsonl, .csv or .json (question, sql, optional id) "
                             "or NAME:SPLIT."),
    pred: Path = typer.Option(..., "--pred", help="Predicted JSONL: sql (may be null), optional id."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the report JSON here."),
    db: Optional[str] = DB,
    timeout: float = TIMEOUT,
    max_rows: int = MAX_ROWS,
    test_suite: Optional[Path] = typer.Option(None, "--test-suite", help="A suite from `sqltune testsuite build`: "
                                              "adds the `suite` metric (exact here and on every variant DB)."),
):
    """Score predicted SQL against gold SQL by executing both (exact, set, fuzzy; suite with --test-suite).

    Example: sqltune score --gold exoplanets:valid --pred pred.jsonl --out report.json
    """
    from .dataset import load_items, pair, read_jsonl
    from .db import resolve_db
    from .files import check_writable, write_json
    from .score import score_pairs

    if out:
        check_writable(out, inputs=(gold, pred, db, test_suite))
    dbp = resolve_db(db, need_tables=True)
    gold_rows = load_items(gold)
    pred_rows = read_jsonl(pred, required=("sql",))
    if not gold_rows:
        raise SqltuneError(f"{gold}: no items")
    report = score_pairs(dbp, gold_rows, pair(gold_rows, pred_rows), timeout=timeout, max_rows=max_rows,
                         test_suite=test_suite)
    print_examples(report)
    print_summary(f"{pred.name} vs {Path(gold).name}", report["summary"])
    if out:
        write_json(out, report)
        echo(f"wrote {esc(out)}")


def _register_all() -> None:
    """Commands of later stages live beside the stage they wrap, one module per area."""
    from .commands import augment, data, models, run, serve, synth, testsuite, train

    for mod in (data, models, train, run, augment, synth, testsuite, serve):
        mod.register(app)


_register_all()


def _usage_errors() -> tuple[type, ...]:
    """The click exceptions of the click that typer really uses (typer 0.29 bundles its own)."""
    kinds = []
    try:
        from typer._click.exceptions import ClickException as Bundled

        kinds.append(Bundled)
    except ImportError:  # pragma: no cover - a typer that uses the click package
        pass
    import click

    kinds.append(click.exceptions.ClickException)
    return tuple(kinds)


def _abort_kinds() -> tuple[type, ...]:
    kinds = [typer.Abort]
    try:
        from typer._click.exceptions import Abort as Bundled

        kinds.append(Bundled)
    except ImportError:  # pragma: no cover
        pass
    return tuple(kinds)


def out_of_memory(e: BaseException) -> str | None:
    """One line for a model that did not fit the machine's memory (GPU or CPU), else None."""
    text = str(e).strip()
    if not (isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError"
            or any(m in text for m in ("out of memory", "not enough memory", "can't allocate memory"))):
        return None
    first = text.split(". ")[0].split("\n")[0][:160] or type(e).__name__
    return (f"out of memory ({first}): lower the batch sizes (--set train.batch_size=8 --set eval.batch_size=16) or, "
            "for GRPO, --set rl.gradient_checkpointing=true; `sqltune run --out DIR --resume` keeps the stages that "
            "finished")


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app, turning user errors into one line and a non-zero exit."""
    import logging

    # sqlglot warns on stderr about SQL it parses only as a command (`VACUUM INTO ...`); the executor refuses such SQL
    # with its own one line, so the warning is a second, confusing one
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    from .dataset import is_text

    for arg in sys.argv[1:] if argv is None else argv:
        if not is_text(str(arg)):  # bytes the terminal could not decode arrive as lone surrogates: nothing takes them
            echo(f"[red]error:[/] {esc(ascii(arg))} is not UTF-8 text (a file name or value the terminal could not "
                 f"decode): rename the file, or use a UTF-8 locale", err=True)
            return 2
    term = _term_as_interrupt()
    try:
        rc = app(args=argv, standalone_mode=False, prog_name="sqltune")
    except Interrupted as e:
        echo(f"interrupted; {esc(e)}", err=True)
        return e.exit_code
    except SqltuneError as e:
        echo(f"[red]error:[/] {esc(e)}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        echo("interrupted; nothing written", err=True)
        return 130
    except typer.Exit as e:
        return e.exit_code
    except _usage_errors() as e:
        e.show()
        return e.exit_code
    except _abort_kinds():
        echo("interrupted; nothing written", err=True)
        return 130
    except OSError as e:  # a file that cannot be read or written: one line, not a traceback
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        echo(f"[red]error:[/] {esc(e.strerror or e)}{esc(where)}", err=True)
        return 2
    except (MemoryError, RuntimeError) as e:  # torch.OutOfMemoryError is a RuntimeError
        why = out_of_memory(e)
        if why is None:
            raise
        echo(f"[red]error:[/] {esc(why)}", err=True)
        return 3
    finally:
        term()
    if rc == 130:  # typer turns Ctrl-C into exit code 130, silently
        echo("interrupted; nothing written", err=True)
    return rc if isinstance(rc, int) else 0


def _term_as_interrupt():
    """SIGTERM (`kill`, `timeout`, a scheduler ending a job) stops a command as Ctrl-C does: the same clean-up (temporary
    files removed, what a run or training kept and how to resume it said), where otherwise it would die on the spot and
    leave its temporary files. Returns the function that puts the previous handler back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # signals go to the main thread only
        return lambda: None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
