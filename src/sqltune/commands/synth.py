"""`sqltune synth`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..synth_config import SQL_TOKENS_FLOOR, SQL_TOKENS_MARGIN, SynthConfig
from .options import DB, MODEL

D = SynthConfig  # every default below is SynthConfig's


def register(app: typer.Typer) -> None:
    @app.command("synth")
    def synth_cmd(
        out: Path = typer.Option(..., "--out", help="Where to write the kept pairs (JSONL with provenance; "
                                                     "a summary goes beside it as OUT.summary.json)."),
        db: Optional[str] = DB,
        seeds: Optional[str] = typer.Option(None, "--seeds", help="Your question/SQL pairs (.jsonl/.json/.csv or "
                                                                  "NAME:SPLIT); none: from the schema alone."),
        holdout: List[str] = typer.Option([], "--holdout", help="Items nothing may leak into (valid, test); "
                                                                 "repeatable."),
        k: int = typer.Option(D.k, "--k", min=1, help="Pairs to keep."),
        model: Optional[str] = MODEL,
        teacher: Optional[str] = typer.Option(None, "--teacher", help="A larger model that writes and reads back "
                                                                       "instead of --model."),
        reader: Optional[str] = typer.Option(None, "--reader", help="A second model that must also read each "
                                                                     "question back to the same result (one model "
                                                                     "checking itself passes its own misreadings)."),
        sources: str = typer.Option(",".join(D.sources), "--sources", help="Candidate SQL sources."),
        styles: str = typer.Option(",".join(D.styles), "--styles", help="Question styles."),
        template_questions: bool = typer.Option(False, "--template-questions",
                                                help="No model: template questions only (no read-back)."),
        readback: bool = typer.Option(D.readback, "--readback/--no-readback",
                                      help="Keep a pair only if the writer reads its question back into SQL with "
                                           "the same result."),
        readback_samples: int = typer.Option(D.readback_samples, "--readback-samples", min=1,
                                             help="Read each question back this many times (sampled) and "
                                                  "compare the majority result; 1: greedy."),
        question_attempts: int = typer.Option(D.question_attempts, "--question-attempts", min=1,
                                              help="Questions to try per SQL: when a read-back rejects one, the "
                                                   "next style writes another (1: one question per SQL)."),
        sql_per_level: int = typer.Option(D.model_sql_per_level, "--sql-per-level", min=0,
                                          help="Prompts per complexity level for the model-written SQL."),
        sql_temperature: float = typer.Option(D.sql_temperature, "--sql-temperature", min=0.0,
                                              help="Sample the model-written SQL at this temperature (0: greedy; "
                                                   "0.8-1.0 gives more distinct candidates per prompt)."),
        overgenerate: float = typer.Option(D.overgenerate, "--overgenerate", min=1.0,
                                           help="SQL candidates given a question per wanted pair (the read-backs "
                                                "reject part of them)."),
        sql_max_new_tokens: Optional[int] = typer.Option(D.sql_max_new_tokens, "--sql-max-new-tokens", min=16,
                                                         help="Token limit of the model-written SQL (a batch "
                                                              "decodes until its longest reply; default: "
                                                              f"{SQL_TOKENS_FLOOR}, or the longest seed query + "
                                                              f"{SQL_TOKENS_MARGIN} when that is more)."),
        batch_size: int = typer.Option(D.batch_size, "--batch-size", min=1,
                                       help="Prompts per generation batch (a GPU to itself takes 256)."),
        notes: Optional[Path] = typer.Option(None, "--notes", help="Schema notes file."),
        seed: int = typer.Option(D.seed, "--seed"),
    ):
        """Write validated in-domain question/SQL pairs for a database (from its schema, values and your seeds).

        Example: sqltune synth --db mydb.sqlite --seeds pairs.jsonl --holdout valid.jsonl --out more.jsonl
        """
        from ..console import echo, esc
        from ..dataset import load_items
        from ..files import check_writable
        from ..pairs import rejected_path, shape_counts, summary_path
        from ..synth import load_seeds, synth

        for path, what in ((out, "--out"), (summary_path(out), "--out's summary"),
                           (rejected_path(out), "--out's rejected pairs")):  # what synth writes: none may be an input
            check_writable(path, what, inputs=(seeds, *holdout, db, notes))

        seed_items = load_seeds(seeds)
        held = {f"holdout{i + 1}": load_items(spec) for i, spec in enumerate(holdout)}
        cfg = SynthConfig(k=k, sources=tuple(s.strip() for s in sources.split(",") if s.strip()),
                          styles=tuple(s.strip() for s in styles.split(",") if s.strip()),
                          questions="template" if template_questions else "model", readback=readback, seed=seed,
                          readback_samples=readback_samples, model_sql_per_level=sql_per_level,
                          sql_temperature=sql_temperature, question_attempts=question_attempts,
                          overgenerate=overgenerate, batch_size=batch_size,
                          sql_max_new_tokens=sql_max_new_tokens)
        res = synth(db, out, seed_items, held, model=model, teacher=teacher, reader=reader, notes=notes, cfg=cfg)
        s = res.summary()
        echo(esc(f"tried {s['tried']}, kept {s['kept']} "
                 f"({', '.join(f'{n} {m}' for m, n in s['kept_by_source'].items()) or 'none'}), "
                 f"rejected {sum(s['rejected'].values())}"))
        if s["kept_by_shape"] or seed_items:  # the mix beside the seeds' (a set without joins teaches none)
            mix = lambda c: ", ".join(f"{n} {shape}" for shape, n in c.items()) or "none"  # noqa: E731
            echo(esc(f"shapes: kept {mix(s['kept_by_shape'])}; seeds {mix(shape_counts(seed_items))}"))
        for reason, n in sorted(s["rejected"].items(), key=lambda x: -x[1]):
            echo(f"  {n:5d}  {esc(reason)}")
        if s["seconds"]:
            echo("seconds: " + ", ".join(f"{stage.replace('_', ' ')} {sec:.0f}" for stage, sec in s["seconds"].items()))
        echo(f"wrote {esc(out)}")
        echo(f"wrote {esc(rejected_path(out))} (the {len(res.rejected_pairs)} pairs a question filter or "
             f"read-back rejected, each with its reason)")
