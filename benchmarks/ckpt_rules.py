"""Which checkpoint rule generalises? Data for choosing `synth.choose_checkpoint`'s tie-break (and any other change
to the rule) on questions that are neither valid nor test.

Every folder is a train split cut in two by SQL skeleton (`crossfit.halves`: paraphrases of one query stay on one
side): the model is trained on one half with the shipped trainer (`sqltune.train.train`, the recipe's settings and
the run's checkpoint rule), every checkpoint is scored on valid as the trainer always does (`metrics.jsonl`), and
here also on the other half, the *dev* half (`dev.jsonl`: the questions each checkpoint answered exactly). `read`
then replays rules over the logged lines and reports the dev exact of the checkpoint each rule keeps.

    python benchmarks/ckpt_rules.py build --out .gpu/ckr --exo-seeds 1 2 3 4 --devsuite-seed 20
    python benchmarks/ckpt_rules.py run --recipe default --work /root/ckr_work .gpu/ckr/exo_s1a .gpu/ckr/exo_s1b
    python benchmarks/ckpt_rules.py read /root/ckr_work                     # the rules side by side
    python benchmarks/ckpt_rules.py compare WORK_A WORK_B ...                # one rule, several training settings

Folders `exo_s<seed><a|b>` cut the embedded exoplanets train split (204 pairs) with split seed <seed>; valid is
exoplanets' own 10 questions. Folders `<db>_<a|b>` are the devsuite's train splits cut as `crossfit.py` cuts
them (valid: the devsuite's). No test split is read or copied: a choice made on what this reads is made on
train/valid only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

DEVSUITE = HERE.parent.parent / "shared" / "data" / "devsuite"


# ------------------------------------------------------------------ folders
def build(out: Path, exo_seeds: list[int], devsuite: Path | None, devsuite_seed: int, min_train: int = 12) -> list[str]:
    import shutil

    from crossfit import claim, halves

    from sqltune.dataset import load_items, read_jsonl, write_jsonl
    from sqltune.db import build_exoplanets_db

    made = []

    def write(name: str, train: list[dict], dev: list[dict], valid: list[dict], db_from: Path | None) -> None:
        d = claim(out / name)
        if db_from is None:
            build_exoplanets_db(d / f"{name}.sqlite", force=True)  # with its notes beside it, as the run reads them
        else:
            shutil.copyfile(db_from, d / f"{name}.sqlite")
        write_jsonl(d / "train.jsonl", train)
        write_jsonl(d / "dev.jsonl", dev)
        write_jsonl(d / "valid.jsonl", valid)
        made.append(f"{name}: train {len(train)}, dev {len(dev)}, valid {len(valid)}")

    if exo_seeds:
        train, valid = load_items("exoplanets:train"), load_items("exoplanets:valid")
        for seed in exo_seeds:
            a, b = halves(train, seed)
            write(f"exo_s{seed}a", a, b, valid, None)
            write(f"exo_s{seed}b", b, a, valid, None)
    if devsuite is not None:
        for p in sorted(devsuite.iterdir()):
            if not (p / "train.jsonl").is_file() or len(read_jsonl(p / "train.jsonl")) < min_train:
                continue
            a, b = halves(read_jsonl(p / "train.jsonl"), devsuite_seed)
            valid = read_jsonl(p / "valid.jsonl")
            write(f"{p.name}_a", a, b, valid, p / f"{p.name}.sqlite")
            write(f"{p.name}_b", b, a, valid, p / f"{p.name}.sqlite")
    return made


# ------------------------------------------------------------------ training with a dev score per checkpoint
def parse_dev_eval(specs: list[str]) -> dict[str, dict]:
    """`NAME:KEY=VALUE,KEY=VALUE` (evaluation settings, `EvalConfig` fields) -> {NAME: {KEY: VALUE}}."""
    from sqltune.recipe import parse_set

    out = {}
    for spec in specs:
        name, sep, rest = spec.partition(":")
        if not sep or not name.strip() or not rest.strip() or name.strip() in out:
            raise SystemExit(f"error: --dev-eval expects a new NAME:KEY=VALUE[,KEY=VALUE], got {spec!r}")
        out[name.strip()] = parse_set([kv for kv in rest.split(",") if kv.strip()])
    return out


def run_folder(folder: Path, recipe: str, overrides: dict, work: Path, dev_evals: dict[str, dict] | None = None) -> Path:
    """Train on `folder`'s train half with the recipe; every checkpoint the trainer scores on valid is also
    scored on the dev half (appended to WORK/NAME/dev.jsonl, its SQL per question to dev_sql.jsonl). Each of
    `dev_evals` ({NAME: EvalConfig fields}, e.g. {"fs2": {"fewshot": 2}}) scores the untuned model (step 0) and the
    last epoch's checkpoint once more under the trainer's evaluation with those fields changed (dev_NAME.jsonl /
    dev_NAME_sql.jsonl); few-shot examples come from the train half. Returns the run's folder."""
    from sqltune import trainer as trainer_mod
    from sqltune.dataset import read_jsonl
    from sqltune.evaluate import evaluate
    from sqltune.recipe import load_recipe
    from sqltune.run import selection_rule
    from sqltune.train import train

    name = folder.name
    dest = work / name
    dest.mkdir(parents=True, exist_ok=True)
    if (dest / "adapter").is_dir():
        print(f"{name}: done already", flush=True)
        return dest
    items = {s: read_jsonl(folder / f"{s}.jsonl") for s in ("train", "valid", "dev")}
    settings = {"": {}} | {f"_{k}": v for k, v in (dev_evals or {}).items()}
    for suffix in settings:
        for kind in ("", "_sql"):
            (dest / f"dev{suffix}{kind}.jsonl").unlink(missing_ok=True)
    cfg = load_recipe(recipe, overrides)
    original = trainer_mod.CheckpointChoice._evaluate

    def scored_on_dev_too(self, model, step, epoch, train_loss, report):
        line = original(self, model, step, epoch, train_loss, report)
        ends = step == 0 or epoch >= self.cfg.epochs - 1e-6
        for suffix, changes in settings.items():
            if suffix and not ends:
                continue
            ev = self.eval_cfg.with_(**changes)
            if ev.fewshot:
                ev = ev.with_(fewshot_pool=items["train"])
            rep = evaluate(model, self.tok, self.builder, items["dev"], self.db, ev.validate())
            with open(dest / f"dev{suffix}.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, "n": rep["summary"]["n"], "exact": rep["summary"]["exact"],
                                    "exact_ids": [e["id"] for e in rep["examples"] if e["exact"]]}) + "\n")
            with open(dest / f"dev{suffix}_sql.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, "sql": {e["id"]: e.get("pred_sql") for e in rep["examples"]}}) + "\n")
        return line

    trainer_mod.CheckpointChoice._evaluate = scored_on_dev_too
    try:
        train(cfg, items["train"], items["valid"], folder / f"{name}.sqlite", dest / "adapter", force=True,
              progress=False, choose=selection_rule(cfg.to_dict(), items, pooled=False))
    finally:
        trainer_mod.CheckpointChoice._evaluate = original
    return dest


# ------------------------------------------------------------------ rules replayed over the logged lines
def _loss(r: dict) -> float:
    return r["valid_loss"] if r.get("valid_loss") is not None else math.inf


def _noise_rule(tiebreak):
    """`synth.choose_checkpoint` with its tie-break among trained checkpoints replaced by `tiebreak(line, lines)`
    (a key: larger wins). The untuned model stays unless the best trained exact beats it by the noise margin."""
    from sqltune.synth import noise_margin

    def rule(lines: list[dict], n: int, z: float = 1.0) -> dict:
        base = next((r for r in lines if r["step"] == 0), None)
        trained = [r for r in lines if r["step"] != 0]
        if not trained:
            return base
        best = max(trained, key=lambda r: (r["exact"], tiebreak(r, trained)))
        if base is None:
            return best
        return best if best["exact"] - base["exact"] > noise_margin(base["exact"], n, z) + 1e-9 else base

    return rule


def _smoothed(r: dict, lines: list[dict]) -> float:
    """The mean valid exact of a line and its neighbours in step order (a plateau beats a spike)."""
    steps = sorted(lines, key=lambda x: x["step"])
    i = steps.index(r)
    near = steps[max(0, i - 1): i + 2]
    return sum(x["exact"] for x in near) / len(near)


def rules() -> dict:
    from sqltune.synth import choose_checkpoint, choose_latest

    return {  # the first is the reference of the comparison: the noise rule as sessions 4-24 shipped it
        "noise, tie: lower valid loss, then earlier (to session 24)": _noise_rule(lambda r, _: (-_loss(r), -r["step"])),
        "noise, tie: later step": _noise_rule(lambda r, _: r["step"]),
        "noise, tie: higher fuzzy, then later": _noise_rule(lambda r, _: (r.get("fuzzy") or 0.0, r["step"])),
        "noise, tie: neighbours' mean, then later": _noise_rule(lambda r, ts: (_smoothed(r, ts), r["step"])),
        "noise, tie: lower train loss": _noise_rule(lambda r, _: -(r.get("train_loss") or math.inf)),
        "shipped noise rule (synth.choose_checkpoint)": lambda lines, n: choose_checkpoint(lines, n),
        "last not worse (choose_latest)": lambda lines, n: choose_latest(lines, n),
        "always the last step": lambda lines, n: max(lines, key=lambda r: r["step"]),
        "always untuned (step 0)": lambda lines, n: min(lines, key=lambda r: r["step"]),
    }


def read(work: Path, dev_name: str = "dev") -> tuple[list[dict], dict]:
    """Per folder: the logged lines joined with their dev scores (`dev_name`.jsonl: dev.jsonl, or dev_NAME.jsonl of
    a `--dev-eval NAME:...` setting); per rule: the dev exact of its choice."""
    from sqltune.dataset import read_jsonl

    def metrics(d: Path) -> Path | None:  # the run's adapter folder, or a copy of its metrics.jsonl beside dev.jsonl
        return next((m for m in (d / "adapter" / "metrics.jsonl", d / "metrics.jsonl") if m.is_file()), None)

    per_folder = []
    for d in sorted(p for p in work.iterdir() if (p / f"{dev_name}.jsonl").is_file() and metrics(p) is not None):
        lines = read_jsonl(metrics(d))
        dev = {r["step"]: r for r in read_jsonl(d / f"{dev_name}.jsonl")}
        lines = [r for r in lines if r["step"] in dev]
        n_valid = lines[0]["n"] if lines else 0
        picks = {name: fn(lines, n_valid) for name, fn in rules().items()}
        per_folder.append({"folder": d.name, "n_valid": n_valid, "n_dev": next(iter(dev.values()))["n"],
                           "curve": [(r["step"], r["exact"], dev[r["step"]]["exact"], r.get("valid_loss")) for r in lines],
                           "picks": {k: (v["step"], dev[v["step"]]["exact"]) for k, v in picks.items()},
                           "best_dev": max(dev[r["step"]]["exact"] for r in lines)})
    return per_folder, rules()


def _bootstrap_mean(diff: list[float], iterations: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of `diff`, folders resampled with replacement."""
    import random

    rng, k = random.Random(seed), len(diff)
    means = sorted(sum(diff[rng.randrange(k)] for _ in range(k)) / k for _ in range(iterations))
    return means[int(0.025 * iterations)], means[int(0.975 * iterations) - 1]


def _table(per_folder: list[dict], names: list[str], label: str) -> list[str]:
    if not per_folder:
        return []
    ref = names[0]
    out = [f"### {label}: {len(per_folder)} folders", "",
           "| rule | mean dev exact | vs the first (per folder) | 95% CI | better / worse folders |", "|---|---|---|---|---|"]
    for name in names:
        vals = [f["picks"][name][1] for f in per_folder]
        refs = [f["picks"][ref][1] for f in per_folder]
        diff = [v - r for v, r in zip(vals, refs)]
        ci = _bootstrap_mean(diff)
        out.append(f"| {name} | {100 * sum(vals) / len(vals):.1f} | {100 * sum(diff) / len(diff):+.1f} | "
                   f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}] | "
                   f"{sum(d > 1e-9 for d in diff)} / {sum(d < -1e-9 for d in diff)} |")
    best = [f["best_dev"] for f in per_folder]
    out.append(f"| (the best checkpoint by dev: an oracle) | {100 * sum(best) / len(best):.1f} | | | |")
    return out + [""]


def report(work: Path) -> str:
    per_folder, rs = read(work)
    names = list(rs)
    exo = [f for f in per_folder if f["folder"].startswith("exo_")]
    ds = [f for f in per_folder if not f["folder"].startswith("exo_")]
    lines = _table(exo, names, "exoplanets halves") + _table(ds, names, "devsuite halves") + _table(per_folder, names, "all")
    lines += ["### Per folder: (step, valid exact, dev exact, valid loss) per checkpoint; each rule's step", ""]
    for f in per_folder:
        curve = " ".join(f"{s}:{v:.2f}/{d:.2f}" for s, v, d, _ in f["curve"])
        picks = ", ".join(f"{i}={f['picks'][k][0]}" for i, k in enumerate(names))
        lines.append(f"- {f['folder']} (valid {f['n_valid']}, dev {f['n_dev']}): {curve} | picks {picks}")
    return "\n".join(lines) + "\n"


def compare(works: list[Path], rule: str = "last not worse (choose_latest)") -> str:
    """One checkpoint rule over several works (the same folders trained with different settings): per setting, the
    mean dev exact of the rule's pick and its difference against the first work's, paired by folder; then the mean
    dev exact per epoch. Folders missing from a work are left out of that work's row."""
    reads = [{f["folder"]: f for f in read(w)[0]} for w in works]
    out = []
    for label, pick in (("exoplanets halves", lambda n: n.startswith("exo_")), ("devsuite halves", lambda n: not n.startswith("exo_"))):
        ref = reads[0]
        out += [f"### {label}: `{rule}`", "", "| work | folders | mean dev exact | vs the first (paired) | 95% CI | better / worse |"
                " mean dev exact per checkpoint (step order) |", "|---|---|---|---|---|---|---|"]
        for w, r in zip(works, reads):
            names = sorted(n for n in r if pick(n) and n in ref)
            if not names:
                continue
            vals = [r[n]["picks"][rule][1] for n in names]
            diff = [v - ref[n]["picks"][rule][1] for v, n in zip(vals, names)]
            ci = _bootstrap_mean(diff)
            depth = min(len(r[n]["curve"]) for n in names)
            curve = " / ".join(f"{100 * sum(r[n]['curve'][i][2] for n in names) / len(names):.1f}" for i in range(depth))
            out.append(f"| {w.name} | {len(names)} | {100 * sum(vals) / len(vals):.1f} | {100 * sum(diff) / len(diff):+.1f} | "
                       f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}] | {sum(d > 1e-9 for d in diff)} / {sum(d < -1e-9 for d in diff)} | {curve} |")
        out.append("")
    return "\n".join(out)


def dev_settings(work: Path) -> list[str]:
    """The dev scorings a work holds: "dev" and each `--dev-eval` setting's "dev_NAME" (not the *_sql files)."""
    names = {p.stem for d in work.iterdir() if d.is_dir() for p in d.glob("dev*.jsonl") if not p.stem.endswith("_sql")}
    return ["dev"] + sorted(names - {"dev"})


def evals(work: Path) -> str:
    """The `--dev-eval` settings of one work side by side: per setting, the dev exact of the untuned model (step 0)
    and of the last checkpoint, each against the plain scoring of the same checkpoint, paired by folder."""
    from sqltune.dataset import read_jsonl

    names = dev_settings(work)
    ends = {}  # (setting, folder) -> (untuned exact, last exact)
    for n in names:
        for d in work.iterdir():
            if (d / f"{n}.jsonl").is_file():
                rows = sorted(read_jsonl(d / f"{n}.jsonl"), key=lambda r: r["step"])
                if len(rows) >= 2 and rows[0]["step"] == 0:
                    ends[n, d.name] = (rows[0]["exact"], rows[-1]["exact"])
    out = []
    for label, pick in (("exoplanets halves", lambda n: n.startswith("exo_")), ("devsuite halves", lambda n: not n.startswith("exo_"))):
        out += [f"### {label}: the untuned model and the last checkpoint, each dev scoring", "",
                "| scoring | folders | untuned | vs plain | last | vs plain (paired) | 95% CI | better / worse |",
                "|---|---|---|---|---|---|---|---|"]
        for n in names:
            folders = sorted(f for (m, f) in ends if m == n and pick(f) and ("dev", f) in ends)
            if not folders:
                continue
            k = len(folders)
            base = [ends[n, f][0] - ends["dev", f][0] for f in folders]
            diff = [ends[n, f][1] - ends["dev", f][1] for f in folders]
            ci = _bootstrap_mean(diff)
            out.append(f"| {n} | {k} | {100 * sum(ends[n, f][0] for f in folders) / k:.1f} | {100 * sum(base) / k:+.1f} | "
                       f"{100 * sum(ends[n, f][1] for f in folders) / k:.1f} | {100 * sum(diff) / k:+.1f} | "
                       f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}] | {sum(d > 1e-9 for d in diff)} / {sum(d < -1e-9 for d in diff)} |")
        out.append("")
    return "\n".join(out)


PANELS = {  # name -> voters in tie order (a list: they vote) or (first, other): the first answer unless it fails and
    # the other runs. T the last checkpoint, U the untuned model; the digit: retrieved examples in the prompt
    "T": ["T0"], "T, U0 where T fails (fallback: base)": ("T0", "U0"), "T, U4 where T fails": ("T0", "U4"),
    "panel T, U0, U4 (fallback: panel)": ["T0", "U0", "U4"], "panel T, U4, U0": ["T0", "U4", "U0"],
    "panel T, U0, U2": ["T0", "U0", "U2"], "panel T, U0, U4, U2": ["T0", "U0", "U4", "U2"],
    "U0 (untuned)": ["U0"], "untuned panel U4, U0, U2": ["U4", "U0", "U2"],
}
# a work trained with `train.fewshot=4` and `--dev-eval fs0:fewshot=0` (session 28): T4 its last checkpoint as trained
PANELS_FEWSHOT_TRAINED = {
    "T4 (trained and scored with 4 examples)": ["T4"], "T0 (the same checkpoint, no examples)": ["T0"],
    "T4, U0 where T4 fails": ("T4", "U0"), "panel T4, U0, U4": ["T4", "U0", "U4"], "panel T4, T0, U0": ["T4", "T0", "U0"],
    "panel T4, U0, T0": ["T4", "U0", "T0"],
}


def _sql_lines(path: Path) -> list[dict]:
    import gzip

    gz = path.with_name(path.name + ".gz")
    text = path.read_text(encoding="utf-8") if path.is_file() else gzip.decompress(gz.read_bytes()).decode("utf-8")
    return sorted((json.loads(line) for line in text.splitlines() if line.strip()), key=lambda r: r["step"])


def panel(work: Path, folders: Path, panels: dict | None = None, plain_k: int = 0, repair: str = "none") -> str:
    """Answers the untuned model (step 0) and the last checkpoint wrote on dev under each scoring (`dev*_sql.jsonl`,
    or .gz), combined offline: a fallback (the first answer, the other where it does not execute) or a panel (the
    answers vote by result with the shipped `vote.choose`, ties in the listed order), each scored with the shipped
    `score_pairs` against the dev half in `folders` (the `build` output). Mean dev exact per kind of half.
    `plain_k`: the examples of the work's own scoring (`dev_sql.jsonl`; 4 for a `train.fewshot=4` work).
    `repair`: "each": every answer that fails with an unknown or ambiguous column goes through the shipped `repair.fix`
    before the vote; "last": only where the combined answer fails, the answers are repaired in tie order and the first
    rewrite that runs is taken; "none": as written."""
    from sqltune.dataset import read_jsonl
    from sqltune.score import score_pairs
    from sqltune.vote import Candidate, choose

    panels = panels or (PANELS if plain_k == 0 else PANELS_FEWSHOT_TRAINED)
    sums: dict = {}
    for d in sorted(p for p in work.iterdir() if p.is_dir()):
        answers = {}
        for suffix, digit in (("", str(plain_k)), ("_fs0", "0"), ("_fs2", "2"), ("_fs4", "4")):
            if (d / f"dev{suffix}_sql.jsonl").is_file() or (d / f"dev{suffix}_sql.jsonl.gz").is_file():
                rows = _sql_lines(d / f"dev{suffix}_sql.jsonl")
                answers["U" + digit], answers["T" + digit] = rows[0]["sql"], rows[-1]["sql"]
        gold = read_jsonl(folders / d.name / "dev.jsonl")
        db = folders / d.name / f"{d.name}.sqlite"
        kind = "exoplanets halves" if d.name.startswith("exo_") else "devsuite halves"
        ids = [str(g["id"]) for g in gold]
        from sqltune.repair import fix

        if repair == "each":
            answers = {v: {i: (fix(db, s)[0] if s else s) for i, s in a.items()} for v, a in answers.items()}

        def last(preds: list, order) -> list:  # the shipped `evaluate.repair_rows`: the answers weighed in tie order
            if repair != "last":
                return preds
            from sqltune.evaluate import EvalConfig, repair_rows

            rows = [{"sql": p, "error": "unchecked", "pool": {"answers": {v: answers[v].get(i) for v in order}}}
                    for p, i in zip(preds, ids)]  # repair_rows executes each answer and skips those that run
            return [r["sql"] for r in repair_rows(rows, db, EvalConfig(repair=True))]
        scored = {}
        for name, voters in panels.items():
            if any(v not in answers for v in voters):
                continue
            if isinstance(voters, tuple):  # a fallback: the first answer unless it fails and the other runs
                for v in voters:
                    if v not in scored:
                        scored[v] = score_pairs(db, gold, [answers[v].get(i) for i in ids])["examples"]
                first, other = voters
                preds = [answers[first].get(i) if t["executed"] or not f["executed"] else answers[other].get(i)
                         for i, t, f in zip(ids, scored[first], scored[other])]
                preds = last(preds, voters)
            else:
                preds = [choose(db, [Candidate(sql=answers[v].get(i), raw="", mean_logprob=-float(j), greedy=j == 0)
                                     for j, v in enumerate(voters)]).sql if len(voters) > 1 else answers[voters[0]].get(i)
                         for i in ids]
                preds = last(preds, voters)
            ex = score_pairs(db, gold, preds)["summary"]["exact"]
            sums.setdefault(kind, {}).setdefault(name, []).append(ex)
    out = []
    for kind, by in sums.items():
        out += [f"### {kind}", "", "| answer | folders | mean dev exact |", "|---|---|---|"]
        out += [f"| {name} | {len(v)} | {100 * sum(v) / len(v):.1f} |" for name, v in by.items()]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", required=True)
    b.add_argument("--exo-seeds", type=int, nargs="*", default=[1, 2, 3, 4])
    b.add_argument("--devsuite", default=str(DEVSUITE))
    b.add_argument("--no-devsuite", action="store_true")
    b.add_argument("--devsuite-seed", type=int, default=20)
    r = sub.add_parser("run")
    r.add_argument("folders", nargs="+")
    r.add_argument("--recipe", default="default")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--work", required=True)
    r.add_argument("--dev-eval", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
                   help="also score every checkpoint on dev with these evaluation settings, e.g. fs2:fewshot=2")
    rd = sub.add_parser("read")
    rd.add_argument("work")
    rd.add_argument("--out", default=None, help="also write the tables to this Markdown file")
    c = sub.add_parser("compare")
    c.add_argument("works", nargs="+", help="works of the same folders; the first is the reference")
    c.add_argument("--rule", default="last not worse (choose_latest)", help="a rule's name as `read` prints it")
    e = sub.add_parser("evals")
    e.add_argument("work", help="a work whose runs had --dev-eval settings")
    pn = sub.add_parser("panel")
    pn.add_argument("work", help="a work whose runs had --dev-eval settings (fs2/fs4; fs0 for a --plain-k work)")
    pn.add_argument("--folders", required=True, help="the `build` output the work was trained on (dev halves, DBs)")
    pn.add_argument("--plain-k", type=int, default=0,
                    help="examples in the work's own dev scoring: 4 for a work trained with train.fewshot=4")
    pn.add_argument("--repair", choices=("none", "each", "last"), default="none",
                    help="each: repair every failing answer before the vote (the shipped repair.fix); last: only where "
                         "the combined answer fails, the first voter's repair that runs")
    args = ap.parse_args(argv)
    if args.cmd == "build":
        ds = None if args.no_devsuite else Path(args.devsuite)
        if ds is not None and not ds.is_dir():
            print(f"error: no devsuite at {ds}", file=sys.stderr)
            return 2
        from crossfit import NotOurs

        try:
            made = build(Path(args.out), args.exo_seeds, ds, args.devsuite_seed)
        except NotOurs as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for line in made:
            print(line)
    elif args.cmd == "run":
        from sqltune.recipe import parse_set

        for f in args.folders:
            run_folder(Path(f), args.recipe, parse_set(args.set), Path(args.work), parse_dev_eval(args.dev_eval))
    elif args.cmd == "compare":
        if args.rule not in rules():
            print(f"error: no rule named {args.rule!r}; `read` lists them", file=sys.stderr)
            return 2
        print(compare([Path(w) for w in args.works], args.rule))
    elif args.cmd == "panel":
        print(panel(Path(args.work), Path(args.folders), plain_k=args.plain_k, repair=args.repair))
    elif args.cmd == "evals":
        print(evals(Path(args.work)))
    else:
        text = report(Path(args.work))
        print(text)
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
