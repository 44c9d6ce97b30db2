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

from .dataset import read_jsonl, write_jsonl
from .errors import DatasetError, SqltuneError

SPLITS = ("valid", "test")


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


class RunFolder:
    """The run folder and its stage bookkeeping (timings.json)."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.timings_file = path / "timings.json"
        self.timings = json.loads(self.timings_file.read_text()) if self.timings_file.is_file() else {}

    def done(self, *names: str) -> bool:
        return all((self.path / n).exists() for n in names)

    def record(self, stage: str, seconds: float) -> None:
        self.timings[stage] = round(seconds, 2)
        _write_json(self.timings_file, self.timings)


def _items(spec: str) -> list[dict]:
    try:
        from .dataset import load_items
    except ImportError:  # pragma: no cover - older dataset module
        return read_jsonl(spec, required=("question", "sql"))
    return load_items(spec)


def evaluate_stage(run: RunFolder, stage: str, model, tok, builder, items: dict, db, eval_cfg,
                   splits=SPLITS) -> dict:
    """Predict and score each split with the one evaluator (`evaluate.evaluate`, settings `eval_cfg`:
    an `evaluate.EvalConfig`); writes {stage}_{split}_pred.jsonl and _report.json."""
    from .evaluate import evaluate

    reports = {}
    for split in splits:
        rep_file = run.path / f"{stage}_{split}_report.json"
        if rep_file.is_file():
            reports[split] = json.loads(rep_file.read_text())
            continue
        t = time.monotonic()
        rep = evaluate(model, tok, builder, items[split], db, eval_cfg)
        write_jsonl(run.path / f"{stage}_{split}_pred.jsonl", rep.pop("predictions"))
        rep["timing"]["questions"] = len(items[split])
        _write_json(rep_file, rep)
        run.record(f"{stage}_{split}", time.monotonic() - t)
        reports[split] = rep
    return reports


def run(recipe: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
        resume: bool = False, overrides: dict | None = None) -> dict:
    """Run the whole pipeline; returns metrics.json's content."""
    from .db import resolve_db
    from .model import load_model, pick_device
    from .prompt import PromptBuilder
    from .report import write_report
    from .schema import schema_text

    try:
        from .recipe import load_recipe
        from .train import train
    except ModuleNotFoundError as e:
        raise SqltuneError(f"this version of sqltune has no fine-tuning stage yet ({e.name} is missing)") from None

    cfg = load_recipe(recipe or "default", overrides or {})
    c = cfg.to_dict()
    out = Path(out_dir or c.get("out") or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S"))
    if out.exists() and any(out.iterdir()) and not resume:
        raise SqltuneError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    run_dir = RunFolder(out)
    _write_json(out / "recipe.json", c)

    data = c["data"]
    db = resolve_db(data.get("db"))
    items = {"train": cfg.train_items(), "valid": _items(data["valid"])}
    splits = ["valid"] + (["test"] if data.get("test") else [])
    if data.get("test"):
        items["test"] = _items(data["test"])

    # 1. data check: failing gold SQL or leakage stops the run before any model time is spent
    if not run_dir.done("data_check.json"):
        t = time.monotonic()
        from .check import check_items

        rep = check_items(db, items)
        if rep.errors:
            _write_json(out / "data_check_failed.json", rep.to_dict())
            raise DatasetError(f"data check failed: {len(rep.errors)} errors, first: {rep.errors[0]} "
                               f"(all in {out / 'data_check_failed.json'})")
        _write_json(out / "data_check.json", rep.to_dict())
        run_dir.record("data_check", time.monotonic() - t)

    device = pick_device(c.get("device"), c.get("dtype"))
    builder = PromptBuilder(schema_text(db, data.get("notes")), style=c["prompt"]["style"])
    from .evaluate import EvalConfig

    # one evaluation setting for every stage, training's checkpoint choice included (same recipe keys)
    eval_cfg = EvalConfig.from_recipe(cfg, device, fewshot_pool=items["train"])
    reports: dict = {}

    # 2. base model
    base_done = all((out / f"base_{s}_report.json").is_file() for s in splits)
    model = None
    if not base_done:
        t = time.monotonic()
        model, tok, _ = load_model(c.get("model"), device)
        run_dir.record("load_base", time.monotonic() - t)
    else:
        tok = None
    reports["base"] = evaluate_stage(run_dir, "base", model, tok, builder, items, db, eval_cfg, splits)
    del model

    # 3. fine-tune (the trainer keeps the best checkpoint by valid exact, "no training" included)
    from .checkpoint import is_complete, load_trained

    adapter = out / "adapter"
    if not is_complete(adapter):
        t = time.monotonic()
        train(cfg, items["train"], items["valid"], db, adapter, resume=True, baseline=reports["base"]["valid"])
        run_dir.record("train", time.monotonic() - t)

    # 4. tuned model
    tuned_done = all((out / f"tuned_{s}_report.json").is_file() for s in splits)
    model = tok = None
    if not tuned_done:
        t = time.monotonic()
        model, tok = load_trained(adapter, device, builder=builder)[:2]
        run_dir.record("load_tuned", time.monotonic() - t)
    reports["tuned"] = evaluate_stage(run_dir, "tuned", model, tok, builder, items, db, eval_cfg, splits)

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
                  baseline=reports["base"]["valid"])
            run_dir.record("train_augmented", time.monotonic() - t)
        model = tok = None
        if not all((out / f"augmented_{s}_report.json").is_file() for s in splits):
            model, tok = load_trained(adapter_aug, device, builder=builder)[:2]
        aug_cfg = eval_cfg.with_(fewshot_pool=items["train"] + extra) if eval_cfg.fewshot else eval_cfg
        reports["augmented"] = evaluate_stage(run_dir, "augmented", model, tok, builder, items, db, aug_cfg, splits)

    # 6. metrics and report
    history = read_jsonl(adapter / "metrics.jsonl") if (adapter / "metrics.jsonl").is_file() else []
    metrics = {stage: {s: r["summary"] for s, r in reps.items()} for stage, reps in reports.items()}
    metrics["timings"] = run_dir.timings
    metrics["model"] = c.get("model")
    metrics["recipe"] = c.get("name")
    metrics["out"] = str(out)
    write_report(out, reports, history, run_dir.timings, title=f"sqltune run: {out.name}")
    _write_json(out / "metrics.json", metrics)
    return metrics
