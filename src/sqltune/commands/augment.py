"""`sqltune augment`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("augment")
    def augment_cmd(
        run: Path = typer.Option(..., "--run", help="A finished run folder (its valid results are mined; never test)."),
        out: Path = typer.Option(..., "--out", help="Where to write the kept pairs (JSONL, with provenance)."),
        max_keep: int = typer.Option(50, "--max", min=1, help="Most pairs to keep."),
        model: Optional[str] = typer.Option(None, "--model", help="Model that writes questions (default: the run's)."),
        roundtrip: bool = typer.Option(True, "--roundtrip/--no-roundtrip",
                                       help="Keep a pair only if the run's tuned model reads its question back "
                                            "into SQL with the same result."),
    ):
        """Find what a tuned model still gets wrong on valid and grow the training data with validated pairs.

        Example: sqltune augment --run runs/20261130-0100 --out more.jsonl --max 20
        """
        from ..augment import augment
        from ..console import echo, esc
        from ..files import check_writable

        check_writable(out)
        res = augment(run, out, max_keep, model, roundtrip=roundtrip)
        s = res.summary()
        echo(f"tried {s['tried']}, kept {s['kept']}, rejected {sum(s['rejected'].values())}")
        for reason, n in sorted(s["rejected"].items(), key=lambda x: -x[1]):
            echo(f"  {n:4d}  {esc(reason)}")
        echo(f"wrote {esc(out)}")
