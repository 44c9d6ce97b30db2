"""Shared pieces of the GPU benchmarks (issue 7): data, batch layouts, the loss, FLOP counting.

Data: exoplanet question -> SQL pairs from templates (deterministic), rendered with sqltune's own
`PromptBuilder` over `schema_text` of the exoplanets DB, so every example is ~800 tokens of which
~770 are the shared schema prefix.

Two batch layouts, the same loss:
- `padded`: B rows, right-padded, each with its own copy of the prefix (the plain way).
- `shared`: ONE row holding the prefix once followed by every example's tail (question + SQL),
  with position ids restarting after the prefix for each tail and a 4D boolean mask in which a
  tail sees the prefix and itself (causally) but no other tail. No padding, no cross-contamination,
  and the prefix is computed once per batch: the loss and gradients equal the padded layout's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn as nn

IGNORE = -100

PLANET_TYPES = ["Neptune-like", "Gas Giant", "Super Earth", "Terrestrial"]
METHODS = ["Transit", "Radial Velocity", "Gravitational Microlensing", "Direct Imaging", "Transit Timing Variations"]
YEARS = list(range(2002, 2023))
SYSTEMS = ["Kepler-80", "Kepler-20", "Kepler-11", "Kepler-84", "Kepler-62", "Kepler-186", "Kepler-444", "Kepler-90",
           "Kepler-33", "Kepler-55", "Kepler-102", "Kepler-150"]

TEMPLATES = [
    ("How many planets were discovered in {year}?",
     "SELECT COUNT(*) FROM exoplanets WHERE discovery_year = {year}"),
    ("How many {ptype} planets are there?",
     "SELECT COUNT(*) FROM exoplanets WHERE planet_type = '{ptype}'"),
    ("How many planets were found with the {method} method?",
     "SELECT COUNT(*) FROM exoplanets WHERE detection_method = '{method}'"),
    ("What is the average distance in light years of {ptype} planets?",
     "SELECT AVG(distance) FROM exoplanets WHERE planet_type = '{ptype}'"),
    ("List the names of the {k} closest planets to Earth.",
     "SELECT name FROM exoplanets WHERE distance IS NOT NULL ORDER BY distance ASC LIMIT {k}"),
    ("Which {k} planets have the longest orbital period?",
     "SELECT name FROM exoplanets ORDER BY orbital_period DESC LIMIT {k}"),
    ("How many planets discovered in {year} were found by {method}?",
     "SELECT COUNT(*) FROM exoplanets WHERE discovery_year = {year} AND detection_method = '{method}'"),
    ("What is the highest eccentricity among planets discovered in {year}?",
     "SELECT MAX(eccentricity) FROM exoplanets WHERE discovery_year = {year}"),
    ("How many planets are closer than {d} light years?",
     "SELECT COUNT(*) FROM exoplanets WHERE distance < {d}"),
    ("In which year were the most {ptype} planets discovered?",
     "SELECT discovery_year FROM exoplanets WHERE planet_type = '{ptype}' GROUP BY discovery_year "
     "ORDER BY COUNT(*) DESC LIMIT 1"),
    ("How many planets are in the {system} system?",
     "SELECT COUNT(*) FROM exoplanets WHERE name LIKE '{system} %'"),
    ("How many planets have a mass above {m} times that of Jupiter?",
     "SELECT COUNT(*) FROM exoplanets WHERE mass_wrt = 'Jupiter' AND mass_multiplier > {m}"),
    ("For each detection method, how many planets were discovered after {year}?",
     "SELECT detection_method, COUNT(*) FROM exoplanets WHERE discovery_year > {year} GROUP BY detection_method"),
    ("What is the name of the {ptype} planet with the largest radius relative to Earth?",
     "SELECT name FROM exoplanets WHERE planet_type = '{ptype}' AND radius_wrt = 'Earth' "
     "ORDER BY radius_multiplier DESC LIMIT 1"),
]


def make_examples(n: int, seed: int = 0) -> list[dict]:
    """`n` templated exoplanet question/SQL pairs (cycling through the templates, random slot values)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        q, s = TEMPLATES[i % len(TEMPLATES)]
        slots = dict(year=rng.choice(YEARS), ptype=rng.choice(PLANET_TYPES), method=rng.choice(METHODS),
                     k=rng.choice([3, 5, 10]), d=rng.choice([20, 50, 100, 200]), system=rng.choice(SYSTEMS),
                     m=rng.choice([1, 2, 5, 10]))
        out.append({"id": f"{seed}-{i}", "question": q.format(**slots), "sql": s.format(**slots)})
    return out


# ---------------------------------------------------------------------------------------------- tokens
@dataclass
class Tokenized:
    prefix: list[int]  # the shared prefix (schema prompt up to the question)
    items: list[tuple[list[int], list[int]]]  # (prompt ids, completion ids) per example

    def tail(self, i: int) -> tuple[list[int], list[int]]:
        """(tail ids after the prefix, labels for them) of example i."""
        p, c = self.items[i]
        ids = p[len(self.prefix):] + c
        labels = [IGNORE] * (len(p) - len(self.prefix)) + list(c)
        return ids, labels

    def example_tokens(self, idx: list[int] | None = None) -> int:
        idx = range(len(self.items)) if idx is None else idx
        return sum(len(self.items[i][0]) + len(self.items[i][1]) for i in idx)


def tokenize(tok, builder, examples: list[dict]) -> Tokenized:
    from sqltune.prompt import encode

    prefix = encode(tok, builder.prefix(tok))
    items = []
    for e in examples:
        p, c = builder.example(tok, e["question"], e["sql"])
        pi, ci = encode(tok, p), encode(tok, c)
        if pi[: len(prefix)] != prefix:
            raise ValueError("the prompt's tokens do not start with the shared prefix's tokens")
        items.append((pi, ci))
    return Tokenized(prefix, items)


# ---------------------------------------------------------------------------------------------- layouts
def padded_batch(data: Tokenized, idx: list[int], pad_id: int) -> dict:
    """B rows, right-padded: input_ids, attention_mask (2D), labels, position_ids."""
    rows = [(data.items[i][0] + data.items[i][1], [IGNORE] * len(data.items[i][0]) + list(data.items[i][1])) for i in idx]
    L = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), L), pad_id, dtype=torch.long)
    lab = torch.full((len(rows), L), IGNORE, dtype=torch.long)
    att = torch.zeros((len(rows), L), dtype=torch.long)
    for j, (x, y) in enumerate(rows):
        ids[j, : len(x)] = torch.tensor(x)
        lab[j, : len(y)] = torch.tensor(y)
        att[j, : len(x)] = 1
    pos = (att.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": att, "position_ids": pos, "labels": lab}


def shared_prefix_len(data: Tokenized, idx: list[int]) -> int:
    return len(data.prefix) + sum(len(data.tail(i)[0]) for i in idx)


def shared_prefix_batch(data: Tokenized, idx: list[int], pad_to: int = 1, length: int | None = None) -> dict:
    """ONE row: prefix once, then every example's tail; 4D bool mask (True = may attend).

    `pad_to` rounds the row up to a multiple; `length` pads it to exactly that many tokens (one
    shape for every batch, as torch.compile / CUDA graphs want). Padding attends only to itself."""
    P = len(data.prefix)
    ids, labels, pos, seg = list(data.prefix), [IGNORE] * P, list(range(P)), [0] * P
    for s, i in enumerate(idx, 1):
        t, y = data.tail(i)
        y = list(y)
        y[0] = IGNORE  # never predict a tail's first token from the previous tail (it is a question token anyway)
        ids += t
        labels += y
        pos += range(P, P + len(t))
        seg += [s] * len(t)
    T = len(ids)
    Tp = -(-T // pad_to) * pad_to if length is None else length
    if Tp < T:
        raise ValueError(f"batch of {T} tokens does not fit length {length}")
    extra = Tp - T
    ids += [0] * extra
    labels += [IGNORE] * extra
    pos += [0] * extra
    seg += [-1] * extra  # padding: a segment of its own that nothing attends to
    seg_t = torch.tensor(seg)
    causal = torch.ones(Tp, Tp, dtype=torch.bool).tril()
    same = seg_t[:, None] == seg_t[None, :]
    to_prefix = (seg_t[None, :] == 0) & (seg_t[:, None] >= 0)
    mask = causal & (same | to_prefix)
    if extra:  # padding rows attend to themselves only (a fully masked row would give NaN)
        r = torch.arange(T, Tp)
        mask[r] = False
        mask[r, r] = True
    return {"input_ids": torch.tensor([ids]), "attention_mask": mask[None, None], "position_ids": torch.tensor([pos]),
            "labels": torch.tensor([labels])}


def attention_pairs(batch: dict) -> int:
    """(query, key) pairs actually attended (non-pad), for FLOP counting."""
    m = batch["attention_mask"]
    if m.dim() == 4:
        return int(m.sum())
    lens = m.sum(-1)
    return int((lens * (lens + 1) // 2).sum())


def body_tokens(batch: dict) -> int:
    m = batch["attention_mask"]
    if m.dim() == 4:
        return int((batch["labels"].numel()))  # one row; padding (if any) counted
    return int(m.sum())


def label_tokens(batch: dict) -> int:
    return int((batch["labels"][:, 1:] != IGNORE).sum())


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# ---------------------------------------------------------------------------------------------- loss
def _lm_parts(model):
    """(decoder body, lm_head) of a causal LM, through peft / wrappers."""
    base = model
    for attr in ("module", "_orig_mod"):
        base = getattr(base, attr, base)
    return base.get_decoder(), base.get_output_embeddings()


def lm_loss(model, batch: dict, reduction: str = "mean", body=None):
    """Cross-entropy on labelled tokens only; the lm_head runs on those positions alone.

    Returns (loss, n_labels). `reduction='sum'` returns the summed loss (for exact data-parallel means).
    `body` replaces the decoder (e.g. its torch.compile'd version).
    """
    import torch.nn.functional as F

    dec, head = _lm_parts(model)
    body = body if body is not None else dec
    h = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
             position_ids=batch["position_ids"], use_cache=False).last_hidden_state
    tgt = batch["labels"][:, 1:]
    sel = tgt != IGNORE
    logits = head(h[:, :-1][sel]).float()
    loss = F.cross_entropy(logits, tgt[sel], reduction="sum")
    n = sel.sum()
    return (loss / n if reduction == "mean" else loss), n


class LossModule(nn.Module):
    """Wraps a causal LM so that forward returns `lm_loss` (DDP/FSDP need the loss computed inside forward)."""

    def __init__(self, model, reduction: str = "sum"):
        super().__init__()
        self.lm = model
        self.reduction = reduction

    def forward(self, input_ids, attention_mask, position_ids, labels):
        b = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids, "labels": labels}
        return lm_loss(self.lm, b, self.reduction)[0]


# ---------------------------------------------------------------------------------------------- FLOPs
def flops(cfg, batch: dict, mode: str, head_tokens: int | None = None) -> float:
    """Model FLOPs one training step executes.

    Linear layers: 2 FLOPs per weight per token forward; backward 4 (full: activation + weight grads)
    or 2 (LoRA: activation grads only; adapters' FLOPs are <1 % and ignored). So full = 6·N·T and
    LoRA = 4·N·T, with N = the decoder's non-embedding weights over every token fed and the lm_head's
    weights over the tokens it runs on (labelled tokens only in our loss; all tokens in HF's own).
    Attention: 4·d_model FLOPs per attended (query, key) pair per layer forward (QK^T and PV), x3 with
    backward, for both modes. Embedding lookups, norms and activations are not counted.
    """
    L, H, I = cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = getattr(cfg, "head_dim", None) or H // nh
    per_layer = H * nh * hd + 2 * H * nkv * hd + nh * hd * H + 3 * H * I
    n_body = L * per_layer
    n_head = cfg.vocab_size * H
    t_body = body_tokens(batch)
    t_head = label_tokens(batch) if head_tokens is None else head_tokens
    lin = 2 * n_body * t_body + 2 * n_head * t_head
    att = 4 * nh * hd * attention_pairs(batch) * L
    k = 3 if mode.startswith("full") else 2
    return k * lin + 3 * att


def n_params(cfg) -> tuple[int, int]:
    """(decoder non-embedding weights, lm_head weights)."""
    L, H, I = cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = getattr(cfg, "head_dim", None) or H // nh
    return L * (H * nh * hd + 2 * H * nkv * hd + nh * hd * H + 3 * H * I), cfg.vocab_size * H


QWEN25_15B = dict(  # Qwen2.5(-Coder)-1.5B's config (random weights are used for speed only)
    vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
    num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
    tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645, pad_token_id=151643,
)


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed * 1000 + epoch)
    order = list(range(n))
    rng.shuffle(order)
    return [order[i: i + batch_size] for i in range(0, n, batch_size)]


def clean_sql(text: str) -> str:
    """The SQL in a model reply: drop code fences and anything after the first statement."""
    t = text.strip()
    if "```" in t:
        parts = t.split("```")
        t = parts[1] if len(parts) > 1 else parts[0]
        if t.lower().startswith("sql"):
            t = t[3:]
    t = t.strip()
    if ";" in t:
        t = t.split(";")[0]
    return t.strip()
