"""The Trainer of a fine-tuning run and the callback that chooses its checkpoint by execution.

Why a `transformers.Trainer` subclass and not trl's SFTTrainer: what SFTTrainer adds is dataset
formatting, tokenisation and packing, and here all three must be sqltune's own (the one prompt
builder, the inference tokenisation, the shared prefix). The Trainer keeps doing what it does:
optimiser, scheduler, gradient accumulation, mixed precision, logging, checkpoints and `--resume`,
`accelerate launch`. The subclass only overrides `compute_loss` (`shared_prefix.SharedPrefix.loss`
or `plain_loss`), the token count used to normalise the loss across accumulated batches, and
`evaluate`, which hands over to `CheckpointChoice`: a `TrainerCallback` that evaluates each
candidate with the one evaluator (`evaluate.evaluate`), logs metrics.jsonl, keeps the best candidate
and marks the Trainer's checkpoints complete. `readable_logs` (also used by GRPO, rl.py) makes the
Trainer's log one line per logging step instead of a raw dict.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

from .checkpoint import COMPLETE
from .console import line_above_bars
from .distributed import barrier, is_main, on_main, world_size
from .shared_prefix import SharedPrefix, plain_loss
from .train_config import TrainConfig
from .train_data import IGNORE, collate


def make_trainer_class():
    """The Trainer subclass (built on first use: importing transformers' Trainer is slow)."""
    from transformers import Trainer

    class SqltuneTrainer(Trainer):
        """Trainer with the shared-prefix loss and evaluation by execution (see the module docstring)."""

        def __init__(self, *args, session: "CheckpointChoice", **kwargs):
            super().__init__(*args, **kwargs)
            self.session = session
            self.loss_is_scaled_for_ga = True  # compute_loss divides by the tokens of the whole accumulated batch

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            s = self.session
            if s.prefix is not None:
                total, n, computed = s.prefix.loss(model, inputs)
            else:
                total, n, computed = plain_loss(model, inputs)
            s.tokens_example += int(inputs["full_tokens"].sum())
            s.tokens_computed += computed
            loss = total / max(1, int(num_items_in_batch) if num_items_in_batch is not None else n)
            if world_size() > 1:  # DDP averages the ranks' gradients: rank sum / global tokens x ranks gives,
                loss = loss * world_size()  # averaged, the one-process loss of the global batch (and its log)
            return (loss, None) if return_outputs else loss

        def _get_num_items_in_batch(self, batch_samples, device):
            n = sum(int((b["targets"] != IGNORE).sum()) for b in batch_samples)
            if world_size() > 1:  # the tokens of the global batch (every rank's share); see compute_loss
                import torch

                n = int(self.accelerator.gather(torch.tensor([n], device=device)).sum())
            return n

        def evaluate(self, *args, **kwargs):
            s, step = self.session, self.state.global_step
            done = [r for r in s.history if r["step"] == step]  # the Trainer may ask twice at an epoch's end
            metrics = done[0] if done else s.evaluate(self.model, step, self.state.epoch or 0.0, self._last_train_loss())
            if self.session.should_stop():
                self.control.should_training_stop = True
            return {f"eval_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}

        def _last_train_loss(self):
            for entry in reversed(self.state.log_history):
                if "loss" in entry:
                    return entry["loss"]
            return None

        def _save_checkpoint(self, model, trial):
            t = time.monotonic()
            super()._save_checkpoint(model, trial)
            self.session.save_seconds += time.monotonic() - t

    return SqltuneTrainer


# ---------------------------------------------------------------- the Trainer's log, readable
_LOG_FIELDS = (("epoch", "epoch", ".2f"), ("loss", "loss", ".4g"), ("reward", "reward", ".3f"), ("kl", "kl", ".3g"),
               ("grad_norm", "grad norm", ".3g"), ("learning_rate", "lr", ".1e"))


def log_line(logs: dict, step: int, max_steps: int) -> str:
    """A Trainer log entry as one line: `step 20/104  epoch 0.77  loss 0.412  lr 4.1e-04` (GRPO adds reward
    and kl); the end of training: `trained 104 steps in 312 s, mean train loss 0.53`."""
    if "train_runtime" in logs:
        loss, seconds = logs.get("train_loss"), logs["train_runtime"]
        end = f", mean train loss {loss:.4g}" if isinstance(loss, (int, float)) else ""
        return f"trained {step} steps" + (f" in {seconds:.0f} s" if isinstance(seconds, (int, float)) else "") + end
    return "  ".join([f"step {step}/{max_steps}"] + [f"{name} {logs[k]:{fmt}}" for k, name, fmt in _LOG_FIELDS
                                                    if isinstance(logs.get(k), (int, float))])


class LogLines(TrainerCallback):
    """Writes `log_line` on stderr for each Trainer log entry, above the progress bar (see `readable_logs`)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            line_above_bars(log_line(logs, state.global_step, state.max_steps))


def readable_logs(trainer) -> None:
    """Swap transformers' printing of the raw log dict (`PrinterCallback` without a progress bar, else
    `ProgressCallback.on_log` under the bar, both on stdout) for `LogLines`. The bar stays; the log
    itself (`state.log_history`, the metrics files) is unchanged."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class Bar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass  # LogLines writes the line

    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(Bar)
    trainer.add_callback(LogLines)


def last_complete_checkpoint(folder: Path) -> Path | None:
    found = [p for p in folder.glob("checkpoint-*") if (p / COMPLETE).is_file() and p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


# ---------------------------------------------------------------- one training run's state
class CheckpointChoice(TrainerCallback):
    """Chooses the checkpoint: evaluates each candidate (the Trainer's `evaluate` hands over here),
    keeps the best in OUT.work/candidates, logs metrics.jsonl, counts tokens and seconds, and, as a
    callback, marks each Trainer checkpoint complete once written (`on_save`; only then are
    candidates other than the best dropped: a resume from an earlier checkpoint may need them)."""

    def __init__(self, cfg: TrainConfig, work: Path, builder, tokenizer, valid_items, valid_set, db, device,
                 progress: bool, eval_cfg, choose):
        self.cfg, self.work, self.builder, self.tok = cfg, work, builder, tokenizer
        self.choose = choose  # the rule: history -> the chosen line (`synth.checkpoint_rule`; `train.train` passes it)
        self.eval_cfg = eval_cfg  # evaluate.EvalConfig: the run's evaluation, so a candidate's score is reproducible
        self.valid_items, self.valid_set, self.db, self.device, self.progress = valid_items, valid_set, db, device, progress
        self.metrics_file = work / "metrics.jsonl"
        self.candidates = work / "candidates"
        self.history: list[dict] = []
        self.prefix: SharedPrefix | None = None
        self.tokens_example = self.tokens_computed = 0
        self.eval_seconds = self.save_seconds = 0.0
        self.t0 = time.monotonic()
        self.is_main = is_main()  # under `accelerate launch` only rank 0 evaluates and writes (distributed.py)
        self.last_eval_at = time.monotonic()

    # -- the Trainer's events
    def on_save(self, args, state, control, **kwargs):
        barrier()  # every rank has written its part of the checkpoint (rng_state_RANK.pth) before it is marked
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                (folder / COMPLETE).write_text("")
            self.prune_candidates()

    # -- bookkeeping across restarts
    def load_history(self, up_to_step: int) -> None:
        """Metrics of evaluations at or before `up_to_step` (the checkpoint resumed from)."""
        from .dataset import read_jsonl, write_jsonl

        def load() -> list[dict]:
            rows = read_jsonl(self.metrics_file) if self.metrics_file.is_file() else []
            history = [r for r in rows if r["step"] <= up_to_step]
            write_jsonl(self.metrics_file, history)
            return history

        self.history = on_main(load)
        self.prune_candidates()

    def best(self) -> dict | None:
        if not self.history:
            return None
        return self.choose(self.history)

    def should_stop(self) -> bool:
        p = self.cfg.early_stopping_patience
        if not p or not self.history:
            return False
        best_step = self.best()["step"]
        return sum(1 for r in self.history if r["step"] > best_step) >= p

    def prune_candidates(self) -> None:
        if not self.is_main:
            return
        best = self.best()
        keep = f"step-{best['step']}" if best else None
        if self.candidates.is_dir():
            for d in self.candidates.iterdir():
                if d.name != keep:
                    shutil.rmtree(d, ignore_errors=True)

    # -- evaluation
    def valid_loss(self, model) -> float | None:
        import torch

        if not len(self.valid_set):
            return None
        was_training = model.training
        model.eval()
        total, n = 0.0, 0
        try:
            with torch.no_grad(), self._autocast():
                fn = collate(self.tok.pad_token_id)
                bs = self.cfg.batch_size
                for b0 in range(0, len(self.valid_set), bs):
                    batch = fn([self.valid_set[i] for i in range(b0, min(b0 + bs, len(self.valid_set)))])
                    batch = {k: v.to(next(model.parameters()).device) for k, v in batch.items()}
                    s, k, _ = self.prefix.loss(model, batch) if self.prefix is not None else plain_loss(model, batch)
                    total, n = total + float(s), n + k
        finally:
            model.train(was_training)
        return total / n if n else None

    def _autocast(self):
        import contextlib

        import torch

        if self.device.autocast:
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def evaluate(self, model, step: int, epoch: float, train_loss: float | None, report: dict | None = None) -> dict:
        """Generate SQL for the valid questions, score it by execution, log it, keep the candidate if best.
        `report`: an existing score report of this very model on these items (skips generating).
        Several processes: rank 0 evaluates and writes; the others receive its line (same history, same choice)."""
        line = on_main(self._evaluate, model, step, epoch, train_loss, report)
        if not self.is_main:
            self.history.append(line)
        return line

    def _evaluate(self, model, step: int, epoch: float, train_loss: float | None, report: dict | None) -> dict:
        from .evaluate import evaluate

        t = time.monotonic()
        train_seconds = t - self.last_eval_at
        if report is None:
            report = evaluate(model, self.tok, self.builder, self.valid_items, self.db, self.eval_cfg)
        s = report["summary"]
        line = {"step": step, "epoch": round(float(epoch), 4), "train_loss": train_loss, "valid_loss": self.valid_loss(model),
                "n": s["n"], "execution_rate": s["execution_rate"], "exact": s["exact"], "set": s["set"],
                "fuzzy": s["fuzzy"], "eval_seconds": round(time.monotonic() - t, 2),
                "seconds_since_last_eval": round(train_seconds, 2), "elapsed": round(time.monotonic() - self.t0, 2),
                "exact_ids": [e["id"] for e in report["examples"] if e["exact"]]}
        prev = self.best()
        self.history.append(line)
        line["best"] = self.best() is line
        if line["best"]:
            self._save_candidate(model, step, line, report)
        with open(self.metrics_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
        self.eval_seconds += time.monotonic() - t
        self.last_eval_at = time.monotonic()
        # the rule's choice so far (`choose`), not the best score: `last` keeps a later step within the noise of a better one
        mark = "kept by the rule" if line["best"] else f"the rule keeps step {prev['step'] if prev else '-'}"
        echo(f"step {step} (epoch {float(epoch):.2f}): exact {s['exact']:.1%}, executed {s['execution_rate']:.1%}, "
              f"fuzzy {s['fuzzy']:.1%}, valid loss {_fmt(line['valid_loss'])}, train loss {_fmt(train_loss)} [{mark}]")
        return line

    def _save_candidate(self, model, step: int, line: dict, report: dict) -> None:
        from .files import atomic_path

        dest = self.candidates / f"step-{step}"
        self.candidates.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest, folder=True) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            (tmp / "valid_report.json").write_text(json.dumps(report, default=str))
            (tmp / "metrics.json").write_text(json.dumps(line))


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def echo(msg: str) -> None:
    """One line on stderr (on the main process only: one log under `accelerate launch`), above the Trainer's progress
    bar, which may be open (`console.line_above_bars`, as `LogLines` writes)."""
    if is_main():
        line_above_bars(msg)
