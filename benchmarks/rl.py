"""GRPO after SFT vs SFT alone (issue 16): the SHIPPED `sqltune run` with `rl.enabled=true` on devsuite
databases and/or exoplanets. One run per database trains the SFT adapter once, scores it (stage `tuned`),
continues it with GRPO (stage `rl`) and scores that: the two test numbers are paired on the same
questions, the same data and the same SFT adapter. Per DB: test exact/fuzzy of base, SFT and SFT+GRPO,
the paired bootstrap CI and McNemar p (SFT -> SFT+GRPO), the GRPO step chosen on valid, and GPU minutes
(whole run, the SFT stage, the GRPO stage, the GRPO test evaluation) from the run's timings.json.

    PYTHONPATH=src python3 benchmarks/rl.py --dbs flight_2 --work /root/rl --out $OUT/rl
    # on the GPU machine: cp -r /work/shared/data/devsuite .gpu/devsuite here first and carry .gpu/devsuite
    PYTHONPATH=src python3 benchmarks/rl.py --dbs exoplanets --work /root/rl --out $OUT/rl
    PYTHONPATH=src python3 benchmarks/rl.py --no-run --dbs all --work /root/rl --out $OUT/rl   # merged table

`--dbs all` = the 13 devsuite databases; `exoplanets` = the packaged data (exoplanets:train/valid/test).
A finished run folder WORK/<db> is reused, an interrupted one is resumed, so a long sweep is several calls
with the same --work (each call stops starting new DBs after --budget seconds). Every call writes
OUT/<db>.json per finished DB and OUT/summary.json + OUT/summary.md over all finished DBs under --work.
Test is read once per stage; the GRPO checkpoint is chosen on valid only.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

# the shared copy here; on the GPU machine a copy carried in the (git-ignored) .gpu folder
DEVSUITE = next((p for p in (Path("/work/shared/data/devsuite"), Path(".gpu/devsuite")) if p.is_dir()),
                Path(".gpu/devsuite"))


def all_dbs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if (p / f"{p.name}.sqlite").is_file())


def overrides_for(db: str, root: Path) -> dict:
    if db == "exoplanets":
        return {"data.db": None, "data.train": "exoplanets:train", "data.valid": "exoplanets:valid",
                "data.test": "exoplanets:test"}
    d = root / db
    return {"data.db": str(d / f"{db}.sqlite"), "data.train": str(d / "train.jsonl"),
            "data.valid": str(d / "valid.jsonl"), "data.test": str(d / "test.jsonl"), "data.extra": []}


def summarize(db: str, run: Path) -> dict:
    from sqltune.report import paired

    def rep(stage, split):
        f = run / f"{stage}_{split}_report.json"
        return json.loads(f.read_text()) if f.is_file() else None

    timings = json.loads((run / "timings.json").read_text())
    info = json.loads((run / "adapter_rl" / "sqltune_checkpoint.json").read_text())
    rl_hist = [json.loads(x) for x in (run / "adapter_rl" / "metrics.jsonl").read_text().splitlines()]
    steps = [h for h in rl_hist if h.get("reward") is not None]
    out = {"db": db, "run": str(run), "timings": timings,
           "gpu_minutes": {"total": round(sum(timings.values()) / 60, 2),
                           "sft": round(timings.get("train", 0.0) / 60, 2),
                           "grpo": round(timings.get("rl", 0.0) / 60, 2),
                           "grpo_eval": round(sum(v for k, v in timings.items() if k.startswith("rl_")) / 60, 2)},
           "grpo": {"chosen_step": info["chosen"]["step"], "steps": info["timing"]["steps"],
                    "train_seconds": info["timing"]["train_seconds"], "eval_seconds": info["timing"]["eval_seconds"],
                    "reward_first": steps[0]["reward"] if steps else None,
                    "reward_last5": (sum(h["reward"] for h in steps[-5:]) / len(steps[-5:])) if steps else None,
                    "any_correct_first": steps[0].get("any_correct") if steps else None,
                    "any_correct_last5": (sum(h.get("any_correct") or 0 for h in steps[-5:]) / len(steps[-5:]))
                    if steps else None,
                    "kl_last": steps[-1].get("kl") if steps else None,
                    "valid": [{k: h[k] for k in ("step", "exact", "execution_rate")} for h in rl_hist if "exact" in h],
                    "config": info.get("rl")}}
    for split in ("valid", "test"):
        reps = {st: rep(st, split) for st in ("base", "tuned", "rl")}
        out[split] = {st: {k: r["summary"][k] for k in ("n", "exact", "fuzzy", "execution_rate")}
                      for st, r in reps.items() if r}
        if reps["tuned"] and reps["rl"]:
            cmp = paired(reps["tuned"], reps["rl"])
            out[split]["sft_to_grpo"] = {**cmp.to_dict(), "sentence": cmp.sentence()}
    return out


def table(rows: list[dict]) -> str:
    head = ("| db | n test | base | SFT | SFT+GRPO | Δ | GRPO step | reward first → last5 | any-correct first → last5 "
            "| GPU min total / GRPO |\n|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        t, g = r["test"], r["grpo"]
        fmt = lambda x: f"{x:.3f}" if isinstance(x, (int, float)) else "–"  # noqa: E731
        lines.append(f"| {r['db']} | {t['rl']['n']} | {fmt(t.get('base', {}).get('exact'))} | {fmt(t['tuned']['exact'])} | "
                     f"{fmt(t['rl']['exact'])} | {t['rl']['exact'] - t['tuned']['exact']:+.3f} | {g['chosen_step']}/{g['steps']} | "
                     f"{fmt(g['reward_first'])} → {fmt(g['reward_last5'])} | {fmt(g['any_correct_first'])} → "
                     f"{fmt(g['any_correct_last5'])} | {r['gpu_minutes']['total']:.1f} / {r['gpu_minutes']['grpo']:.1f} |")
    if rows:
        m = lambda st: sum(r["test"][st]["exact"] for r in rows) / len(rows)  # noqa: E731
        lines.append(f"| **mean of {len(rows)}** | | | {m('tuned'):.3f} | {m('rl'):.3f} | {m('rl') - m('tuned'):+.3f} | | | | "
                     f"{sum(r['gpu_minutes']['total'] for r in rows):.1f} / {sum(r['gpu_minutes']['grpo'] for r in rows):.1f} |")
    return head + "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dbs", nargs="+", default=["all"], help="devsuite names, 'exoplanets', or 'all' (the devsuite)")
    ap.add_argument("--recipe", default="qwen1.5b-gpu")
    ap.add_argument("--model", default=None, help="override the recipe's model")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="recipe override KEY=VALUE (repeatable)")
    ap.add_argument("--work", type=Path, required=True, help="run folders (WORK/<db>)")
    ap.add_argument("--out", type=Path, required=True, help="summaries (small JSON/Markdown only)")
    ap.add_argument("--root", type=Path, default=DEVSUITE)
    ap.add_argument("--budget", type=float, default=60.0, help="start no new DB after this many seconds")
    ap.add_argument("--no-run", action="store_true", help="only summarise finished runs")
    a = ap.parse_args()

    import importlib.util

    missing = [m for m in ("trl", "datasets", "pyarrow", "xxhash", "pandas", "dill", "multiprocess", "sqlglot")
               if importlib.util.find_spec(m) is None]
    if missing and not a.no_run:  # GRPOTrainer imports datasets, which needs all of these
        sys.exit(f"error: missing on this machine: {', '.join(missing)} (scripts/gpu_wheels.sh carries trl, datasets, "
                 "dill, multiprocess, sqlglot; add the others there)")

    from sqltune.recipe import parse_set
    from sqltune.run import run

    dbs = [d for x in a.dbs for d in (all_dbs(a.root) if x == "all" else [x])]
    extra = parse_set(a.sets)
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    for db in dbs:
        folder = a.work / db
        if a.no_run or (folder / "metrics.json").is_file():
            continue
        if time.monotonic() - t0 > a.budget:
            print(f"budget spent: {db} and later DBs are left for the next call", file=sys.stderr)
            break
        # GRPO after SFT is what this measures: training on, whatever the recipe's default (`qwen1.5b-gpu` trains
        # nothing by default since session 38)
        ov = {**overrides_for(db, a.root), "train.enabled": True, "rl.enabled": True, **extra}
        if a.model:
            ov["model"] = a.model
        t = time.monotonic()
        run(a.recipe, folder, resume=True, overrides=ov)
        print(f"{db}: {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
        (a.out / f"{db}.json").write_text(json.dumps(summarize(db, folder), indent=2))
    rows = [summarize(db, a.work / db) for db in dbs if (a.work / db / "metrics.json").is_file()
            and (a.work / db / "adapter_rl" / "sqltune_checkpoint.json").is_file()]
    meta = {"recipe": a.recipe, "model": a.model, "overrides": extra, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    try:
        import torch

        if torch.cuda.is_available():
            meta["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    (a.out / "summary.json").write_text(json.dumps({"meta": meta, "dbs": rows}, indent=2))
    (a.out / "summary.md").write_text(table(rows))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
