"""Benchmark: how many training questions can GRPO learn from? (`sqltune.rl.probe`, recipe `rl.probe`)

For each devsuite DB, the untuned model samples N completions per training question (the train split,
plus a run folder's synthetic pairs with `--synth-from WORK`, as `sqltune run` would weight them), and
the reward grades them. A question whose N rewards are all equal gives GRPO no gradient; the probe
keeps the others. Prints, per DB, how many questions are informative, all right, none right, and the
probe's time. This is the shipped `rl.probe` function, not a copy.

    PYTHONPATH=src python benchmarks/rl_probe.py --recipe default --samples 8 --dbs flight_2 singer \
        --out benchmarks/results/rl-probe-cpu-0.5b-2026-11-30.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sqltune.dataset import read_jsonl
from sqltune.model import load_model, pick_device
from sqltune.prompt import PromptBuilder
from sqltune.recipe import load_recipe
from sqltune.rl import ExecutionReward, RLConfig, probe
from sqltune.schema import schema_text

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="default")
    ap.add_argument("--model", default=None, help="default: the recipe's")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--dbs", nargs="*", default=None, help="default: every devsuite DB with >= 2 train pairs")
    ap.add_argument("--devsuite", type=Path, default=HERE.parent.parent / "shared" / "data" / "devsuite")
    ap.add_argument("--synth-from", type=Path, default=None,
                    help="a transfer.py --work folder: add WORK/<db>/<setting>/synth.jsonl (first setting found)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--batch-size", type=int, default=None, help="rows decoded together (default: the recipe's eval.batch_size)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    recipe = load_recipe(args.recipe, {"model": args.model} if args.model else {})
    c = recipe.to_dict()
    rl = RLConfig.from_dict({**c["rl"], "probe": args.samples}).validate()
    dev = pick_device(args.device or c.get("device"), c.get("dtype"))
    model, tok, _ = load_model(recipe.model, dev)
    dbs = args.dbs or sorted(p.name for p in args.devsuite.iterdir()
                             if (p / "train.jsonl").is_file() and len(read_jsonl(p / "train.jsonl")) >= 2)
    res = {"recipe": args.recipe, "model": recipe.model, "samples": args.samples, "temperature": rl.temperature,
           "device": dev.device, "dbs": {}}
    for name in dbs:
        d = args.devsuite / name
        items = read_jsonl(d / "train.jsonl", required=("question", "sql"))
        n_synth = 0
        if args.synth_from is not None:
            found = sorted((args.synth_from / name).glob("*/synth.jsonl"))
            if found:
                extra = [{"id": p["id"], "question": p["question"], "sql": p["sql"]} for p in read_jsonl(found[0])]
                items, n_synth = items + extra, len(extra)
        builder = PromptBuilder(schema_text(d / f"{name}.sqlite"), style=c["prompt"]["style"])
        reward = ExecutionReward(d / f"{name}.sqlite", items, rl)
        try:
            t = time.perf_counter()
            keep, counts = probe(model, tok, builder, reward, rl, batch_size=args.batch_size or int(c["eval"]["batch_size"]),
                                 autocast=dev.autocast)
            counts["seconds"] = round(time.perf_counter() - t, 1)
        finally:
            reward.close()
        counts["synthetic"] = n_synth
        counts["kept_ids"] = [items[i]["id"] for i in keep]
        res["dbs"][name] = counts
        if args.out:  # after every DB: a cut run keeps what it measured
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(res, indent=1))
        print(f"{name}: {counts['informative']} of {counts['questions']} questions informative "
              f"({counts['all_exact']} all right, {counts['none_exact']} none right; {n_synth} synthetic), "
              f"{counts['seconds']} s", flush=True)
    tot = {k: sum(r[k] for r in res["dbs"].values()) for k in ("questions", "informative", "all_exact", "none_exact")}
    res["total"] = tot
    print(f"total: {tot['informative']} of {tot['questions']} informative, {tot['all_exact']} all right, "
          f"{tot['none_exact']} none right")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
