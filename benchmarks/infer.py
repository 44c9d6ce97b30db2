"""Benchmark: inference settings of the untuned model on databases nobody here wrote (no training).

For each devsuite DB the untuned model answers valid and test through the shipped evaluator
(`sqltune.evaluate.evaluate` with `EvalConfig.from_recipe` of the recipe: the path `sqltune run` scores
with) once per setting: `greedy`; `fewshot=K` (K examples retrieved from that DB's train split,
`generate.fewshot_for`: the most similar training questions, shown before the question); `vote=N`
(execution-guided vote over greedy + N-1 samples, `vote.py`); `retries=R` (a query that fails is shown
to the model again with its error, up to R times: `eval.retries`); or several joined by `+`. Every setting is
compared, paired, with `greedy`. Choose on valid (pooled over the DBs: a DB's own valid split has 1-10
questions); test is printed for every setting, each read once. `--splits train` scores the train splits
instead: for a model that never trained on them they are held-out questions too, and 4x as many as valid
(a development set for decoding settings; not with `fewshot`, whose examples come from train).

    PYTHONPATH=src python benchmarks/infer.py --recipe default --settings greedy fewshot=4 vote=4 \
        --out benchmarks/results/infer-cpu-0.5b-2026-11-30

Writes OUT/infer.json (per DB and split: exact per setting, the paired comparison with greedy, the
seconds), OUT/infer.md and every report under OUT/reports/ (a finished one is not run again).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from sqltune.dataset import read_jsonl
from sqltune.evaluate import EvalConfig, evaluate
from sqltune.model import load_model, pick_device
from sqltune.prompt import PromptBuilder
from sqltune.recipe import load_recipe
from sqltune.schema import schema_text
from sqltune.stats import compare_paired

HERE = Path(__file__).resolve().parent


def per_question(report: dict) -> dict[str, bool]:
    return {str(e["id"]): bool(e["exact"]) for e in report["examples"]}


def parse_setting(spec: str):
    """'greedy' | 'fewshot=K' | 'vote=N' | 'vote=N@error' | 'retries=R', or several joined by '+'
    -> (K, VoteSettings or None, R)."""
    from sqltune.vote import VoteSettings

    fewshot, vote, retries = 0, None, 0
    for part in spec.split("+"):
        key, _, value = part.partition("=")
        value, _, when = value.partition("@")  # vote=N@error: vote only where greedy's SQL does not execute
        when = when or "always"
        if when not in ("always", "error") or (when != "always" and key != "vote"):
            raise SystemExit(f"infer.py: bad setting {spec!r}: @{when} (only vote=N@error)")
        if key == "greedy" and not value:
            continue
        if key not in ("fewshot", "vote", "retries") or not value.isdigit():
            raise SystemExit(f"infer.py: bad setting {spec!r}: greedy, fewshot=K, vote=N, retries=R (joined by +)")
        if key == "fewshot":
            fewshot = int(value)
        elif key == "retries":
            retries = int(value)
        elif int(value) > 1:
            vote = VoteSettings(int(value), when=when)
    if vote is not None and retries:
        raise SystemExit(f"infer.py: bad setting {spec!r}: a vote already executes every candidate (no retries)")
    return fewshot, vote, retries


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="default")
    ap.add_argument("--model", default=None, help="default: the recipe's")
    ap.add_argument("--settings", nargs="+", default=["greedy", "fewshot=4"],
                    help="greedy | fewshot=K | vote=N | retries=R, or joined by + (greedy is always run: the reference)")
    ap.add_argument("--dbs", nargs="*", default=None,
                    help="default: every devsuite DB with >= 2 train pairs (12 of 13: not real_estate_properties)")
    ap.add_argument("--devsuite", type=Path, default=HERE.parent.parent / "shared" / "data" / "devsuite")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default=None)
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: the recipe's eval.max_new_tokens")
    ap.add_argument("--splits", nargs="+", default=["valid", "test"], choices=["train", "valid", "test"],
                    help="splits to score (train: only for settings without fewshot)")
    args = ap.parse_args(argv)

    overrides = {"model": args.model} if args.model else {}
    if args.max_new_tokens:
        overrides["eval.max_new_tokens"] = args.max_new_tokens
    recipe = load_recipe(args.recipe, overrides)
    dev = pick_device(args.device or recipe.to_dict().get("device"), recipe.to_dict().get("dtype"))
    model, tok, _ = load_model(recipe.model, dev)
    style = recipe.to_dict()["prompt"]["style"]
    dbs = args.dbs or sorted(p.name for p in args.devsuite.iterdir()
                             if (p / "train.jsonl").is_file() and len(read_jsonl(p / "train.jsonl")) >= 2)
    settings = ["greedy"] + [x for x in args.settings if x != "greedy"]
    parsed = {x: parse_setting(x) for x in settings}
    if "train" in args.splits and any(fs for fs, _, _ in parsed.values()):
        raise SystemExit("infer.py: fewshot examples come from the train split; it cannot also be scored")
    splits = list(dict.fromkeys(args.splits))
    (args.out / "reports").mkdir(parents=True, exist_ok=True)
    res = {"recipe": args.recipe, "model": recipe.model, "settings": settings, "device": dev.device,
           "machine": platform.processor() or platform.machine(), "dbs": {}}
    answers = {}  # (db, split, setting) -> {question id: exact}, for the per-DB and the pooled comparisons
    for name in dbs:
        d = args.devsuite / name
        db = d / f"{name}.sqlite"
        items = {s: read_jsonl(d / f"{s}.jsonl", required=("question", "sql")) for s in ("train", "valid", "test")}
        builder = PromptBuilder(schema_text(db), style=style)
        row = {}
        for split in splits:
            reps = {}
            for k in settings:
                f = args.out / "reports" / f"{name}_{split}_{k}.json"
                if f.is_file():
                    reps[k] = json.loads(f.read_text())
                    continue
                fs, vote, retries = parsed[k]
                cfg = EvalConfig.from_recipe(recipe, dev).with_(
                    fewshot=fs, fewshot_pool=items["train"] if fs else None, vote=vote, retries=retries,
                    progress=False).validate()
                t = time.perf_counter()
                rep = evaluate(model, tok, builder, items[split], db, cfg)
                rep.pop("predictions", None)
                rep["seconds"] = round(time.perf_counter() - t, 2)
                f.write_text(json.dumps(rep))
                reps[k] = rep
            for k, r in reps.items():
                answers[name, split, k] = per_question(r)
            base = answers[name, split, "greedy"]
            ids = sorted(base)
            row[split] = {k: {"exact": r["summary"]["exact"], "seconds": r.get("seconds"),
                              "vs_greedy": compare_paired([base[i] for i in ids],
                                                          [answers[name, split, k][i] for i in ids]).to_dict()}
                          for k, r in reps.items()}
            row[split]["n"] = len(ids)
        res["dbs"][name] = row
        print(name, {s: {k: round(v["exact"], 3) for k, v in row[s].items() if k != "n"} for s in splits},
              flush=True)

    # pooled over the DBs (question-weighted) and the mean of the per-DB exacts
    lines = ["| split | setting | n | mean exact over DBs | pooled exact | pooled Δ vs greedy (95 % CI) | fixed / broken | McNemar p |",
             "|---|---|---|---|---|---|---|---|"]
    res["pooled"] = {}
    for split in splits:
        for k in settings:
            a, b = [], []
            for name in dbs:
                p0, pk = answers[name, split, "greedy"], answers[name, split, k]
                a += [p0[i] for i in sorted(p0)]
                b += [pk[i] for i in sorted(p0)]
            c = compare_paired(a, b)
            mean = sum(res["dbs"][n][split][k]["exact"] for n in dbs) / len(dbs)
            res["pooled"][f"{split} {k}"] = {"mean_over_dbs": mean, **c.to_dict()}
            lines.append(f"| {split} | {k} | {c.n} | {mean:.1%} | {c.after:.1%} | {c.delta:+.1%} ([{c.ci_low:+.1%}, "
                         f"{c.ci_high:+.1%}]) | {c.fixed} / {c.broken} | {c.p_value:.3g} |")
    per_db = ["| db | " + " | ".join(f"n {s}" for s in splits) + " | "
              + " | ".join(f"{s} {k}" for s in splits for k in settings) + " |",
              "|---" * (1 + len(splits) * (1 + len(settings))) + "|"]
    for name in dbs:
        r = res["dbs"][name]
        per_db.append(f"| {name} | " + " | ".join(str(r[s]["n"]) for s in splits) + " | "
                      + " | ".join(f"{r[s][k]['exact']:.1%}" for s in splits for k in settings) + " |")
    md = "\n".join(lines + [""] + per_db) + "\n"
    (args.out / "infer.json").write_text(json.dumps(res, indent=1))
    (args.out / "infer.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
