"""`sqltune train` (supervised, or `--method grpo`), `sqltune merge` and `sqltune recipes`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        out: Path = typer.Option(..., "--out", help="Output folder for the adapter (or model)."),
        train: Optional[str] = typer.Option(None, "--train", help="Training items: NAME:SPLIT, .jsonl/.json/.csv, or a hub id (default: the recipe's)."),
        valid: Optional[str] = typer.Option(None, "--valid", help="Validation items, used to choose the checkpoint (default: the recipe's)."),
        config: Optional[str] = typer.Option(None, "--config", help="Recipe: a shipped name (see `sqltune recipes`) or a YAML file (default: 'default')."),
        db: Optional[str] = typer.Option(None, "--db", help="SQLite database (default: the recipe's, else the exoplanets DB)."),
        model: Optional[str] = typer.Option(None, "--model", help="Base model: packaged name, folder, .gguf or hub id."),
        method: Optional[str] = typer.Option(None, "--method", help="lora | dora | full | qlora | grpo (execution-reward RL; see --init)"),
        init: Optional[Path] = typer.Option(None, "--init", help="grpo: the trained checkpoint to start from (an SFT output folder); default: the base model with a new adapter."),
        epochs: Optional[float] = typer.Option(None, "--epochs"),
        lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate."),
        rank: Optional[int] = typer.Option(None, "--rank", help="LoRA/DoRA rank."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size"),
        top_layers: Optional[int] = typer.Option(None, "--top-layers", help="Adapt (or train) only the last N layers."),
        prompt_style: Optional[str] = typer.Option(None, "--prompt-style", help="chat | premsql | seed"),
        device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | mps"),
        seed: Optional[int] = typer.Option(None, "--seed"),
        set_: List[str] = typer.Option([], "--set", help="Any recipe setting, e.g. --set train.warmup=0.1 (repeatable)."),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run of the same --out."),
        force: bool = typer.Option(False, "--force", help="Delete an existing --out (and its interrupted run) first."),
    ):
        """Fine-tune on question/SQL pairs; keep the checkpoint with the best valid exact (untuned included)."""
        from ..cli import console
        from ..dataset import load_items
        from ..errors import SqltuneError
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
        recipe = load_recipe(config, overrides)
        if grpo:
            from ..rl import train_grpo

            result = train_grpo(recipe, recipe.train_items(), load_items(recipe.data.valid), recipe.data.db, out,
                                init_adapter=init, force=force, resume=resume)
            b = result.best
            console.print(f"chose GRPO step {result.chosen_step}: valid exact {b['exact']:.1%}, executed "
                          f"{b['execution_rate']:.1%} on {b['n']} questions"
                          + (" — the start model; GRPO did not help" if result.untrained else "")
                          + f"; wrote {result.out_dir}")
            return
        result = run_train(recipe, recipe.train_items(), load_items(recipe.data.valid), recipe.data.db, out,
                           resume=resume, force=force)
        b = result.best
        tok = result.info["tokens"]
        console.print(f"chose step {result.chosen_step} (epoch {result.chosen_epoch:g}): exact {b['exact']:.1%}, "
                      f"executed {b['execution_rate']:.1%}, fuzzy {b['fuzzy']:.1%} on {b['n']} valid questions"
                      + (" — the untuned model; training did not help" if result.untrained else ""))
        console.print(f"{tok['tokens_per_s']:.0f} example tokens/s; wrote {result.out_dir}")

    @app.command("merge")
    def merge_cmd(
        adapter: Path = typer.Argument(..., help="A trained adapter folder (from sqltune train)."),
        out: Path = typer.Argument(..., help="Where to write the standalone merged model."),
    ):
        """Merge an adapter into its base model: a folder that `--model OUT` loads."""
        from ..checkpoint import merge
        from ..cli import console

        console.print(f"wrote {merge(adapter, out)}")

    @app.command("recipes")
    def recipes_cmd():
        """List the shipped recipes."""
        from rich.table import Table

        from ..cli import console
        from ..recipe import list_recipes

        table = Table()
        table.add_column("name", no_wrap=True)
        table.add_column("model", overflow="fold")
        table.add_column("method", no_wrap=True)
        table.add_column("description")
        for r in list_recipes():
            table.add_row(r["name"], r["model"], r["method"], r["description"])
        console.print(table)
