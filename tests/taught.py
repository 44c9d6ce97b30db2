"""The tiny random model taught (in a second) to answer every question about the tiny DB with one query.

Serving tests need a model whose SQL runs, so that the page shows a table: 40 AdamW steps on the
prompt sqltune builds for the DB make the 2-layer model write ANSWER greedily.
"""

from __future__ import annotations

from pathlib import Path

ANSWER = "SELECT name, country FROM authors ORDER BY name;"
QUESTIONS = ["Which authors are there?", "List the books.", "How many sales in 2024?", "Who wrote Ficciones?"]


def make_taught_model(base_dir: Path, db: Path, out: Path, steps: int = 40) -> Path:
    """Write the taught model into `out` (once: an existing `out` is reused) and return it."""
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sqltune.prompt import PromptBuilder, encode
    from sqltune.schema import schema_text

    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    builder = PromptBuilder(schema_text(db))
    seqs = []
    for q in QUESTIONS:
        p, c = builder.example(tok, q, ANSWER)
        pi, ci = encode(tok, p), encode(tok, c)
        seqs.append((pi + ci, len(pi)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    torch.manual_seed(0)
    for step in range(steps):
        ids, n_prompt = seqs[step % len(seqs)]
        keep = len(ids) - n_prompt + 1  # logits only where the answer is predicted: 50x less work than all
        logits = model(input_ids=torch.tensor([ids]), logits_to_keep=keep).logits[0, :-1]
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[n_prompt:]))
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
