"""Does tuning transfer to a new database? The SHIPPED `sqltune run` on each devsuite database, side by side:
untuned, tuned on the seeds (the DB's train split) only, tuned on seeds + synthetic pairs (issue 14), and any
setting given as recipe overrides. Per DB and mean, exact and fuzzy on test, with the paired bootstrap CI
and McNemar p against the untuned model (sqltune.stats).

    PYTHONPATH=src python benchmarks/transfer.py --recipe qwen1.5b-gpu --model qwen2.5-coder-1.5b \\
        --dbs flight_2 tvshow --work runs/transfer --out benchmarks/results/transfer/qwen15b

Each (db, setting) is one run folder WORK/<db>/<setting>; a finished one is reused, so a long sweep is split
into several calls (`--dbs` subsets, each under a 10-minute limit) with the same --work, and a last call with
`--no-run` (all DBs) prints and writes the merged table. The untuned numbers are the base evaluation of the
first setting's run; later settings of the same DB reuse its base reports (copied in) instead of scoring the
untuned model again.

Settings: `seeds` (synth.enabled=false), `synth` (synth.enabled=true), `seeds_rule` (no synthetic pairs, only the
noise-aware checkpoint rule: synth.enabled=true, synth.k=0; since session 4 `run` applies that rule without
synthetic pairs too, so `seeds` and `seeds_rule` are the same run), or NAME:KEY=VALUE;KEY=VALUE (recipe
overrides, e.g. `vote:synth.enabled=true;eval.vote=5` once that key exists). Every setting is chosen on
train/valid only; the run reads test once per setting, and that is the number reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

DEVSUITE = Path("/work/shared/data/devsuite")
PRESETS = {"seeds": {"synth.enabled": False}, "synth": {"synth.enabled": True},
           # seeds only, but the checkpoint chosen by synth.choose_checkpoint (separates the two effects)
           "seeds_rule": {"synth.enabled": True, "synth.k": 0}}


def parse_setting(spec: str) -> tuple[str, dict]:
    from sqltune.recipe import parse_set

    name, sep, rest = spec.partition(":")
    if not sep:
        if name not in PRESETS:
            sys.exit(f"error: unknown setting '{name}' (presets: {', '.join(PRESETS)}; or NAME:KEY=VALUE;...)")
        return name, dict(PRESETS[name])
    return name, parse_set([p for p in rest.split(";") if p.strip()])


def all_dbs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if (p / f"{p.name}.sqlite").is_file())


def run_one(recipe: str, db: str, root: Path, work: Path, name: str, setting: dict, model: str | None,
            first: Path | None) -> Path:
    from sqltune.run import run

    out = work / db / name
    if (out / "metrics.json").is_file():
        return out
    d = root / db
    ov = {"data.db": str(d / f"{db}.sqlite"), "data.train": str(d / "train.jsonl"),
          "data.valid": str(d / "valid.jsonl"), "data.test": str(d / "test.jsonl"), "data.extra": [], **setting}
    if model:
        ov["model"] = model
    from sqltune.files import claim

    claim(out, "run")  # a run folder from the start: `run(..., resume=True)` continues only those
    if first is not None:  # the untuned model's reports are the same for every setting: reuse them
        for f in ("data_check.json", "base_valid_report.json", "base_test_report.json",
                  "base_valid_pred.jsonl", "base_test_pred.jsonl"):
            if (first / f).is_file() and not (out / f).exists():
                shutil.copy2(first / f, out / f)
    t = time.monotonic()
    run(recipe, out, resume=True, overrides=ov)
    (out / "transfer_wall_seconds.txt").write_text(f"{time.monotonic() - t:.1f}\n")
    return out


def per_question(report: dict, key: str) -> dict[str, bool]:
    return {str(e["id"]): bool(e[key]) for e in report["examples"]}


def views(report: dict, name: str) -> list[tuple[str, dict]]:
    """A report's columns: the greedy answers under `name`; a voted report (eval.vote > 1) adds
    `name@vote` with the voted answers (its greedy half is `vote.greedy_examples`)."""
    from sqltune.run import greedy_view

    if not report.get("vote"):
        return [(name, report)]
    return [(name, greedy_view(report)), (f"{name}@vote", report)]


def final_column(name: str, reps: dict) -> str | None:
    """A setting's last stage on a DB: GRPO voted, GRPO, the tuned model voted, the tuned model."""
    return next((c for c in (f"{name}+rl@vote", f"{name}+rl", f"{name}@vote", name) if c in reps), None)


def _stage_order(stage: str):
    tail = stage.removeprefix("rl_run")
    return (0, 0) if stage == "rl_unaveraged" else (1, int(tail)) if tail.isdigit() else (2, stage)


def inner_stages(folder: Path) -> list[str]:
    """The stages a run scored for the checkpoints kept inside its GRPO output, in order: `rl_unaveraged`
    (`rl.average` < 1), `rl_run1`, `rl_run2`, ... (`rl.runs` > 1)."""
    found = [p.name.removesuffix("_test_report.json") for p in folder.glob("rl_*_test_report.json")]
    return sorted(found, key=_stage_order)


def collect(work: Path, dbs: list[str], names: list[str]) -> dict:
    from sqltune.stats import compare_paired

    out = {"dbs": {}, "mean": {}, "pooled": {}, "against": {}}
    pooled: dict = {}
    against: dict = {}  # (column A, column B) -> {"a": [...], "b": [...], "dbs": {db: (fixed, broken)}}
    for db in dbs:
        # a column per (setting, stage): the tuned model, and GRPO after it (`NAME+rl`) where the run had rl on;
        # runs with eval.vote > 1 add `@vote` columns; every column is compared with the untuned model's greedy answers
        runs = {n: (work / db / n, "tuned") for n in names if (work / db / n / "tuned_test_report.json").is_file()}
        inner = {n: inner_stages(work / db / n) for n in names}
        for n in names:  # the checkpoints GRPO keeps inside its output (rl_unaveraged, rl_run1, ...), then GRPO's
            for stage in inner[n] + ["rl"]:
                if (work / db / n / f"{stage}_test_report.json").is_file():
                    runs[f"{n}+{stage}"] = (work / db / n, stage)
        if not runs:
            continue
        first = next(iter(runs.values()))[0]
        base_views = views(json.loads((first / "base_test_report.json").read_text()), "untuned")
        base = base_views[0][1]
        row = {"n": len(base["examples"]), "untuned": {k: base["summary"][k] for k in ("exact", "fuzzy")}}
        columns = [(n, col, rep, folder) for n, (folder, stage) in runs.items()
                   for col, rep in views(json.loads((folder / f"{stage}_test_report.json").read_text()), n)]
        columns = [(c, c, r, first) for c, r in base_views[1:]] + columns
        for n, col, tuned, folder in columns:
            cell = {}
            for key in ("exact", "fuzzy"):
                a, b = per_question(base, key), per_question(tuned, key)
                ids = sorted(a)
                cmp = compare_paired([a[i] for i in ids], [b[i] for i in ids])
                cell[key] = cmp.to_dict()
                pooled.setdefault((col, key), ([], []))
                pooled[(col, key)][0].extend(a[i] for i in ids)
                pooled[(col, key)][1].extend(b[i] for i in ids)
            summ = folder / "synth.summary.json"
            cell["synth"] = json.loads(summ.read_text()) if summ.is_file() else None
            m = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
            cell["timings"] = m.get("timings")
            ck = folder / "adapter" / "sqltune_checkpoint.json"
            cell["chosen_untrained"] = None
            if ck.is_file():
                info = json.loads(ck.read_text())
                cell["chosen_untrained"] = (info.get("chosen") or info.get("info", {}).get("chosen") or {}).get("untrained")
            row[col] = cell
        # stage against stage, beside the untuned-greedy baseline of every column: what GRPO did to its start model
        # (greedy, voted), and the whole pipeline against the untuned model with the same vote (the strong baseline)
        reps = {"untuned": base, **{c: r for c, r in base_views[1:]}, **{col: r for _, col, r, _ in columns}}
        pairs = [p for n in names for p in ((n, f"{n}+rl"), (f"{n}@vote", f"{n}+rl@vote"), ("untuned@vote", f"{n}+rl@vote"))]
        for n in names:  # each kept checkpoint against GRPO's output (what averaging or the soup did), and the
            #              first GRPO run against each other run of one job (`rl.runs`: the run-to-run spread)
            pairs += [p for x in inner[n] for p in ((f"{n}+{x}", f"{n}+rl"), (f"{n}+{x}@vote", f"{n}+rl@vote"))]
            pairs += [(f"{n}+{inner[n][0]}@vote", f"{n}+{x}@vote") for x in inner[n][1:] if x.startswith("rl_run")]
        # setting against setting: the first setting's last stage against each other one's (and against the
        # checkpoints kept inside its GRPO output): two runs of one recipe, or a setting and the baseline
        ref = final_column(names[0], reps) if names else None
        for n in names[1:]:
            pairs += [(ref, b) for b in [final_column(n, reps)] + [f"{n}+{x}@vote" for x in inner[n]] if ref and b in reps]
        for a, b in pairs:
            if a not in reps or b not in reps:
                continue
            x, y = per_question(reps[a], "exact"), per_question(reps[b], "exact")
            ids = sorted(x)
            acc = against.setdefault((a, b), {"a": [], "b": [], "dbs": {}})
            acc["a"] += [x[i] for i in ids]
            acc["b"] += [y[i] for i in ids]
            acc["dbs"][db] = (sum(y[i] and not x[i] for i in ids), sum(x[i] and not y[i] for i in ids))
        out["dbs"][db] = row
    found = {c for r in out["dbs"].values() for c in r}
    stages = sorted({x for d in dbs for n in names for x in inner_stages(work / d / n)}, key=_stage_order)
    cols = ["untuned@vote"] + [c for n in names for c in (n, f"{n}@vote", *[f"{n}+{x}{v}" for x in stages for v in ("", "@vote")],
                                                           f"{n}+rl", f"{n}+rl@vote")]
    names[:] = [c for c in cols if c in found]
    for n in ["untuned"] + names:
        rows = [r for r in out["dbs"].values() if n in r]
        if not rows:
            continue
        out["mean"][n] = {k: sum((r[n][k] if n == "untuned" else r[n][k]["after"]) for r in rows) / len(rows)
                          for k in ("exact", "fuzzy")}
        out["mean"][n]["dbs"] = len(rows)
        # the untuned model on the same databases: a setting run on a subset is compared with that subset
        out["mean"][n]["untuned"] = {k: sum(r["untuned"][k] for r in rows) / len(rows) for k in ("exact", "fuzzy")}
    for (n, key), (a, b) in pooled.items():
        out["pooled"].setdefault(n, {})[key] = compare_paired(a, b).to_dict()
    for (a, b), acc in against.items():
        out["against"][f"{a} -> {b}"] = {"exact": compare_paired(acc["a"], acc["b"]).to_dict(),
                                          "dbs": {db: {"fixed": f, "broken": k} for db, (f, k) in acc["dbs"].items()}}
    return out


def markdown(res: dict, names: list[str]) -> str:
    head = "| db | n | untuned exact | untuned fuzzy | " + " | ".join(
        f"{n} exact (Δ, 95 % CI) | {n} fuzzy (Δ)" for n in names) + " |"
    lines = [head, "|" + "---|" * (4 + 2 * len(names))]
    for db, r in res["dbs"].items():
        cells = [db, str(r["n"]), f"{r['untuned']['exact']:.1%}", f"{r['untuned']['fuzzy']:.1%}"]
        for n in names:
            if n not in r:
                cells += ["-", "-"]
                continue
            e, f = r[n]["exact"], r[n]["fuzzy"]
            cells += [f"{e['after']:.1%} ({e['delta']:+.1%}, [{e['ci_low']:+.1%}, {e['ci_high']:+.1%}])",
                      f"{f['after']:.1%} ({f['delta']:+.1%})"]
        lines.append("| " + " | ".join(cells) + " |")
    if res["mean"]:
        cells = ["**mean (per DB)**", str(sum(r["n"] for r in res["dbs"].values()))]
        u = res["mean"].get("untuned", {})
        cells += [f"{u.get('exact', 0):.1%}", f"{u.get('fuzzy', 0):.1%}"]
        for n in names:
            m, p = res["mean"].get(n), res["pooled"].get(n)
            if not m:
                cells += ["-", "-"]
                continue
            e, mu = p["exact"], m.get("untuned", u)
            cells += [f"{m['exact']:.1%} ({m['exact'] - mu['exact']:+.1%} over {m['dbs']} DBs; pooled Δ {e['delta']:+.1%}, "
                      f"CI [{e['ci_low']:+.1%}, {e['ci_high']:+.1%}], p = {e['p_value']:.3g})",
                      f"{m['fuzzy']:.1%} ({m['fuzzy'] - mu['fuzzy']:+.1%})"]
        lines.append("| " + " | ".join(cells) + " |")
    if res.get("against"):
        lines += ["", "Stage against stage, and the first setting against each other one (test exact, pooled over the "
                  "DBs both ran; fixed / broken per DB where any answer changed):", ""]
        for pair, r in res["against"].items():
            e = r["exact"]
            moved = ", ".join(f"{db} {c['fixed']}/{c['broken']}" for db, c in r["dbs"].items() if c["fixed"] or c["broken"])
            lines.append(f"- `{pair}`: {e['before']:.1%} → {e['after']:.1%} (Δ {e['delta']:+.1%}, CI [{e['ci_low']:+.1%}, "
                         f"{e['ci_high']:+.1%}]; {e['fixed']} fixed, {e['broken']} broken, n = {e['n']})"
                         + (f"; {moved}" if moved else ""))
    return "\n".join(lines)


def out_paths(out: str) -> tuple[Path, Path]:
    """OUT.json and OUT.md: the suffixes are appended (`--out ten-dbs-0.5b` keeps its `.5b`); an OUT
    that already ends in .json or .md names the pair without doubling it."""
    p = Path(out)
    if p.suffix in (".json", ".md"):
        p = p.with_suffix("")
    return p.parent / (p.name + ".json"), p.parent / (p.name + ".md")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="default", help="shipped recipe name or YAML file")
    ap.add_argument("--model", default=None, help="override the recipe's model")
    ap.add_argument("--dbs", nargs="*", default=None, help="devsuite databases (default: all)")
    ap.add_argument("--settings", nargs="*", default=["seeds", "synth"], help="seeds | synth | NAME:KEY=VALUE;...")
    ap.add_argument("--set", dest="sets", nargs="*", default=[], help="overrides for every setting (KEY=VALUE)")
    ap.add_argument("--devsuite", default=str(DEVSUITE))
    ap.add_argument("--work", default="runs/transfer", help="run folders (reused: finished runs are not redone)")
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    ap.add_argument("--no-run", action="store_true", help="only collect finished runs (merge earlier calls)")
    args = ap.parse_args(argv)

    from sqltune.errors import SqltuneError
    from sqltune.recipe import parse_set

    root, work = Path(args.devsuite), Path(args.work)
    dbs = args.dbs or all_dbs(root)
    missing = [d for d in dbs if not (root / d / f"{d}.sqlite").is_file()]
    if missing:
        sys.exit(f"error: not in {root}: {', '.join(missing)}")
    common = parse_set(args.sets)
    settings = [parse_setting(s) for s in args.settings]
    names = [n for n, _ in settings]
    t0 = time.monotonic()
    if not args.no_run:
        for db in dbs:
            first = None
            for name, ov in settings:
                t = time.monotonic()
                try:
                    folder = run_one(args.recipe, db, root, work, name, {**common, **ov}, args.model, first)
                except SqltuneError as e:
                    print(f"{db}/{name}: error: {e}", file=sys.stderr)
                    continue
                first = first or folder
                print(f"{db}/{name}: done in {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
    res = collect(work, dbs, names)
    res["meta"] = {"recipe": args.recipe, "model": args.model, "settings": dict(settings), "common": common,
                   "machine": platform.node(), "python": platform.python_version(),
                   "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "wall_seconds_this_call": round(time.monotonic() - t0, 1)}
    table = markdown(res, names)
    print(table)
    if args.out:
        js, md = out_paths(args.out)
        js.parent.mkdir(parents=True, exist_ok=True)
        js.write_text(json.dumps(res, indent=2, default=str))
        md.write_text(table + "\n")
        print(f"wrote {js} and {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
