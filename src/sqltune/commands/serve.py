"""`sqltune serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .options import MERGE, PANEL_JUDGE


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        db: Optional[str] = typer.Option(None, "--db", help="SQLite database (default: the run's, else the embedded exoplanets DB)."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Packaged name, model folder, .gguf file or hub id "
                                            "(default: qwen2.5-coder-0.5b, or the adapter's base model)."),
        adapter: Optional[Path] = typer.Option(None, "--adapter", help="Trained adapter (or fine-tuned model) folder."),
        run: Optional[Path] = typer.Option(None, "--run", help="A run folder: serve its final adapter (GRPO's when it has one) on its database; "
                                           "feedback goes to RUN/feedback.jsonl."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (anything but loopback prints a warning)."),
        port: int = typer.Option(8000, "--port", min=0, max=65535),
        token: Optional[str] = typer.Option(None, "--token", envvar="SQLTUNE_TOKEN",
                                            help="Require 'Authorization: Bearer TOKEN' on /api/* (or $SQLTUNE_TOKEN)."),
        feedback: Optional[Path] = typer.Option(None, "--feedback", help="JSONL file for saved feedback "
                                                "(default: RUN/feedback.jsonl, else feedback.jsonl in the cache folder)."),
        batch_size: int = typer.Option(16, "--batch-size", min=1, help="Most questions decoded together."),
        max_wait_ms: float = typer.Option(30.0, "--max-wait-ms", min=0, help="How long a question waits for others to batch with."),
        max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1),
        vote: int = typer.Option(1, "--vote", min=1, max=16, help="Answer a request that names no 'vote' with greedy + "
                                 "N-1 samples, executed, the result most agree on (on unseen databases +6 to +9 "
                                 "points; 2-3x the time on a CPU; BENCHMARKS.md)."),
        vote_when: str = typer.Option("always", "--vote-when", help="always: vote on every voted request; error: answer "
                                      "greedily and vote only when that SQL does not execute (BENCHMARKS.md)."),
        prompt_style: Optional[str] = typer.Option(None, "--prompt-style", help="chat (default), premsql or seed; an adapter's own by default."),
        notes: Optional[Path] = typer.Option(None, "--notes", help="Notes file for the schema (default: the first of DB.notes.md, DB.notes.yaml, DB.md, DB.yaml beside the DB)."),
        device: Optional[str] = typer.Option(None, "--device", help="cuda, mps or cpu (default: the best available)."),
        dtype: Optional[str] = typer.Option(None, "--dtype", help="bfloat16, float16 or float32 (default: per device)."),
        merge: bool = MERGE,
        fallback: Optional[str] = typer.Option(None, "--fallback", help="base: where the adapter's SQL does not "
                                               "execute, the model under it answers; vote: where the two models' "
                                               "answers differ, both draw 8 candidates and the majority wins (the "
                                               "adapter loads unmerged). Default: with --run, the run's recipe's "
                                               "eval.fallback (and eval.vote candidates); else none."),
        repair: Optional[bool] = typer.Option(None, "--repair/--no-repair", help="Where the answer fails with a column "
                                              "the schema has elsewhere, answer with its rewrite (qualified, joined "
                                              "along a foreign key, a near spelling) if that runs. Default: on, or "
                                              "the run's eval.repair with --run."),
        panel_judge: Optional[str] = PANEL_JUDGE,
    ):
        """Serve the model over HTTP: a JSON API (/api/ask, /docs) and a web page at /."""
        from ..console import echo, esc
        from ..serve import ServeConfig, serve
        from ..vote import check_settings

        check_settings(vote, 0.8, 0.95, when=vote_when)

        cfg = ServeConfig(db=db, model=model, adapter=str(adapter) if adapter else None, run_dir=str(run) if run else None,
                          device=device, dtype=dtype, prompt_style=prompt_style, notes=str(notes) if notes else None,
                          feedback=str(feedback) if feedback else None, token=token, batch_size=batch_size,
                          max_wait=max_wait_ms / 1000, max_new_tokens=max_new_tokens, vote=vote, vote_when=vote_when,
                          merge=merge, fallback=fallback, repair=repair, panel_judge=panel_judge)
        serve(cfg, host=host, port=port, log=lambda m: echo(esc(m), err=True))
