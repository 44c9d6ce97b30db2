"""One sampled batch through the shipped `generate_texts`, timed per decode step: for comparing transformers
versions on the same machine (session 13: the device image's 5.17 copies every key/value head of the cache to
each query head at each decode step of a padded batch; 5.24 does not).

    python benchmarks/gqa_decode.py --db DB.sqlite --questions train.jsonl [--model M] [--rows 512] [--max-new-tokens 96]

Prints one JSON line: transformers' version, rows, decode steps, seconds, ms per step, new tokens.
"""

from __future__ import annotations

import argparse
import json

from sqltune.dataset import load_items
from sqltune.generate import GenerationStats, generate_texts
from sqltune.model import load_model, pick_device
from sqltune.prompt import PromptBuilder
from sqltune.schema import schema_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True)
    ap.add_argument("--questions", required=True)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--device", default=None)
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--repeat", type=int, default=2, help="batches; the first warms up and is not reported")
    a = ap.parse_args()

    import torch
    import transformers

    dev = pick_device(a.device)
    model, tok, _ = load_model(a.model, dev)
    builder = PromptBuilder(schema_text(a.db))
    qs = [it["question"] for it in load_items(a.questions)]
    prompts = [builder.prompt(tok, qs[i % len(qs)]) for i in range(a.rows)]
    for r in range(a.repeat):
        torch.manual_seed(r)
        st = GenerationStats()
        generate_texts(model, tok, prompts, batch_size=a.rows, max_new_tokens=a.max_new_tokens, progress=False,
                       autocast=dev.autocast, stats=st, temperature=0.9, top_p=0.95, stop=None, loop_stop=False)
    print(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__, "model": a.model,
                      "rows": a.rows, "decode_steps": st.decode_steps, "seconds": round(st.seconds, 3),
                      "ms_per_step": round(1000 * st.seconds / max(1, st.decode_steps), 1),
                      "new_tokens": st.new_tokens, "prefix_tokens": st.prefix_tokens}))


if __name__ == "__main__":
    main()
