"""Training and generation speed on a GPU, timed through the shipped code (issue 13).

    python3 benchmarks/gpu_train.py --model /root/sqh/models/qwen2.5-coder-0.5b --out $OUT/gpu_train.json
    python3 benchmarks/gpu_train.py --model DIR --methods lora,full --epochs 10 --out $OUT/gpu_train.json
    python3 benchmarks/gpu_train.py --compare ONE/metrics.jsonl DDP/metrics.jsonl    # two `sqltune train` runs
    bash benchmarks/gpu_issue13.sh    # all of issue 13's GPU measurements in one call (1.5B, 2 GPUs): see there

For each method: `sqltune.train.train` with the default recipe (exoplanets train, the checkpoint
chosen on valid by the one evaluator), then `sqltune.evaluate.evaluate` of the chosen checkpoint on
valid + test, loaded by `sqltune.model.load`. Reports what the trainer itself records
(sqltune_checkpoint.json: wall, step and eval seconds, example tokens/s, shared-prefix length) and
the evaluator's timing. No loop, loss or SQL cleaner of its own: only public names of sqltune.

Two GPUs: `sqltune train` under `accelerate launch` (DDP; the trainer then runs whole sequences:
the shared-prefix step is single-process), same global batch, then `--compare` the logged loss curves
(BENCHMARKS.md, "Benchmarks through the shipped code").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def machine() -> dict:
    import torch
    import transformers

    gpu = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"gpus": gpu, "torch": torch.__version__, "transformers": transformers.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def one_method(args, method: str, work: Path) -> dict:
    from sqltune.dataset import load_items
    from sqltune.db import resolve_db
    from sqltune.evaluate import EvalConfig, evaluate
    from sqltune.model import load, pick_device
    from sqltune.recipe import load_recipe, parse_set
    from sqltune.train import train

    overrides = {"train.method": method, **parse_set(args.set)}
    if method == "full" and args.full_lr is not None:
        overrides["train.lr"] = args.full_lr
    if args.model:
        overrides["model"] = args.model
    if args.epochs is not None:
        overrides["train.epochs"] = args.epochs
    if args.batch_size is not None:
        overrides["train.batch_size"] = args.batch_size
    recipe = load_recipe(args.config, overrides)
    valid, test = load_items(recipe.data.valid), load_items(recipe.data.test)
    db = resolve_db(recipe.data.db)  # the recipe's (None: the packaged exoplanets database)
    t = time.perf_counter()
    res = train(recipe, recipe.train_items(), valid, db, work / method, force=True, progress=False)
    wall = time.perf_counter() - t
    dev = pick_device(recipe.device, recipe.dtype)
    t = time.perf_counter()
    loaded = load(work / method, dev)
    load_s = time.perf_counter() - t
    ecfg = EvalConfig.from_recipe(recipe, dev, fewshot_pool=recipe.train_items(), progress=False)
    evals = {}
    for split, items in (("valid", valid), ("test", test)):
        rep = evaluate(loaded.model, loaded.tokenizer, loaded.builder, items, db, ecfg)
        evals[split] = {"summary": rep["summary"], "timing": rep["timing"]}
    info = res.info
    row = {"method": method, "train_wall_s": round(wall, 2), "steps": max(r["step"] for r in res.history),
           "lr": recipe.train["lr"], "timing": info["timing"], "tokens": info["tokens"],
           "chosen": info["chosen"], "history": res.history, "load_s": round(load_s, 2), "eval": evals,
           "eval_config": ecfg.to_dict(), "device": info["device"]}
    print(f"{method}: train {wall:.1f} s (steps {info['timing']['step_seconds']} s, evals "
          f"{info['timing']['eval_seconds']} s), {info['tokens']['tokens_per_s']} example tok/s; chosen step "
          f"{info['chosen']['step']} exact {info['chosen']['exact']:.1%}; test exact "
          f"{evals['test']['summary']['exact']:.1%} in {evals['test']['timing']['seconds']} s", file=sys.stderr, flush=True)
    return row


def compare(a: str, b: str, tol: float) -> int:
    """Train-loss curves of two `sqltune train` runs (their metrics.jsonl), step by step."""
    def curve(path):
        rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
        return {r["step"]: r for r in rows if r.get("train_loss") is not None}

    ca, cb = curve(a), curve(b)
    steps = sorted(set(ca) & set(cb))
    worst = 0.0
    print("| step | train loss A | train loss B | rel. diff | valid loss A | valid loss B | exact A | exact B |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in steps:
        la, lb = ca[s]["train_loss"], cb[s]["train_loss"]
        d = abs(la - lb) / max(abs(la), 1e-12)
        worst = max(worst, d)
        print(f"| {s} | {la:.4f} | {lb:.4f} | {d:.1e} | {ca[s]['valid_loss']} | {cb[s]['valid_loss']} "
              f"| {ca[s]['exact']:.1%} | {cb[s]['exact']:.1%} |")
    print(f"{len(steps)} common steps; largest relative train-loss difference {worst:.2e} (tolerance {tol})")
    return 0 if steps and worst <= tol else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="default: the recipe's (qwen2.5-coder-0.5b)")
    ap.add_argument("--config", default="default", help="recipe")
    ap.add_argument("--methods", default="lora", help="comma-separated: lora,dora,full,qlora")
    ap.add_argument("--epochs", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--set", nargs="*", default=[], help="recipe overrides KEY=VALUE")
    ap.add_argument("--full-lr", type=float, default=1e-5,
                    help="learning rate of --methods full (the recipe's is LoRA's; BENCHMARKS.md 'Fine-tuning (issue 8)')")
    ap.add_argument("--work", default="/tmp/sqltune-gpu-train")
    ap.add_argument("--decoder", action="store_true", help="also run benchmarks/decoder.py (30 questions)")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two metrics.jsonl loss curves and exit")
    ap.add_argument("--tol", type=float, default=0.02)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.compare:
        return compare(*args.compare, args.tol)
    work = Path(args.work)
    report = {"machine": machine(), "args": vars(args), "rows": []}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        report["rows"].append(one_method(args, method, work))
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    if args.decoder:
        sys.path.insert(0, str(Path(__file__).parent))
        import decoder

        out = str(Path(args.out).with_name("decoder.json")) if args.out else None
        decoder.main(["--limit", "30", "--variants"] + (["--model", args.model] if args.model else [])
                     + (["--out", out] if out else []))
    print("| method | train wall | steps | step s | eval s | example tok/s | chosen step | valid exact | test exact | test q/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in report["rows"]:
        t, ev = r["timing"], r["eval"]
        print(f"| {r['method']} | {r['train_wall_s']} s | {r['steps']} | {t['step_seconds']} | {t['eval_seconds']} | "
              f"{r['tokens']['tokens_per_s']} | {r['chosen']['step']} | {ev['valid']['summary']['exact']:.1%} | "
              f"{ev['test']['summary']['exact']:.1%} | {ev['test']['timing']['queries_per_s']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
