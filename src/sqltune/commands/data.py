"""`sqltune data path` and `sqltune data check`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import DatasetError
from .options import DB, TIMEOUT


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(help="Datasets of question -> SQL pairs: where they are, and checking them.",
                           no_args_is_help=True)
    app.add_typer(data_app, name="data")

    @data_app.command("path")
    def path_cmd(name: str = typer.Argument("exoplanets", help="Packaged dataset name.")):
        """Print the folder holding a packaged dataset's train.jsonl, valid.jsonl and test.jsonl."""
        from ..dataset import dataset_path

        print(dataset_path(name))

    @data_app.command("check")
    def check_cmd(
        data: List[str] = typer.Option(..., "--data", help="A dataset: NAME:SPLIT (e.g. exoplanets:test), "
                                       ".jsonl, .csv or .json file. Repeat to check leakage between them."),
        db: Optional[str] = DB,
        question_field: str = typer.Option("question", help="Question column/field in the files."),
        sql_field: str = typer.Option("sql", help="SQL column/field in the files."),
        timeout: float = TIMEOUT,
        out: Optional[Path] = typer.Option(None, "--out", help="Write the findings as JSON here."),
    ):
        """Run every gold query; report errors, empty results, nondeterminism, duplicates and leakage.

        Exit code 1 on any error or leakage between files; warnings alone exit 0.
        Example: sqltune data check --db mydb.sqlite --data train.jsonl --data valid.jsonl
        """
        from ..check import check_items
        from ..console import echo, esc, show, styled, table
        from ..dataset import load_items
        from ..db import resolve_db
        from ..files import check_writable, write_json

        if out:
            check_writable(out, inputs=(*data, db))
        dbp = resolve_db(db, need_tables=True)
        specs = list(dict.fromkeys(data))
        names = [Path(s).name if Path(s).is_file() else s for s in specs]
        if len(set(names)) < len(names):
            names = specs  # two files share a name: show the paths
        files = {name: load_items(spec, question_field=question_field, sql_field=sql_field)
                 for name, spec in zip(names, specs)}
        report = check_items(dbp, files, timeout=timeout)
        if report.findings:
            rows = []
            for f in sorted(report.findings, key=lambda f: (f.level != "error", list(files).index(f.file), f.index)):
                level = styled("error", "red") if f.level == "error" else styled("warning", "yellow")
                rows.append([f.file, f.id, level, f.kind, f.message])
            t = table(("file", "id", "level", "kind", "message"), rows, title="data check findings")
            for c in t.columns:
                c.overflow = "fold"
            show(t)
        sizes = ", ".join(f"{name} {n}" for name, n in report.files.items())
        echo(esc(f"{sum(report.files.values())} items ({sizes}) against {dbp.name}: "
                 f"{len(report.errors)} errors, {len(report.warnings)} warnings"))
        if out:
            write_json(out, report.to_dict())
            echo(f"wrote {esc(out)}")
        if report.errors:
            raise DataCheckFailed(f"data check failed: {len(report.errors)} errors (gold queries that fail, "
                                  f"duplicate ids or leakage between files)")


class DataCheckFailed(DatasetError):
    """The check ran and found errors: exit code 1 (bad input stays exit code 2)."""

    exit_code = 1
