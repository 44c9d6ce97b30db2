"""`sqltune run` and `sqltune report`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .options import SET


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        recipe: Optional[str] = typer.Argument(None, help="Recipe YAML or shipped recipe name (default: 'default')."),
        out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<timestamp>)."),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out (same recipe, "
                                    "same --set values, same data; anything else is refused)."),
        db: Optional[str] = typer.Option(None, "--db", help="Your SQLite database. Without --train, where the recipe "
                                         "names no pairs of its own either, the run first writes pairs from the "
                                         "database alone (sqltune synth)."),
        train: Optional[str] = typer.Option(None, "--train", help="Question/SQL pairs about --db (.jsonl, .csv, .json). "
                                            "Without --valid/--test they are split off this file by gold SQL."),
        valid: Optional[str] = typer.Option(None, "--valid", help="Validation pairs (choose the checkpoint)."),
        test: Optional[str] = typer.Option(None, "--test", help="Test pairs (scored, never trained or chosen on)."),
        set_: List[str] = SET,
    ):
        """Database -> data check -> base scores -> fine-tune -> tuned scores -> report.

        \b
        Examples:
          sqltune run                                   # the default recipe on the exoplanets DB
          sqltune run --db mydb.sqlite --train pairs.jsonl
          sqltune run --db mydb.sqlite --train t.jsonl --valid v.jsonl --test x.jsonl
          sqltune run qwen0.5b-gpu --db mydb.sqlite     # no pairs: written from the database first
          sqltune run qwen1.5b-gpu --set train.enabled=true --set train.epochs=2 --out runs/mine
          sqltune run --out runs/mine --resume          # continue after Ctrl-C

        With --train alone, valid and test are split off the file by gold SQL (no query, nor a
        paraphrase of it, lands in two splits); --test alone splits off valid only. The split files
        are saved in the run folder (split_*.jsonl). With --db and no --train, `synth` writes
        up to synth.k pairs from the database alone (synth_pairs.jsonl) and valid (and test, without
        --test) are split off them.
        """
        from ..console import echo, esc
        from ..dataset import NO_PAIRS
        from ..errors import Interrupted, SqltuneError
        from ..recipe import load_recipe, parse_set
        from ..run import NO_PAIRS_FILE, run

        overrides = parse_set(set_)
        if db is not None:
            overrides["data.db"] = db
        # a database and no pairs (the recipe's training pairs are still the exoplanets questions, and none are set):
        # the run writes them from the database alone first (README); a recipe naming pairs of its own keeps them
        recipe_train = str(load_recipe(recipe, overrides).data.train)
        no_pairs = (train is None and db is not None and "data.train" not in overrides
                    and recipe_train.startswith("exoplanets:"))
        # a recipe (or --set) saying `data.train: synth` already: --valid/--test are the questions to hold out, given
        # in place of the recipe's own; the rest of its data section stays
        recipe_no_pairs = train is None and not no_pairs and recipe_train == NO_PAIRS
        if (valid or test) and not train and not no_pairs and not recipe_no_pairs:
            raise SqltuneError("--valid/--test go with --train (the pairs to fine-tune on), or with --db alone (no "
                               "pairs: the run writes them)")
        if recipe_no_pairs:
            if valid is not None:
                overrides.update({"data.valid": valid, "data.split": False})
            if test is not None:
                overrides["data.test"] = test
        if no_pairs:
            train = NO_PAIRS
        if train is not None:
            if db is None and "data.db" not in overrides:
                raise SqltuneError("--train needs --db (the database the questions are about)")
            overrides.update({"data.train": train, "data.valid": valid, "data.test": test, "data.split": valid is None})
        if out is None:  # named here, so that a Ctrl-C can say where the run is kept
            from datetime import datetime

            out = Path(load_recipe(recipe, overrides).out or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S"))
        try:
            metrics = run(recipe, out, resume=resume, overrides=overrides)
            from ..cli import print_summary

            if train is not None and valid is None:
                source = (f"the pairs written from {esc(str(overrides['data.db']))} ({NO_PAIRS_FILE})"
                          if train == NO_PAIRS else esc(train))
                echo(f"valid{'' if test else ' and test'} were split off {source} by gold SQL (no query in two "
                     f"splits): split_*.jsonl in the run folder")

            for stage, splits in metrics.items():  # every stage the run scored, in order (base, tuned, rl_run1.., rl, augmented)
                if stage not in ("timings", "chosen") and isinstance(splits, dict):
                    for split, summary in splits.items():
                        print_summary(f"{stage} / {split}", summary)
            for stage, chosen in metrics.get("chosen", {}).items():  # a step-0 checkpoint copied its start model's scores
                if chosen.get("same_model_as"):
                    echo(f"{stage} is the {chosen['same_model_as']} model: training did not beat it on valid, so the run "
                         "kept it (step 0)")
                if chosen.get("untuned"):
                    echo(f"{stage} is the untuned model: training did not beat it on valid, so the run kept step 0; "
                         "its answers are the base stage's, where they fail repaired against the schema")
                if chosen.get("untuned_panel"):
                    echo(f"{stage} is the untuned model: training did not beat it on valid, so the run kept step 0 "
                         "and answered with the untuned model's own panel (its answers with and without retrieved "
                         "training examples vote)")
            echo(f"report: {esc(Path(metrics.get('out', out)) / 'report.md')} and report.html beside it")
        except KeyboardInterrupt:  # also while the finished run's scores print: never "nothing written" for a run
            from ..run import is_run_folder

            if out.is_dir() and is_run_folder(out):
                raise Interrupted(f"{out} keeps the finished stages: add --out {out} --resume to continue") from None
            raise

    @app.command("report")
    def report_cmd(
        run_a: Path = typer.Argument(..., help="First run folder."),
        run_b: Path = typer.Argument(..., help="Second run folder."),
        stage: str = typer.Option("tuned", help="Which stage's predictions to compare: base, tuned, rl (a GRPO recipe's final answers), rl_run1, ..., augmented, answer (a run with train.enabled false); the stages the runs have."),
    ):
        """Compare two runs question by question: paired bootstrap CI and McNemar's test.

        Only questions both runs answered (same id, same question) are paired; runs with none in common
        are refused. Example: sqltune report runs/a runs/b
        """
        from ..console import echo, esc
        from ..report import compare_runs

        for row in compare_runs(run_a, run_b, stage, warn=lambda msg: echo(f"[yellow]warning:[/] {esc(msg)}", err=True)):
            echo(esc(f"{row['split']}: {row['sentence']}"))
