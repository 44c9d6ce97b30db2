"""Stage: execution-reward reinforcement learning (GRPO) after supervised tuning.

`train_grpo(config, train_items, valid_items, db, out_dir, init_adapter=...)` continues a trained
checkpoint (the SFT adapter) with trl's `GRPOTrainer`: for each training question it samples a group
of `num_generations` completions, runs every one through sqltune's own executor (read-only, one
statement, timeout, row cap) and scorer, and rewards it by its result:

- the gold result (`score.compare`: exact, or the same columns in another order) -> `reward_exact`
- the gold columns plus extra ones (the scorer's `fuzzy`)                        -> `reward_fuzzy`
- SQL that executes and returns something else                                   -> `reward_executes`
- an error, a timeout, a rejected statement (a write, ATTACH, two statements)     -> `reward_error`
- no SQL at all                                                                   -> `reward_no_sql`

Column names never matter (results compare by value). The weights live in the recipe's `rl:` section.
Rewards are computed by `execute.execute`, whose queries run in its own worker processes with a
timeout that holds even inside one long function call (a slow query cannot stall the trainer), from
`workers` threads at once; each item's gold result is run once and cached.

The prompts come from the ONE prompt builder (`PromptBuilder.prompt`, the text inference sees, the
same template the SFT checkpoint was trained with: checked against its fingerprint). LoRA/DoRA: the
SFT adapter itself keeps training (trl copies it into a frozen `ref` adapter for the KL term); with no
`init_adapter` a fresh adapter is added to the base model. The checkpoint is chosen by valid exact
over the evaluations every `eval_every` steps, with step 0 (the starting model itself) a candidate,
and written like an SFT one (`checkpoint.write_checkpoint`): it loads through `checkpoint.load_trained`.
`metrics.jsonl` holds one line per optimiser step (mean reward, reward components, fraction of
groups with a correct sample and with every sample correct, trl's `frac_reward_zero_std` (groups
whose rewards are all equal: no gradient), KL, GRPO loss) and one per evaluation (valid exact, ...).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .errors import DatasetError, SqltuneError
from .execute import execute
from .score import compare

OUTCOMES = ("exact", "fuzzy", "executed", "error", "no_sql")


@dataclass
class RLConfig:
    """The recipe's `rl:` section. Model, LoRA shape, prompt and eval settings come from the rest of the recipe."""

    enabled: bool = False  # `sqltune run`: run GRPO after the supervised stage
    steps: int = 30  # optimiser steps (the devsuite sweep of session 6, BENCHMARKS.md "GRPO on the devsuite")
    num_generations: int = 8  # completions sampled per question (the group)
    prompts_per_step: int = 8  # questions per optimiser step
    micro_batch: int = 16  # completions per forward/backward pass (at most; divides prompts_per_step * num_generations)
    lr: float = 5e-5  # LoRA: the SFT recipes use 5e-4; GRPO steps are noisier
    beta: float = 0.02  # KL coefficient against the starting model (0: no reference, no KL)
    temperature: float = 1.0
    top_p: float = 1.0
    max_completion_length: int = 160  # tokens per sampled completion
    eval_every: int = 10  # evaluate on valid every N steps (and at the end)
    choose: str = "last"  # `sqltune run`'s checkpoint rule: last (the latest step without a loss beyond valid's noise)
    #                       | noise (a gain beyond valid's noise, as SFT). `last` since session 6: on the devsuite's 12
    #                       DBs `noise` kept the start model everywhere, `last` gained +9.2 test points (BENCHMARKS.md)
    probe: int = 8  # before training, sample this many completions per training question; keep the questions whose
    #                 rewards differ (the others give GRPO no gradient); none left: no GRPO steps. 0: no probe
    probe_max: int | None = None  # probe at most this many training questions (a seeded random subset); None:
    #                 4 x steps x prompts_per_step (960), four times what the steps can use: a guard for thousands of
    #                 synthetic pairs that binds on no measured run (devsuite 43-186 questions, exoplanets 738, whose
    #                 probe took 9 of its 16 GRPO minutes on a shared H200; 480 would halve that, unmeasured); 0: all
    reward_exact: float = 1.0  # the gold result (any column names, any column order)
    reward_fuzzy: float = 0.5  # the gold columns plus extra ones
    reward_executes: float = 0.1  # executes, another result
    reward_error: float = -0.2  # error, timeout, rejected (writes, several statements)
    reward_no_sql: float = -0.5  # nothing that looks like SQL
    timeout: float = 2.0  # seconds per query (gold and sampled)
    max_rows: int = 10_000
    workers: int = 4  # queries graded at once (threads over the executor's worker processes; at most the CPU count)
    gradient_checkpointing: bool = False  # trl's default is on: less memory, ~30 % slower steps
    join_floor: float = 0.0  # the least share of GRPO's prompt rows whose gold SQL joins tables: the kept join
    #                 questions are repeated up to it (`join_rows`). 0: off. Session 14: sets with 5-18 % joins, and
    #                 GRPO taught singer to drop its joins (87.5 -> 68.8 %); session 15: the probe already keeps
    #                 21-56 % joins, and 0.3 changed 2 of 152 test answers on 7 DBs (BENCHMARKS.md), so it stays off
    average: float = 1.0  # the written checkpoint's adapter weights: this share of the chosen step's plus the rest of
    #                 the start model's (step 0; `average_adapters`), weight averaging of the RL model with the one it
    #                 started from (Lin et al. 2024, "Mitigating the Alignment Tax of RLHF": averaging forgot less for
    #                 the reward kept than early stopping or a KL term). 1: the chosen step as it is. LoRA/DoRA only.
    #                 Session 16: GRPO broke answers the SFT model had right (flight_2 95.0 -> 85.0 % test). Session
    #                 17, 0.5 on 5 devsuite DBs: same answers on 4, -2 net on network_1 (BENCHMARKS.md), so 1 (off)
    runs: int = 1  # GRPO runs from the same start model, seeds `seed`, `seed + 1`, ...; with 2 or more the written
    #                 checkpoint is their soup: the mean of the runs' weight changes, exactly (`soup_adapters`; each
    #                 run's chosen step is kept inside it as `run-1`, `run-2`, ...; `sqltune run` scores them too).
    #                 Session 17 measured two runs of one recipe 5.4 points apart (pooled, 5 DBs): averaging
    #                 independent RL runs is how WARP (Rame et al. 2024) cuts that spread. LoRA only; N x GRPO time
    seed: int = 42

    def validate(self) -> "RLConfig":
        def bad(msg):
            raise SqltuneError(f"rl config: {msg}")

        for name in ("steps", "prompts_per_step", "micro_batch", "max_completion_length", "workers", "runs"):
            if getattr(self, name) < 1:
                bad(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.num_generations < 2:
            bad(f"num_generations must be at least 2 (GRPO compares samples within a group), got {self.num_generations}")
        if (self.prompts_per_step * self.num_generations) % self.micro():
            bad(f"micro_batch ({self.micro_batch}) must divide prompts_per_step * num_generations "
                f"({self.prompts_per_step * self.num_generations})")
        if not self.lr > 0:
            bad(f"lr must be positive, got {self.lr}")
        if self.beta < 0:
            bad(f"beta must be >= 0, got {self.beta}")
        if not self.temperature > 0:
            bad(f"temperature must be positive, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            bad(f"top_p must be in (0, 1], got {self.top_p}")
        if self.probe < 0 or self.probe == 1:
            bad(f"probe must be 0 (off) or at least 2 samples, got {self.probe}")
        if self.probe_max is not None and self.probe_max < 0:
            bad(f"probe_max must be >= 0 (0: every question) or null (4 x steps x prompts_per_step), "
                f"got {self.probe_max}")
        from .train_config import CHECKPOINT_RULES

        if self.choose not in CHECKPOINT_RULES:
            bad(f"choose must be {' or '.join(CHECKPOINT_RULES)}, got {self.choose!r}")
        if self.eval_every < 0:
            bad("eval_every must be >= 0 (0: only at the end)")
        if not self.timeout > 0:
            bad(f"timeout must be positive, got {self.timeout}")
        if not 0 <= self.join_floor < 1:
            bad(f"join_floor must be in [0, 1), got {self.join_floor}")
        if not 0 < self.average <= 1:
            bad(f"average must be in (0, 1] (1: the chosen step as it is), got {self.average}")
        if self.runs > 1 and self.average < 1:
            bad("runs > 1 (a soup of GRPO runs) and average < 1 (a GRPO step averaged with its start) do not combine; "
                "set one of them")
        if not self.reward_exact > max(self.reward_fuzzy, self.reward_executes, self.reward_error, self.reward_no_sql):
            bad("reward_exact must be the largest reward")
        return self

    def probe_cap(self) -> int | None:
        """How many training questions the probe samples at most (None: all)."""
        if self.probe_max is None:
            return 4 * self.steps * self.prompts_per_step
        return self.probe_max or None

    def micro(self) -> int:
        """Completions per forward/backward pass: `micro_batch`, at most one step's worth."""
        return min(self.micro_batch, self.prompts_per_step * self.num_generations)

    def weights(self) -> dict:
        return {"exact": self.reward_exact, "fuzzy": self.reward_fuzzy, "executed": self.reward_executes,
                "error": self.reward_error, "no_sql": self.reward_no_sql}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RLConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SqltuneError(f"rl config: unknown key(s) {', '.join(unknown)}")
        return cls(**d)


# ---------------------------------------------------------------- the reward
def grade(db, gold, gold_sql: str, pred_sql: str | None, timeout: float, max_rows: int) -> tuple[str, str | None]:
    """(outcome, error kind) of one prediction against `gold` (the Result of `gold_sql`); outcome in OUTCOMES."""
    if pred_sql is None or not pred_sql.strip():
        return "no_sql", None
    pred = execute(db, pred_sql, timeout, max_rows)
    if not pred.ok:
        return "error", pred.error_kind
    verdict = compare(gold, pred, gold_sql)
    if verdict["exact"]:
        return "exact", None
    if verdict["fuzzy"]:
        same_width = len(pred.columns) == len(gold.columns)
        return ("exact" if same_width else "fuzzy"), None  # same columns in another order: the same result
    return "executed", None


class ExecutionReward:
    """A GRPO reward function: `reward(completions=..., item=[index into items], ...)` -> floats.

    Each completion's SQL is extracted (`extract.extract_sql`) and run by `execute.execute` (its own
    worker processes: the timeout holds even inside one long function call, so no query can stall the
    trainer for more than its timeout plus the executor's grace) from `workers` threads at once, then
    compared with the item's gold result, run once per item and cached. `close()` stops the threads.
    """

    __name__ = "execution"

    def __init__(self, db, items: list[dict], cfg: RLConfig | None = None):
        self.db = str(Path(db).resolve())
        self.items = items
        self.cfg = (cfg or RLConfig()).validate()
        self.weights = self.cfg.weights()
        self.n_workers = max(1, min(self.cfg.workers, os.cpu_count() or 1))
        self._gold: dict[int, object] = {}  # item index -> Result of its gold query
        self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _map(self, fn, args: list) -> list:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.n_workers, thread_name_prefix="sqltune-reward")
        return list(self._pool.map(fn, args))

    # -- grading
    def gold(self, i: int):
        """The gold Result of item `i` (run once, then cached)."""
        if i not in self._gold:
            self._gold[i] = execute(self.db, self.items[i]["sql"], self.cfg.timeout, self.cfg.max_rows)
        return self._gold[i]

    def check_gold(self) -> None:
        """Run every gold query once (filling the cache); a failing one is a DatasetError."""
        for i, res in enumerate(self._map(self.gold, list(range(len(self.items))))):
            if not res.ok:
                raise DatasetError(f"gold query {self.items[i].get('id', i)} fails ({res.error_kind}): {res.error}; "
                                   "the reward needs its result")

    def _grade_one(self, task: tuple[int, str | None]) -> tuple[str, str | None]:
        i, sql = task
        if sql is None or not sql.strip():
            return "no_sql", None
        gold = self.gold(i)
        if not gold.ok:
            return "gold_error", gold.error_kind
        return grade(self.db, gold, self.items[i]["sql"], sql, self.cfg.timeout, self.cfg.max_rows)

    def grade(self, completions: list[str], indices: list[int]) -> list[tuple[str, str | None]]:
        from .extract import extract_sql

        return self.grade_sql([extract_sql(_text(c)) for c in completions], indices)

    def grade_sql(self, sqls: list[str | None], indices: list[int]) -> list[tuple[str, str | None]]:
        """Grade SQL already taken out of the model's text (None: no SQL) against items `indices`."""
        return self._map(self._grade_one, list(zip(indices, sqls)))

    def rewards(self, outcomes: list[tuple[str, str | None]]) -> list[float]:
        return [self.weights[o if o in self.weights else "error"] for o, _ in outcomes]

    def __call__(self, prompts=None, completions=None, item=None, log_metric=None, **kwargs) -> list[float]:
        outcomes = self.grade(completions, [int(i) for i in item])
        rewards = self.rewards(outcomes)
        if log_metric is not None:
            for name, value in components(outcomes, self.cfg.num_generations).items():
                log_metric(f"rl/{name}", value)
        return rewards


def components(outcomes: list[tuple[str, str | None]], group: int) -> dict:
    """Fractions of each outcome, of timeouts, of groups (consecutive runs of `group`) with a correct sample,
    and of groups where every sample is correct (too easy: no gradient; trl's own `frac_reward_zero_std`,
    logged beside these, counts every group whose rewards are all equal)."""
    n = len(outcomes)
    out = {o: sum(1 for x, _ in outcomes if x == o) / n for o in OUTCOMES} if n else {}
    out["timeout"] = sum(1 for _, k in outcomes if k == "timeout") / n if n else 0.0
    groups = [outcomes[j:j + group] for j in range(0, n, group)]
    out["any_correct"] = sum(any(x == "exact" for x, _ in g) for g in groups) / len(groups) if groups else 0.0
    out["all_correct"] = sum(all(x == "exact" for x, _ in g) for g in groups) / len(groups) if groups else 0.0
    return out


def _text(completion) -> str:
    """A completion as text (trl passes strings, or message lists for conversational prompts)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def probe(model, tokenizer, builder, reward: "ExecutionReward", rl: RLConfig, *, batch_size: int = 64,
          autocast: bool = False, progress: bool = False) -> tuple[list[int], dict]:
    """Which training questions can move the policy: sample `rl.probe` completions per question with the
    start model (`vote.sample_sql`, one prefill per question: candidate 0 greedy, the rest sampled at the
    GRPO temperature / top-p), grade them as the reward does, and keep the questions whose rewards are not
    all equal. A group whose samples all earn the same reward has zero advantage in GRPO: sampling it
    is spent compute (DAPO's "dynamic sampling" drops such groups during training; this drops them
    once, before). With more questions than `rl.probe_cap()` only a seeded random subset of that many is
    probed (the steps could not use more). Returns (indices into `reward.items` to keep, counts)."""
    from .pairs import shape_counts
    from .vote import sample_sql

    idx = list(range(len(reward.items)))
    cap = rl.probe_cap()
    if cap is not None and len(idx) > cap:  # more questions than the steps can use: a seeded random subset
        idx = sorted(random.Random(rl.seed).sample(idx, cap))
    items = [reward.items[i] for i in idx]
    cands = sample_sql(model, tokenizer, builder, [it["question"] for it in items], rl.probe,
                       temperature=rl.temperature, top_p=rl.top_p, max_new_tokens=rl.max_completion_length,
                       batch_size=batch_size, seed=rl.seed, progress=progress, autocast=autocast)
    keep, counts = [], {"questions": len(items), "samples": rl.probe, "informative": 0, "all_exact": 0,
                        "none_exact": 0, "of": len(reward.items)}
    graded = reward.grade_sql([c.sql for cs in cands for c in cs], [i for i, cs in enumerate(cands) for _ in cs])
    at = 0
    for i, cs in enumerate(cands):  # every sample graded at once above (the reward's threads); per question here
        outcomes, at = graded[at: at + len(cs)], at + len(cs)
        rewards = reward.rewards(outcomes)
        exact = sum(o == "exact" for o, _ in outcomes)
        counts["all_exact"] += exact == len(cs)
        counts["none_exact"] += exact == 0
        if len(set(rewards)) > 1:
            keep.append(idx[i])
    counts["informative"] = len(keep)
    # what GRPO will train on, by the gold query's shape (session 14: a set with 8 % joins taught singer to drop them)
    counts["shapes"] = shape_counts([reward.items[i] for i in keep])
    return keep, counts


def join_rows(rows: list[int], items: list[dict], floor: float) -> tuple[list[int], int]:
    """`rows` (indices into `items`) with the rows whose gold SQL is a join (`pairs.sql_shape`) repeated, the
    fewest whole times that makes them at least `floor` of the result; the others once each, order kept (the
    sampler shuffles). Returns (rows, times each join row now appears: 1 when nothing changed). No joins, no
    other rows, or a share already at the floor: `rows` as they are."""
    from .pairs import sql_shape

    joins = [r for r in rows if sql_shape(items[r]["sql"]) == "join"]
    rest = len(rows) - len(joins)
    if not floor or not joins or not rest or len(joins) >= floor * len(rows):
        return list(rows), 1
    times = max(2, math.ceil(floor * rest / ((1 - floor) * len(joins))))
    while times > 2 and (times - 1) * len(joins) >= floor * ((times - 1) * len(joins) + rest):
        times -= 1  # the float division above may round one too high (or, below, one too low)
    while times * len(joins) < floor * (times * len(joins) + rest):
        times += 1
    join_set = set(joins)
    return [x for r in rows for x in ([r] * times if r in join_set else [r])], times


# ---------------------------------------------------------------- training
ADAPTER_WEIGHTS = "adapter_model.safetensors"
UNAVERAGED = "unaveraged"  # with `rl.average` < 1: the chosen step before averaging, a checkpoint inside the output


def average_adapters(start: str | os.PathLike, end: str | os.PathLike, weight: float, out: str | os.PathLike) -> Path:
    """`out` = a copy of the adapter folder `end` whose tensors are `weight * end + (1 - weight) * start`.

    `start` and `end` are two states of ONE adapter (GRPO continues the start model's adapter, or a new one whose B
    is zero), so every tensor has a partner of the same shape; anything else is refused with a clear error. The
    average is taken in float32 and stored in `end`'s dtype. (peft's `add_weighted_adapter` mixes different adapters
    instead: `linear` scales A and B by sqrt(weight) each, which is not this average, and `cat` doubles the rank.)
    """
    import torch
    from safetensors.torch import load_file, save_file

    start, end, out = Path(start), Path(end), Path(out)
    if os.path.lexists(out):  # never over a folder: it may not be sqltune's
        raise SqltuneError(f"rl.average: {out} already exists; name a new folder")
    for d in (start, end):
        if not (d / ADAPTER_WEIGHTS).is_file():
            raise SqltuneError(f"rl.average needs LoRA/DoRA adapter weights: no {ADAPTER_WEIGHTS} in {d}")
    a, b = load_file(str(start / ADAPTER_WEIGHTS)), load_file(str(end / ADAPTER_WEIGHTS))
    if set(a) != set(b):
        raise SqltuneError(f"rl.average: {start} and {end} are not states of one adapter "
                           f"(tensors only in one: {sorted(set(a) ^ set(b))[:3]})")
    mixed = {}
    for k, t in b.items():
        if a[k].shape != t.shape:
            raise SqltuneError(f"rl.average: {k} has shape {tuple(a[k].shape)} in {start}, {tuple(t.shape)} in {end}")
        mixed[k] = (weight * t.to(torch.float32) + (1 - weight) * a[k].to(torch.float32)).to(t.dtype).contiguous()
    from .files import atomic_path

    with atomic_path(out, folder=True) as tmp:  # a failure leaves no half-written adapter at `out`
        shutil.copytree(end, tmp, dirs_exist_ok=True)
        save_file(mixed, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    return out


RUN_PREFIX = "run-"  # with `rl.runs` > 1: each GRPO run's chosen step, a checkpoint inside the soup (`run-1`, ...)


def soup_adapters(parts: list, out: str | os.PathLike) -> Path:
    """`out` = a copy of the LoRA adapter folder `parts[0]` whose weight change is the mean of the `parts`' changes.

    The mean of LoRA products is a LoRA of the summed rank, exactly: mean_i(s * B_i A_i) = s * [B_1/n ... B_n/n]
    [A_1; ...; A_n], so the A matrices are stacked, the B matrices put side by side and scaled by 1/n, the rank
    becomes n * r and `lora_alpha` is scaled so that the scale s (alpha / r, or alpha / sqrt(r) with rsLoRA) stays.
    Averaging A and B separately would not be this mean when the runs' A differ (a new adapter per run), and peft's
    `add_weighted_adapter(combination_type="cat")` builds the same stack but inside a loaded model. Other tensors
    (none in sqltune's adapters) are averaged. DoRA, rank/alpha patterns or adapters of different shapes are
    refused with a clear error.
    """
    import torch
    from safetensors.torch import load_file, save_file

    parts, out = [Path(p) for p in parts], Path(out)
    if len(parts) < 2:
        raise SqltuneError("rl.runs: a soup needs at least two runs")
    if os.path.lexists(out):
        raise SqltuneError(f"rl.runs: {out} already exists; name a new folder")
    configs = []
    for d in parts:
        if not (d / ADAPTER_WEIGHTS).is_file() or not (d / "adapter_config.json").is_file():
            raise SqltuneError(f"rl.runs needs LoRA adapter weights: no {ADAPTER_WEIGHTS} in {d}")
        configs.append(json.loads((d / "adapter_config.json").read_text(encoding="utf-8")))
    cfg = configs[0]
    if cfg.get("use_dora") or cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise SqltuneError("rl.runs: a soup of DoRA adapters, or of adapters with per-layer ranks, is not supported; "
                           "use lora")
    shape_keys = ("r", "lora_alpha", "use_rslora", "target_modules", "layers_to_transform")
    for d, c in zip(parts[1:], configs[1:]):
        differ = [k for k in shape_keys if c.get(k) != cfg.get(k)]
        if differ:
            raise SqltuneError(f"rl.runs: {parts[0]} and {d} are adapters of different shapes ({', '.join(differ)})")
    tensors = [load_file(str(d / ADAPTER_WEIGHTS)) for d in parts]
    for d, t in zip(parts[1:], tensors[1:]):
        if set(t) != set(tensors[0]):
            raise SqltuneError(f"rl.runs: {parts[0]} and {d} hold different tensors "
                               f"({sorted(set(t) ^ set(tensors[0]))[:3]})")
    n = len(parts)
    mixed = {}
    for k, first in tensors[0].items():
        group = [t[k].to(torch.float32) for t in tensors]
        if any(g.shape != group[0].shape for g in group):
            raise SqltuneError(f"rl.runs: {k} has different shapes in the runs")
        if "lora_A" in k or "lora_embedding_A" in k:  # (r, in): stacked along the rank
            m = torch.cat(group, dim=0)
        elif "lora_B" in k or "lora_embedding_B" in k:  # (out, r): side by side, each 1/n
            m = torch.cat([g / n for g in group], dim=1)
        elif "lora_magnitude" in k:
            raise SqltuneError("rl.runs: a soup of DoRA adapters is not supported; use lora")
        else:
            m = sum(group) / n
        mixed[k] = m.to(first.dtype).contiguous()
    r = int(cfg["r"])
    alpha = float(cfg.get("lora_alpha", r))
    new_cfg = dict(cfg, r=n * r, lora_alpha=alpha * (math.sqrt(n) if cfg.get("use_rslora") else n))
    from .files import atomic_path

    with atomic_path(out, folder=True) as tmp:  # a failure leaves no half-written adapter at `out`
        shutil.copytree(parts[0], tmp, dirs_exist_ok=True)
        save_file(mixed, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        (tmp / "adapter_config.json").write_text(json.dumps(new_cfg, indent=2), encoding="utf-8")
    return out


def inner_checkpoints(rl_dir: str | os.PathLike) -> list[tuple[str, Path]]:
    """The finished checkpoints a GRPO output keeps inside it, to be scored beside it: [("unaveraged", path)]
    with `rl.average` < 1, [("run1", path), ("run2", path), ...] with `rl.runs` > 1, else []."""
    from .checkpoint import is_complete

    d = Path(rl_dir)
    found = [("unaveraged", d / UNAVERAGED)] if is_complete(d / UNAVERAGED) else []
    runs = sorted((p for p in d.glob(RUN_PREFIX + "*") if p.name[len(RUN_PREFIX):].isdigit() and is_complete(p)),
                  key=lambda p: int(p.name[len(RUN_PREFIX):]))
    return found + [(p.name.replace("-", ""), p) for p in runs]


def _echo(msg: str) -> None:
    """One line on stderr, above GRPO's Trainer bar, which may be open (the 'grpo step N: valid exact' lines)."""
    from .console import line_above_bars

    line_above_bars(msg)


def cpu_warning(device: str, n_params: int, rl: RLConfig) -> str | None:
    """A warning for GRPO with a real model on the CPU (None otherwise): measured on the 2-core, 24 GiB dev CPU,
    one step of the 0.5B at 8 questions x 8 samples ran 13 minutes and was killed for memory; at 2 x 4 a step
    took 130 s, peak RSS 15.5 GB (BENCHMARKS.md, "GRPO on the devsuite"). The tiny test models stay quiet:
    on them the CPU run is the smoke test."""
    if device != "cpu" or n_params < 50_000_000:
        return None
    return (f"warning: GRPO on the CPU with a {n_params / 1e9:.1f}B-parameter model samples "
            f"{rl.prompts_per_step * rl.num_generations} completions a step; on a 2-core CPU with 24 GiB one step of "
            f"the 0.5B at 8 x 8 ran 13 minutes and ran out of memory, at 2 x 4 it took 130 s and 15.5 GB. Use a CUDA "
            f"GPU, or lower rl.prompts_per_step, rl.num_generations and rl.micro_batch (BENCHMARKS.md, "
            f"\"GRPO on the devsuite\").")


def prompt_texts(builder, tokenizer, questions: list[str]) -> list[str]:
    """The prompt texts trl will tokenise: `builder.prompt`, minus a leading BOS the tokenizer adds itself,
    so the token ids equal `prompt.encode(builder.prompt(...))`, what inference sees."""
    texts = [builder.prompt(tokenizer, q) for q in questions]
    bos = tokenizer.bos_token
    probe = tokenizer("x")["input_ids"]
    if bos and tokenizer.bos_token_id is not None and probe and probe[0] == tokenizer.bos_token_id:
        texts = [t[len(bos):] if t.startswith(bos) else t for t in texts]
    return texts


def _configs(config, train_config):
    """(TrainConfig, RLConfig, recipe yaml or None) from a Recipe, or an RLConfig/dict plus a TrainConfig."""
    from .train_config import TrainConfig, as_train_config

    if hasattr(config, "train_config") and hasattr(config, "rl"):
        rl = config.rl if isinstance(config.rl, RLConfig) else RLConfig.from_dict(config.rl)
        return as_train_config(config).validate(), rl.validate(), config.to_yaml() if hasattr(config, "to_yaml") else None
    rl = config if isinstance(config, RLConfig) else RLConfig.from_dict(dict(config or {}))
    tc = as_train_config(train_config) if train_config is not None else TrainConfig()
    return tc.validate(), rl.validate(), None


def _load(tc, init_adapter, dev):
    """(model, tokenizer, peft_config or None, init info or None, base model name, location)."""
    from .checkpoint import is_adapter, read_info
    from .model import checkpoint_base, load_model, load_tokenizer, resolve_model

    peft_config = None
    info = None
    if init_adapter is not None:
        p = Path(init_adapter)
        info = read_info(p)
        if info.get("method") == "qlora":
            raise SqltuneError("GRPO on a QLoRA adapter is not supported; train the SFT stage with lora")
        if is_adapter(p):
            from peft import PeftModel

            base_found = checkpoint_base(info)
            base, _, location = load_model(base_found, dev)
            model = PeftModel.from_pretrained(base, str(p), is_trainable=True)
            tok = load_tokenizer(str(p) if (p / "tokenizer_config.json").is_file() else resolve_model(base_found))
            return model, tok, None, info, info["base_model"], location
        model, tok, location = load_model(str(p), dev)  # a whole model (full fine-tuning): a new adapter on top
        base_name = str(p.resolve())
    else:
        model, tok, location = load_model(tc.model, dev)
        base_name = tc.model
    if tc.method in ("lora", "dora"):
        from peft import LoraConfig

        peft_config = LoraConfig(r=tc.rank, lora_alpha=tc.alpha, lora_dropout=tc.dropout, bias="none",
                                 target_modules=list(tc.target_modules), use_dora=tc.method == "dora",
                                 task_type="CAUSAL_LM")
    elif tc.method == "qlora":
        raise SqltuneError("GRPO with qlora is not supported; use lora")
    return model, tok, peft_config, info, base_name, location


def train_grpo(config, train_items: list[dict], valid_items: list[dict], db, out_dir, init_adapter=None, *,
               train_config=None, force: bool = False, resume: bool = False, progress: bool = True,
               baseline: dict | None = None, choose=None, on_run=None):
    """GRPO with the execution reward; returns a `train.TrainResult` (the chosen step; 0 = the start model).

    `config`: a Recipe (its `rl` section + its training/prompt/eval settings), or an RLConfig (or dict)
    with `train_config` (a TrainConfig: model, LoRA shape, prompt style, eval settings). `init_adapter`:
    the checkpoint to start from (an SFT output folder); None starts from `model` with a new adapter.
    `baseline`: a score report of the start model on exactly `valid_items` (skips evaluating step 0).
    `choose`: a rule history -> chosen evaluation line (as `train.train` takes, e.g. the noise-aware
    `synth.checkpoint_rule`); default: the highest valid exact, ties to the earlier step.
    `resume`: a finished `out_dir` is returned as is (an interrupted GRPO run starts over; with `rl.runs` > 1 the
    runs finished before are kept). `on_run(name, folder)`: with `rl.runs` > 1, called as each run's checkpoint is
    written (name `run1`, ...; `sqltune run` scores it then, so a job cut short still shows the runs it finished).
    """
    from .train import _check_baseline, _result_from_folder, is_complete

    tc, rl, recipe_yaml = _configs(config, train_config)
    if not train_items:
        raise SqltuneError("no training items")
    if not valid_items:
        raise SqltuneError("no validation items: the checkpoint is chosen on them")
    out = Path(out_dir)
    work = out.with_name(out.name + ".work")
    from .files import check_replaceable, remove_owned

    if out.exists():
        if resume and is_complete(out):
            return _result_from_folder(out)
        if not force:
            raise SqltuneError(f"{out} already exists; choose another --out, or pass --force to overwrite it")
        check_replaceable(out)  # only a folder sqltune wrote is ever deleted
    check_replaceable(work)
    if out.exists():
        remove_owned(out)
    remove_owned(work)
    _check_baseline(baseline, valid_items)
    if rl.runs > 1:
        return _soup_of_runs(tc, rl, recipe_yaml, train_items, valid_items, db, out, init_adapter, progress,
                             baseline, choose, resume, on_run)
    return _single_run(tc, rl, recipe_yaml, train_items, valid_items, db, out, init_adapter, progress, baseline, choose)


def _grpo_method(tc, init_adapter) -> str:
    """What GRPO trains: the start checkpoint's adapter continued (its method), else a new `tc.method` adapter."""
    from .checkpoint import is_adapter, read_info

    if init_adapter is not None and is_adapter(init_adapter):
        return read_info(init_adapter).get("method") or "lora"
    return tc.method


def _soup_of_runs(tc, rl, recipe_yaml, train_items, valid_items, db, out: Path, init_adapter, progress, baseline,
                  choose, resume: bool, on_run=None):
    """`rl.runs` GRPO runs from one start model (seeds `rl.seed`, `rl.seed + 1`, ...), each choosing its step by
    `choose` as a single run does; the output is their soup (`soup_adapters`), with each run's checkpoint inside it
    (`run-1`, ...). The runs are written to `OUT.runs/` first: an interrupted `resume` reuses the finished ones."""
    from dataclasses import replace

    from .checkpoint import CHECKPOINT_META, COMPLETE, is_complete, load_trained, write_checkpoint
    from .db import resolve_db
    from .evaluate import evaluate_items
    from .files import OWNER_FILE, check_replaceable, claim, remove_owned
    from .model import pick_device
    from .train import TrainResult, _result_from_folder

    method = _grpo_method(tc, init_adapter)
    if method != "lora":
        raise SqltuneError(f"rl.runs > 1 averages LoRA adapters; this GRPO run trains {method} (set rl.runs: 1)")
    t_start = time.monotonic()
    runs_dir = out.with_name(out.name + ".runs")
    check_replaceable(runs_dir)
    if not resume:
        remove_owned(runs_dir)
    claim(runs_dir, "grpo-runs")
    results = []
    for i in range(rl.runs):
        one = replace(rl, runs=1, seed=rl.seed + i)
        part = runs_dir / f"{RUN_PREFIX}{i + 1}"
        if is_complete(part):
            _echo(f"grpo run {i + 1} of {rl.runs}: finished before, reusing {part}")
            results.append(_result_from_folder(part))
        else:
            _echo(f"grpo run {i + 1} of {rl.runs} (seed {one.seed})")
            remove_owned(part)
            remove_owned(part.with_name(part.name + ".work"))
            results.append(_single_run(tc, one, recipe_yaml, train_items, valid_items, db, part, init_adapter,
                                       progress, baseline, choose))
        if on_run is not None:
            import gc

            gc.collect()  # the run's trainer and model (reference cycles) go before the caller loads the checkpoint
            on_run(part.name.replace("-", ""), part)
    soup = runs_dir / "soup"
    shutil.rmtree(soup, ignore_errors=True)  # inside our own folder: a leftover of an interrupted soup
    soup_adapters([r.out_dir for r in results], soup)  # a copy of run 1's checkpoint with the soup's weights
    dev = pick_device(tc.device, tc.dtype)
    t = time.monotonic()
    m = load_trained(soup, dev)
    summary = evaluate_items(m.model, m.tokenizer, m.builder, valid_items, resolve_db(db),
                             batch_size=tc.eval_batch_size, max_new_tokens=tc.eval_max_new_tokens, progress=False,
                             autocast=dev.autocast, timeout=rl.timeout)["summary"]
    del m
    eval_seconds = time.monotonic() - t
    runs = [{"run": i + 1, "seed": rl.seed + i, "step": r.chosen_step, "untrained": bool(r.info["chosen"].get("untrained")),
             **{k: r.info["chosen"][k] for k in ("exact", "execution_rate", "fuzzy", "set")}}
            for i, r in enumerate(results)]
    _echo(f"grpo: the soup of {rl.runs} runs: valid exact {summary['exact']:.1%} (runs: "
          + ", ".join(f"{x['exact']:.1%} at step {x['step']}" for x in runs) + ")")
    first = results[0].info
    info = {
        **first, "rl": rl.to_dict(),
        "chosen": {"step": max(r.chosen_step for r in results), "epoch": max(r.chosen_epoch for r in results),
                   "untrained": all(x["untrained"] for x in runs), "steps": [r.chosen_step for r in results],
                   **{k: summary[k] for k in ("exact", "execution_rate", "fuzzy", "set")}},
        "soup": {"runs": runs, "method": "mean of the runs' LoRA weight changes (rank stacked)"},
        "timing": {"wall_seconds": round(time.monotonic() - t_start, 2),
                   "train_seconds": round(sum(r.info["timing"]["train_seconds"] for r in results), 2),
                   "eval_seconds": round(sum(r.info["timing"]["eval_seconds"] for r in results) + eval_seconds, 2),
                   "steps": sum(r.info["timing"]["steps"] for r in results)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    history = [{**h, "run": i + 1} for i, r in enumerate(results) for h in r.history]
    extras = {"metrics.jsonl": "".join(json.dumps(h) + "\n" for h in history),
              "recipe.yaml": (soup / "recipe.yaml").read_text(encoding="utf-8") if (soup / "recipe.yaml").is_file() else ""}

    def write(tmp: Path) -> None:
        for f in soup.iterdir():  # the adapter and the tokenizer; the metadata and the run's own records are new
            if f.is_file() and f.name not in (CHECKPOINT_META, COMPLETE, OWNER_FILE, *extras):
                shutil.copy2(f, tmp / f.name)
        for r in results:  # each run as it was: `sqltune run` scores them beside the soup (stages rl_run1, ...)
            shutil.copytree(r.out_dir, tmp / r.out_dir.name)

    write_checkpoint(out, write, info, extras)
    shutil.rmtree(runs_dir, ignore_errors=True)
    best = {"step": info["chosen"]["step"], "epoch": info["chosen"]["epoch"], **summary}
    _echo(f"wrote {out} (the soup of {rl.runs} GRPO runs, valid exact {summary['exact']:.1%})")
    return TrainResult(out, info["chosen"]["step"], info["chosen"]["epoch"], best, history, info)


def _single_run(tc, rl, recipe_yaml, train_items, valid_items, db, out: Path, init_adapter, progress, baseline,
                choose):
    """One GRPO run into `out` (a fresh folder): load the start model, check its prompt, train (`_train`)."""
    from .db import resolve_db
    from .model import pick_device
    from .prompt import PromptBuilder, check_fingerprint
    from .schema import schema_text

    t_start = time.monotonic()
    db = resolve_db(db)
    dev = pick_device(tc.device, tc.dtype)
    model, tok, peft_config, init_info, base_name, location = _load(tc, init_adapter, dev)
    if rl.average < 1 and peft_config is None and not hasattr(model, "peft_config"):
        raise SqltuneError("rl.average needs a LoRA/DoRA adapter (it averages adapter weights); "
                           f"this GRPO run trains the whole model ({tc.method})")
    saved = (init_info or {}).get("prompt") or {}  # the start checkpoint's prompt: style and few-shot travel with it
    builder = PromptBuilder(schema_text(db, tc.notes), saved.get("style") or tc.prompt_style,
                            fewshot=list(saved.get("fewshot") or []))
    if init_info is not None:
        check_fingerprint(init_info["prompt"], builder, tok, where=f"checkpoint {init_adapter}")
    else:
        builder.prompt(tok, "?")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token

    reward = ExecutionReward(db, train_items, rl)
    try:
        reward.check_gold()
        start = {"model": model, "tok": tok, "peft_config": peft_config, "info": init_info, "path": init_adapter,
                 "base_name": base_name, "location": location}
        return _train(tc, rl, recipe_yaml, train_items, valid_items, db, out, start, builder, reward, dev,
                      progress, baseline, t_start, choose)
    finally:
        reward.close()


def _train(tc, rl, recipe_yaml, train_items, valid_items, db, out: Path, start: dict, builder, reward, dev,
           progress, baseline, t_start, choose=None):
    """The GRPO loop proper (see `train_grpo`); `start`: the loaded start model and where it came from."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from .checkpoint import write_checkpoint
    from .evaluate import evaluate_items
    from .model import local_model_path
    from .train import TrainResult, _versions, _yaml, items_sha256
    from .trainer import readable_logs

    model, tok, peft_config, init_info, init_adapter = (start[k] for k in ("model", "tok", "peft_config", "info", "path"))
    base_name, location = start["base_name"], start["location"]
    work = out.with_name(out.name + ".work")

    keep, probed = list(range(len(train_items))), None
    if rl.probe:
        t = time.monotonic()
        keep, probed = probe(model, tok, builder, reward, rl, batch_size=tc.eval_batch_size, autocast=dev.autocast,
                             progress=progress)
        probed["seconds"] = round(time.monotonic() - t, 2)
        _echo(f"grpo probe: {probed['informative']} of {probed['questions']} training questions"
              + (f" (a random {probed['questions']} of {probed['of']})" if probed["of"] > probed["questions"] else "")
              + " have samples "
              f"that differ in reward ({probed['all_exact']} all right, {probed['none_exact']} none right, "
              f"{rl.probe} samples each, {probed['seconds']:.0f} s)"
              + ("; nothing to learn from: no GRPO steps" if not keep else
                 "; kept by shape: " + ", ".join(f"{n} {shape}" for shape, n in probed["shapes"].items())))
    # trl's sampler hands out whole steps of `prompts_per_step` questions and drops a partial one: with fewer
    # questions than that (a few seeds, or few the probe kept) not one step would run. Repeat them to fill a step.
    rows = keep * -(-rl.prompts_per_step // len(keep)) if keep and len(keep) < rl.prompts_per_step else keep
    if rl.join_floor:
        rows, times = join_rows(rows, train_items, rl.join_floor)
        if times > 1:
            _echo(f"grpo prompts: each join question {times} times (rl.join_floor {rl.join_floor}): {len(rows)} rows")
        if probed is not None:
            probed["join_repeat"] = times
    texts = prompt_texts(builder, tok, [train_items[i]["question"] for i in rows])
    dataset = Dataset.from_list([{"prompt": p, "item": i} for i, p in zip(rows, texts)])
    per_step = rl.prompts_per_step * rl.num_generations
    cuda = dev.device.startswith("cuda")
    args = GRPOConfig(
        output_dir=str(work / "trainer"), per_device_train_batch_size=rl.micro(),
        gradient_accumulation_steps=per_step // rl.micro(), num_generations=rl.num_generations,
        max_completion_length=rl.max_completion_length, temperature=rl.temperature, top_p=rl.top_p,
        beta=rl.beta, learning_rate=rl.lr, max_steps=rl.steps, lr_scheduler_type="constant",
        max_grad_norm=tc.max_grad_norm, seed=rl.seed, data_seed=rl.seed, logging_steps=1, save_strategy="no",
        report_to="none", remove_unused_columns=False, use_cpu=dev.device == "cpu", bf16=cuda,
        disable_tqdm=not progress, dataloader_num_workers=0, log_completions=False,
        gradient_checkpointing=rl.gradient_checkpointing,
    )
    from .files import claim

    claim(work, "grpo-work")
    candidates = work / "candidates"
    metrics_file = work / "metrics.jsonl"
    history: list[dict] = []
    timing = {"eval_seconds": 0.0}

    def log_line(line: dict) -> None:
        history.append(line)
        with open(metrics_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def best() -> dict | None:
        evals = [h for h in history if "exact" in h]
        if choose is not None and evals:
            return choose(evals)
        return max(evals, key=lambda r: (r["exact"], r["fuzzy"], -r["step"])) if evals else None

    def save(m, step: int) -> None:
        dest = candidates / f"step-{step}"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        if step == 0 and init_adapter is not None and init_info is not None and (Path(init_adapter) / "adapter_config.json").is_file():
            for f in Path(init_adapter).iterdir():  # the start model itself: its files as they are
                if f.name.startswith("adapter_"):
                    shutil.copy2(f, dest / f.name)
            return
        if hasattr(m, "peft_config"):
            m.save_pretrained(dest, safe_serialization=True, selected_adapters=["default"])
        else:
            m.save_pretrained(dest, safe_serialization=True)

    def score(m) -> dict:  # greedy valid exact of the model as it is now: every candidate, the averaged one too
        return evaluate_items(m, tok, builder, valid_items, db, batch_size=tc.eval_batch_size,
                              max_new_tokens=tc.eval_max_new_tokens, progress=False, autocast=dev.autocast,
                              timeout=rl.timeout)

    def evaluate(m, step: int, epoch: float, report: dict | None = None) -> None:
        t = time.monotonic()
        was_training = m.training
        m.eval()
        if report is None:
            report = score(m)
        if was_training:
            m.train()
        s = report["summary"]
        prev = best()
        line = {"step": step, "epoch": round(float(epoch), 4), "n": s["n"], "execution_rate": s["execution_rate"],
                "exact": s["exact"], "set": s["set"], "fuzzy": s["fuzzy"], "eval_seconds": round(time.monotonic() - t, 2),
                "elapsed": round(time.monotonic() - t_start, 2),
                "exact_ids": [e["id"] for e in report["examples"] if e["exact"]]}
        log_line(line)
        line["best"] = best() is line
        if line["best"]:
            save(m, step)
        timing["eval_seconds"] += time.monotonic() - t
        _echo(f"grpo step {step}: valid exact {s['exact']:.1%}, executed {s['execution_rate']:.1%}"
              # the rule's choice so far, not the best score: `last` keeps a later step within the noise of a better one
              + (" [kept by the rule]" if line["best"] else f" [the rule keeps step {prev['step']}]"))

    class Hooks(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            evaluate(model, 0, 0.0, baseline)  # the start model is a candidate

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "reward" not in logs:
                return
            line = {"step": state.global_step, "epoch": round(float(state.epoch or 0.0), 4),
                    "reward": logs.get("reward"), "reward_std": logs.get("reward_std"), "kl": logs.get("kl"),
                    "grpo_loss": logs.get("loss"), "lr": logs.get("learning_rate"),
                    "grad_norm": logs.get("grad_norm"), "entropy": logs.get("entropy"),
                    "completion_length": logs.get("completions/mean_length"),
                    "frac_reward_zero_std": logs.get("frac_reward_zero_std"),  # groups with no gradient (trl)
                    "elapsed": round(time.monotonic() - t_start, 2)}
            # reward components: fractions of completions per outcome, and of groups with a correct sample
            group_keys = ("rl/any_correct", "rl/all_correct")
            line.update({(k.removeprefix("rl/") if k in group_keys else "frac_" + k.removeprefix("rl/")): v
                         for k, v in logs.items() if k.startswith("rl/")})
            log_line(line)

        def on_step_end(self, args, state, control, model=None, **kw):
            step = state.global_step
            if rl.eval_every and step % rl.eval_every == 0 and step < rl.steps:
                evaluate(model, step, state.epoch or 0.0)

    t_train = time.monotonic()
    if keep and (warn := cpu_warning(dev.device, sum(p.numel() for p in model.parameters()), rl)):
        _echo(warn)
    if keep:
        trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=dataset,
                              processing_class=tok, peft_config=peft_config, callbacks=[Hooks()])
        readable_logs(trainer)
        _echo(f"grpo: {rl.steps} steps x {rl.prompts_per_step} questions x {rl.num_generations} samples "
              f"on {len(keep)} training questions (beta {rl.beta}, lr {rl.lr})")
        trainer.train()
        final = trainer.state.global_step
        if not any(h.get("step") == final and "exact" in h for h in history):
            evaluate(trainer.model, final, trainer.state.epoch or 0.0)
    else:  # the probe found no question with a gradient: the start model is the only candidate
        final = 0
        if peft_config is not None and not hasattr(model, "peft_config"):  # a new adapter, as trl would add it
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        evaluate(model, 0, 0.0, baseline)
    train_wall = time.monotonic() - t_train

    chosen = best()
    cand = plain = candidates / f"step-{chosen['step']}"
    averaged = None
    if rl.average < 1 and chosen["step"] != 0:
        cand = average_adapters(candidates / "step-0", plain, rl.average, candidates / f"step-{chosen['step']}-average")
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        trained = trainer.model if keep else model
        trained = getattr(trained, "module", trained)
        set_peft_model_state_dict(trained, load_file(str(cand / ADAPTER_WEIGHTS)))  # in place: not trained again
        trained.eval()
        summary = score(trained)["summary"]
        averaged = {"weight": rl.average, **{k: summary[k] for k in ("exact", "execution_rate", "fuzzy", "set")}}
        _echo(f"grpo: step {chosen['step']} averaged with the start model (weight {rl.average}): valid exact "
              f"{averaged['exact']:.1%} (step {chosen['step']} alone {chosen['exact']:.1%})")
    data = {"train": {"n": len(train_items), "sha256": items_sha256(train_items)},
            "valid": {"n": len(valid_items), "sha256": items_sha256(valid_items)}}
    start_info = {k: v for k, v in (init_info or {}).items() if k not in ("format", "chosen", "timing", "data", "created")}
    info = {
        **start_info,
        "base_model": base_name, "base_model_path": local_model_path(base_name) or start_info.get("base_model_path"),
        "base_model_location": location,
        "method": (init_info or {}).get("method") if init_info and peft_config is None else tc.method,
        "prompt": {**builder.fingerprint(tok), "schema": builder.schema, "fewshot": list(builder.fewshot)},
        "data": data, "db": str(db),
        "trained_with": "grpo", "init_checkpoint": str(Path(init_adapter).resolve()) if init_adapter else None,
        "rl": rl.to_dict(),
        "chosen": {"step": chosen["step"], "epoch": chosen["epoch"], "untrained": chosen["step"] == 0,
                   **{k: chosen[k] for k in ("exact", "execution_rate", "fuzzy", "set")}},
        "device": {"device": dev.device, "dtype": dev.dtype, "autocast": dev.autocast},
        "timing": {"wall_seconds": round(time.monotonic() - t_start, 2), "train_seconds": round(train_wall, 2),
                   "eval_seconds": round(timing["eval_seconds"], 2), "steps": final},
        "probe": probed,
        "average": averaged,
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if init_info is None:
        info["hyperparameters"] = tc.to_dict()
    if info["method"] is None:
        info["method"] = tc.method
    metrics_text = "".join(json.dumps(r) + "\n" for r in history)
    recipe_text = recipe_yaml if recipe_yaml is not None else _yaml({"model": tc.model, "train": tc.to_dict(), "rl": rl.to_dict()})

    def filler(folder: Path):
        def write(tmp: Path) -> None:
            for f in folder.iterdir():
                (shutil.copytree if f.is_dir() else shutil.copy2)(f, tmp / f.name)
            tok.save_pretrained(tmp)
        return write

    extras = {"metrics.jsonl": metrics_text, "recipe.yaml": recipe_text}

    def write(tmp: Path) -> None:
        filler(cand)(tmp)
        if averaged is not None:
            # the chosen step as it was, a checkpoint of its own inside this one (`UNAVERAGED`): `sqltune run` scores
            # it too (stage `rl_unaveraged`), so one GRPO run shows what the averaging changed, question by question
            write_checkpoint(tmp / UNAVERAGED, filler(plain), {**info, "average": None,
                                                               "unaveraged_of": str(out.resolve())}, extras)

    write_checkpoint(out, write, info, extras)
    shutil.rmtree(work, ignore_errors=True)
    if chosen["step"] == 0:
        _echo("GRPO did not beat the start model on valid: the output is the start model (step 0)")
    _echo(f"wrote {out} (step {chosen['step']}, valid exact {chosen['exact']:.1%})")
    return TrainResult(out, chosen["step"], chosen["epoch"], chosen, history, info)
