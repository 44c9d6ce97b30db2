"""Training rows: items -> (prompt ids, completion ids) exactly as inference tokenises them, the
rows the Trainer iterates (tokens after the shared prefix, their targets) and the batch collator.

The loss covers only the completion (the SQL and the end-of-turn marker): `PromptBuilder.prompt`
encoded alone, then `PromptBuilder.completion` encoded alone.
"""

from __future__ import annotations

import hashlib
import json

from .errors import SqltuneError

IGNORE = -100  # target of a position without loss


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
