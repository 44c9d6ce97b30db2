"""Stage: execution-guided decoding. Sample several SQL candidates, execute them, vote on the results.

A vote of N is the greedy answer plus N-1 samples, decoded together: the schema prefix is run
through the model once, each question's tokens are prefilled once, and the KV cache is then
repeated to N rows (`DynamicCache.batch_repeat_interleave`). Row 0 of each question is greedy
(argmax), so candidate 0 is the greedy answer and `overruled` compares the vote with it; the other
rows sample at `temperature` / `top_p` (as transformers' warpers do, looking at the likeliest
64 tokens first: `_nucleus`). The decode loop is our own rather
than `model.generate`, for what made the vote cost 8x greedy on CPU (BENCHMARKS.md, "Voting"): a
row leaves the batch and its cache as soon as it stops (EOS, or its statement is complete:
`extract.is_complete` behind the greedy decoder's `_StopGate`), so the slowest sample no longer
keeps every finished row computing; and once a question's greedy row has ended after L tokens, its
samples stop at `sample_cap` (1.5 L + 24 tokens, at most `max_new_tokens`). Every candidate keeps
its mean token log-probability under the model's raw logits (before temperature and top-p).

`choose` executes every candidate read-only (`execute.execute`, each bounded by the timeout);
candidates that fail or return no rows lose. The others are grouped by result the way `fuzzy`
compares (`score.fuzzy_match` both ways: column order and names free, floats within 1e-4, rows as a
multiset); the largest group wins, ties go to the higher mean log-probability, and the answer is the
winning group's most likely candidate. With no non-empty result, an empty one wins, else greedy.

`correct` (`--vote-correct`, SLM-SQL's corrective self-consistency): when the vote is close (two or
more result groups and the top two differ by at most `CLOSE_MARGIN` votes), the model is shown the
question, the two groups' most likely SQL and their first rows (`PromptBuilder.correction`) and
writes the final SQL greedily. It is executed read-only like every candidate; if it fails or returns
no rows, the voted answer stays; if it returns the voted result, the voted SQL stays.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field

from .errors import SqltuneError
from .extract import extract_sql, is_complete
from .generate import _cache_kwarg, _progress, _StopGate, eos_token_ids, is_looping
from .prompt import PromptBuilder, encode
from .shared_prefix import shared_prefix_len

MAX_VOTE = 64
PREVIEW_ROWS = 3
SAMPLE_TOP_K = 64  # sampling looks at the 64 likeliest tokens first (`_nucleus`); the full vocabulary only if needed
SAMPLE_CAP = (1.5, 24)  # a sample stops after 1.5 x its greedy row's tokens + 24 (`sample_cap`)
CLOSE_MARGIN = 1  # the correction step runs when the top two result groups differ by at most this many votes


@dataclass
class VoteSettings:
    """What `--vote` and recipe `eval.vote` / `eval.temperature` / `eval.top_p` set."""

    n: int = 1
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0
    correct: bool = False  # the correction step on close votes (`--vote-correct`)
    when: str = "always"  # always: every question is voted; error: greedy first, the vote only where its SQL
    #                       does not execute (or there is none) -- `--vote-when`, recipe `eval.vote_when`

    def __post_init__(self):
        check_settings(self.n, self.temperature, self.top_p, correct=self.correct, when=self.when)


WHEN = ("always", "error")


def check_settings(n: int, temperature: float, top_p: float, where: str = "--", correct: bool = False,
                   when: str = "always") -> None:
    """One clear line for a vote that makes no sense (`where`: "--" for options, "eval." for a recipe)."""
    name = {"vote": f"{where}vote", "temperature": f"{where}temperature",
            "top_p": f"{where}top-p" if where == "--" else f"{where}top_p",
            "correct": f"{where}vote-correct" if where == "--" else f"{where}vote_correct",
            "when": f"{where}vote-when" if where == "--" else f"{where}vote_when"}
    if when not in WHEN:
        raise SqltuneError(f"{name['when']} must be one of {', '.join(WHEN)}, got {when!r}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise SqltuneError(f"{name['vote']} must be at least 1 (1 = greedy only), got {n}")
    if n > MAX_VOTE:
        raise SqltuneError(f"{name['vote']} {n} is above the cap of {MAX_VOTE} candidates per question")
    if not temperature > 0:
        raise SqltuneError(f"{name['temperature']} must be above 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise SqltuneError(f"{name['top_p']} must be in (0, 1], got {top_p}")
    if correct and n < 2:
        raise SqltuneError(f"{name['correct']} needs {name['vote']} 2 or more (it arbitrates between the "
                           f"two most-voted results), got {name['vote']} {n}")


@dataclass
class Candidate:
    sql: str | None
    raw: str
    mean_logprob: float
    greedy: bool = False
    tokens: int = 0
    ids: list[int] = field(default_factory=list, repr=False)  # the generated token ids (without EOS)


@dataclass
class VoteOutcome:
    """The vote for one question: every candidate with its result hash and group votes."""

    sql: str | None
    chosen: int  # index into candidates
    candidates: list[dict] = field(default_factory=list)  # sql, mean_logprob, greedy, result, votes, error, rows
    groups: list[dict] = field(default_factory=list)  # result, votes, members, best_logprob, preview
    overruled: bool = False  # the chosen result differs from the greedy candidate's

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- sampling
def _nucleus(logits, temperature: float, top_p: float, k: int = SAMPLE_TOP_K):
    """Top-p sampling's candidates per row: (token ids, probabilities), as transformers' warpers give them.

    `TemperatureLogitsWarper` + `TopPLogitsWarper` sort the whole vocabulary per row (1.6 s a step for
    64 rows of Qwen's 152k tokens on the 2-core CPU, plus 0.7 s to sample from it, BENCHMARKS.md): the
    nucleus is the likeliest tokens until their mass reaches `top_p`, so look at the `k` likeliest
    first and use the warpers only for rows whose nucleus reaches past them (a flat distribution).
    Probabilities are not renormalised (`torch.multinomial` does not need it).
    """
    import torch
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    scaled = logits / temperature
    top, idx = scaled.topk(min(k, scaled.shape[-1]), dim=-1)
    probs = (top - torch.logsumexp(scaled, -1, keepdim=True)).exp()
    cum = probs.cumsum(-1)
    probs = probs.masked_fill(cum - probs >= top_p, 0.0)  # keep a token while the mass before it is < top_p
    wide = (cum[:, -1] < top_p).nonzero().flatten().tolist()
    if wide:  # rare: the nucleus is wider than k tokens; the warpers over the whole vocabulary
        warped = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temperature)(None, logits[wide]))
        full = torch.softmax(warped, -1)
        return [(idx, probs), (torch.tensor(wide, device=logits.device), full)]
    return [(idx, probs)]


def _sample(logits, temperature: float, top_p: float, gen):
    """One sampled token per row (top-p at `temperature`), drawn with the generator `gen`."""
    import torch

    if top_p >= 1.0:  # every token stays: no nucleus to find, so no sort of the vocabulary (GRPO's setting)
        return torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=gen).squeeze(1)
    parts = _nucleus(logits, temperature, top_p)
    idx, probs = parts[0]
    tok = idx.gather(1, torch.multinomial(probs, 1, generator=gen)).squeeze(1)
    if len(parts) > 1:
        rows, full = parts[1]
        tok[rows] = torch.multinomial(full, 1, generator=gen).squeeze(1)
    return tok


def sample_cap(greedy_tokens: int, max_new_tokens: int) -> int:
    """The most tokens a sample may write once its question's greedy row ended after `greedy_tokens`."""
    return min(max_new_tokens, int(SAMPLE_CAP[0] * greedy_tokens + 0.999) + SAMPLE_CAP[1])


def sample_sql(
    model,
    tokenizer,
    builder: PromptBuilder,
    questions: list[str],
    n: int,
    *,
    temperature: float = 0.8,
    top_p: float = 0.95,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = False,
    examples: list[list[dict]] | None = None,
    autocast: bool = False,
    stats: dict | None = None,
    loop_stop: bool = True,
) -> list[list[Candidate]]:
    """N candidates per question: candidate 0 greedy, then N-1 samples; one prefill per question.

    A row ends at EOS, where its statement is complete, at its token limit, or (`loop_stop`) in a loop
    (`generate.is_looping`), as the greedy decoder's rows do: candidate 0 is then the greedy decoder's answer, and a
    runaway row does not keep its group decoding alone to the limit.

    `batch_size` counts generated rows: each `generate` call takes max(1, batch_size // n) questions.
    The same `seed` gives the same candidates for the same inputs and batching.
    `stats` (a dict) receives counts: prefix_forwards, prefill_forwards (one per group of questions,
    all at once, before the rows are repeated N times), generate_calls (decode loops, one per
    group), decode_steps and row_steps (rows decoded, summed over steps).
    """
    from contextlib import nullcontext

    import torch
    from transformers import DynamicCache

    check_settings(n, temperature, top_p)
    if examples is not None and len(examples) != len(questions):
        raise ValueError(f"{len(questions)} questions but {len(examples)} example lists")
    if not questions:
        return []
    st = stats if stats is not None else {}
    for k in ("prefix_forwards", "prefill_forwards", "generate_calls", "decode_steps", "row_steps"):
        st.setdefault(k, 0)
    device = next(model.parameters()).device
    eos = eos_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
    prompts = [builder.prompt(tokenizer, q, None if examples is None else examples[i]) for i, q in enumerate(questions)]
    ids = [encode(tokenizer, p) for p in prompts]
    shared = shared_prefix_len(ids)
    per_call = max(1, batch_size // n)
    out: list[list[Candidate]] = [[] for _ in questions]
    amp = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if autocast else nullcontext()
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), amp, torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            prefix_cache = DynamicCache(config=model.config)
            if shared:
                model(input_ids=torch.tensor([ids[0][:shared]], device=device), use_cache=True, logits_to_keep=1,
                      **{_cache_kwarg(model): prefix_cache})
                st["prefix_forwards"] += 1
            order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
            bar = _progress(len(ids), progress, "voting")
            for c, b0 in enumerate(range(0, len(order), per_call)):
                chunk = order[b0: b0 + per_call]
                cands = _sample_chunk(model, tokenizer, [ids[i] for i in chunk], shared, prefix_cache, n,
                                      temperature, top_p, max_new_tokens, eos, pad_id, seed + c, device, st,
                                      loop_stop)
                for i, cs in zip(chunk, cands):
                    out[i] = cs
                bar.update(len(chunk))
            bar.close()
    finally:
        if was_training:
            model.train()
    return out


def _sample_chunk(model, tokenizer, ids, shared, prefix_cache, n, temperature, top_p, max_new_tokens, eos, pad_id,
                  seed, device, st, loop_stop=True) -> list[list[Candidate]]:
    """Decode n rows per question from one prefill: row 0 greedy, the others sampled; finished rows leave."""
    import copy

    import torch


    k = len(ids)
    rows = [x[shared:] for x in ids]
    S = max(len(r) for r in rows)
    inp = torch.full((k, shared + S), pad_id, dtype=torch.long)
    mask = torch.zeros((k, shared + S), dtype=torch.long)
    for b, x in enumerate(ids):
        inp[b, :shared] = torch.tensor(x[:shared])
        inp[b, shared + S - len(rows[b]):] = torch.tensor(rows[b])
        mask[b, :shared] = 1
        mask[b, shared + S - len(rows[b]):] = 1
    inp, mask = inp.to(device), mask.to(device)
    ck = _cache_kwarg(model)
    # The question's prefill, once per question (all but its last token, which the first step feeds).
    cache = copy.deepcopy(prefix_cache)
    if shared:
        cache.batch_repeat_interleave(k)
    if S > 1:
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        model(input_ids=inp[:, shared:-1], attention_mask=mask[:, :-1], position_ids=pos[:, shared:-1],
              use_cache=True, logits_to_keep=1, **{ck: cache})
        st["prefill_forwards"] += 1
    cache.batch_repeat_interleave(n)
    R = k * n
    m = mask.repeat_interleave(n, 0)
    p = m.sum(-1) - 1  # position of each row's last prompt token
    cur = inp[:, -1].repeat_interleave(n, 0)[:, None]
    greedy = torch.zeros(R, dtype=torch.bool, device=device)
    greedy[::n] = True
    gen = torch.Generator(device=device).manual_seed(seed)
    gate = _StopGate(tokenizer, R, exact=False)
    act = list(range(R))  # original row of each batch row still decoding
    toks: list[list[int]] = [[] for _ in range(R)]
    lps: list[list[float]] = [[] for _ in range(R)]
    limit = [max_new_tokens] * R
    st["generate_calls"] += 1
    while act:
        logits = model(input_ids=cur, attention_mask=m, position_ids=p[:, None], use_cache=True,
                       **{ck: cache}).logits[:, -1].float()
        st["decode_steps"] += 1
        st["row_steps"] += len(act)
        nxt = torch.where(greedy, logits.argmax(-1), _sample(logits, temperature, top_p, gen))
        chosen = torch.log_softmax(logits, -1).gather(1, nxt[:, None]).squeeze(1)
        done = set()
        for j, (r, t, lp) in enumerate(zip(act, nxt.tolist(), chosen.tolist())):
            lps[r].append(lp)
            if t in eos:
                done.add(j)
                continue
            toks[r].append(t)
            if len(toks[r]) >= limit[r] or (loop_stop and is_looping(toks[r])) or (gate.worth_asking(r, t) and
                                            is_complete(tokenizer.decode(toks[r], skip_special_tokens=False))):
                done.add(j)
        for j in done:
            r = act[j]
            if r % n == 0:  # the greedy row ended: its question's samples get a length cap
                for o in range(r + 1, r + n):
                    limit[o] = min(limit[o], sample_cap(len(toks[r]), max_new_tokens))
        keep = [j for j, r in enumerate(act) if j not in done and len(toks[r]) < limit[r]]
        if len(keep) < len(act):  # finished rows leave the batch and its cache
            if not keep:
                break
            idx = torch.tensor(keep, device=device)
            cache.batch_select_indices(idx)
            m, p, nxt, greedy = m[idx], p[idx], nxt[idx], greedy[idx]
            act = [act[j] for j in keep]
        m = torch.cat([m, m.new_ones((len(act), 1))], 1)
        p = p + 1
        cur = nxt[:, None]
    out: list[list[Candidate]] = []
    for b in range(k):
        cs = []
        for j in range(n):
            r = b * n + j
            raw = tokenizer.decode(toks[r], skip_special_tokens=False)
            mean = sum(lps[r]) / len(lps[r]) if lps[r] else 0.0
            cs.append(Candidate(sql=extract_sql(raw), raw=raw, mean_logprob=round(mean, 6), greedy=j == 0,
                                tokens=len(toks[r]), ids=toks[r]))
        out.append(cs)
    return out


# ---------------------------------------------------------------- voting
def _result_hash(rows: list) -> str:
    """A short id for a result (of the group's first member; equal results within tolerance share a group)."""
    from .score import _sort_key

    canon = sorted(repr(sorted(map(_sort_key, r))) for r in rows)
    return hashlib.sha1("\n".join(canon).encode()).hexdigest()[:12]


def same_result(a: list, b: list) -> bool:
    """Equal as `fuzzy` compares, both ways: column order and names free, floats within tolerance."""
    from .score import fuzzy_match

    return fuzzy_match(a, b, ordered=False) and fuzzy_match(b, a, ordered=False)


def choose(db, candidates: list[Candidate], *, timeout: float = 5.0, max_rows: int | None = None) -> VoteOutcome:
    """Execute every candidate read-only and pick the answer by majority of results (see module doc)."""
    import sqlite3

    from .execute import DEFAULT_MAX_ROWS, connect_readonly, execute

    if not candidates:
        raise ValueError("no candidates to vote on")
    con = db if isinstance(db, sqlite3.Connection) else connect_readonly(db)
    results: dict[str, object] = {}
    try:
        for c in candidates:
            if c.sql and c.sql not in results:
                results[c.sql] = execute(con, c.sql, timeout=timeout, max_rows=max_rows or DEFAULT_MAX_ROWS)
    finally:
        if con is not db:
            con.close()
    groups: list[dict] = []
    member_of: list[int | None] = []
    for i, c in enumerate(candidates):
        res = results.get(c.sql) if c.sql else None
        if res is None or not res.ok or not res.rows:
            member_of.append(None)
            continue
        for gi, g in enumerate(groups):
            if same_result(g["_rows"], res.rows):
                g["members"].append(i)
                member_of.append(gi)
                break
        else:
            groups.append({"_rows": res.rows, "result": _result_hash(res.rows), "members": [i],
                           "preview": [list(r) for r in res.rows[:PREVIEW_ROWS]], "columns": res.columns})
            member_of.append(len(groups) - 1)
    for g in groups:
        g["votes"] = len(g["members"])
        g["best_logprob"] = max(candidates[i].mean_logprob for i in g["members"])
    by_logprob = lambda i: candidates[i].mean_logprob  # noqa: E731
    if groups:
        win = max(range(len(groups)), key=lambda gi: (groups[gi]["votes"], groups[gi]["best_logprob"]))
        chosen = max(groups[win]["members"], key=by_logprob)
    else:
        ran_empty = [i for i, c in enumerate(candidates) if c.sql and results[c.sql].ok]
        chosen = max(ran_empty, key=by_logprob) if ran_empty else 0
    greedy = next((i for i, c in enumerate(candidates) if c.greedy), 0)
    overruled = member_of[chosen] != member_of[greedy] or (member_of[chosen] is None and
                                                          candidates[chosen].sql != candidates[greedy].sql)
    rows = []
    for i, c in enumerate(candidates):
        res = results.get(c.sql) if c.sql else None
        gi = member_of[i]
        rows.append({"sql": c.sql, "mean_logprob": c.mean_logprob, "greedy": c.greedy,
                     "result": groups[gi]["result"] if gi is not None else None,
                     "votes": groups[gi]["votes"] if gi is not None else 0,
                     "rows": len(res.rows) if res is not None and res.ok else None,
                     "error": (res.error if res is not None else "no SQL")})
    for g in groups:
        del g["_rows"]
    groups.sort(key=lambda g: (-g["votes"], -g["best_logprob"]))
    return VoteOutcome(sql=candidates[chosen].sql, chosen=chosen, candidates=rows, groups=groups, overruled=overruled)


# ---------------------------------------------------------------- correction of close votes
def is_close(outcome: VoteOutcome) -> bool:
    """Two or more result groups, the top two within `CLOSE_MARGIN` votes of each other."""
    g = outcome.groups
    return len(g) >= 2 and g[0]["votes"] - g[1]["votes"] <= CLOSE_MARGIN


def review_scores(model, tokenizer, builder: PromptBuilder, question: str, sqls: list[str],
                  autocast: bool = False, batch_size: int = 16, examples: list[dict] | None = None,
                  results: list[dict | None] | None = None) -> list[float]:
    """The reviewer (`eval.panel_judge: reviewer`): log P(question | schema, sql) for each sql, summed over the
    question's tokens (Coder-Reviewer reranking, Zhang et al. 2022). The question is the same for every sql, so the
    sums compare directly; the model scores as it is (the panel switches an adapter off first). `examples`: training
    pairs shown before the SQL (`PromptBuilder.review`), the same for every candidate; `results`: each SQL's
    {columns, rows}, shown after it.

    Every reviewer prompt starts with the same system turn and schema (hundreds of tokens; the SQL and the question
    after it are tens): that shared prefix is run once and its KV cache repeated to `batch_size` rows
    (`tail_logprobs`). The scores equal whole-sequence scoring (tested) at a fraction of its cost (BENCHMARKS.md,
    "Session 33")."""
    shown = results if results is not None else [None] * len(sqls)
    if len(shown) != len(sqls):
        raise ValueError(f"{len(shown)} results for {len(sqls)} SQL")
    heads = [tokenizer(builder.review(tokenizer, s, examples, r), add_special_tokens=False)["input_ids"]
             for s, r in zip(sqls, shown)]
    tail = tokenizer(question.strip(), add_special_tokens=False)["input_ids"]
    if not sqls or not tail:
        return [0.0] * len(sqls)
    return tail_logprobs(model, [h + tail for h in heads], [len(tail)] * len(sqls), tokenizer.pad_token_id,
                         autocast=autocast, batch_size=batch_size)


def coder_scores(model, tokenizer, builder: PromptBuilder, question: str, sqls: list[str],
                 autocast: bool = False, batch_size: int = 16,
                 examples: list[dict] | None = None) -> list[tuple[float, int]]:
    """The coder's side of Coder-Reviewer reranking: log P(sql | the writing prompt) for each sql, as
    (summed log-probability, tokens scored). What is scored is what training teaches after the prompt
    (`PromptBuilder.completion`: the SQL and the end-of-turn marker), under `builder.prompt(question, examples)`,
    which every candidate shares: run once, its KV cache repeated (`tail_logprobs`)."""
    prompt = encode(tokenizer, builder.prompt(tokenizer, question, examples))
    tails = [encode(tokenizer, builder.completion(tokenizer, question, s, examples)) for s in sqls]
    if not sqls or not prompt:
        return [(0.0, len(t)) for t in tails]
    sums = tail_logprobs(model, [prompt + t for t in tails], [len(t) for t in tails], tokenizer.pad_token_id,
                         autocast=autocast, batch_size=batch_size)
    return [(s, len(t)) for s, t in zip(sums, tails)]


def tail_logprobs(model, rows: list[list[int]], spans: list[int], pad_id: int | None = None, *,
                  autocast: bool = False, batch_size: int = 16) -> list[float]:
    """The summed log-probability of the last `spans[i]` tokens of each token row, given the tokens before them.

    The rows' shared prefix (`shared_prefix_len`, stopped before the first position whose logit is scored) is run
    once and its KV cache repeated to each batch (`DynamicCache.batch_repeat_interleave`); the rest of each row is
    padded on the left, so every row's scored tokens end at the last position, where alone the vocabulary is
    projected (`logits_to_keep`). Rows are batched shortest first (less padding); the scores come back in the rows'
    order. Equal to running each whole row through the model (tested)."""
    import copy
    from contextlib import nullcontext

    import torch
    from transformers import DynamicCache

    if len(rows) != len(spans):
        raise ValueError(f"{len(spans)} spans for {len(rows)} rows")
    if not rows:
        return []
    if any(not 0 < m < len(r) for r, m in zip(rows, spans)):
        raise ValueError("each row needs at least one token before its scored span, and a span of one or more")
    # the logit at position len - span - 1 predicts a row's first scored token: the prefix stops before it
    n = min(shared_prefix_len(rows), min(len(r) - m for r, m in zip(rows, spans)) - 1)
    pad = pad_id if pad_id is not None else 0
    device = next(model.parameters()).device
    amp = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if autocast else nullcontext()
    was_training = model.training
    model.eval()
    out = [0.0] * len(rows)
    try:
        with torch.inference_mode(), amp:
            ck, prefix = _cache_kwarg(model), None
            if n > 0:
                prefix = DynamicCache(config=model.config)
                model(input_ids=torch.tensor([rows[0][:n]], device=device), use_cache=True, logits_to_keep=1,
                      **{ck: prefix})
            order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # similar lengths batch with less padding
            for b0 in range(0, len(rows), batch_size):
                idx = order[b0: b0 + batch_size]
                part = [rows[i][n:] for i in idx]
                span = [spans[i] for i in idx]
                width = max(len(r) for r in part)
                keep = max(span) + 1  # the logits before each scored token, and the last one's (dropped)
                # left-padded after the prefix, so every row's scored span ends at the last position
                ids = torch.tensor([[pad] * (width - len(r)) + r for r in part], device=device)
                mask = torch.tensor([[1] * n + [0] * (width - len(r)) + [1] * len(r) for r in part], device=device)
                pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, n:]
                kw = {}
                if prefix is not None:
                    cache = copy.deepcopy(prefix)
                    cache.batch_repeat_interleave(len(part))
                    kw = {ck: cache, "use_cache": True}
                logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=keep, **kw).logits
                lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # [rows, keep - 1, vocab]: predicts ids[-keep+1:]
                want = ids[:, -(keep - 1):]
                got = lp.gather(2, want[:, :, None]).squeeze(2)
                first = keep - 1 - torch.tensor(span, device=device)  # where each row's scored span starts
                scored = torch.arange(keep - 1, device=device)[None, :] >= first[:, None]
                for i, x in zip(idx, torch.where(scored, got, 0.0).sum(dim=1)):
                    out[i] = float(x)
    finally:
        if was_training:
            model.train()
    return out


def review_pick(outcome: VoteOutcome, scores: dict[str, float]) -> int | None:
    """The candidate the reviewer elects: the first member of the result group whose best member's score is highest
    (a tie: the group with the earliest member). None where fewer than two groups ran with rows (nothing to judge)."""
    if len(outcome.groups) < 2:
        return None
    sql_of = [c["sql"] for c in outcome.candidates]

    def key(g) -> tuple:
        return (max(scores.get(sql_of[i], float("-inf")) for i in g["members"]), -min(g["members"]))

    return min(max(outcome.groups, key=key)["members"])


def correction_options(outcome: VoteOutcome) -> list[dict]:
    """The two most-voted groups as the correction prompt shows them: {sql, columns, rows} each."""
    out = []
    for g in outcome.groups[:2]:
        best = max(g["members"], key=lambda i: outcome.candidates[i]["mean_logprob"])
        out.append({"sql": outcome.candidates[best]["sql"], "columns": g.get("columns") or [], "rows": g["preview"]})
    return out


def correct(model, tokenizer, builder: PromptBuilder, questions: list[str], outcomes: list[VoteOutcome], db, *,
            examples: list[list[dict]] | None = None, batch_size: int = 16, max_new_tokens: int = 256,
            timeout: float = 5.0, autocast: bool = False) -> list[dict]:
    """The correction step for every close vote: {ran, sql, error, rows, changed, prompt_sqls} per question.

    `sql` is the model's final SQL (None where it wrote none); `changed` is True only where that SQL
    ran, returned rows, and its result differs from the vote's, and then it is the answer.
    """
    from .execute import DEFAULT_MAX_ROWS, connect_readonly, execute
    from .generate import generate_texts

    todo = [i for i, o in enumerate(outcomes) if is_close(o)]
    out = [{"ran": False} for _ in outcomes]
    if not todo:
        return out
    opts = {i: correction_options(outcomes[i]) for i in todo}
    prompts = [builder.correction(tokenizer, questions[i], opts[i], None if examples is None else examples[i])
               for i in todo]
    texts = generate_texts(model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens,
                           progress=False, autocast=autocast, desc="correcting")
    con = db if not isinstance(db, (str, bytes)) and hasattr(db, "execute") else connect_readonly(db)
    try:
        for i, (raw, _, _) in zip(todo, texts):
            sql = extract_sql(raw)
            rec = {"ran": True, "sql": sql, "raw": raw, "error": "no SQL", "rows": None, "changed": False,
                   "prompt_sqls": [o["sql"] for o in opts[i]]}
            if sql:
                res = execute(con, sql, timeout=timeout, max_rows=DEFAULT_MAX_ROWS)
                rec["error"], rec["rows"] = res.error, (len(res.rows) if res.ok else None)
                if res.ok and res.rows and outcomes[i].sql:
                    voted = execute(con, outcomes[i].sql, timeout=timeout, max_rows=DEFAULT_MAX_ROWS)
                    rec["changed"] = not (voted.ok and same_result(voted.rows, res.rows))
                elif res.ok and res.rows:
                    rec["changed"] = True
            out[i] = rec
    finally:
        if con is not db:
            con.close()
    return out


# ---------------------------------------------------------------- predictions (the evaluator's hook)
def candidates_for(model, tokenizer, builder: PromptBuilder, questions: list[str], vote: VoteSettings, db, *,
                   timeout: float = 5.0, examples: list[list[dict]] | None = None, **kw) -> list[list[Candidate]]:
    """The candidates `choose` votes on, per question, by `vote.when`: `always`, greedy + n-1 samples for every
    question (`sample_sql`); `error`, greedy first, and greedy + n-1 samples only for a question whose greedy
    SQL is missing or does not execute (the others keep their one greedy candidate). `kw`: `sample_sql`'s."""
    kw = dict(temperature=vote.temperature, top_p=vote.top_p, seed=vote.seed, **kw)
    if vote.when != "error":
        return sample_sql(model, tokenizer, builder, questions, vote.n, examples=examples, **kw)
    from .execute import connect_readonly, execute

    cands = sample_sql(model, tokenizer, builder, questions, 1, examples=examples, **kw)
    con = connect_readonly(db)
    try:
        failed = [i for i, cs in enumerate(cands) if not cs[0].sql or not execute(con, cs[0].sql, timeout=timeout).ok]
    finally:
        con.close()
    if failed:
        more = sample_sql(model, tokenizer, builder, [questions[i] for i in failed], vote.n,
                          examples=None if examples is None else [examples[i] for i in failed], **kw)
        for i, cs in zip(failed, more):
            cands[i] = cs
    return cands


def predict_rows(model, tokenizer, builder: PromptBuilder, items: list[dict], db, vote: VoteSettings, *,
                 examples: list[list[dict]] | None = None, batch_size: int = 16, max_new_tokens: int = 256,
                 timeout: float = 5.0, progress: bool = True, autocast: bool = False) -> list[dict]:
    """`predict_items`'s rows for a vote: {id, question, sql, raw, seconds, ..., greedy_sql, overruled, vote}.

    With `vote.correct` each row also has `voted_sql` (the vote's answer) and `correction` (see `correct`).
    """
    t = time.perf_counter()
    questions = [it["question"] for it in items]
    cands = candidates_for(model, tokenizer, builder, questions, vote, db, timeout=timeout, examples=examples,
                           max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress, autocast=autocast)
    from .execute import connect_readonly

    con = connect_readonly(db)
    try:
        outcomes = [choose(con, cs, timeout=timeout) for cs in cands]
        fixes = (correct(model, tokenizer, builder, questions, outcomes, con, examples=examples,
                         batch_size=batch_size, max_new_tokens=max_new_tokens, timeout=timeout, autocast=autocast)
                 if vote.correct else None)
    finally:
        con.close()
    per_q = (time.perf_counter() - t) / max(1, len(items))
    rows = []
    for i, (it, cs, v) in enumerate(zip(items, cands, outcomes)):
        chosen = cs[v.chosen]
        row = {"id": str(it.get("id", i)), "question": it["question"], "sql": v.sql, "raw": chosen.raw,
               "seconds": round(per_q, 4), "retries": 0, "retry_changed": False,
               "error": v.candidates[v.chosen]["error"], "greedy_sql": cs[0].sql,
               "overruled": v.overruled, "vote": {"chosen": v.chosen, "candidates": v.candidates, "groups": v.groups}}
        if fixes is not None:
            fx = fixes[i]
            row["voted_sql"] = v.sql
            row["correction"] = {k: fx[k] for k in ("ran", "sql", "error", "changed", "prompt_sqls") if k in fx}
            if fx.get("changed"):
                row["sql"], row["raw"], row["error"] = fx["sql"], fx["raw"], None
        rows.append(row)
    return rows


def vote_summary(db, items: list[dict], rows: list[dict], report: dict, *, timeout: float = 5.0) -> dict:
    """Greedy vs voted for a scored vote: {greedy, voted, overruled, helped, hurt, best_of_n, ...}.

    `greedy` scores candidate 0 (the greedy answer) like the vote; `best_of_n` is the share of
    questions where some candidate is exact (what a perfect chooser would reach). `voted` is the
    vote's answer; with the correction step, `correction` holds {corrected (the final answer's
    summary, the report's), ran, changed, helped, hurt}.
    """
    from .execute import connect_readonly, execute
    from .score import compare, score_pairs

    greedy = score_pairs(db, items, [r.get("greedy_sql") for r in rows], timeout=timeout)
    con = connect_readonly(db)
    any_exact = 0
    try:
        for it, r in zip(items, rows):
            gold = execute(con, it["sql"], timeout=timeout)
            sqls = {c["sql"] for c in r["vote"]["candidates"] if c["sql"] and c["rows"] is not None}
            any_exact += any(compare(gold, execute(con, s, timeout=timeout), it["sql"])["exact"] for s in sqls)
    finally:
        con.close()
    final = report["examples"]
    corrected = any("correction" in r for r in rows)
    fell_back = any("fallback" in r or "pool" in r for r in rows)
    # the vote's own answer (before any correction step, fallback or pooled vote) is what overruled / helped / hurt
    # judge; the pool can change an answer with the adapter's own candidates, leaving no `fallback` record
    before = score_pairs(db, items, [r["voted_sql"] if "voted_sql" in r else (r.get("pool") or r.get("fallback") or r)["sql"]
                                     for r in rows], timeout=timeout) if corrected or fell_back else report
    voted = before["examples"]
    over = [i for i, r in enumerate(rows) if r.get("overruled")]
    n = len(rows)
    out = {
        "n": max((len(r["vote"]["candidates"]) for r in rows), default=0),  # the evaluator sets the setting's n
        "voted_questions": sum(1 for r in rows if len(r["vote"]["candidates"]) > 1),
        "greedy": greedy["summary"],
        "voted": before["summary"],
        "overruled": len(over),
        "helped": sum(1 for i in over if voted[i]["exact"] and not greedy["examples"][i]["exact"]),
        "hurt": sum(1 for i in over if greedy["examples"][i]["exact"] and not voted[i]["exact"]),
        "best_of_n": any_exact / n if n else 0.0,
        "greedy_examples": [{"id": e["id"], "exact": e["exact"], "fuzzy": e["fuzzy"]} for e in greedy["examples"]],
    }
    if corrected:  # what the correction step did: `corrected` is the final answer's score (the report's)
        changed = [i for i, r in enumerate(rows) if (r.get("correction") or {}).get("changed")]
        out["correction"] = {
            "corrected": report["summary"],
            "ran": sum(1 for r in rows if (r.get("correction") or {}).get("ran")),
            "changed": len(changed),
            "helped": sum(1 for i in changed if final[i]["exact"] and not voted[i]["exact"]),
            "hurt": sum(1 for i in changed if voted[i]["exact"] and not final[i]["exact"]),
        }
    return out
