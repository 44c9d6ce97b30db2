"""Stage: generate SQL with a model. Batched greedy decoding that shares the schema prefix.

Every prompt starts with the same instructions + schema (hundreds of tokens); only the question
differs. `generate_texts` runs that shared prefix through the model once, and each batch then runs
transformers' `model.generate` (greedy) from a copy of its KV cache, on [prefix][padding][question]
with the padding masked out. A row stops at EOS or as soon as its statement is complete
(`extract.is_complete`: a `;`, a closing fence, a blank line or prose after the query), or when it
has fallen into a loop (`is_looping`: one short piece of tokens over and over). A row gets the
same tokens as generating its question alone (`generate_one_by_one`, the baseline; tested), up to
the rounding of different batch shapes. A hand-written decoder (own KV cache, rows leaving the batch)
was measured against this in issue 13 and did not win by the 1.5x that would justify keeping it
(BENCHMARKS.md, "Decoder"): it was deleted.

Execution and self-correction (re-prompting a failing query with `retry_prompt`) are the
evaluator's (`evaluate.predict_questions`). `select_fewshot` picks training examples by
TF-IDF similarity, never the asked question or anything excluded (the evaluation split).
"""

from __future__ import annotations

import copy
import inspect
import math
import re
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .extract import END_MARKERS, extract_sql, is_complete
from .prompt import PromptBuilder, encode
from .shared_prefix import shared_prefix_len

MIN_SHARED_PREFIX = 8  # tokens; below this a shared prefix is not worth a separate forward
AT_LIMIT_KEEP, AT_LIMIT_CHARS = 3, 240  # `GenerationStats.at_limit`


@dataclass
class Generation:
    question: str
    raw: str
    sql: str | None
    seconds: float
    retries: int = 0
    retry_changed: bool = False
    tokens: int = 0  # generated tokens (last attempt)
    error: str | None = None  # executor's error for `sql` (set by `predict`)
    first_sql: str | None = None  # the first attempt's SQL, when a retry happened
    first_error: str | None = None


@dataclass
class GenerationStats:
    """Where the time went in one `generate_texts` call (seconds are wall-clock)."""

    n: int = 0
    batches: int = 0
    prefix_tokens: int = 0
    prefix_seconds: float = 0.0
    prefill_tokens: int = 0  # question tokens prefilled (without padding)
    prefill_seconds: float = 0.0
    decode_steps: int = 0
    decode_seconds: float = 0.0
    new_tokens: int = 0
    stopped_eos: int = 0
    stopped_statement: int = 0
    stopped_length: int = 0
    stopped_loop: int = 0
    seconds: float = 0.0
    # the last AT_LIMIT_CHARS characters of the first AT_LIMIT_KEEP rows that reached the token limit: what rambles
    at_limit: list = field(default_factory=list)

    @property
    def queries_per_s(self) -> float:
        return self.n / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__, at_limit=list(self.at_limit))
        d["queries_per_s"] = self.queries_per_s
        return d


# ---------------------------------------------------------------- tokens and stopping
def eos_token_ids(model, tokenizer) -> set[int]:
    """EOS of the tokenizer and the generation config, plus every chat end marker in the vocabulary."""
    ids: set[int] = set()
    gen_cfg = getattr(model, "generation_config", None)
    for src in (getattr(tokenizer, "eos_token_id", None), getattr(gen_cfg, "eos_token_id", None)):
        if isinstance(src, int):
            ids.add(src)
        elif isinstance(src, (list, tuple)):
            ids.update(int(x) for x in src)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[m] for m in END_MARKERS if m in vocab)
    return ids


def _model_device(model):
    return next(model.parameters()).device


def _cache_kwarg(model) -> str:
    """The forward argument that takes the KV cache: `cache` (transformers >= 5.2x), else `past_key_values`.

    Passing the wrong one is silently swallowed by `**kwargs`: the model then runs without its cache
    and writes garbage, so look at the signature of the model under any PEFT wrapper.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        params = inspect.signature(base.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - exotic wrappers
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def _autocast(device, enabled: bool):
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if enabled else nullcontext()


class _EvalMode:
    """Run in eval mode (no dropout) and restore the caller's mode afterwards (training calls us)."""

    def __init__(self, model):
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        if self.was_training:
            self.model.train()


def _progress(total: int, enabled: bool, desc: str):
    from .console import progress

    return progress(total, desc, enabled, unit="q")


# A reply that repeats one piece of at most LOOP_MAX_PERIOD tokens LOOP_MIN_REPEATS times, over at least
# LOOP_MIN_TOKENS tokens, has fallen into a loop (greedy small models do: "* 1.0 * 1.0 * 1.0 ..." until the
# token limit). It ends there: more tokens of the loop cannot make its SQL right, and one such row keeps a
# whole batch decoding to the limit (BENCHMARKS.md, "A loop ends a row").
LOOP_MAX_PERIOD = 16
LOOP_MIN_REPEATS = 4
LOOP_MIN_TOKENS = 32


def is_looping(tokens: list[int]) -> bool:
    """True when `tokens` end in one piece of 1..LOOP_MAX_PERIOD tokens repeated (see above)."""
    n = len(tokens)
    if n < LOOP_MIN_TOKENS or tokens[-1] not in tokens[-1 - LOOP_MAX_PERIOD:-1]:
        return False  # a loop's last token came up one period earlier
    for p in range(1, LOOP_MAX_PERIOD + 1):
        span = max(LOOP_MIN_TOKENS, p * LOOP_MIN_REPEATS)
        if span > n:
            return False
        if all(tokens[n - 1 - i] == tokens[n - 1 - i - p] for i in range(span - p)):
            return True
    return False


# ---------------------------------------------------------------- the decoder
class _StopGate:
    """Ask the (costly: decode + regexes + sqlglot) statement check only when a token could end one.

    `is_complete` turns true only at a token that brings `;`, a backtick (fence) or a newline (blank
    line), or within the first tokens after a newline or a "<" (a prose line such as "This query
    ...", an end marker written as text), so the other tokens need no check; checking every row at
    every step would dominate a GPU decode step. Any other `stop` function is asked at every token.
    """

    FOLLOW_TOKENS = 8

    def __init__(self, tokenizer, rows: int, exact: bool):
        self.tok, self.exact = tokenizer, exact
        self.since = [0] * rows  # tokens since the last newline or "<" (an end marker may follow)
        self.pieces: dict[int, str] = {}

    def worth_asking(self, row: int, tok_id: int) -> bool:
        if self.exact:
            return True
        piece = self.pieces.get(tok_id)
        if piece is None:
            piece = self.pieces[tok_id] = self.tok.decode([tok_id], skip_special_tokens=False)
        if "\n" in piece or "<" in piece:
            self.since[row] = 0
            return True
        self.since[row] += 1
        return ";" in piece or "`" in piece or self.since[row] <= self.FOLLOW_TOKENS


def generate_texts(
    model,
    tokenizer,
    prompts: list[str],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 256,
    progress: bool = True,
    autocast: bool = False,
    share_prefix: bool = True,
    stop: Callable[[str], bool] | None = is_complete,
    stats: GenerationStats | None = None,
    desc: str = "generating",
    cache_implementation: str | None = None,
    prefix: "PrefixCache | None" = None,
    temperature: float = 0.0,
    top_p: float = 1.0,
    loop_stop: bool = True,
) -> list[tuple[str, int, float]]:
    """Greedy completions of `prompts` (sampled when `temperature` > 0: the caller seeds torch): (text,
    generated tokens, seconds) per prompt, in order, through transformers' batched `model.generate`.

    `seconds` is the batch's time (the one-off shared-prefix forward is in `stats.prefix_seconds`).
    The shared schema prefix runs once; each batch gets a copy of its KV cache (repeated over the
    rows) and generates from [prefix][padding][question], the padding masked out, so positions
    continue after the prefix as in `generate_texts`. Rows stop at EOS or at the end of the
    statement (a per-row stopping criterion), or in a loop (`is_looping`; `loop_stop=False` lets loops run
    to the limit); finished rows stay in the batch until all are done. `cache_implementation` (without a
    shared prefix only): e.g. "static". `prefix` (from `prefix_cache`, computed once by a server) is reused
    instead of the prefix forward when every prompt starts with its tokens.
    """
    import torch
    from transformers import DynamicCache, StoppingCriteria, StoppingCriteriaList

    stats = stats if stats is not None else GenerationStats()
    t_start = time.perf_counter()
    n = len(prompts)
    stats.n = n
    if n == 0:
        return []
    device = _model_device(model)
    eos = eos_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = [encode(tokenizer, p) for p in prompts]
    if any(not x for x in ids):
        raise ValueError("empty prompt")
    shared = shared_prefix_len(ids) if share_prefix and n > 1 else 0
    if shared < MIN_SHARED_PREFIX:
        shared = 0
    given = prefix is not None and prefix.covers(ids)
    if given:
        shared = len(prefix.ids)
    ck = _cache_kwarg(model)
    results: list[tuple[str, int, float] | None] = [None] * n

    class RowStop(StoppingCriteria):
        def __init__(self, rows: int):
            self.done, self.reason = [False] * rows, [None] * rows
            self.gate = _StopGate(tokenizer, rows, exact=stop is not is_complete)
            self.toks: list[list[int]] = [[] for _ in range(rows)]

        def __call__(self, input_ids, scores, **kwargs):
            # called once per step: the newest token of each row (a row's own tokens are kept in `toks`)
            for b, tok_id in enumerate(input_ids[:, -1].tolist()):
                if self.done[b]:
                    continue
                if tok_id in eos:
                    self.done[b], self.reason[b] = True, "eos"
                    continue
                self.toks[b].append(tok_id)
                if stop is not None and self.gate.worth_asking(b, tok_id):
                    if stop(tokenizer.decode(self.toks[b], skip_special_tokens=False)):
                        self.done[b], self.reason[b] = True, "statement"
                        continue
                if loop_stop and is_looping(self.toks[b]):
                    self.done[b], self.reason[b] = True, "loop"
            return torch.tensor(self.done, device=input_ids.device)

    with torch.inference_mode(), _EvalMode(model), _autocast(device, autocast), _progress(n, progress, desc) as bar:
        prefix_cache = prefix.cache if given else None
        if shared and not given:
            t = time.perf_counter()
            prefix_cache = DynamicCache(config=model.config)
            model(input_ids=torch.tensor([ids[0][:shared]], device=device), use_cache=True, logits_to_keep=1,
                  **{ck: prefix_cache})
            stats.prefix_tokens, stats.prefix_seconds = shared, time.perf_counter() - t
        order = sorted(range(n), key=lambda i: -len(ids[i]))
        for b0 in range(0, n, batch_size):
            batch = order[b0: b0 + batch_size]
            stats.batches += 1
            t_batch = time.perf_counter()
            rows = [ids[i][shared:] for i in batch]
            B, S = len(rows), max(len(r) for r in rows)
            inp = torch.full((B, shared + S), pad_id, dtype=torch.long)
            mask = torch.zeros((B, shared + S), dtype=torch.long)
            inp[:, :shared] = torch.tensor(ids[batch[0]][:shared])
            mask[:, :shared] = 1
            for b, r in enumerate(rows):
                inp[b, shared + S - len(r):] = torch.tensor(r)
                mask[b, shared + S - len(r):] = 1
            kw, stopper = {}, RowStop(B)
            if prefix_cache is not None:
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(B)
                kw[ck] = cache
            elif cache_implementation:
                kw["cache_implementation"] = cache_implementation
            out = model.generate(
                input_ids=inp.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                do_sample=temperature > 0, num_beams=1, eos_token_id=sorted(eos), pad_token_id=pad_id,
                stopping_criteria=StoppingCriteriaList([stopper]),
                temperature=temperature if temperature > 0 else None, top_p=top_p if temperature > 0 else None,
                top_k=0 if temperature > 0 else None, **kw,
            )
            seconds = time.perf_counter() - t_batch
            for b, i in enumerate(batch):
                gen: list[int] = []
                for t_ in out[b, shared + S:].tolist():
                    if t_ in eos:
                        break
                    gen.append(t_)
                why = stopper.reason[b] or ("length" if len(gen) >= max_new_tokens else "eos")
                setattr(stats, f"stopped_{why}", getattr(stats, f"stopped_{why}") + 1)
                results[i] = (tokenizer.decode(gen, skip_special_tokens=False), len(gen), seconds)
                if why == "length" and len(stats.at_limit) < AT_LIMIT_KEEP:
                    stats.at_limit.append(results[i][0][-AT_LIMIT_CHARS:])
                stats.new_tokens += len(gen)
            stats.decode_steps += out.shape[1] - shared - S
            bar.update(len(batch))
    stats.seconds = time.perf_counter() - t_start
    return results  # type: ignore[return-value]


@dataclass
class PrefixCache:
    """The KV cache of prompt tokens every request starts with (a server's schema prefix), computed once.

    `generate_texts` copies it into each batch's cache and never changes it."""

    ids: list[int]
    cache: object

    def covers(self, ids: list[list[int]]) -> bool:
        n = len(self.ids)
        return n > 0 and bool(ids) and all(len(x) > n and x[:n] == self.ids for x in ids)


def prefix_cache(model, tokenizer, prompts: list[str], *, autocast: bool = False) -> PrefixCache:
    """The KV cache of the tokens all of `prompts` (two or more renderings) share, leaving >= 1 each."""
    import torch
    from transformers import DynamicCache

    ids = [encode(tokenizer, p) for p in prompts]
    shared = shared_prefix_len(ids)
    device = _model_device(model)
    cache = DynamicCache(config=getattr(model, "config", None))
    if shared:
        with torch.inference_mode(), _EvalMode(model), _autocast(device, autocast):
            model(input_ids=torch.tensor([ids[0][:shared]], device=device), use_cache=True, logits_to_keep=1,
                  **{_cache_kwarg(model): cache})
    return PrefixCache(ids[0][:shared], cache)


def generate_one_by_one(
    model,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int = 256,
    autocast: bool = False,
    stop: Callable[[str], bool] | None = is_complete,
    loop_stop: bool = True,
) -> list[tuple[str, int, float]]:
    """The baseline: `model.generate` on one prompt at a time (greedy, same stopping rules)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    device = _model_device(model)
    eos = sorted(eos_token_ids(model, tokenizer))

    class _Stop(StoppingCriteria):
        def __init__(self, start: int):
            self.start = start

        def __call__(self, input_ids, scores, **kwargs):
            new = [t for t in input_ids[0, self.start:].tolist() if t not in eos]
            done = stop is not None and bool(new) and stop(tokenizer.decode(new, skip_special_tokens=False))
            done = done or (loop_stop and is_looping(new))
            return torch.tensor([done], device=input_ids.device)

    out = []
    with torch.inference_mode(), _EvalMode(model), _autocast(device, autocast):
        for p in prompts:
            t = time.perf_counter()
            x = torch.tensor([encode(tokenizer, p)], device=device)
            y = model.generate(
                input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens, do_sample=False,
                num_beams=1, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
                stopping_criteria=StoppingCriteriaList([_Stop(x.shape[1])]),
                temperature=None, top_p=None, top_k=None,
            )
            new = [t_ for t_ in y[0, x.shape[1]:].tolist() if t_ not in eos]
            out.append((tokenizer.decode(new, skip_special_tokens=False), len(new), time.perf_counter() - t))
    return out


# ---------------------------------------------------------------- questions -> SQL
def generate_sql(
    model,
    tokenizer,
    builder: PromptBuilder,
    questions: list[str],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 256,
    progress: bool = True,
    autocast: bool = False,
    examples: list[list[dict]] | None = None,
    share_prefix: bool = True,
    stats: GenerationStats | None = None,
    prefix: PrefixCache | None = None,
) -> list[Generation]:
    """Greedy SQL for each question, batched, sharing the schema prefix's KV cache.

    `examples`: per-question few-shot examples (from `select_fewshot`); None uses `builder.fewshot`.
    Per-question examples shorten the shared prefix to what the prompts still have in common.
    """
    if examples is not None and len(examples) != len(questions):
        raise ValueError(f"{len(questions)} questions but {len(examples)} example lists")
    prompts = [builder.prompt(tokenizer, q, None if examples is None else examples[i]) for i, q in enumerate(questions)]
    outs = generate_texts(model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens,
                          progress=progress, autocast=autocast, share_prefix=share_prefix, stats=stats,
                          prefix=prefix)
    return [Generation(q, raw, extract_sql(raw), sec, tokens=ntok) for q, (raw, ntok, sec) in zip(questions, outs)]


# ---------------------------------------------------------------- self-correction
RETRY_MESSAGE = (
    "That query failed when run on the database with this error:\n{error}\n"
    "Write a corrected SQLite query. Reply with the SQL query only."
)


def retry_prompt(builder: PromptBuilder, tokenizer, question: str, sql: str | None, error: str,
                 examples: list[dict] | None = None) -> str:
    """The prompt for a second try: the first prompt, the failed SQL and the executor's error.

    It starts with the same schema prefix, so retries share its KV cache too.
    """
    sql = (sql or "").strip() or "(no SQL)"
    if builder.style == "chat":
        msgs = builder.messages(question, builder.fewshot if examples is None else examples)
        msgs += [{"role": "assistant", "content": sql}, {"role": "user", "content": RETRY_MESSAGE.format(error=error)}]
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    first = builder.prompt(tokenizer, question, examples)
    if builder.style == "premsql":
        return f"{first}{sql}\n\n# Error: {error}\n\n# Corrected SQL: "
    return f"{first}{sql}\nError: {error}\nCorrected SQL Query: "


# ---------------------------------------------------------------- few-shot selection
_WORD = re.compile(r"[a-z0-9]+")


def _norm(question: str) -> str:
    return " ".join(_WORD.findall(question.lower()))


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def select_fewshot(question: str, pool: list[dict], k: int, exclude: Iterable = ()) -> list[dict]:
    """The `k` items of `pool` (training data) most similar to `question` by TF-IDF cosine.

    Never returns the question itself or anything in `exclude` (questions as strings, or items with
    `question` and optional `id`): pass the split under evaluation there. Ties keep pool order.
    """
    if k <= 0 or not pool:
        return []
    banned = {_norm(question)}
    banned_ids = set()
    for e in exclude:
        if isinstance(e, dict):
            if e.get("question"):
                banned.add(_norm(e["question"]))
            if e.get("id") is not None:
                banned_ids.add(str(e["id"]))
        else:
            banned.add(_norm(str(e)))
    cands = [p for p in pool if _norm(p["question"]) not in banned and not (p.get("id") is not None and str(p["id"]) in banned_ids)]
    if not cands:
        return []
    docs = [Counter(_words(p["question"])) for p in cands]
    df = Counter(w for d in docs for w in d)
    idf = {w: math.log((1 + len(docs)) / (1 + c)) + 1 for w, c in df.items()}

    def vec(counts: Counter) -> dict:
        v = {w: c * idf.get(w, math.log(1 + len(docs)) + 1) for w, c in counts.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {w: x / norm for w, x in v.items()}

    q = vec(Counter(_words(question)))
    scored = [(sum(q.get(w, 0.0) * x for w, x in vec(d).items()), -i) for i, d in enumerate(docs)]
    best = sorted(range(len(cands)), key=lambda i: scored[i], reverse=True)[:k]
    return [{"question": cands[i]["question"], "sql": cands[i]["sql"]} for i in best]


def fewshot_for(questions: list[str], pool: list[dict], k: int, exclude: Iterable = ()) -> list[list[dict]]:
    """`select_fewshot` for each question; every question of the batch is excluded for every other."""
    exclude = list(exclude) + list(questions)
    return [select_fewshot(q, pool, k, exclude) for q in questions]
