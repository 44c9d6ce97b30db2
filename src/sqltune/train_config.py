"""Fine-tuning settings: `TrainConfig` (every knob of a run; a recipe's sections map here) and
`TrainResult` (what `train.train` returns)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .errors import SqltuneError
from .model import DEFAULT_MODEL

METHODS = ("lora", "dora", "full", "qlora")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CHECKPOINT_RULES = ("noise", "last")  # `train.choose` and `rl.choose` (synth.RULES: what each name does)


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
    early_stopping_patience: int | None = None  # evaluations after the one the rule (`choose`) keeps before stopping
    # the checkpoint rule of `sqltune run` and `sqltune train` (`synth.checkpoint_rule`): noise (a trained checkpoint
    # must beat the untuned model on valid by more than the noise of that many questions) or last (the latest one
    # whose valid exact is not below the untuned model's by more than that noise). BENCHMARKS.md, "Session 25".
    choose: str = "noise"
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
        if not self.eval_timeout > 0:  # else every query fails, after the model load and a stage's decoding
            bad(f"eval_timeout must be a positive number of seconds, got {self.eval_timeout}")
        if not self.warmup >= 0:  # else the Trainer refuses it, after the base model was scored
            bad(f"warmup must be >= 0 (a fraction of the steps or a number of steps), got {self.warmup}")
        if not 0 <= self.dropout < 1:
            bad(f"dropout must be in [0, 1), got {self.dropout}")
        if self.epochs <= 0 and self.max_steps <= 0:
            bad("give epochs > 0 or max_steps > 0")
        if self.eval_every < 0:
            bad("eval_every must be 0 (every epoch) or a number of steps")
        if self.choose not in CHECKPOINT_RULES:
            bad(f"choose must be {' or '.join(CHECKPOINT_RULES)}, got {self.choose!r}")
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


def as_train_config(config) -> TrainConfig:
    """A TrainConfig from a TrainConfig, a Recipe (`recipe.Recipe`) or a dict of TrainConfig keys."""
    if isinstance(config, TrainConfig):
        return config
    if hasattr(config, "train_config"):
        return config.train_config()
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    raise TypeError(f"expected a TrainConfig or a Recipe, got {type(config).__name__}")
