"""The untuned model's own panel (`eval.fallback: panel` with the untuned model, `evaluate.untuned_panel`) against
its plain greedy answer (U0), on the test split of each devsuite database and of exoplanets, with the shipped
evaluator. What `sqltune run` answers when training keeps step 0, and what `sqltune eval --fallback panel
--fewshot-pool TRAIN` answers with an untuned model.

    PYTHONPATH=src python benchmarks/untuned_panel.py --devsuite ../shared/data/devsuite \\
        --out benchmarks/results/untuned-panel

One model load for every DB (the recipe's model, device and dtype; eval settings: the recipe's `eval` section).
Per DB: one `evaluate` with the panel; U0 is each row's answer before the panel (`pool.sql`), scored by the same
`score_pairs`. Writes OUT/<db>_report.json (the panel's report, predictions included) and OUT/table.json /
table.md: per DB and pooled, questions right under U0 and the panel, fixed / broken, and the paired bootstrap CI
and McNemar p of panel - U0 (`sqltune.stats.compare_paired`). A finished DB's report is reused.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def targets(devsuite: Path | None, dbs: list[str] | None, exoplanets: bool) -> list[dict]:
    """[{name, db, train, test}] in order: exoplanets (the embedded DB), then the devsuite DBs."""
    out = []
    if exoplanets:
        out.append({"name": "exoplanets", "db": None, "train": "exoplanets:train", "test": "exoplanets:test"})
    if devsuite is not None:
        names = dbs or sorted(p.name for p in devsuite.iterdir() if (p / f"{p.name}.sqlite").is_file())
        for n in names:
            d = devsuite / n
            if not (d / f"{n}.sqlite").is_file():
                sys.exit(f"error: {d / (n + '.sqlite')} not found")
            out.append({"name": n, "db": str(d / f"{n}.sqlite"), "train": str(d / "train.jsonl"),
                        "test": str(d / "test.jsonl")})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="default", help="the recipe whose model, device, dtype and eval settings apply")
    ap.add_argument("--devsuite", type=Path, default=None, help="the devsuite folder (leave out: exoplanets only)")
    ap.add_argument("--dbs", nargs="*", default=None, help="devsuite DBs (default: all)")
    ap.add_argument("--no-exoplanets", action="store_true", help="leave the embedded exoplanets DB out")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--set", nargs="*", default=[], help="recipe overrides KEY=VALUE (e.g. dtype=float32)")
    a = ap.parse_args(argv)

    from sqltune.dataset import load_items
    from sqltune.db import resolve_db
    from sqltune.evaluate import EvalConfig, evaluate
    from sqltune.model import load_model, pick_device
    from sqltune.prompt import PromptBuilder
    from sqltune.recipe import load_recipe, parse_set
    from sqltune.schema import schema_text
    from sqltune.score import score_pairs
    from sqltune.stats import compare_paired

    cfg = load_recipe(a.recipe, parse_set(a.set))
    c = cfg.to_dict()
    todo = targets(a.devsuite, a.dbs, not a.no_exoplanets)
    a.out.mkdir(parents=True, exist_ok=True)
    device = pick_device(c.get("device"), c.get("dtype"))
    model = tok = None
    rows, answers = [], {}  # answers: {db: (U0 right per question, panel right per question)}
    t0 = time.monotonic()
    for t in todo:
        rep_file = a.out / f"{t['name']}_report.json"
        db = resolve_db(t["db"], need_tables=True)
        items, pool = load_items(t["test"]), load_items(t["train"])
        if rep_file.is_file():
            rep = json.loads(rep_file.read_text())
        else:
            if model is None:
                model, tok, _ = load_model(c.get("model"), device)
            notes = c["data"].get("notes") if t["db"] is None else None
            builder = PromptBuilder(schema_text(db, notes), style=c["prompt"]["style"])
            ev = EvalConfig.from_recipe(cfg, device, fewshot_pool=pool).with_(fallback="panel", untuned_model=True)
            t1 = time.monotonic()
            rep = evaluate(model, tok, builder, items, db, ev)
            rep["wall_seconds"] = round(time.monotonic() - t1, 1)
            rep_file.write_text(json.dumps(rep, default=str))
        before = [(r.get("pool") or r)["sql"] for r in rep["predictions"]]
        u0 = [bool(e["exact"]) for e in score_pairs(db, items, before)["examples"]]
        panel = [bool(e["exact"]) for e in rep["examples"]]
        answers[t["name"]] = (u0, panel)
        rows.append({"db": t["name"], "n": len(items), "u0": sum(u0), "panel": sum(panel),
                     "third_decoded": sum(len((r.get("pool") or {}).get("answers") or {}) > 2 for r in rep["predictions"]),
                     "seconds": rep.get("wall_seconds"), "compare": compare_paired(u0, panel).to_dict()})
        print(f"{t['name']}: {len(items)} questions, U0 {sum(u0)}, panel {sum(panel)} ({time.monotonic() - t0:.0f} s)",
              flush=True)
    dev = [r for r in rows if r["db"] != "exoplanets"]
    summary = {}
    if dev:
        u0 = [x for r in dev for x in answers[r["db"]][0]]
        panel = [x for r in dev for x in answers[r["db"]][1]]
        summary["devsuite_pooled"] = {"n": len(u0), "u0": sum(u0), "panel": sum(panel),
                                      "compare": compare_paired(u0, panel).to_dict(),
                                      "mean_per_db_u0": round(100 * sum(r["u0"] / r["n"] for r in dev) / len(dev), 1),
                                      "mean_per_db_panel": round(100 * sum(r["panel"] / r["n"] for r in dev) / len(dev), 1)}
    out = {"recipe": a.recipe, "set": a.set, "device": device.device, "dtype": device.dtype, "autocast": device.autocast,
           "machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "wall_seconds": round(time.monotonic() - t0, 1), "rows": rows, **summary}
    (a.out / "table.json").write_text(json.dumps(out, indent=1))
    lines = ["| db | n | U0 | untuned panel | fixed / broken | panel - U0 (points), 95% CI, McNemar p |", "|---|---|---|---|---|---|"]
    def line(name: str, n: int, u0: int, panel: int, ci: dict) -> str:
        return (f"| {name} | {n} | {u0} | {panel} | {ci['fixed']} / {ci['broken']} | {100 * ci['delta']:+.1f} "
                f"[{100 * ci['ci_low']:+.1f}, {100 * ci['ci_high']:+.1f}], p {ci['p_value']:.3g} |")

    for r in rows:
        lines.append(line(r["db"], r["n"], r["u0"], r["panel"], r["compare"]))
    if dev:
        sd = summary["devsuite_pooled"]
        lines.append(line("devsuite pooled", sd["n"], sd["u0"], sd["panel"], sd["compare"]))
    (a.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
