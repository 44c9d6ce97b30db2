"""Where the time of a training step goes on this CPU: the shared-prefix step vs whole sequences.

Runs real training steps (forward + backward, no optimiser) of the packaged default model on real
exoplanets training items, for several settings, and prints seconds per example, example tokens/s
and the share of the step spent in the prefix, the suffix layers, the vocabulary projection and
backward. Used for BENCHMARKS.md ("Fine-tuning (issue 8)").

    flock /tmp/sqltune-cpu.lock .venv/bin/python benchmarks/train_bench.py --n 16 --batch-size 8 \
        --top 4 8 24 --plain 2 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--data", default="exoplanets:train")
    ap.add_argument("--n", type=int, default=16, help="examples per setting")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--top", type=int, nargs="*", default=[4], help="trainable top layers (LoRA) to time; 0 = all")
    ap.add_argument("--method", default="lora")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--plain", type=int, default=0, help="also time N examples on whole sequences, batch 1")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--prefix-grad", choices=["on", "off", "both"], default="on",
                    help="backpropagate through the shared prefix (train.prefix_grad); both = time each")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model

    from sqltune.dataset import load_items
    from sqltune.db import resolve_db
    from sqltune.model import load_model, pick_device
    from sqltune.prompt import PromptBuilder
    from sqltune.schema import schema_text
    from sqltune.shared_prefix import SharedPrefix, plain_loss, shared_prefix_len
    from sqltune.train_config import DEFAULT_TARGETS
    from sqltune.train_data import ExampleSet, collate, encode_examples

    if args.threads:
        torch.set_num_threads(args.threads)
    items = load_items(args.data)[: args.n]
    dev = pick_device("cpu", "float32")
    base, tok, _ = load_model(args.model, dev)
    builder = PromptBuilder(schema_text(resolve_db(None)))
    enc = encode_examples(builder, tok, items)
    P = shared_prefix_len([p for p, _ in enc])
    full_tokens = sum(len(p) + len(c) for p, c in enc)
    n_layers = base.config.num_hidden_layers
    rows = []
    print(f"{len(items)} examples, {full_tokens} tokens ({full_tokens / len(items):.0f}/example), shared prefix {P}, "
          f"threads {torch.get_num_threads()}", flush=True)

    model = None
    for top in args.top:
        if model is not None:
            base = model.unload()
        layers = None if top in (0, n_layers) else list(range(n_layers - top, n_layers))
        model = get_peft_model(base, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.05,
                                                target_modules=list(DEFAULT_TARGETS), layers_to_transform=layers))
        model.train()
        ds = ExampleSet(enc, P)
        sp = SharedPrefix(model, enc[0][0][:P])
        t = time.perf_counter()
        sp.precompute(model, [ds], args.batch_size, progress=False)
        pre = time.perf_counter() - t
        order = sorted(range(len(ds)), key=lambda i: len(ds.rows[i]["input_ids"]))
        batches = [collate(tok.pad_token_id)([ds[i] for i in order[b: b + args.batch_size]])
                   for b in range(0, len(order), args.batch_size)]
        for grad in {"on": [True], "off": [False], "both": [True, False]}[args.prefix_grad]:
            sp.grad = grad
            # warm-up on the first batch, then time every batch
            for timed in (False, True):
                fwd = bwd = 0.0
                for batch in batches if timed else batches[:1]:
                    t0 = time.perf_counter()
                    total, n, computed = sp.loss(model, batch)
                    t1 = time.perf_counter()
                    (total / n).backward()
                    t2 = time.perf_counter()
                    model.zero_grad(set_to_none=True)
                    fwd, bwd = fwd + t1 - t0, bwd + t2 - t1
            step = fwd + bwd
            row = {"setting": f"shared prefix, LoRA r{args.rank} top {top or n_layers} layers, prefix grad "
                              f"{'on' if grad else 'off'}", "examples": len(items),
                   "batch_size": args.batch_size, "precompute_s": round(pre, 2), "forward_s": round(fwd, 2),
                   "backward_s": round(bwd, 2), "s_per_example": round(step / len(items), 3),
                   "example_tokens_per_s": round(full_tokens / step, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)

    if args.plain:
        if model is not None:
            base = model.unload()
        model = get_peft_model(base, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.05,
                                                target_modules=list(DEFAULT_TARGETS)))
        model.train()
        ds = ExampleSet(enc[: args.plain], 0)
        toks = sum(len(p) + len(c) for p, c in enc[: args.plain])
        t = time.perf_counter()
        for i in range(len(ds)):
            total, n, _ = plain_loss(model, collate(tok.pad_token_id)([ds[i]]))
            (total / n).backward()
            model.zero_grad(set_to_none=True)
        s = time.perf_counter() - t
        row = {"setting": f"whole sequences, batch 1, LoRA r{args.rank} all layers (logits only on completions)",
               "examples": args.plain, "s_per_example": round(s / args.plain, 3),
               "example_tokens_per_s": round(toks / s, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
