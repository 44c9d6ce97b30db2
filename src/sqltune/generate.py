"""Stage: generate SQL with a model. Batched greedy decoding that shares the schema prefix.

Every prompt starts with the same instructions + schema (hundreds of tokens); only the question
differs. `generate_sql` runs that shared prefix through the model once, copies its KV cache to every
row of a batch, prefills only the (left-padded) question tokens, then decodes greedily one token
per step for all rows at once. A row stops at EOS or as soon as its statement is complete
(`extract.is_complete`: a `;`, a closing fence, a blank line or prose after the query); finished rows
leave the batch, so the remaining steps get cheaper. Greedy only, no sampling: a row gets the same
tokens as generating its question alone (`generate_one_by_one`, the baseline), up to the rounding
of different batch shapes (fp32: 65/65 identical answers on the exoplanets benchmark).

`predict` adds execution and self-correction: a query that fails is re-prompted with the previous
SQL and the executor's error, up to `retries` times. `select_fewshot` picks training examples by
TF-IDF similarity, never the asked question or anything excluded (the evaluation split).
"""

from __future__ import annotations

import copy
import inspect
import math
import os
import re
import sys
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Iterable

from .extract import END_MARKERS, extract_sql, is_complete
from .prompt import PromptBuilder, encode

MIN_SHARED_PREFIX = 8  # tokens; below this a shared prefix is not worth a separate forward


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
    decode_rows: int = 0  # rows computed over all decode steps (finished rows waiting to leave included)
    compactions: int = 0
    decode_seconds: float = 0.0
    new_tokens: int = 0
    stopped_eos: int = 0
    stopped_statement: int = 0
    stopped_length: int = 0
    seconds: float = 0.0

    @property
    def queries_per_s(self) -> float:
        return self.n / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
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


def _shared_prefix_len(seqs: list[list[int]]) -> int:
    """Tokens every sequence shares at its start, leaving at least one token per sequence."""
    if not seqs:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs) - 1
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return max(n, 0)


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


class _SdpaGqa:
    """Prefill with masks through SDPA's native grouped-query attention on CPU.

    With a padding mask, transformers' SDPA path copies every key/value head `n_heads / n_kv_heads`
    times (`repeat_kv`) before attention; on CPU `enable_gqa=True` gives the same result without the
    copies (measured 6x faster attention for a 16 x 25-token prefill over an 800-token cache). Only
    for multi-token steps: single-token decode steps already avoid the copy (`pack_gqa`) and are
    faster that way. CUDA keeps the default (its fused kernels take no mask with GQA).
    """

    KEY = "TRANSFORMERS_SDPA_FORCE_GQA"

    def __init__(self, device):
        self.on = device.type == "cpu"

    def __enter__(self):
        if self.on:
            self.saved = os.environ.get(self.KEY)
            os.environ[self.KEY] = "1"

    def __exit__(self, *exc):
        if self.on:
            if self.saved is None:
                os.environ.pop(self.KEY, None)
            else:
                os.environ[self.KEY] = self.saved


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="q", disable=not enabled, leave=False, file=sys.stderr)


# ---------------------------------------------------------------- a KV cache that does not copy itself every step
def _growing_layer_class():
    import torch
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A full-attention cache layer in a preallocated buffer.

        `DynamicLayer.update` concatenates, copying the whole cache of the batch at every decode step
        (hundreds of MB per step for a shared schema prefix); this layer writes the new keys and
        values into spare room and returns views.
        """

        def __init__(self, keys, values, room: int):
            super().__init__()
            B, H, L, D = keys.shape
            self._k = keys.new_empty((B, H, L + room, D))
            self._v = values.new_empty((B, H, L + room, D))
            self._k[:, :, :L] = keys
            self._v[:, :, :L] = values
            self.length = L
            self.device, self.is_initialized = keys.device, True
            self._views()

        def _views(self):
            self.keys, self.values = self._k[:, :, : self.length], self._v[:, :, : self.length]

        def lazy_initialization(self, key_states, value_states):  # pragma: no cover - born initialised
            pass

        def update(self, key_states, value_states, *args, **kwargs):
            n = key_states.shape[-2]
            if self.length + n > self._k.shape[2]:  # out of room: grow (never in `generate_texts`)
                more = max(n, self._k.shape[2])
                self._k = torch.cat([self._k, self._k.new_empty(self._k.shape[:2] + (more, self._k.shape[3]))], 2)
                self._v = torch.cat([self._v, self._v.new_empty(self._v.shape[:2] + (more, self._v.shape[3]))], 2)
            self._k[:, :, self.length: self.length + n] = key_states
            self._v[:, :, self.length: self.length + n] = value_states
            self.length += n
            self._views()
            return self.keys, self.values

        def get_seq_length(self, *args, **kwargs) -> int:
            return self.length

        def batch_select_indices(self, indices) -> None:
            self._k, self._v = self._k[indices], self._v[indices]
            self._views()

        def batch_repeat_interleave(self, repeats: int) -> None:
            self._k, self._v = self._k.repeat_interleave(repeats, 0), self._v.repeat_interleave(repeats, 0)
            self._views()

        def crop(self, tokens_to_remove: int) -> None:
            self.length = max(0, self.length + tokens_to_remove if tokens_to_remove < 0 else tokens_to_remove)
            self._views()

    return GrowingLayer


_GROWING = None


def _batch_cache(prefix_cache, config, batch: int, room: int):
    """A cache for `batch` rows that starts with the shared prefix and has `room` tokens to spare.

    Models whose cache is not plain full attention (sliding windows, linear attention) get a copy
    of the prefix in transformers' own DynamicCache instead.
    """
    global _GROWING
    from transformers import DynamicCache
    from transformers.cache_utils import Cache, DynamicLayer

    plain = prefix_cache is not None and all(type(layer) is DynamicLayer and layer.is_initialized
                                             for layer in prefix_cache.layers)
    if not plain:
        if prefix_cache is None:
            return DynamicCache(config=config)
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(batch)
        return cache
    _GROWING = _GROWING or _growing_layer_class()
    layers = [_GROWING(layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1), room)
              for layer in prefix_cache.layers]
    return Cache(layers=layers)


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
    prefix: "PrefixCache | None" = None,
) -> list[tuple[str, int, float]]:
    """Greedy completions of `prompts`: (text, generated tokens, seconds) per prompt, in order.

    `seconds` is a row's latency inside its batch (from the batch's start until the row stopped);
    the one-off shared-prefix forward is in `stats.prefix_seconds`. `prefix` (from `prefix_cache`,
    computed once by a server) is reused instead of that forward when every prompt starts with it.
    """
    import torch
    from transformers import DynamicCache

    stats = stats if stats is not None else GenerationStats()
    t_start = time.perf_counter()
    n = len(prompts)
    stats.n = n
    results: list[tuple[str, int, float] | None] = [None] * n
    if n == 0:
        return []
    device = _model_device(model)
    eos = eos_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = [encode(tokenizer, p) for p in prompts]
    if any(not x for x in ids):
        raise ValueError("empty prompt")
    shared = _shared_prefix_len(ids) if share_prefix and n > 1 else 0
    if shared < MIN_SHARED_PREFIX:
        shared = 0
    given = prefix is not None and prefix.covers(ids)
    if given:
        shared = len(prefix.ids)
    config = getattr(model, "config", None)
    ck = _cache_kwarg(model)

    with torch.inference_mode(), _EvalMode(model), _autocast(device, autocast), _progress(n, progress, desc) as bar:
        prefix_cache = prefix.cache if given else None
        if shared and not given:
            t = time.perf_counter()
            prefix_cache = DynamicCache(config=config)
            with _SdpaGqa(device):
                model(input_ids=torch.tensor([ids[0][:shared]], device=device), use_cache=True, logits_to_keep=1,
                      **{ck: prefix_cache})
            stats.prefix_tokens, stats.prefix_seconds = shared, time.perf_counter() - t

        order = sorted(range(n), key=lambda i: -len(ids[i]))  # similar lengths together: less padding
        # Full batches, not balanced ones: every batch runs as many steps as its longest answer and a
        # step of 64 rows costs ~5.5x one of a single row on CPU (BENCHMARKS.md), so 65 questions at
        # 64 are better as 64 + 1 (the single row is cheap) than 33 + 32 (two long tails).
        for b0 in range(0, n, batch_size):
            batch = order[b0: b0 + batch_size]
            stats.batches += 1
            t_batch = time.perf_counter()
            rows = [ids[i][shared:] for i in batch]
            B, S = len(rows), max(len(r) for r in rows)
            inp = torch.full((B, S), pad_id, dtype=torch.long)
            mask = torch.zeros((B, shared + S), dtype=torch.long)
            mask[:, :shared] = 1
            pos = torch.full((B, S), shared, dtype=torch.long)
            for b, r in enumerate(rows):
                inp[b, S - len(r):] = torch.tensor(r)
                mask[b, shared + S - len(r):] = 1
                pos[b, S - len(r):] = torch.arange(shared, shared + len(r))
            inp, mask, pos = inp.to(device), mask.to(device), pos.to(device)
            cache = _batch_cache(prefix_cache, config, B, S + max_new_tokens + 1)
            with _SdpaGqa(device):
                out = model(input_ids=inp, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                            **{ck: cache})
            nxt = out.logits[:, -1].argmax(-1)
            stats.prefill_tokens += sum(len(r) for r in rows)
            t_decode = time.perf_counter()
            stats.prefill_seconds += t_decode - t_batch

            gen: list[list[int]] = [[] for _ in range(B)]
            gate = _StopGate(tokenizer, B, exact=stop is not is_complete)
            active = list(range(B))  # batch row of each cache row
            alive = [True] * B
            last = pos[:, -1]
            while True:
                for j, (b, tok_id) in enumerate(zip(active, nxt.tolist())):
                    if not alive[j]:
                        continue
                    done = None
                    if tok_id in eos:
                        done = "eos"
                    else:
                        gen[b].append(tok_id)
                        if stop is not None and gate.worth_asking(b, tok_id) and \
                                stop(tokenizer.decode(gen[b], skip_special_tokens=False)):
                            done = "statement"
                        elif len(gen[b]) >= max_new_tokens:
                            done = "length"
                    if done is None:
                        continue
                    alive[j] = False
                    setattr(stats, f"stopped_{done}", getattr(stats, f"stopped_{done}") + 1)
                    text = tokenizer.decode(gen[b], skip_special_tokens=False)
                    results[batch[b]] = (text, len(gen[b]), time.perf_counter() - t_batch)
                    stats.new_tokens += len(gen[b])
                    bar.update(1)
                n_alive = sum(alive)
                if not n_alive:
                    break
                # Finished rows leave the batch, but not one by one: dropping rows copies the whole cache,
                # so wait until a quarter of the rows are finished (they decode ignored tokens meanwhile).
                if len(active) - n_alive >= max(1, len(active) // 4):
                    keep = [j for j in range(len(active)) if alive[j]]
                    sel = torch.tensor(keep, device=device)
                    cache.batch_select_indices(sel)
                    mask, last, nxt = mask[sel], last[sel], nxt[sel]
                    active, alive = [active[j] for j in keep], [True] * len(keep)
                    stats.compactions += 1
                mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
                last = last + 1
                out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=last[:, None], use_cache=True,
                            logits_to_keep=1, **{ck: cache})
                nxt = out.logits[:, -1].argmax(-1)
                stats.decode_steps += 1
                stats.decode_rows += len(active)
            stats.decode_seconds += time.perf_counter() - t_decode
            elapsed = time.perf_counter() - t_start
            bar.set_postfix_str(f"{bar.n / elapsed:.2f} q/s")
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
    shared = _shared_prefix_len(ids)
    device = _model_device(model)
    cache = DynamicCache(config=getattr(model, "config", None))
    if shared:
        with torch.inference_mode(), _EvalMode(model), _autocast(device, autocast), _SdpaGqa(device):
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
) -> list[tuple[str, int, float]]:
    """The baseline: `model.generate` on one prompt at a time (greedy, same stopping rule)."""
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
    """Greedy SQL for each question, batched, sharing the schema prefix's KV cache (`prefix`: a precomputed one).

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


def predict(
    model,
    tokenizer,
    builder: PromptBuilder,
    questions: list[str],
    db,
    *,
    retries: int = 0,
    examples: list[list[dict]] | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 256,
    progress: bool = True,
    autocast: bool = False,
    timeout: float = 5.0,
    stats: GenerationStats | None = None,
) -> list[Generation]:
    """Generate, execute, and re-prompt failing queries with their error up to `retries` times.

    `retry_changed` is True when a retry changed the outcome: the first SQL failed and the final SQL
    runs. `retries` counts the re-prompts a question used; `first_sql`/`first_error` keep the first try.
    """
    from .execute import connect_readonly, execute

    gens = generate_sql(model, tokenizer, builder, questions, batch_size=batch_size, max_new_tokens=max_new_tokens,
                        progress=progress, autocast=autocast, examples=examples, stats=stats)
    con = connect_readonly(db)
    try:
        for g in gens:
            g.error = execute(con, g.sql, timeout=timeout).error
        for attempt in range(retries):
            todo = [i for i, g in enumerate(gens) if g.error]
            if not todo:
                break
            prompts = [retry_prompt(builder, tokenizer, gens[i].question, gens[i].sql, gens[i].error,
                                    None if examples is None else examples[i]) for i in todo]
            outs = generate_texts(model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                  progress=progress, autocast=autocast)
            for i, (raw, ntok, sec) in zip(todo, outs):
                g = gens[i]
                if g.retries == 0:
                    g.first_sql, g.first_error = g.sql, g.error
                g.raw, g.sql, g.tokens = raw, extract_sql(raw), ntok
                g.seconds += sec
                g.retries += 1
                g.error = execute(con, g.sql, timeout=timeout).error
                g.retry_changed = g.error is None
    finally:
        con.close()
    return gens


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
