"""Stage: fine-tune. LoRA, DoRA, QLoRA or full fine-tuning; the checkpoint is chosen by execution.

`train(config, train_items, valid_items, db, out_dir)` scores the untuned model on the valid split
first ("no training" is a candidate), then trains, generating SQL for the valid questions and scoring
it by execution after every epoch (or every `eval_every` steps). It keeps the candidate with the best
`exact` (ties: lower valid loss, then the earlier one), can stop early, and writes the output folder
atomically (see `checkpoint.py`): adapter or model, tokenizer, `recipe.yaml` (every resolved
hyperparameter), `sqltune_checkpoint.json` (base model, method, prompt fingerprint, data
fingerprints, chosen step, wall time, tokens/s) and `metrics.jsonl` (one line per evaluation).

The jobs live in modules named for them: `train_config` (TrainConfig, TrainResult), `train_data`
(encoding, rows, collator), `shared_prefix` (the fast step), `adapters` (model set-up),
`trainer` (the Trainer and the checkpoint-choosing callback); this module runs them in order.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from .adapters import device_and_dtype, load_for_training, resolved_config
from .checkpoint import is_complete, merge, read_info, write_checkpoint  # noqa: F401 - merge re-exported
from .distributed import broadcast, on_main, sum_over_ranks, world_size
from .errors import SqltuneError
from .shared_prefix import SharedPrefix, fast_path_problem, plain_loss, shared_prefix_len  # noqa: F401 - re-exported
from .train_config import DEFAULT_TARGETS, METHODS, SCHEDULERS, TrainConfig, TrainResult, as_train_config  # noqa: F401
from .train_data import ExampleSet, collate, encode_examples, items_sha256  # noqa: F401 - re-exported
from .trainer import CheckpointChoice, echo, last_complete_checkpoint, make_trainer_class, readable_logs


def train(config, train_items: list[dict], valid_items: list[dict], db, out_dir, resume: bool = False,
          force: bool = False, progress: bool = True, recipe_yaml: str | None = None,
          baseline: dict | None = None, choose=None) -> TrainResult:
    """Fine-tune `config.model` on `train_items`, choose the checkpoint by execution on `valid_items`.

    `config`: a TrainConfig or a Recipe. The output goes to `out_dir` (written atomically); the
    working state (Trainer checkpoints, candidates) lives in `OUT.work` until the run ends, so an
    interrupted run continues with `resume=True` and ends with the same checkpoint. `force` starts
    over, deleting both. `baseline`: the untuned model's `score_pairs` report on exactly
    `valid_items` (e.g. from the run's base evaluation), used as step 0 instead of generating again.
    `choose`: a rule `history -> chosen evaluation line`; by default the config's `choose` rule
    (`synth.checkpoint_rule`: `noise` keeps the untuned model unless a trained checkpoint's gain on valid
    beats the noise of that many questions; `last` keeps the latest checkpoint that shows no loss beyond it).

    Under `accelerate launch --num_processes N` (DDP) every rank calls this; rank 0 alone evaluates
    the candidates and writes files, and hands its decisions to the other ranks (`distributed.py`).
    """
    from .db import resolve_db
    from .model import local_model_path
    from .prompt import PromptBuilder
    from .schema import schema_text

    recipe = config if hasattr(config, "train_config") else None
    cfg = as_train_config(config).validate()
    if recipe_yaml is None and recipe is not None and hasattr(recipe, "to_yaml"):
        recipe_yaml = recipe.to_yaml()
    if not train_items:
        raise SqltuneError("no training items")
    if not valid_items:
        raise SqltuneError("no validation items: the checkpoint is chosen on them")
    from .files import check_replaceable, check_writable, claim, hold, remove_owned

    out = Path(out_dir)
    work = out.with_name(out.name + ".work")
    check_writable(out, folder=True)
    if force:  # refuse now what sqltune did not write; delete only once every input has been checked
        check_replaceable(out)
        check_replaceable(work)
    elif out.exists():
        if resume and is_complete(out):
            return _result_from_folder(out)
        raise SqltuneError(f"{out} already exists; choose another --out, or pass --force to overwrite it")
    elif work.exists() and not resume:
        raise SqltuneError(f"{work} holds an interrupted run; pass --resume to continue it or --force to start over")
    elif work.exists() and not (work / "run.json").is_file():  # run.json: a work folder from before markers
        check_replaceable(work)

    t_start = time.monotonic()
    db = resolve_db(db)
    dev = device_and_dtype(cfg)
    trainer_dir = work / "trainer"
    args = _training_args(cfg, dev, trainer_dir, progress)  # several processes: joins them (after the checks above, before any write)
    model, tok, location, layers, n_layers = load_for_training(cfg, dev)
    builder = PromptBuilder(schema_text(db, cfg.notes), cfg.prompt_style)
    builder.prompt(tok, "?")  # a style the tokenizer cannot render fails now
    if force:
        on_main(lambda: (remove_owned(out), remove_owned(work)))
    resolved = resolved_config(cfg, layers, n_layers)
    fingerprint = {"train": {"n": len(train_items), "sha256": items_sha256(train_items)},
                   "valid": {"n": len(valid_items), "sha256": items_sha256(valid_items)}}
    state = {"config": resolved, "data": fingerprint, "prompt_sha256": builder.fingerprint(tok)["sha256"]}
    held = []  # rank 0 holds the work folder until training ends: a second `train` on it is refused, before any write
    on_main(lambda: (claim(work, "training work folder"), held.append(hold(work)), _check_same_run(work, state)))

    # data
    enc_train = encode_examples(builder, tok, train_items)
    enc_valid = encode_examples(builder, tok, valid_items)
    problem = fast_path_problem(model, cfg, world_size())
    P = shared_prefix_len([p for p, _ in enc_train + enc_valid]) if problem is None else 0
    train_set, valid_set = ExampleSet(enc_train, P), ExampleSet(enc_valid, P)
    from .evaluate import EvalConfig

    eval_cfg = EvalConfig.from_train_config(cfg, dev, fewshot_pool=train_items, progress=progress).validate()
    if choose is None:  # the config's rule (`train.choose`), at one standard error
        from .synth import checkpoint_rule

        choose = checkpoint_rule(len(valid_items), mode=cfg.choose)
    session = CheckpointChoice(cfg, work, builder, tok, valid_items, valid_set, db, dev, progress, eval_cfg, choose)
    t_pre = time.monotonic()
    if P:
        session.prefix = SharedPrefix(model, enc_train[0][0][:P], grad=cfg.prefix_grad)
        session.prefix.precompute(model, [train_set, valid_set], cfg.batch_size, progress)
    precompute_seconds = time.monotonic() - t_pre
    echo(f"training {cfg.method} on {len(train_items)} examples; "
          + (f"shared prefix of {P} tokens, layers {session.prefix.start}-{n_layers - 1} trainable"
             if P else f"whole sequences ({problem})"))

    # resume point
    ckpt = broadcast(last_complete_checkpoint(trainer_dir) if resume else None)
    if ckpt is not None:
        session.load_history(int(ckpt.name.split("-")[-1]))
        echo(f"resuming from {ckpt.name}")
    else:
        session.load_history(-1)
        on_main(shutil.rmtree, trainer_dir, ignore_errors=True)
    if not any(r["step"] == 0 for r in session.history):
        session.evaluate(model, 0, 0.0, None, _check_baseline(baseline, valid_items))  # "no training" is a candidate

    SqltuneTrainer = make_trainer_class()
    trainer = SqltuneTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=valid_set,
                             data_collator=collate(tok.pad_token_id), callbacks=[session], session=session)
    readable_logs(trainer)
    t_train, eval_before = time.monotonic(), session.eval_seconds
    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    train_wall = time.monotonic() - t_train
    step_seconds = max(1e-9, train_wall - (session.eval_seconds - eval_before) - session.save_seconds)
    if trainer.state.global_step > max(r["step"] for r in session.history):
        session.evaluate(model, trainer.state.global_step, trainer.state.epoch or cfg.epochs, trainer._last_train_loss())

    # the output folder
    best = session.best()
    session.tokens_example, session.tokens_computed = sum_over_ranks([session.tokens_example, session.tokens_computed])
    cand = session.candidates / f"step-{best['step']}"
    info = {
        "base_model": cfg.model, "base_model_path": local_model_path(cfg.model), "base_model_location": location,
        "method": cfg.method,
        "prompt": {**builder.fingerprint(tok), "schema": builder.schema, "fewshot": list(builder.fewshot)},
        "data": fingerprint, "db": str(db),
        "chosen": {"step": best["step"], "epoch": best["epoch"], "untrained": best["step"] == 0,
                   **{k: best[k] for k in ("exact", "execution_rate", "fuzzy", "set", "valid_loss", "train_loss")}},
        "hyperparameters": resolved,
        "device": {"device": dev.device, "dtype": dev.dtype, "autocast": dev.autocast},
        "timing": {"wall_seconds": round(time.monotonic() - t_start, 2), "train_seconds": round(train_wall, 2),
                   "step_seconds": round(step_seconds, 2), "eval_seconds": round(session.eval_seconds, 2),
                   "precompute_seconds": round(precompute_seconds, 2), "save_seconds": round(session.save_seconds, 2),
                   "resumed": ckpt is not None},
        "tokens": {"example_tokens": session.tokens_example, "computed_tokens": session.tokens_computed,
                   "tokens_per_s": round(session.tokens_example / step_seconds, 1),
                   "computed_tokens_per_s": round(session.tokens_computed / step_seconds, 1),
                   "shared_prefix_tokens": P, "first_trainable_layer": session.prefix.start if P else 0},
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    metrics_text = "".join(json.dumps(r) + "\n" for r in session.history)
    recipe_text = recipe_yaml if recipe_yaml is not None else _yaml({"model": cfg.model, "train": resolved})

    def write(tmp: Path) -> None:
        for f in cand.iterdir():
            if f.name not in ("metrics.json",):
                (shutil.copytree if f.is_dir() else shutil.copy2)(f, tmp / f.name)
        tok.save_pretrained(tmp)

    def finish() -> None:  # rank 0 alone; the other ranks return once it has written the folder
        write_checkpoint(out, write, info, {"metrics.jsonl": metrics_text, "recipe.yaml": recipe_text})
        if not cfg.keep_work:
            shutil.rmtree(work, ignore_errors=True)

    on_main(finish)
    if best["step"] == 0:
        echo("training did not beat the untuned model on valid: the output is the untuned model (step 0)")
    echo(f"wrote {out} (step {best['step']}, exact {best['exact']:.1%})")
    return TrainResult(out, best["step"], best["epoch"], best, session.history, info)


def _training_args(cfg: TrainConfig, dev, trainer_dir: Path, progress: bool):
    """The Trainer's arguments. Creating them sets up the device and, under `accelerate launch`, the
    process group: every rank has passed the input checks, nothing is written yet."""
    from transformers import TrainingArguments

    every = {"strategy": "steps", "steps": cfg.eval_every} if cfg.eval_every else {"strategy": "epoch", "steps": 500}
    mixed = dev.autocast or (dev.device.startswith("cuda") and (dev.dtype == "bfloat16" or cfg.method in ("full", "qlora")))
    args = TrainingArguments(
        output_dir=str(trainer_dir), per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        learning_rate=cfg.lr, lr_scheduler_type=cfg.scheduler, warmup_steps=cfg.warmup, weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm, seed=cfg.seed, data_seed=cfg.seed,
        eval_strategy=every["strategy"], eval_steps=every["steps"], save_strategy=every["strategy"],
        save_steps=every["steps"], logging_strategy=every["strategy"], logging_steps=every["steps"],
        save_total_limit=2, report_to="none", remove_unused_columns=False, train_sampling_strategy="group_by_length",
        use_cpu=dev.device == "cpu", bf16=mixed, disable_tqdm=not progress, dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # DDP: every trainable weight is used in each step
    )
    args.device  # noqa: B018 - sets up the device (and the process group of `accelerate launch`) now
    return args


def _check_baseline(report: dict | None, valid_items: list[dict]) -> dict | None:
    """A score report of the untuned model is usable for step 0 only if it covers exactly these items."""
    if report is None:
        return None
    ids = [e["id"] for e in report.get("examples", [])]
    if ids != [str(it.get("id", i)) for i, it in enumerate(valid_items)]:
        raise SqltuneError("baseline: the report does not cover exactly the valid items, in order")
    return report


def _check_same_run(work: Path, state: dict) -> None:
    """A resumed run must have the same settings and data as the interrupted one."""
    from .files import write_json

    f = work / "run.json"
    if f.is_file():
        old = json.loads(f.read_text())
        for section in ("config", "data", "prompt_sha256"):
            if old.get(section) != state[section]:
                diff = ""
                if isinstance(state[section], dict):
                    keys = [k for k in state[section] if old.get(section, {}).get(k) != state[section][k]]
                    diff = f" ({', '.join(keys)})"
                raise SqltuneError(f"{work} was started with other {section}{diff}; pass --force to start over")
    else:
        write_json(f, state)  # atomic: a Ctrl-C or kill inside the write left an empty run.json that --resume could not read


def _result_from_folder(out: Path) -> TrainResult:
    from .dataset import read_jsonl

    info = read_info(out)
    history = read_jsonl(out / "metrics.jsonl") if (out / "metrics.jsonl").is_file() else []
    step = info["chosen"]["step"]
    best = next((r for r in history if r["step"] == step), info["chosen"])
    return TrainResult(out, step, info["chosen"]["epoch"], best, history, info)


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("sqltune", "torch", "transformers", "peft", "accelerate"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _yaml(data) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
