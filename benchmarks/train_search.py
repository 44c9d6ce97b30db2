"""Choosing the default recipe without touching test: train on exoplanets train minus a held-out slice
(every 5th item, "dev"), choose on dev + valid, and log the learning curve of each setting.

    flock /tmp/sqltune-cpu.lock .venv/bin/python benchmarks/train_search.py NAME [--set train.lr=1e-3 ...]

Writes benchmarks/results/train/NAME.json: the settings, every evaluation with exact on dev and on
valid separately, and the run's timing. BENCHMARKS.md ("Fine-tuning (issue 8)") summarises them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "train"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--config", default="default")
    ap.add_argument("--set", dest="sets", nargs="*", default=[])
    ap.add_argument("--every", type=int, default=5, help="hold out every N-th train item as dev")
    ap.add_argument("--work", default="/tmp/sqltune-search")
    ap.add_argument("--baseline", default=None, help="cache of the untuned model's report on dev + valid (made once)")
    ap.add_argument("--results", default=str(RESULTS), help="folder for NAME.json")
    args = ap.parse_args()

    from sqltune.dataset import load_items
    from sqltune.recipe import load_recipe, parse_set
    from sqltune.train import train

    recipe = load_recipe(args.config, parse_set(args.sets))
    items = load_items(recipe.data.train)
    dev = [it for i, it in enumerate(items) if i % args.every == 0]
    rest = [it for i, it in enumerate(items) if i % args.every != 0]
    valid = load_items(recipe.data.valid)
    dev_ids, valid_ids = {it["id"] for it in dev}, {it["id"] for it in valid}
    out = Path(args.work) / args.name
    baseline = None
    if args.baseline:
        baseline = _baseline(Path(args.baseline), recipe, dev + valid)
    t = time.time()
    result = train(recipe, rest, dev + valid, recipe.data.db, out, force=True, baseline=baseline)
    wall = time.time() - t
    curve = [{"step": r["step"], "epoch": r["epoch"], "train_loss": r["train_loss"], "valid_loss": r["valid_loss"],
              "dev_exact": sum(i in dev_ids for i in r["exact_ids"]) / len(dev),
              "valid_exact": sum(i in valid_ids for i in r["exact_ids"]) / len(valid),
              "execution_rate": r["execution_rate"], "eval_seconds": r["eval_seconds"],
              "seconds_since_last_eval": r["seconds_since_last_eval"]} for r in result.history]
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    report = {"name": args.name, "sets": args.sets, "train": len(rest), "dev": len(dev), "valid": len(valid),
              "date": time.strftime("%Y-%m-%d %H:%M"), "machine": _machine(),
              "wall_seconds": round(wall, 1), "chosen_step": result.chosen_step, "curve": curve,
              "timing": result.info["timing"], "tokens": result.info["tokens"],
              "hyperparameters": result.info["hyperparameters"]}
    (results / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    for c in curve:
        print(f"{args.name} epoch {c['epoch']:.2f}: dev {c['dev_exact']:.1%} valid {c['valid_exact']:.1%} "
              f"exec {c['execution_rate']:.1%} loss {c['train_loss']} / {c['valid_loss']:.4f} eval {c['eval_seconds']}s")
    print(json.dumps(result.info["timing"]), json.dumps(result.info["tokens"]))
    shutil.rmtree(out, ignore_errors=True)


def _machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"{platform.node()} {platform.processor()} CPU x{os.cpu_count()}"


def _baseline(path: Path, recipe, items: list[dict]) -> dict:
    """The untuned model's score report on `items`, generated once and cached in `path`."""
    if path.is_file():
        return json.loads(path.read_text())
    from sqltune.dataset import load_items
    from sqltune.db import resolve_db
    from sqltune.evaluate import EvalConfig, evaluate
    from sqltune.model import load, pick_device
    from sqltune.prompt import PromptBuilder
    from sqltune.schema import schema_text

    db = resolve_db(recipe.data.db)
    dev = pick_device(recipe.device, recipe.dtype)
    loaded = load(recipe.model, dev, builder=PromptBuilder(schema_text(db, recipe.data.notes), recipe.prompt.style))
    # the same evaluation training runs for its step 0 (EvalConfig from the recipe), so the cache is a valid baseline
    ecfg = EvalConfig.from_train_config(recipe.train_config(), dev, fewshot_pool=load_items(recipe.data.train))
    report = evaluate(loaded.model, loaded.tokenizer, loaded.builder, items, db, ecfg)
    path.write_text(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
