"""The main job: database -> data check -> base scores -> fine-tune -> tuned scores -> report.

Each stage writes its outputs atomically into the run folder and records its wall time, so an
interrupted run (Ctrl-C) continues with `resume=True` from the first stage without outputs.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

from .dataset import NO_PAIRS, read_jsonl, write_jsonl
from .errors import DatasetError, SqltuneError
from .files import check_writable, claim, hold, owned, write_bytes
from .files import write_json as _write_json

SPLITS = ("valid", "test")


class RunFolder:
    """The run folder and its stage bookkeeping (timings.json); marked as sqltune's (`files.OWNER_FILE`)."""

    def __init__(self, path: Path):
        self.path = path
        claim(path, "run")
        self.lock = hold(path)  # a second `run` on this folder (two `--resume`s) is refused, not interleaved
        self.timings_file = path / "timings.json"
        self.timings = _read_json(self.timings_file, "delete it to resume (the stages' recorded times are lost)") \
            if self.timings_file.is_file() else {}

    def done(self, *names: str) -> bool:
        return all((self.path / n).exists() for n in names)

    def record(self, stage: str, seconds: float) -> None:
        self.timings[stage] = round(seconds, 2)
        _write_json(self.timings_file, self.timings)


def _read_json(path: Path, fix: str) -> dict:
    """A JSON mapping the run wrote; a damaged one (edited, truncated) is one line saying `fix`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict):
        raise SqltuneError(f"{path} is damaged; {fix}")
    return data


def read_recipe(run_dir: str | os.PathLike) -> dict:
    """A run folder's `recipe.json` (what `run` wrote), checked: a folder without one, or one that is not JSON, not a
    mapping, or whose data/prompt/eval are not mappings, is one clear error (`serve --run`, `augment --run`)."""
    recipe_file = Path(run_dir) / "recipe.json"
    if not recipe_file.is_file():
        raise SqltuneError(f"{run_dir} is not a sqltune run folder (no recipe.json)")
    try:
        recipe = json.loads(recipe_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        recipe = None
    if not isinstance(recipe, dict) or not all(isinstance(recipe.get(k) or {}, dict) for k in ("data", "prompt", "eval")):
        raise SqltuneError(f"{recipe_file} is not a sqltune run's recipe")
    return recipe


def _stage_report(path: Path) -> dict:
    """A stage's score report read back by a resumed run (checked: the report and the next stages use it)."""
    from .report import load_report

    fix = "delete it and resume to score that stage again"
    try:
        report = load_report(path)
    except SqltuneError:
        raise SqltuneError(f"{path} is damaged; {fix}") from None
    if not isinstance(report.get("summary"), dict):
        raise SqltuneError(f"{path} is damaged; {fix}")
    return report


def _stage(text: str) -> None:
    """One line on stdout as a stage starts (the progress bars below it say how far it is)."""
    from .console import echo, esc

    echo(f"[bold]>[/] {esc(text)}")


def is_run_folder(path: Path) -> bool:
    """A folder `run` started: its marker (or, from before markers, recipe.json with timings.json)."""
    return owned(path) or ((path / "recipe.json").is_file() and (path / "timings.json").is_file())


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def inputs_fingerprint(db: Path, items: dict) -> dict:
    """What the results depend on besides the recipe: the DB file's and each split's sha256."""
    import hashlib

    from .train import items_sha256

    h = hashlib.sha256()
    with open(db, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"db": h.hexdigest(), **{f"{s}": items_sha256(v) for s, v in items.items()}}


DB_PATH = "db_path"  # inputs.json: the database's absolute path beside the fingerprints (where, not what: not compared)
NO_PAIRS_FILE = "synth_pairs.jsonl"  # in the run folder: those pairs, from which valid (and test) are split off
STARTED_IN = "started_in"  # inputs.json: the folder `sqltune run` was started in, which recipe.json's relative paths
# are relative to (where, not what: not compared)


def _recorded(run_dir: str | os.PathLike, key: str) -> str | None:
    try:
        path = json.loads((Path(run_dir) / "inputs.json").read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return path if isinstance(path, str) else None


def recorded_db(run_dir: str | os.PathLike) -> str | None:
    """The absolute path of the database a run was given (inputs.json `db_path`), for a run given a relative path and
    read from another folder (`serve.run_db`); None for a run from before it was recorded, or an unreadable file."""
    return _recorded(run_dir, DB_PATH)


def _found(run_dir: str | os.PathLike, path: str) -> str | None:
    """`path` as given where it is absolute or found from here, else that relative path in the folder the run was
    started in (inputs.json `started_in`) where it is there, else None."""
    if Path(path).is_absolute() or Path(path).exists():
        return path
    started = _recorded(run_dir, STARTED_IN)
    if started and (Path(started) / path).exists():
        return str(Path(started) / path)
    return None


def run_model(run_dir: str | os.PathLike, model: str | None) -> str | None:
    """A model a run names (recipe.json `model`, which its checkpoints record as `base_model`) as `sqltune run` was
    given it, or, where that is a relative path (a model folder or .gguf file, relative to the folder `sqltune run` was
    started in) not found from here but found in the folder the run recorded (inputs.json `started_in`), that path
    there, as `run_file` finds files. Anything else stays as it is: a packaged name, a hub id (owner/name), None (the
    default model), a path found nowhere (`model.resolve_model` says what is wrong with it)."""
    from .model import PACKAGED

    if not isinstance(model, str) or not model or model in PACKAGED:
        return model
    return _found(run_dir, model) or model


def run_base(run_dir: str | os.PathLike, checkpoint: str | os.PathLike) -> str | None:
    """Where a run's checkpoint's base model is found from here (`run_model`), where that is not where the checkpoint
    names it (`sqltune_checkpoint.json` `base_model`: recipe.json's `model` as `sqltune run` was given it, so a relative
    model folder is relative to the folder the run was started in); else None (it loads as it names it). For
    `model.load`'s `base` (`serve.run_settings`, `augment --run`)."""
    from .checkpoint import CHECKPOINT_META

    try:
        recorded = json.loads((Path(checkpoint) / CHECKPOINT_META).read_text(encoding="utf-8")).get("base_model")
    except (OSError, ValueError, AttributeError):
        return None  # no checkpoint here, or a damaged one: `model.load` says what is wrong as it loads
    found = run_model(run_dir, recorded)
    return found if found != recorded else None


def run_file(run_dir: str | os.PathLike, path: str, key: str) -> str:
    """A file a run folder's recipe.json names (`key`: data.train, data.notes, ...) as `sqltune run` was given it, or,
    where that is a relative path (relative to the folder `sqltune run` was started in) not found from here, that path
    in the folder the run recorded (inputs.json `started_in`), for a run read from another folder (`augment --run`).
    A file in neither place is one clear error (`serve.run_db` finds the database so, from inputs.json `db_path`)."""
    found = _found(run_dir, path)
    if found is not None:
        return found
    started = _recorded(run_dir, STARTED_IN)
    raise SqltuneError(f"{run_dir} was run with {key} {path}, a path relative to the folder `sqltune run` was started "
                       f"in, and there is no {path} here ({Path.cwd()})"
                       + (f" nor in {started}, where the run was started: put it back there" if started else
                          ": work from that folder"))


def check_same_run(out: Path, recipe: dict, inputs: dict | None) -> None:
    """`--resume` continues the same run: refuse when the recipe or the data differ from the folder's (`inputs`
    None: the recipe alone, where the data cannot be read yet)."""
    from .recipe import build_recipe

    try:
        old_recipe = json.loads((out / "recipe.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SqltuneError(f"{out / 'recipe.json'} is damaged; cannot tell whether this is the same run") from None
    new, old = _flat(recipe), _flat(old_recipe) if isinstance(old_recipe, dict) else {}
    for k, v in _flat(build_recipe({}).to_dict()).items():
        old.setdefault(k, v)  # a key added to recipes since the run started has its default there
    keys = [k for k in sorted(set(new) | set(old)) if k != "out" and new.get(k) != old.get(k)]
    inputs_file = out / "inputs.json"
    if inputs is not None and inputs_file.is_file():
        old_inputs = _read_json(inputs_file, "cannot tell whether this is the same run")
        for where in (DB_PATH, STARTED_IN):  # the same database and data found from another folder: the same run
            old_inputs.pop(where, None)
        keys += [f"data ({k})" for k in sorted(set(inputs) | set(old_inputs)) if inputs.get(k) != old_inputs.get(k)]
    if keys:
        shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
        raise SqltuneError(f"{out} holds a run with other settings: {shown} differ; resume it with the same "
                           f"recipe and --set values, or choose another --out")


def _check_own_db(data: dict) -> None:
    """A database of one's own needs questions about it: `data.db` alone keeps the exoplanets questions."""
    if data.get("db") in (None, "exoplanets"):
        return
    default = [k for k in ("train", "valid", "test") if str(data.get(k) or "").startswith("exoplanets:")]
    if default:
        raise SqltuneError(
            f"data.db is {data['db']}, but data.{'/'.join(default)} still name the exoplanets questions: "
            f"give questions about your database (sqltune run --db {data['db']} --train pairs.jsonl "
            f"[--valid V] [--test T], or --set data.train=... data.valid=... data.test=...); with none, "
            f"`sqltune run --db {data['db']}` alone (or --set data.train={NO_PAIRS} data.valid=null data.test=null "
            "data.split=true) writes pairs from the database itself first: README, \"No pairs at all\"")


def synth_pairs(run: RunFolder, c: dict, db, seeds: list[dict], heldout: dict, device, out: Path, what: str) -> None:
    """`sqltune.synth` with the recipe's `synth:` settings into `out` (atomic: an interrupted synthesis leaves
    nothing, and a resumed run starts it again), its time recorded as the stage `synth`. Both of `run`'s uses go
    through here: the synth stage (the seeds are the training pairs) and a run with no pairs (no seeds)."""
    from .synth import SynthConfig, synth

    syn = c.get("synth") or {}
    _stage(what)
    t = time.monotonic()
    ev = c.get("eval") or {}
    cfg = SynthConfig.from_section(syn, batch_size=int(ev.get("batch_size", 64)),
                                   max_new_tokens=int(ev.get("max_new_tokens", 256)))
    synth(db, out, seeds, heldout, model=c.get("model"), teacher=syn.get("teacher"), reader=syn.get("reader"),
          notes=c["data"].get("notes"), prompt_style=c["prompt"]["style"], device=device, cfg=cfg)
    run.record("synth", time.monotonic() - t)


def untuned_answers(run: RunFolder, splits=SPLITS) -> dict:
    """{split: {question: row}} from the base stage's predictions (`base_{split}_pred.jsonl`), for the fallbacks of
    the stages after it (`EvalConfig.untuned`): the untuned model's answers under the same settings, not decoded
    again. A split without a readable file is left out (its fallback decodes them): these are a cache, never a reason
    to stop a run."""
    out = {}
    for split in splits:
        f = run.path / f"base_{split}_pred.jsonl"
        try:
            rows = read_jsonl(f)
        except (SqltuneError, OSError):
            continue
        out[split] = {r["question"]: r for r in rows if isinstance(r.get("question"), str)}
    return out


def evaluate_stage(run: RunFolder, stage: str, model, tok, builder, items: dict, db, eval_cfg,
                   splits=SPLITS, test_suite: bool = False, untuned: dict | None = None) -> dict:
    """Predict and score each split with the one evaluator (`evaluate.evaluate`, settings `eval_cfg`:
    an `evaluate.EvalConfig`); writes {stage}_{split}_pred.jsonl and _report.json. `untuned`
    ({split: {question: row}}, `untuned_answers`): the base stage's answers, which the fallbacks reuse."""
    from .evaluate import evaluate

    reports = {}
    for split in splits:
        rep_file = run.path / f"{stage}_{split}_report.json"
        if rep_file.is_file():
            reports[split] = _stage_report(rep_file)
            continue
        t = time.monotonic()
        cfg = eval_cfg
        if untuned and split in untuned and (eval_cfg.fallback != "none" or eval_cfg.untuned_model):
            cfg = cfg.with_(untuned=untuned[split])
        if test_suite:  # recipe eval.test_suite: the `suite` metric; the suite is cached by fingerprint
            from .testsuite import build_suite

            cfg = eval_cfg.with_(test_suite=build_suite(db, items[split]).meta)
        rep = evaluate(model, tok, builder, items[split], db, cfg)
        write_jsonl(run.path / f"{stage}_{split}_pred.jsonl", rep.pop("predictions"))
        rep["timing"]["questions"] = len(items[split])
        _write_json(rep_file, rep)
        run.record(f"{stage}_{split}", time.monotonic() - t)
        reports[split] = rep
    return reports


def score_checkpoint(run: RunFolder, stage: str, checkpoint: Path, device, builder, items: dict, db, eval_cfg,
                     splits=SPLITS, test_suite: bool = False, untuned: dict | None = None) -> dict:
    """`evaluate_stage` of a trained checkpoint, loaded only when a split's report is missing (a resumed run scores
    nothing again); the model is dropped when this returns."""
    from .checkpoint import load_trained

    model = tok = None
    if not all((run.path / f"{stage}_{s}_report.json").is_file() for s in splits):
        model, tok = load_trained(checkpoint, device, builder=builder)[:2]
    return evaluate_stage(run, stage, model, tok, builder, items, db, eval_cfg, splits, test_suite, untuned)


def greedy_view(report: dict) -> dict:
    """The greedy half of a report. Training scores its candidates greedily (a vote per candidate would
    cost N times the generation), so a voted evaluation of the start model must not stand in for step 0:
    that would compare a vote with greedy answers. A report without a vote is returned as it is."""
    v = report.get("vote")
    if v:
        return {"summary": v["greedy"], "examples": v["greedy_examples"]}
    if not report["summary"].get("fallback_used") and not report["summary"].get("repaired"):
        return report
    # greedy answers taken from the untuned model (`eval.fallback: base`) or rewritten by `eval.repair` did not
    # execute as written: wrong
    ex = [dict(e, executed=False, exact=False, set=False, fuzzy=False, vacuous=False)
          if e.get("fallback") or e.get("model_sql") is not None else e for e in report["examples"]]
    n = len(ex) or 1
    summary = dict(report["summary"], execution_rate=sum(bool(e["executed"]) for e in ex) / n,
                   **{k: sum(bool(e[k]) for e in ex) / n for k in ("exact", "set", "fuzzy", "vacuous")})
    return {"summary": summary, "examples": ex}


def _same_model_scores(run: RunFolder, checkpoint: Path, before: str, after: str, splits) -> None:
    """A checkpoint whose chosen step is 0 is the model it started from: copy that stage's reports."""
    from .checkpoint import read_info

    try:
        untrained = bool(read_info(checkpoint).get("chosen", {}).get("untrained"))
    except (SqltuneError, OSError, ValueError):
        return
    if not untrained:
        return
    for split in splits:
        src, dst = run.path / f"{before}_{split}_report.json", run.path / f"{after}_{split}_report.json"
        if src.is_file() and not dst.exists():
            rep = json.loads(src.read_text())
            rep["same_model_as"] = before  # the chosen checkpoint is step 0: the same weights, the same answers
            pred = run.path / f"{before}_{split}_pred.jsonl"
            if pred.is_file():  # before the report, which marks the stage done: a resume never writes these again
                write_bytes(run.path / f"{after}_{split}_pred.jsonl", pred.read_bytes())
            _write_json(dst, rep)


def chosen_steps(reports: dict, checkpoints: dict) -> dict:
    """{stage: {"step": N}} for each stage scored from a trained checkpoint (`checkpoints`: {stage: folder}), in the
    order of `reports`: the step its training chose (a soup of GRPO runs: the latest, each run's in `steps`). A step-0
    checkpoint is the model it started from; `same_model_as` names that stage, as its copied reports say
    (`_same_model_scores`), so a resumed run from before metrics.json held this finds it there."""
    from .checkpoint import read_info

    out = {}
    for stage in (st for st in reports if st in checkpoints):
        chosen = read_info(checkpoints[stage]).get("chosen") or {}
        out[stage] = {k: chosen[k] for k in ("step", "steps") if k in chosen}
        same = next((r["same_model_as"] for r in reports[stage].values() if r.get("same_model_as")), None)
        if same:
            out[stage]["same_model_as"] = same
        cfgs = [r.get("eval_config") or {} for r in reports[stage].values()]
        if any(c.get("untuned_model") and c.get("fallback") == "panel" for c in cfgs):
            out[stage]["untuned_panel"] = True  # step 0 kept, answered by the untuned model's own panel
        elif any(c.get("untuned_model") for c in cfgs):
            out[stage]["untuned"] = True  # step 0 kept, the base stage's answers with the last-resort repair
    return out


def train_on(c: dict) -> bool:
    """Whether the recipe `c` trains at all (`train.enabled`, true unless a recipe says otherwise; a run folder's
    recipe.json from before the key existed trains)."""
    return bool((c.get("train") or {}).get("enabled", True))


def answer_stage(run: RunFolder, model, tok, builder, items: dict, db, eval_cfg, splits, test_suite: bool, c: dict,
                 device) -> dict:
    """A run that trains nothing (`train.enabled: false`): stage `answer`, the untuned model answering with the recipe's
    `eval` settings as `sqltune answer`/`serve` do without an adapter. With a panel or the repair (`eval.fallback:
    panel`, `eval.repair`) that is `evaluate` with `untuned_model` over the base stage's answers (the panel's other
    voters and its judge need the model: `model`, the base stage's, or loaded here where that stage was resumed);
    with neither, the untuned model's answers are the base stage's, copied (scoring them again would only add
    batching noise)."""
    from .model import load_model

    if eval_cfg.fallback != "panel" and not eval_cfg.repair:
        for split in splits:
            src, dst = run.path / f"base_{split}_report.json", run.path / f"answer_{split}_report.json"
            if not dst.exists():
                write_bytes(run.path / f"answer_{split}_pred.jsonl", (run.path / f"base_{split}_pred.jsonl").read_bytes())
                _write_json(dst, {**json.loads(src.read_text()), "same_model_as": "base"})
        return {s: _stage_report(run.path / f"answer_{s}_report.json") for s in splits}
    cfg = eval_cfg.with_(untuned_model=True)
    done = all((run.path / f"answer_{s}_report.json").is_file() for s in splits)
    if not done:
        _stage(f"answer: the untuned model answers {' and '.join(splits)} as `sqltune answer` does (train.enabled is "
               "false: no training)")
        if model is None:
            t = time.monotonic()
            model, tok, _ = load_model(c.get("model"), device)
            run.record("load_base", time.monotonic() - t)
    return evaluate_stage(run, "answer", model, tok, builder, items, db, cfg, splits, test_suite,
                          untuned_answers(run, splits))


def synth_stage_on(c: dict) -> bool:
    """Whether the recipe `c` has its synth stage write pairs beside the training pairs: `synth.enabled`, `synth.k` >
    0, pairs of the run's own (with none, `data.train: synth`, the training pairs are the synthetic ones already) and a
    run that trains (`train_on`: the pairs serve training alone)."""
    syn = c.get("synth") or {}
    return (train_on(c) and bool(syn.get("enabled")) and int(syn.get("k", 0)) > 0
            and c["data"].get("train") != NO_PAIRS)


def synth_stage(run: RunFolder, c: dict, db, items: dict, device, baseline: dict):
    """Issue 14: synthetic pairs before training (recipe `synth:`). Returns the training items (seeds
    weighted up + synthetic pairs), the checkpoint-choice items (valid + a held-out slice of synthetic
    pairs), the step-0 baseline (None when the slice must be scored too) and the checkpoint rule."""
    from .synth import split_heldout, weighted_training_items

    syn = c.get("synth") or {}
    if not synth_stage_on(c):
        # no synthetic pairs beside the training pairs: the noise-aware rule on valid all the same (a tuned checkpoint
        # must beat the untuned model by more than the noise of the valid split; measured: on a 2-question valid split
        # "best valid exact" kept a checkpoint that lost 25 test points)
        return items["train"], items["valid"], baseline, selection_rule(c, items, pooled=False, mode=sft_rule(c))
    syn_file = run.path / "synth.jsonl"
    if not syn_file.is_file():
        synth_pairs(run, c, db, items["train"], {s: items[s] for s in ("valid", "test") if s in items}, device,
                    syn_file, f"synth: up to {syn['k']} synthetic pairs from the database and the "
                    f"{len(items['train'])} training pairs, each checked by execution")
    pairs = read_jsonl(syn_file)
    train_part, held = split_heldout(pairs, float(syn["heldout_fraction"]), int(syn["seed"]))
    select = items["valid"] + [{"id": p["id"], "question": p["question"], "sql": p["sql"]} for p in held]
    return (weighted_training_items(items["train"], train_part, int(syn["seed_weight"])), select,
            None if held else baseline, selection_rule(c, items, pooled=bool(held), mode=sft_rule(c)))


def sft_rule(c: dict) -> str:
    """The fine-tuning stage's checkpoint rule of the recipe `c` (`train.choose`: noise or last)."""
    from .train_config import TrainConfig

    return str((c.get("train") or {}).get("choose", TrainConfig.choose))


def nothing_to_beat(base_valid: dict, select_items: list[dict], valid: list[dict], mode: str = "noise") -> str | None:
    """A note for a run whose checkpoint is chosen on valid alone, by the `noise` rule, where the untuned model already
    answers every valid question: no trained checkpoint can beat it there, so the run will keep it (a user with a few
    dozen pairs, split 6 / 2 / 8, spent the training minutes for nothing and was not told why). The `last` rule needs
    no gain, so it gets no note."""
    if mode != "noise" or select_items is not valid or not valid or (base_valid.get("summary") or {}).get("exact") != 1.0:
        return None
    return (f"note: the untuned model already answers all {len(valid)} valid questions, so no trained checkpoint "
            "can beat it and the run will keep it; a larger valid split (--valid) gives training a chance")


def selection_rule(c: dict, items: dict, pooled: bool, mode: str = "noise"):
    """The checkpoint rule (`synth.checkpoint_rule`) for the recipe `c`: judged on the valid split's questions
    (`synth.select_z`); `pooled`: the evaluation lines also hold the held-out synthetic slice (a guard).
    `mode`: `noise` or `last` (the recipe's `train.choose` for SFT, `rl.choose` for GRPO)."""
    from .synth import checkpoint_rule

    z = float((c.get("synth") or {}).get("select_z", 1.0))
    ids = [str(it.get("id", i)) for i, it in enumerate(items["valid"])] if pooled else None
    return checkpoint_rule(len(items["valid"]), z, valid_ids=ids, mode=mode)


def data_check(db, items: dict):
    """`check.check_items` of `items` ({split: items}); its report, or, where any gold query fails or leaks, one
    DatasetError naming the first (the run stops before any model time is spent)."""
    from .check import check_items

    report = check_items(db, items)
    if report.errors:
        f = report.errors[0]
        raise DatasetError(f"data check failed: {len(report.errors)} errors, first: {f.file} {f.id}: {f.kind}: "
                           f"{f.message} (see `sqltune data check`); nothing written")
    return report


def resolve_models(c: dict, synthesis: bool) -> None:
    """Every model the run will load, found (or refused, one line) before the run folder is made: the run's model
    and, where synthesis is to come, its `synth.teacher` and `synth.reader` (a teacher that cannot be loaded must
    not fail minutes later, a started folder left behind)."""
    from .model import resolve_model

    syn = c.get("synth") or {}
    names = [c.get("model")] + ([n for n in (syn.get("teacher"), syn.get("reader")) if n] if synthesis else [])
    for name in names:
        resolve_model(name)


def _start_without_pairs(out: Path, started: bool, c: dict, cfg, db: Path, pairs_file: Path) -> RunFolder:
    """A run with no pairs (`data.train: synth`): check what can be checked, make the run folder (recipe.json, so an
    interrupted synthesis resumes as this run), and write the pairs from the database alone into `pairs_file`
    (`synth_pairs`); the questions given to hold out (data.valid/test, if any) are loaded first and leak into none."""
    from .dataset import load_items
    from .model import pick_device

    data = c["data"]
    held = {s: load_items(data[s]) for s in ("valid", "test") if data.get(s)}
    extra = [it for spec in data.get("extra") or [] for it in load_items(spec)]  # trained on beside the written pairs
    k = int((c.get("synth") or {}).get("k", 0))
    if k < 1:
        raise SqltuneError(f"data.train is {NO_PAIRS} (no pairs: they are written from the database), but synth.k is "
                           f"{k}: nothing to train on; set synth.k (e.g. --set synth.k=300) or give --train pairs.jsonl")
    if started and (out / "recipe.json").is_file():
        check_same_run(out, c, None)  # another run's folder (one given pairs of its own) is said to be one
        if (out / "inputs.json").is_file():
            raise SqltuneError(f"{out / NO_PAIRS_FILE} is missing: the run's pairs were written there; without them "
                               "this run cannot continue (start a new run with another --out)")
    resolve_models(c, synthesis=True)
    given = {**held, **({"extra": extra} if extra else {})}
    if given:  # the pairs given are checked before synthesis, which takes minutes: not after it, its pairs kept
        data_check(db, given)
    run_dir = RunFolder(out)
    _write_json(out / "recipe.json", c)
    device = pick_device(c.get("device"), c.get("dtype"))
    if device.device == "cpu" and (c.get("synth") or {}).get("questions", "model") == "model":
        _stage(f"note: on a CPU this is slow (the 0.5B writes a question in ~4 s on 2 cores: {k} pairs take well over "
               "30 minutes); with no pairs the untuned model's vote (`sqltune ask`) is the measured gain and tuning "
               "on written pairs has not reliably added to it (README, \"No pairs at all\")")
    synth_pairs(run_dir, c, db, [], held, device, pairs_file,
                f"synth: no pairs given, so up to {k} question/SQL pairs are written from {db.name} alone (its schema, "
                f"keys and values; each query executed, each question read back); valid"
                f"{'' if data.get('test') else ' and test'} will be split off them (Ctrl-C and give --train "
                "pairs.jsonl to use pairs of your own)")
    if not read_jsonl(pairs_file):  # an empty file must not stand as this run's pairs: a resume tries again
        pairs_file.unlink()
        from .pairs import summary_path

        raise SqltuneError(f"synth kept no pairs from {db.name} (why each candidate was rejected: "
                           f"{summary_path(pairs_file)}); give pairs of your own with --train pairs.jsonl")
    return run_dir


def run(recipe: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
        resume: bool = False, overrides: dict | None = None) -> dict:
    """Run the whole pipeline; returns metrics.json's content."""
    from .db import resolve_db
    from .model import load_model, pick_device
    from .prompt import PromptBuilder
    from .report import write_report
    from .schema import schema_text

    from .recipe import load_recipe
    from .train import train

    # 0. check every input and the output folder before anything is written
    cfg = load_recipe(recipe or "default", overrides or {})
    c = cfg.to_dict()
    out = Path(out_dir or c.get("out") or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S"))
    check_writable(out, folder=True)
    started = out.is_dir() and any(out.iterdir())
    if started and not resume:
        raise SqltuneError(f"{out} already holds files; pass --resume to continue a run there or choose another --out")
    if started and not is_run_folder(out):
        raise SqltuneError(f"{out} is not a sqltune run folder; --resume continues only a run that sqltune started")
    data = c["data"]
    _check_own_db(data)
    db = resolve_db(data.get("db"), need_tables=True)
    run_dir = None
    no_pairs_file = out / NO_PAIRS_FILE if data.get("train") == NO_PAIRS else None
    if no_pairs_file is not None and not no_pairs_file.is_file():
        # no pairs of one's own: synthesis writes them from the database alone, before anything reads data.train
        run_dir = _start_without_pairs(out, started, c, cfg, db, no_pairs_file)
    items = cfg.items(no_pairs_file)
    splits = ["valid"] + (["test"] if items.get("test") else [])
    inputs = inputs_fingerprint(db, items)
    if started and (out / "recipe.json").is_file():
        check_same_run(out, c, inputs)

    resolve_models(c, synthesis=synth_stage_on(c) and not (out / "synth.jsonl").is_file())  # the synth stage to come

    # 1. data check: failing gold SQL or leakage stops the run before any model time is spent
    check_report, t = None, time.monotonic()
    if not (out / "data_check.json").is_file():
        check_report = data_check(db, items)

    run_dir = run_dir or RunFolder(out)
    _write_json(out / "recipe.json", c)
    # recipe.json's paths stay as given; where they were found from is recorded (for `--run` from another folder)
    _write_json(out / "inputs.json", {**inputs, DB_PATH: str(db.resolve()), STARTED_IN: str(Path.cwd())})
    if data.get("split"):
        for s, v in items.items():
            write_jsonl(out / f"split_{s}.jsonl", v)
    if check_report is not None:
        _write_json(out / "data_check.json", check_report.to_dict())
        run_dir.record("data_check", time.monotonic() - t)

    sizes = ", ".join(f"{len(v)} {s}" for s, v in items.items())
    _stage(f"{out}: {c.get('model') or 'the default model'} on {db.name} ({sizes} questions)"
           + (" (resumed)" if started else ""))
    idle = [k for k in _flat(overrides or {}) if k.split(".")[0] in ("train", "synth", "rl") and k != "train.enabled"]
    if idle and not train_on(c):  # settings of stages this run skips: said, not silently dropped
        _stage(f"note: train.enabled is false, so {', '.join(idle[:6])}{' and more' if len(idle) > 6 else ''} change "
               "nothing in this run (--set train.enabled=true trains)")
    device = pick_device(c.get("device"), c.get("dtype"))
    builder = PromptBuilder(schema_text(db, data.get("notes")), style=c["prompt"]["style"])
    from .evaluate import EvalConfig

    # one evaluation setting for every stage, training's checkpoint choice included (same recipe keys)
    eval_cfg = EvalConfig.from_recipe(cfg, device, fewshot_pool=items["train"])
    suite = bool(c.get("eval", {}).get("test_suite"))
    reports: dict = {}

    # 2. base model
    base_done = all((out / f"base_{s}_report.json").is_file() for s in splits)
    model = None
    if not base_done:
        _stage(f"base: the untuned model answers {' and '.join(splits)}")
        t = time.monotonic()
        model, tok, _ = load_model(c.get("model"), device)
        run_dir.record("load_base", time.monotonic() - t)
    else:
        tok = None
    # the base stage is the untuned model as it answers without sqltune: no panel (it needs a tuned model or the
    # untuned_model flag) and no repair
    reports["base"] = evaluate_stage(run_dir, "base", model, tok, builder, items, db, eval_cfg.with_(repair=False),
                                     splits, suite)

    adapter, rl_dir = out / "adapter", out / "adapter_rl"
    checkpoints: dict = {}  # {stage: the checkpoint it scores}, for metrics.json's `chosen`
    if not train_on(c):
        # no training (`train.enabled: false`): the untuned model answers as `sqltune answer` does without an adapter
        # (its panel and judge, the last-resort repair), the base stage's answers reused; synth, SFT, GRPO and the
        # augment round are skipped (BENCHMARKS.md, "Session 38": on the dev halves training did not beat this)
        reports["answer"] = answer_stage(run_dir, model, tok, builder, items, db, eval_cfg, splits, suite, c, device)
    else:
        del model  # training loads its own
        # 3. fine-tune (the trainer keeps the best checkpoint by valid exact, "no training" included)
        from .checkpoint import is_complete, load_trained

        checkpoints["tuned"] = adapter
        train_items, select_items, baseline, choose = synth_stage(run_dir, c, db, items, device,
                                                                      greedy_view(reports["base"]["valid"]))
        if not is_complete(adapter):
            _stage(f"train: {c['train'].get('method')} on {len(train_items)} pairs; the checkpoint is chosen on "
                   f"{len(select_items)} questions (the untuned model is a candidate)")
            note = nothing_to_beat(greedy_view(reports["base"]["valid"]), select_items, items["valid"], sft_rule(c))
            if note:
                _stage(note)
            t = time.monotonic()
            train(cfg, train_items, select_items, db, adapter, resume=True, baseline=baseline, choose=choose)
            run_dir.record("train", time.monotonic() - t)

        # 4. tuned model. When training did not beat the untuned model, the checkpoint *is* that model:
        #    its scores are the base scores (scoring it again would only add bf16/batching noise), unless the recipe's
        #    answer is the panel or repairs (`eval.repair`): then the untuned model answers with its own panel
        #    (`evaluate.untuned_panel`: its answers with 4, 0 and 2 retrieved training examples vote) and/or the last-resort
        #    repair, the base stage's answers reused
        from .checkpoint import is_untuned

        tuned_cfg = eval_cfg
        if (eval_cfg.fallback == "panel" or eval_cfg.repair) and is_complete(adapter) and is_untuned(adapter=adapter):
            # the base stage's answers are the rows; the panel and the repair are added to them (`evaluate.predict`)
            tuned_cfg = eval_cfg.with_(untuned_model=True)
        else:
            _same_model_scores(run_dir, adapter, "base", "tuned", splits)
        tuned_done = all((out / f"tuned_{s}_report.json").is_file() for s in splits)
        model = tok = None
        if not tuned_done:
            _stage(f"tuned: the tuned model answers {' and '.join(splits)}")
            t = time.monotonic()
            model, tok = load_trained(adapter, device, builder=builder)[:2]
            run_dir.record("load_tuned", time.monotonic() - t)
        untuned = untuned_answers(run_dir, splits)  # the fallbacks below take the untuned answers from here
        reports["tuned"] = evaluate_stage(run_dir, "tuned", model, tok, builder, items, db, tuned_cfg, splits, suite,
                                          untuned)

        # 4b. optional (issue 16): execution-reward RL (GRPO) on top of the tuned adapter, then its own scores;
        #     prompts: the training items of step 3 (seeds, plus the synthetic pairs when synth is on), never valid/test
        if (c.get("rl") or {}).get("enabled"):
            from .rl import inner_checkpoints, train_grpo

            def score_inner(name: str, folder: Path) -> dict:
                """A checkpoint kept inside GRPO's output (`rl.average`'s step before averaging, each of `rl.runs`),
                scored as stage rl_NAME; train_grpo calls it as each run is written, the loop below for the rest."""
                _same_model_scores(run_dir, folder, "tuned", f"rl_{name}", splits)
                return score_checkpoint(run_dir, f"rl_{name}", folder, device, builder, items, db, eval_cfg, splits, suite,
                                        untuned)

            if not is_complete(rl_dir):
                _stage(f"rl: GRPO from the tuned model, rewarded by execution on {len(train_items)} training questions")
                model = None
                t = time.monotonic()
                # the checkpoint is chosen on the same items as SFT's (with synthetic pairs: valid decides, the
                # held-out synthetic slice guards against forgetting), by the rule `rl.choose`: `noise` as SFT
                # (a gain beyond the noise of valid), `last` (the latest step that shows no loss beyond it)
                pooled = len(select_items) > len(items["valid"])
                rl_rule = selection_rule(c, items, pooled, mode=str(c["rl"].get("choose", "last")))
                # the vote and the panel replace answers that executed, some of them right: their greedy view is not
                # the tuned model's own score, so GRPO scores its step 0 itself
                voted = (c["eval"].get("fallback") or "none") in ("vote", "panel")
                train_grpo(cfg, train_items, select_items, db, rl_dir, init_adapter=adapter, resume=True,
                           baseline=None if pooled or voted else greedy_view(reports["tuned"]["valid"]), choose=rl_rule,
                           on_run=score_inner)
                run_dir.record("rl", time.monotonic() - t)
            model = tok = None
            _same_model_scores(run_dir, rl_dir, "tuned", "rl", splits)
            rl_reports = score_checkpoint(run_dir, "rl", rl_dir, device, builder, items, db, eval_cfg, splits, suite,
                                          untuned)
            # the checkpoints kept inside GRPO's output, placed before `rl` in the report (a run's scores are read back):
            # `rl.average` < 1: the chosen step before averaging (tuned -> rl_unaveraged is what GRPO did,
            # rl_unaveraged -> rl the averaging); `rl.runs` > 1: each run (rl_run1, ...), then their soup (`rl`)
            for name, inner in inner_checkpoints(rl_dir):
                reports[f"rl_{name}"] = score_inner(name, inner)
                checkpoints[f"rl_{name}"] = inner
            reports["rl"], checkpoints["rl"] = rl_reports, rl_dir

        # 5. optional: mine valid failures, grow the training data, train again, score again
        aug = c.get("augment") or {}
        if aug.get("enabled"):
            from .augment import augment

            aug_file = out / "augmented.jsonl"
            if not aug_file.is_file():
                del model
                model = None
                t = time.monotonic()
                res = augment(out, aug_file, int(aug.get("max", 50)), aug.get("model"),
                              roundtrip=bool(aug.get("roundtrip", True)))
                _write_json(out / "augment_summary.json", res.summary())
                run_dir.record("augment", time.monotonic() - t)
            extra = read_jsonl(aug_file)
            adapter_aug = out / "adapter_augmented"
            if not is_complete(adapter_aug):
                t = time.monotonic()
                train(cfg, items["train"] + extra, items["valid"], db, adapter_aug, resume=True,
                      baseline=greedy_view(reports["base"]["valid"]))
                run_dir.record("train_augmented", time.monotonic() - t)
            model = tok = None
            aug_cfg = eval_cfg.with_(fewshot_pool=items["train"] + extra) if eval_cfg.fewshot else eval_cfg
            reports["augmented"] = score_checkpoint(run_dir, "augmented", adapter_aug, device, builder, items, db, aug_cfg,
                                                    splits, suite, untuned if aug_cfg is eval_cfg else None)
            checkpoints["augmented"] = adapter_aug


    # 6. metrics and report
    history = read_jsonl(adapter / "metrics.jsonl") if (adapter / "metrics.jsonl").is_file() else []
    if "rl" in reports and (rl_dir / "metrics.jsonl").is_file():  # GRPO continues the chart after the last SFT epoch
        last = max((h.get("epoch") or 0.0 for h in history), default=0.0)
        history += [{**h, "epoch": last + (h.get("epoch") or 0.0), "stage": "rl"} for h in read_jsonl(rl_dir / "metrics.jsonl")
                    if h.get("run", 1) == 1]  # `rl.runs` > 1: the chart follows the first run
    metrics = {stage: {s: r["summary"] for s, r in reps.items()} for stage, reps in reports.items()}
    metrics["chosen"] = chosen_steps(reports, checkpoints)
    metrics["timings"] = run_dir.timings
    metrics["model"] = c.get("model")
    metrics["recipe"] = c.get("name")
    metrics["out"] = str(out)
    about = {"model": c.get("model"), "recipe": c.get("name"),
             "method": c["train"].get("method") if train_on(c) else "none (train.enabled: false)",
             "database": str(db), **{f"data.{k}": data.get(k) for k in ("train", "valid", "test") if data.get(k)},
             "split": "valid/test split off data.train by gold SQL" if data.get("split") else None}
    if no_pairs_file is not None:
        about["data.train"] = f"no pairs given: {NO_PAIRS_FILE}, written from the database alone (sqltune synth)"
    write_report(out, reports, history, run_dir.timings, title=f"sqltune run: {out.name}", about=about)
    _write_json(out / "metrics.json", metrics)
    return metrics
