"""`sqltune data path` and `sqltune data check`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import DatasetError


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
        db: Optional[str] = typer.Option(None, "--db", help="SQLite database (default: the embedded exoplanets DB)."),
        question_field: str = typer.Option("question", help="Question column/field in the files."),
        sql_field: str = typer.Option("sql", help="SQL column/field in the files."),
        timeout: float = typer.Option(5.0, help="Seconds allowed per gold query."),
        out: Optional[Path] = typer.Option(None, "--out", help="Write the findings as JSON here."),
    ):
        """Run every gold query; report errors, empty results, nondeterminism, duplicates and leakage.

        Exit code 1 on any error or leakage between files; warnings alone exit 0.
        """
        from rich.table import Table

        from ..check import check_items
        from ..cli import console
        from ..dataset import load_items
        from ..db import resolve_db

        dbp = resolve_db(db)
        specs = list(dict.fromkeys(data))
        names = [Path(s).name if Path(s).is_file() else s for s in specs]
        if len(set(names)) < len(names):
            names = specs  # two files share a name: show the paths
        files = {name: load_items(spec, question_field=question_field, sql_field=sql_field)
                 for name, spec in zip(names, specs)}
        report = check_items(dbp, files, timeout=timeout)
        if report.findings:
            table = Table(title="data check findings")
            for col in ("file", "id", "level", "kind", "message"):
                table.add_column(col, overflow="fold")
            for f in sorted(report.findings, key=lambda f: (f.level != "error", list(files).index(f.file), f.index)):
                level = "[red]error[/]" if f.level == "error" else "[yellow]warning[/]"
                table.add_row(f.file, f.id, level, f.kind, f.message)
            console.print(table)
        sizes = ", ".join(f"{name} {n}" for name, n in report.files.items())
        console.print(f"{sum(report.files.values())} items ({sizes}) against {dbp.name}: "
                      f"{len(report.errors)} errors, {len(report.warnings)} warnings", highlight=False, soft_wrap=True)
        if out:
            out.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
            console.print(f"wrote {out}")
        if report.errors:
            raise DataCheckFailed(f"data check failed: {len(report.errors)} errors (gold queries that fail, "
                                  f"duplicate ids or leakage between files)")


class DataCheckFailed(DatasetError):
    """The check ran and found errors: exit code 1 (bad input stays exit code 2)."""

    exit_code = 1
