"""`sqltune testsuite build`: distilled test suites (see sqltune.testsuite)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .options import DB


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Test suites: catch predictions that are right only by accident.", no_args_is_help=True)
    app.add_typer(sub, name="testsuite")

    @sub.command("build")
    def build_cmd(
        data: str = typer.Option(..., "--data", help="Gold items: NAME:SPLIT (e.g. exoplanets:test), .jsonl, .csv or .json."),
        db: Optional[str] = DB,
        out: Optional[Path] = typer.Option(None, "--out", help="Folder for the suite (default: the cache folder, "
                                           "keyed by a fingerprint of DB + data + settings)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the random variant databases."),
        rows: int = typer.Option(30, "--rows", min=1, help="Most rows per table in a variant."),
        candidates: int = typer.Option(40, "--candidates", min=1, help="Most variant databases generated."),
        keep: int = typer.Option(10, "--keep", min=1, help="Most variants kept (those that tell the most neighbours apart)."),
    ):
        """Build the test suite of a split: neighbour queries of each gold and the variant DBs that tell them apart."""
        from ..console import echo, esc
        from ..db import resolve_db
        from ..dataset import load_items
        from ..errors import SqltuneError
        from ..testsuite import SuiteConfig, build_suite

        items = load_items(data)
        if not items:
            raise SqltuneError(f"{data}: no items")
        cfg = SuiteConfig(seed=seed, rows_per_table=rows, candidates=candidates, keep=keep)
        res = build_suite(resolve_db(db), items, out, cfg)
        s = res.summary()
        how = "reused from the cache" if s["cached"] else f"built in {s['seconds']:.1f} s"
        echo(f"{s['questions']} questions, {s['neighbours']} neighbour queries: {s['told_apart_by_db']} told "
             f"apart by the database itself, {s['told_apart_by_variants']} by {s['variants']} variant "
             f"databases (of {s['candidates']} generated), {s['never_told_apart']} never (often equivalent "
             f"rewrites); {how}")
        echo(f"suite: {esc(res.folder)}  (use: sqltune score --test-suite {esc(res.folder)} ...)")
