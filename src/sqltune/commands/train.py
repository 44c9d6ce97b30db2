"""`sqltune train` (supervised, or `--method grpo`), `sqltune merge` and `sqltune recipes`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .options import DB, MODEL, SET


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        out: Path = typer.Option(..., "--out", help="Output folder for the adapter (or model)."),
        train: Optional[str] = typer.Option(None, "--train", help="Training items: NAME:SPLIT, .jsonl/.json/.csv, or a hub id (default: the recipe's)."),
        valid: Optional[str] = typer.Option(None, "--valid", help="Validation items, used to choose the checkpoint (default: the recipe's)."),
        config: Optional[str] = typer.Option(None, "--config", help="Recipe: a shipped name (see `sqltune recipes`) or a YAML file (default: 'default')."),
        db: Optional[str] = DB,
        model: Optional[str] = MODEL,
        method: Optional[str] = typer.Option(None, "--method", help="lora | dora | full | qlora | grpo (execution-reward RL; see --init)"),
        init: Optional[Path] = typer.Option(None, "--init", help="grpo: the trained checkpoint to start from (an SFT output folder); default: the base model with a new adapter."),
        epochs: Optional[float] = typer.Option(None, "--epochs", min=0.001, help="Passes over the training data (> 0)."),
        lr: Optional[float] = typer.Option(None, "--lr", min=0.0, help="Learning rate."),
        rank: Optional[int] = typer.Option(None, "--rank", min=1, help="LoRA/DoRA rank."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Examples per step."),
        top_layers: Optional[int] = typer.Option(None, "--top-layers", min=1, help="Adapt (or train) only the last N layers."),
        prompt_style: Optional[str] = typer.Option(None, "--prompt-style", help="chat | premsql | seed"),
        device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | mps"),
        seed: Optional[int] = typer.Option(None, "--seed"),
        set_: List[str] = SET,
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run of the same --out."),
        force: bool = typer.Option(False, "--force", help="Replace an existing --out that sqltune wrote (and its "
                                   "interrupted run); a folder sqltune did not write is refused."),
    ):
        """Fine-tune on question/SQL pairs; keep the checkpoint with the best valid exact (untuned included).

        Example: sqltune train --db mydb.sqlite --train train.jsonl --valid valid.jsonl --out my-adapter
        GRPO after SFT: sqltune train --method grpo --init my-adapter --db mydb.sqlite --train train.jsonl --out my-rl
        """
        from ..console import echo, esc
        from ..db import resolve_db
        from ..errors import Interrupted, SqltuneError
        from ..files import check_replaceable, check_writable
        from ..model import resolve_model
        from ..recipe import load_recipe, parse_set
        from ..train import train as run_train

        overrides = parse_set(set_)
        grpo = method == "grpo"
        if init is not None and not grpo:
            raise SqltuneError("--init is for --method grpo")
        for key, value in {"data.train": train, "data.valid": valid, "data.db": db, "model": model,
                           "train.method": None if grpo else method, "train.epochs": epochs,
                           "rl.lr" if grpo else "train.lr": lr, "train.rank": rank,
                           "train.batch_size": batch_size, "train.top_layers": top_layers,
                           "prompt.style": prompt_style, "device": device, "rl.seed" if grpo else "train.seed": seed}.items():
            if value is not None:
                overrides[key] = value
        check_writable(out, folder=True)
        if force:
            check_replaceable(out)
            check_replaceable(out.with_name(out.name + ".work"))
        recipe = load_recipe(config, overrides)
        items = recipe.items()  # every input is checked before anything is deleted or written
        resolve_db(recipe.data.db, need_tables=True)
        resolve_model(recipe.model)
        try:
            if grpo:
                from ..rl import train_grpo
                from ..run import selection_rule

                # the recipe's rule (`rl.choose`), as `sqltune run` applies it
                result = train_grpo(recipe, items["train"], items["valid"], recipe.data.db, out,
                                    init_adapter=init, force=force, resume=resume,
                                    choose=selection_rule(recipe.to_dict(), items, pooled=False, mode=recipe.rl.choose))
                b = result.best
                echo(f"chose GRPO step {result.chosen_step}: valid exact {b['exact']:.1%}, executed "
                     f"{b['execution_rate']:.1%} on {b['n']} questions"
                     + (" — the start model; GRPO did not help" if result.untrained else "")
                     + f"; wrote {esc(result.out_dir)}")
                return
            from ..run import selection_rule, sft_rule

            # the recipe's rule (`train.choose`, at `synth.select_z`), as `sqltune run` applies it
            c = recipe.to_dict()
            result = run_train(recipe, items["train"], items["valid"], recipe.data.db, out, resume=resume, force=force,
                               choose=selection_rule(c, items, pooled=False, mode=sft_rule(c)))
        except KeyboardInterrupt:
            from ..rl import inner_checkpoints

            work, runs = out.with_name(out.name + ".work"), out.with_name(out.name + ".runs")
            if runs.is_dir() and inner_checkpoints(runs):  # `rl.runs` > 1: the GRPO runs that finished
                raise Interrupted(f"{runs} keeps the finished GRPO runs: add --resume to continue") from None
            if work.is_dir():
                raise Interrupted(f"{work} keeps the finished steps: add --resume to continue") from None
            raise
        from ..distributed import is_main

        if not is_main():  # under `accelerate launch`: one report, rank 0's
            return
        b = result.best
        tok = result.info["tokens"]
        echo(f"chose step {result.chosen_step} (epoch {result.chosen_epoch:g}): exact {b['exact']:.1%}, "
                      f"executed {b['execution_rate']:.1%}, fuzzy {b['fuzzy']:.1%} on {b['n']} valid questions"
             + (" — the untuned model; training did not help" if result.untrained else ""))
        echo(f"{tok['tokens_per_s']:.0f} example tokens/s; wrote {esc(result.out_dir)}")

    @app.command("merge")
    def merge_cmd(
        adapter: Path = typer.Argument(..., help="A trained adapter folder (from sqltune train)."),
        out: Path = typer.Argument(..., help="Where to write the standalone merged model (a new folder)."),
        force: bool = typer.Option(False, "--force", help="Replace an OUT that sqltune wrote before."),
    ):
        """Merge an adapter into its base model: a folder that `--model OUT` loads.

        Example: sqltune merge runs/X/adapter merged-model
        """
        from ..checkpoint import merge
        from ..console import echo, esc

        echo(f"wrote {esc(merge(adapter, out, force=force))}")

    @app.command("recipes")
    def recipes_cmd():
        """List the shipped recipes (`sqltune run NAME` runs one)."""
        from ..console import show, table
        from ..recipe import list_recipes

        show(table(("name", "model", "method", "description"),
                   [[r["name"], r["model"], r["method"], r["description"]] for r in list_recipes()]))
