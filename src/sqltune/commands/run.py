"""`sqltune run` and `sqltune report`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        recipe: Optional[str] = typer.Argument(None, help="Recipe YAML or shipped recipe name (default: 'default')."),
        out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<timestamp>)."),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
        set_: List[str] = typer.Option([], "--set", help="Any recipe setting, e.g. --set augment.enabled=true (repeatable)."),
    ):
        """Database -> data check -> base scores -> fine-tune -> tuned scores -> report."""
        from ..cli import console, print_summary
        from ..recipe import parse_set
        from ..run import run

        metrics = run(recipe, out, resume=resume, overrides=parse_set(set_))
        for stage in ("base", "tuned", "augmented"):
            for split, summary in metrics.get(stage, {}).items():
                print_summary(f"{stage} / {split}", summary)
        console.print(f"report: {metrics.get('out', out)}")

    @app.command("report")
    def report_cmd(
        run_a: Path = typer.Argument(..., help="First run folder."),
        run_b: Path = typer.Argument(..., help="Second run folder."),
        stage: str = typer.Option("tuned", help="Which stage's predictions to compare."),
    ):
        """Compare two runs question by question: paired bootstrap CI and McNemar's test."""
        from ..cli import console
        from ..report import compare_runs

        for row in compare_runs(run_a, run_b, stage):
            console.print(f"{row['split']}: {row['sentence']}")
