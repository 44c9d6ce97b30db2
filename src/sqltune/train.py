"""Stage: fine-tune. LoRA, DoRA, QLoRA or full fine-tuning; the checkpoint is chosen by execution.

`train(config, train_items, valid_items, db, out_dir)` scores the untuned model on the valid split
first ("no training" is a candidate), then trains, generating SQL for the valid questions and scoring
it by execution after every epoch (or every `eval_every` steps). It keeps the candidate with the best
`exact` (ties: lower valid loss, then the earlier one), can stop early, and writes the output folder
atomically (see `checkpoint.py`): adapter or model, tokenizer, `recipe.yaml` (every resolved
hyperparameter), `sqltune_checkpoint.json` (base model, method, prompt fingerprint, data
fingerprints, chosen step, wall time, tokens/s) and `metrics.jsonl` (one line per evaluation).

The loss covers only the completion (the SQL and the end-of-turn marker), on exactly the token ids
inference sees: `PromptBuilder.prompt` encoded alone, then `PromptBuilder.completion` encoded alone.

Why a `transformers.Trainer` subclass and not trl's SFTTrainer: what SFTTrainer adds is dataset
formatting, tokenisation and packing, and here all three must be sqltune's own (the one prompt
builder, the inference tokenisation, the shared prefix). The Trainer keeps doing what it does:
optimiser, scheduler, gradient accumulation, mixed precision, logging, checkpoints and `--resume`,
`accelerate launch`. The subclass only overrides `compute_loss` (the step below), the token count used
to normalise the loss across accumulated batches, and `evaluate` (generate + execute + score).

The step. Every prompt starts with the same instructions + schema (~770 tokens for the exoplanets
DB); the question and SQL after it are ~60-170 tokens. Training each example on its whole sequence
computes that prefix once per example. Instead, a batch runs the shared prefix once (with gradients),
repeats its KV cache across the batch, and runs only the suffixes (question + SQL) on top of it;
gradients flow back through the shared prefix, so the loss and gradients equal the plain ones
(tested). Logits are computed only where the loss is (completion tokens): the vocabulary projection
is skipped for the prompt. When the lower layers hold no trainable weights (LoRA on the top layers,
`top_layers`), their outputs never change: they are computed once before training, for the prefix
and for every example, and each step runs only the trainable top layers. Suffixes are batched by
length (`group_by_length`), so padding is small. The fast step needs a plain decoder stack (Llama,
Qwen2/3, Mistral families, full attention) in a single process without gradient checkpointing;
anything else trains on whole sequences (`shared_prefix: false` forces that too).
`prefix_grad: false` runs the prefix through the trainable layers without autograd: the adapters
still shape the prefix's keys/values in the forward pass, but learn only through the suffixes — a
cheaper step with other gradients (measured, not the default: BENCHMARKS.md, "Fine-tuning").
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .checkpoint import COMPLETE, is_adapter, is_complete, merge, read_info, write_checkpoint  # noqa: F401 - merge re-exported
from .errors import SqltuneError
from .model import DEFAULT_MODEL

METHODS = ("lora", "dora", "full", "qlora")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FAST_FAMILIES = ("llama", "qwen2", "qwen3", "mistral")  # plain pre-norm decoder stacks, RoPE, no logit tricks
IGNORE = -100


@dataclass
class TrainConfig:
    """Every knob of a fine-tuning run. A recipe's `model`, `prompt`, `train` and `eval` sections map here."""

    model: str = DEFAULT_MODEL
    method: str = "lora"  # lora | dora | full | qlora
    rank: int = 16
    alpha: float = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    layers_to_transform: list[int] | None = None  # decoder layers that get adapters (full: that are trained)
    top_layers: int | None = None  # shorthand for layers_to_transform = the last N layers
    lr: float = 2e-4
    scheduler: str = "cosine"
    warmup: float = 0.0  # a fraction of the steps (< 1) or a number of steps
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    epochs: float = 3
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int = -1  # > 0 overrides epochs
    eval_every: int = 0  # evaluate every N optimiser steps; 0 = every epoch
    early_stopping_patience: int | None = None  # evaluations without a better exact before stopping
    seed: int = 42
    prompt_style: str = "chat"
    notes: str | None = None  # schema notes file (default: found beside the DB)
    device: str = "auto"
    dtype: str = "auto"  # weights dtype while training: auto = float32 on CPU, bf16 on CUDA (full FT: fp32 + bf16 autocast)
    gradient_checkpointing: bool = False
    shared_prefix: bool = True
    prefix_grad: bool = True  # backpropagate through the shared prefix (exact); false: its forward only (cheaper)
    eval_batch_size: int = 64
    eval_max_new_tokens: int = 256
    eval_retries: int = 0  # the checkpoint is chosen with the evaluation the recipe's `eval` section describes
    eval_timeout: float = 5.0
    eval_fewshot: int = 0  # few-shot examples come from the training items
    keep_work: bool = False  # keep OUT.work (Trainer checkpoints, candidates) after success

    def validate(self) -> "TrainConfig":
        def bad(msg):
            raise SqltuneError(f"train config: {msg}")

        if self.method not in METHODS:
            bad(f"unknown method '{self.method}' (one of: {', '.join(METHODS)})")
        if self.scheduler not in SCHEDULERS:
            bad(f"unknown scheduler '{self.scheduler}' (one of: {', '.join(SCHEDULERS)})")
        if self.eval_retries < 0 or self.eval_fewshot < 0:
            bad("eval_retries and eval_fewshot cannot be negative")
        for name in ("rank", "batch_size", "grad_accum", "eval_batch_size", "eval_max_new_tokens"):
            if getattr(self, name) < 1:
                bad(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            bad(f"lr must be positive, got {self.lr}")
        if not 0 <= self.dropout < 1:
            bad(f"dropout must be in [0, 1), got {self.dropout}")
        if self.epochs <= 0 and self.max_steps <= 0:
            bad("give epochs > 0 or max_steps > 0")
        if self.eval_every < 0:
            bad("eval_every must be 0 (every epoch) or a number of steps")
        if self.top_layers is not None and self.top_layers < 1:
            bad(f"top_layers must be at least 1, got {self.top_layers}")
        if self.top_layers is not None and self.layers_to_transform is not None:
            bad("give top_layers or layers_to_transform, not both")
        if not self.target_modules:
            bad("target_modules is empty")
        from .prompt import STYLES

        if self.prompt_style not in STYLES:
            bad(f"unknown prompt style '{self.prompt_style}' (one of: {', '.join(STYLES)})")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SqltuneError(f"train config: unknown key(s) {', '.join(unknown)}")
        return cls(**d)


@dataclass
class TrainResult:
    out_dir: Path
    chosen_step: int
    chosen_epoch: float
    best: dict  # the chosen evaluation's metrics line
    history: list[dict]  # every metrics line
    info: dict  # sqltune_checkpoint.json

    @property
    def untrained(self) -> bool:
        return self.chosen_step == 0


# ---------------------------------------------------------------- data
def items_sha256(items: list[dict]) -> str:
    """Fingerprint of a split: its (question, sql) pairs in order."""
    canon = json.dumps([[it["question"], it["sql"]] for it in items], ensure_ascii=False)
    return hashlib.sha256(canon.encode()).hexdigest()


def encode_examples(builder, tokenizer, items: list[dict]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, completion ids) per item, tokenised exactly as inference tokenises the prompt."""
    from .prompt import encode

    out = []
    for it in items:
        prompt, completion = builder.example(tokenizer, it["question"], it["sql"])
        p, c = encode(tokenizer, prompt), encode(tokenizer, completion)
        if not c:
            raise SqltuneError(f"item {it.get('id', '?')}: empty completion")
        out.append((p, c))
    return out


class ExampleSet:
    """Training rows for the Trainer: the tokens after the shared prefix, their targets, and (when the
    lower layers are frozen) the hidden states entering the first trainable layer."""

    def __init__(self, encoded: list[tuple[list[int], list[int]]], prefix_len: int):
        import torch

        self.rows = []
        for i, (p, c) in enumerate(encoded):
            ids = p[prefix_len:] + c
            targets = [IGNORE] * len(ids)
            q = len(p) - prefix_len  # position of the first completion token in `ids`
            targets[q - 1: len(ids) - 1] = c  # position t predicts token t+1
            self.rows.append({"input_ids": torch.tensor(ids), "targets": torch.tensor(targets), "index": i,
                              "full_tokens": len(p) + len(c)})
        self.hidden = None  # list of (S_i, H) tensors, set by `SharedPrefix.precompute`

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        row = dict(self.rows[i])
        if self.hidden is not None:
            row["hidden"] = self.hidden[i]
        return row


def collate(pad_id: int):
    def fn(rows: list[dict]) -> dict:
        import torch

        B, S = len(rows), max(len(r["input_ids"]) for r in rows)
        ids = torch.full((B, S), pad_id, dtype=torch.long)
        mask = torch.zeros((B, S), dtype=torch.long)
        targets = torch.full((B, S), IGNORE, dtype=torch.long)
        for b, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[b, :n], mask[b, :n], targets[b, :n] = r["input_ids"], 1, r["targets"]
        batch = {"input_ids": ids, "attention_mask": mask, "targets": targets,
                 "full_tokens": torch.tensor([r["full_tokens"] for r in rows])}
        if "hidden" in rows[0]:
            H = rows[0]["hidden"].shape[-1]
            hidden = rows[0]["hidden"].new_zeros((B, S, H))
            for b, r in enumerate(rows):
                hidden[b, : len(r["input_ids"])] = r["hidden"]
            batch["hidden"] = hidden
        return batch

    return fn


# ---------------------------------------------------------------- the shared-prefix step
def _parts(model):
    """(causal LM, decoder stack, output projection) of a model or a PEFT-wrapped model."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base, base.get_decoder(), base.get_output_embeddings()


def fast_path_problem(model, cfg: TrainConfig, world_size: int = 1) -> str | None:
    """Why the shared-prefix step cannot be used (None when it can)."""
    if not cfg.shared_prefix:
        return "shared_prefix is off"
    if cfg.gradient_checkpointing:
        return "gradient checkpointing drops the KV cache the shared prefix lives in"
    if world_size > 1:
        return "several processes: each step must go through the wrapped model's forward"
    base, dec, _ = _parts(model)
    kind = getattr(base.config, "model_type", "?")
    if kind not in FAST_FAMILIES:
        return f"model type '{kind}' is not one of {', '.join(FAST_FAMILIES)}"
    types = getattr(dec.config, "layer_types", None) or ["full_attention"]
    if any(t != "full_attention" for t in types):
        return "the model has sliding-window or linear-attention layers"
    if not all(hasattr(dec, a) for a in ("layers", "norm", "rotary_emb")):
        return "the decoder does not have the usual layers/norm/rotary_emb"
    return None


def first_trainable_layer(model) -> int:
    """Index of the lowest decoder layer holding trainable weights (0 when the embeddings train)."""
    base, dec, _ = _parts(model)
    if any(p.requires_grad for p in base.get_input_embeddings().parameters()):
        return 0
    for i, layer in enumerate(dec.layers):
        if any(p.requires_grad for p in layer.parameters()):
            return i
    return len(dec.layers)


def _run_layers(dec, hidden, layers: range, position_ids, attention_mask, cache):
    """Decoder layers `layers` on `hidden`, writing their keys/values into `cache` (as the decoder's
    own forward does, minus the embedding and the final norm).

    The names of these internal arguments changed within transformers 5.x (`cache` and `inputs_embeds`
    in 5.2x; `past_key_values`, `input_embeds` and `cache_position` before, e.g. the GPU image's 5.17),
    so they are read from the signatures."""
    import torch
    from transformers.masking_utils import create_causal_mask

    mask_params, layer_params = _signature(create_causal_mask), _signature(type(dec.layers[0]).forward)
    kw = {"config": dec.config, "attention_mask": attention_mask, "position_ids": position_ids}
    kw["inputs_embeds" if "inputs_embeds" in mask_params else "input_embeds"] = hidden
    cache_name = "cache" if "cache" in mask_params else "past_key_values"
    kw[cache_name] = cache
    extra = {}
    if "cache_position" in mask_params:
        past = cache.get_seq_length(layers.start) if cache is not None else 0
        extra["cache_position"] = kw["cache_position"] = torch.arange(past, past + hidden.shape[1], device=hidden.device)
    if "layer_idx" in mask_params:
        kw["layer_idx"] = layers.start
    mask = create_causal_mask(**kw)
    if "cache" not in layer_params and "past_key_values" in layer_params:
        cache_name = "past_key_values"
    if "cache_position" not in layer_params and not any(p.kind == p.VAR_KEYWORD for p in layer_params.values()):
        extra.pop("cache_position", None)
    pos_emb = dec.rotary_emb(hidden, position_ids)
    for i in layers:
        hidden = dec.layers[i](hidden, attention_mask=mask, position_embeddings=pos_emb, position_ids=position_ids,
                               use_cache=True, **{cache_name: cache}, **extra)
        if isinstance(hidden, tuple):  # older decoder layers return (hidden_states, ...)
            hidden = hidden[0]
    return hidden


def _signature(fn) -> dict:
    import inspect

    return dict(inspect.signature(fn).parameters)


class SharedPrefix:
    """The shared-prefix loss (see the module docstring). `start` is the first trainable layer."""

    def __init__(self, model, prefix_ids: list[int], grad: bool = True):
        self.prefix_ids = prefix_ids
        self.grad = grad  # False: the prefix runs through the trainable layers without autograd (an approximation)
        self.start = first_trainable_layer(model)
        self.prefix_hidden = None  # (1, P, H) entering layer `start`, when start > 0

    def precompute(self, model, datasets: list[ExampleSet], batch_size: int, progress: bool) -> None:
        """Hidden states entering layer `start` for the prefix and every row (frozen layers: once)."""
        import torch
        from tqdm.auto import tqdm
        from transformers import DynamicCache

        if self.start == 0:
            return
        base, dec, _ = _parts(model)
        device = next(model.parameters()).device
        lower = range(0, self.start)
        P = len(self.prefix_ids)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                cache = DynamicCache(config=dec.config)
                h = base.get_input_embeddings()(torch.tensor([self.prefix_ids], device=device))
                self.prefix_hidden = _run_layers(dec, h, lower, torch.arange(P, device=device)[None], None, cache)
                kv = [(cache.layers[i].keys, cache.layers[i].values) for i in lower]
                total = sum(len(d) for d in datasets)
                with tqdm(total=total, desc=f"caching layers 0-{self.start - 1}", unit="ex", leave=False,
                          disable=not progress, file=sys.stderr) as bar:
                    for ds in datasets:
                        ds.hidden = [None] * len(ds)
                        order = sorted(range(len(ds)), key=lambda i: len(ds.rows[i]["input_ids"]))
                        for b0 in range(0, len(order), batch_size):
                            idx = order[b0: b0 + batch_size]
                            batch = collate(0)([ds.rows[i] for i in idx])
                            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
                            B, S = ids.shape
                            c = DynamicCache(config=dec.config)
                            for i in lower:
                                c.layers[i].update(kv[i][0].expand(B, -1, -1, -1), kv[i][1].expand(B, -1, -1, -1))
                            full_mask = torch.cat([mask.new_ones((B, P)), mask], 1)
                            pos = (P + torch.arange(S, device=device))[None].expand(B, S)
                            h = _run_layers(dec, base.get_input_embeddings()(ids), lower, pos, full_mask, c)
                            for j, i in enumerate(idx):
                                ds.hidden[i] = h[j, : len(ds.rows[i]["input_ids"])].detach().cpu().clone()
                            bar.update(len(idx))
        finally:
            model.train(was_training)

    def loss(self, model, batch) -> tuple:
        """(sum of token losses, number of target tokens, tokens run through the trainable layers)."""
        import torch
        import torch.nn.functional as F
        from transformers import DynamicCache

        base, dec, head = _parts(model)
        ids, mask, targets = batch["input_ids"], batch["attention_mask"], batch["targets"]
        device = ids.device
        B, S = ids.shape
        P = len(self.prefix_ids)
        top = range(self.start, len(dec.layers))
        cache = DynamicCache(config=dec.config)
        if self.start > 0:
            h = self.prefix_hidden.to(device)
        else:
            h = base.get_input_embeddings()(torch.tensor([self.prefix_ids], device=device))
        with torch.set_grad_enabled(self.grad and torch.is_grad_enabled()):
            _run_layers(dec, h, top, torch.arange(P, device=device)[None], None, cache)
        cache.batch_repeat_interleave(B)
        h = batch["hidden"] if self.start > 0 else base.get_input_embeddings()(ids)
        pos = (P + torch.arange(S, device=device))[None].expand(B, S)
        h = _run_layers(dec, h, top, pos, torch.cat([mask.new_ones((B, P)), mask], 1), cache)
        sel = targets != IGNORE
        logits = head(dec.norm(h[sel])).float()
        return F.cross_entropy(logits, targets[sel], reduction="sum"), int(sel.sum()), P + int(mask.sum())


def plain_loss(model, batch) -> tuple:
    """The same loss on whole sequences through the model's own forward (logits only from the first
    completion position on)."""
    import torch.nn.functional as F

    ids, mask, targets = batch["input_ids"], batch["attention_mask"], batch["targets"]
    sel_cols = (targets != IGNORE).any(0).nonzero()
    first = int(sel_cols.min()) if len(sel_cols) else ids.shape[1] - 1
    keep = ids.shape[1] - first
    out = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, use_cache=False)
    t = targets[:, first:]
    sel = t != IGNORE
    loss = F.cross_entropy(out.logits[sel].float(), t[sel], reduction="sum")
    return loss, int(sel.sum()), int(mask.sum())


# ---------------------------------------------------------------- the Trainer
def _make_trainer_class():
    import torch
    from transformers import Trainer, TrainerCallback

    class SqltuneTrainer(Trainer):
        """Trainer with the shared-prefix loss and evaluation by execution (see the module docstring)."""

        def __init__(self, *args, session: "_Session", **kwargs):
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
            return (loss, None) if return_outputs else loss

        def _get_num_items_in_batch(self, batch_samples, device):
            return sum(int((b["targets"] != IGNORE).sum()) for b in batch_samples)

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

    class MarkComplete(TrainerCallback):
        """Marks a Trainer checkpoint as whole once the Trainer has finished writing it; only then are
        candidates other than the best dropped (a resume from an earlier checkpoint may need them)."""

        def __init__(self, session: "_Session"):
            self.session = session

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if folder.is_dir():
                    (folder / COMPLETE).write_text("")
                self.session.prune_candidates()

    return SqltuneTrainer, MarkComplete


def _last_complete_checkpoint(folder: Path) -> Path | None:
    found = [p for p in folder.glob("checkpoint-*") if (p / COMPLETE).is_file() and p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


# ---------------------------------------------------------------- one training run's state
class _Session:
    """Evaluation, candidates, metrics and counters of one run (shared with the Trainer subclass)."""

    def __init__(self, cfg: TrainConfig, work: Path, builder, tokenizer, valid_items, valid_set, db, device,
                 progress: bool, eval_cfg=None):
        self.cfg, self.work, self.builder, self.tok = cfg, work, builder, tokenizer
        self.eval_cfg = eval_cfg  # evaluate.EvalConfig: the run's evaluation, so a candidate's score is reproducible
        self.valid_items, self.valid_set, self.db, self.device, self.progress = valid_items, valid_set, db, device, progress
        self.metrics_file = work / "metrics.jsonl"
        self.candidates = work / "candidates"
        self.history: list[dict] = []
        self.prefix: SharedPrefix | None = None
        self.tokens_example = self.tokens_computed = 0
        self.eval_seconds = self.save_seconds = 0.0
        self.t0 = time.monotonic()
        self.is_main = int(os.environ.get("RANK", "0")) == 0  # under `accelerate launch` only rank 0 writes files
        self.last_eval_at = time.monotonic()

    # -- bookkeeping across restarts
    def load_history(self, up_to_step: int) -> None:
        """Metrics of evaluations at or before `up_to_step` (the checkpoint resumed from)."""
        from .dataset import read_jsonl, write_jsonl

        rows = read_jsonl(self.metrics_file) if self.metrics_file.is_file() else []
        self.history = [r for r in rows if r["step"] <= up_to_step]
        if self.is_main:
            write_jsonl(self.metrics_file, self.history)
        self.prune_candidates()

    def best(self) -> dict | None:
        if not self.history:
            return None
        return max(self.history, key=lambda r: (r["exact"], -(r["valid_loss"] if r["valid_loss"] is not None else math.inf),
                                                -r["step"]))

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
        `report`: an existing score report of this very model on these items (skips generating)."""
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
        if self.is_main:
            if line["best"]:
                self._save_candidate(model, step, line, report)
            with open(self.metrics_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
        self.eval_seconds += time.monotonic() - t
        self.last_eval_at = time.monotonic()
        mark = "new best" if line["best"] else f"best stays step {prev['step'] if prev else '-'}"
        _echo(f"step {step} (epoch {float(epoch):.2f}): exact {s['exact']:.1%}, executed {s['execution_rate']:.1%}, "
              f"fuzzy {s['fuzzy']:.1%}, valid loss {_fmt(line['valid_loss'])}, train loss {_fmt(train_loss)} [{mark}]")
        return line

    def _save_candidate(self, model, step: int, line: dict, report: dict) -> None:
        dest = self.candidates / f"step-{step}"
        tmp = self.candidates / f".step-{step}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp, safe_serialization=True)
        (tmp / "valid_report.json").write_text(json.dumps(report, default=str))
        (tmp / "metrics.json").write_text(json.dumps(line))
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _echo(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- model set-up
def _device_and_dtype(cfg: TrainConfig):
    from .model import pick_device

    dev = pick_device(cfg.device, cfg.dtype)
    if cfg.method == "full" and cfg.dtype in (None, "auto") and dev.dtype != "float32":
        dev = type(dev)(dev.device, "float32", dev.device == "cuda" or dev.autocast)  # fp32 master weights + bf16 autocast
    return dev


def _load_for_training(cfg: TrainConfig, dev):
    """(model, tokenizer, location) with the method applied (adapters added / layers unfrozen)."""
    import importlib.util

    import torch
    from transformers import set_seed

    from .model import load

    set_seed(cfg.seed)
    if dev.device.startswith("cuda"):
        # cuDNN's SDPA backward gives non-finite gradients when a packed row ends in padding under a
        # custom mask (measured on H100, torch 2.11: BENCHMARKS.md, "GPU"); flash/mem-efficient/math are fine.
        torch.backends.cuda.enable_cudnn_sdp(False)
    if cfg.method == "qlora":
        if not dev.device.startswith("cuda"):
            raise SqltuneError("qlora trains 4-bit weights through bitsandbytes, which needs CUDA; use --method lora here")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise SqltuneError("qlora needs bitsandbytes (pip install bitsandbytes); or use --method lora")
    model, tok, location = load(cfg.model, dev, quantize="nf4" if cfg.method == "qlora" else None)[:3]
    n_layers = model.config.get_text_config().num_hidden_layers
    layers = cfg.layers_to_transform
    if cfg.top_layers is not None:
        if cfg.top_layers > n_layers:
            raise SqltuneError(f"top_layers={cfg.top_layers} but the model has {n_layers} layers")
        layers = list(range(n_layers - cfg.top_layers, n_layers))
    if layers is not None and any(not 0 <= i < n_layers for i in layers):
        raise SqltuneError(f"layers_to_transform {layers} out of range: the model has {n_layers} layers (0-{n_layers - 1})")
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.method == "full":
        _, dec, _ = _parts(model)
        if layers is None:
            model.requires_grad_(True)
        else:
            model.requires_grad_(False)
            for i in layers:
                dec.layers[i].requires_grad_(True)
    else:
        from peft import LoraConfig, get_peft_model

        if cfg.method == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
        lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, bias="none",
                          target_modules=list(cfg.target_modules), layers_to_transform=layers,
                          use_dora=cfg.method == "dora", task_type="CAUSAL_LM")
        try:
            model = get_peft_model(model, lora)
        except ValueError as e:
            raise SqltuneError(f"could not add {cfg.method} adapters: {str(e).splitlines()[0]}") from None
        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()
    model.train()
    return model, tok, location, layers, n_layers


def _resolved(cfg: TrainConfig, layers, n_layers) -> dict:
    d = cfg.to_dict()
    d["layers_to_transform"] = layers
    d["num_layers"] = n_layers
    return d


# ---------------------------------------------------------------- train
def as_train_config(config) -> TrainConfig:
    """A TrainConfig from a TrainConfig, a Recipe (`recipe.Recipe`) or a dict of TrainConfig keys."""
    if isinstance(config, TrainConfig):
        return config
    if hasattr(config, "train_config"):
        return config.train_config()
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    raise TypeError(f"expected a TrainConfig or a Recipe, got {type(config).__name__}")


def train(config, train_items: list[dict], valid_items: list[dict], db, out_dir, resume: bool = False,
          force: bool = False, progress: bool = True, recipe_yaml: str | None = None,
          baseline: dict | None = None) -> TrainResult:
    """Fine-tune `config.model` on `train_items`, choose the checkpoint by execution on `valid_items`.

    `config`: a TrainConfig or a Recipe. The output goes to `out_dir` (written atomically); the
    working state (Trainer checkpoints, candidates) lives in `OUT.work` until the run ends, so an
    interrupted run continues with `resume=True` and ends with the same checkpoint. `force` starts
    over, deleting both. `baseline`: the untuned model's `score_pairs` report on exactly
    `valid_items` (e.g. from the run's base evaluation), used as step 0 instead of generating again.
    """
    from transformers import TrainingArguments

    from .db import resolve_db
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
    out = Path(out_dir)
    work = out.with_name(out.name + ".work")
    if force:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    if out.exists():
        if resume and is_complete(out):
            return _result_from_folder(out)
        raise SqltuneError(f"{out} already exists; choose another --out, or pass --force to overwrite it")
    if work.exists() and not resume:
        raise SqltuneError(f"{work} holds an interrupted run; pass --resume to continue it or --force to start over")

    t_start = time.monotonic()
    db = resolve_db(db)
    dev = _device_and_dtype(cfg)
    model, tok, location, layers, n_layers = _load_for_training(cfg, dev)
    builder = PromptBuilder(schema_text(db, cfg.notes), cfg.prompt_style)
    builder.prompt(tok, "?")  # a style the tokenizer cannot render fails now
    resolved = _resolved(cfg, layers, n_layers)
    fingerprint = {"train": {"n": len(train_items), "sha256": items_sha256(train_items)},
                   "valid": {"n": len(valid_items), "sha256": items_sha256(valid_items)}}
    state = {"config": resolved, "data": fingerprint, "prompt_sha256": builder.fingerprint(tok)["sha256"]}
    work.mkdir(parents=True, exist_ok=True)
    _check_same_run(work, state)

    # data
    from .generate import _shared_prefix_len

    enc_train = encode_examples(builder, tok, train_items)
    enc_valid = encode_examples(builder, tok, valid_items)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    problem = fast_path_problem(model, cfg, world)
    P = _shared_prefix_len([p for p, _ in enc_train + enc_valid]) if problem is None else 0
    train_set, valid_set = ExampleSet(enc_train, P), ExampleSet(enc_valid, P)
    from .evaluate import EvalConfig

    eval_cfg = EvalConfig.from_train_config(cfg, dev, fewshot_pool=train_items, progress=progress).validate()
    session = _Session(cfg, work, builder, tok, valid_items, valid_set, db, dev, progress, eval_cfg)
    t_pre = time.monotonic()
    if P:
        session.prefix = SharedPrefix(model, enc_train[0][0][:P], grad=cfg.prefix_grad)
        session.prefix.precompute(model, [train_set, valid_set], cfg.batch_size, progress)
    precompute_seconds = time.monotonic() - t_pre
    _echo(f"training {cfg.method} on {len(train_items)} examples; "
          + (f"shared prefix of {P} tokens, layers {session.prefix.start}-{n_layers - 1} trainable"
             if P else f"whole sequences ({problem})"))

    # resume point
    trainer_dir = work / "trainer"
    ckpt = _last_complete_checkpoint(trainer_dir) if resume else None
    if ckpt is not None:
        session.load_history(int(ckpt.name.split("-")[-1]))
        _echo(f"resuming from {ckpt.name}")
    else:
        session.load_history(-1)
        shutil.rmtree(trainer_dir, ignore_errors=True)
    if not any(r["step"] == 0 for r in session.history):
        session.evaluate(model, 0, 0.0, None, _check_baseline(baseline, valid_items))  # "no training" is a candidate

    SqltuneTrainer, MarkComplete = _make_trainer_class()
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
    )
    trainer = SqltuneTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=valid_set,
                             data_collator=collate(tok.pad_token_id), callbacks=[MarkComplete(session)], session=session)
    t_train, eval_before = time.monotonic(), session.eval_seconds
    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    train_wall = time.monotonic() - t_train
    step_seconds = max(1e-9, train_wall - (session.eval_seconds - eval_before) - session.save_seconds)
    if trainer.state.global_step > max(r["step"] for r in session.history):
        session.evaluate(model, trainer.state.global_step, trainer.state.epoch or cfg.epochs, trainer._last_train_loss())

    # the output folder
    best = session.best()
    cand = session.candidates / f"step-{best['step']}"
    info = {
        "base_model": cfg.model, "base_model_location": location, "method": cfg.method,
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

    if not session.is_main:
        return TrainResult(out, best["step"], best["epoch"], best, session.history, info)
    write_checkpoint(out, write, info, {"metrics.jsonl": metrics_text, "recipe.yaml": recipe_text})
    if not cfg.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    if best["step"] == 0:
        _echo("training did not beat the untuned model on valid: the output is the untuned model (step 0)")
    _echo(f"wrote {out} (step {best['step']}, exact {best['exact']:.1%})")
    return TrainResult(out, best["step"], best["epoch"], best, session.history, info)


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
        f.write_text(json.dumps(state, indent=2))


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
