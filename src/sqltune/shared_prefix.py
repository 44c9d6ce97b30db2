"""The shared-prefix training step: the loss of a batch with the common prompt prefix run once.

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


from .train_data import IGNORE, ExampleSet, collate  # noqa: F401 - ExampleSet: annotations

FAST_FAMILIES = ("llama", "qwen2", "qwen3", "mistral")  # plain pre-norm decoder stacks, RoPE, no logit tricks


def shared_prefix_len(seqs: list[list[int]]) -> int:
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


def model_parts(model):
    """(causal LM, decoder stack, output projection) of a model or a PEFT-wrapped model."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base, base.get_decoder(), base.get_output_embeddings()


def fast_path_problem(model, cfg, world_size: int = 1) -> str | None:
    """Why the shared-prefix step cannot be used (None when it can)."""
    if not cfg.shared_prefix:
        return "shared_prefix is off"
    if cfg.gradient_checkpointing:
        return "gradient checkpointing drops the KV cache the shared prefix lives in"
    if world_size > 1:
        return "several processes: each step must go through the wrapped model's forward"
    base, dec, _ = model_parts(model)
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
    base, dec, _ = model_parts(model)
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

    def precompute(self, model, datasets: list["ExampleSet"], batch_size: int, progress: bool) -> None:
        """Hidden states entering layer `start` for the prefix and every row (frozen layers: once)."""
        import torch
        from transformers import DynamicCache

        from .console import progress as bar_on_stderr

        if self.start == 0:
            return
        base, dec, _ = model_parts(model)
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
                with bar_on_stderr(total, f"caching layers 0-{self.start - 1}", progress, unit="ex") as bar:
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

        base, dec, head = model_parts(model)
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
