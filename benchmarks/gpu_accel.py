"""Data-parallel fine-tuning through accelerate (issue 7): DDP for LoRA, FSDP2 for full fine-tuning.

    # one GPU (the reference), then two:
    python3 benchmarks/gpu_accel.py --mode lora --model DIR --out ref_lora.json
    accelerate launch --config_file configs/accelerate/ddp.yaml  --num_processes 2 benchmarks/gpu_accel.py --mode lora --model DIR --out ddp_lora.json
    python3 benchmarks/gpu_accel.py --mode full --model DIR --out ref_full.json
    accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 2 benchmarks/gpu_accel.py --mode full --model DIR --out fsdp_full.json
    python3 benchmarks/gpu_accel.py --compare ref_lora.json ddp_lora.json --tol 0.01

--model is a Hugging Face folder; with --random the folder's config.json is used with random weights
(the same on every rank: same seed), so only its tokenizer and config need to travel.

Every step sees the same GLOBAL batch (16 examples, the one-GPU recipe's) whatever the number of
processes: rank r takes examples r, r+W, ... and packs them in the shared-prefix layout (gpu_common).
Each rank's summed token loss is scaled by W / (labelled tokens in the global batch), so the gradient
that DDP/FSDP average is exactly the one-GPU mean-token-loss gradient: the runs should agree up to
bf16 rounding and summation order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
CUDA = torch.cuda.is_available()  # False only in the CPU smoke test of the code path
from gpu_common import (  # noqa: E402
    QWEN25_15B, LossModule, epoch_batches, make_examples, shared_prefix_batch, to_device, tokenize,
)


def build_model(a, mode: str):
    from transformers import AutoConfig, AutoModelForCausalLM, Qwen2Config

    dtype = torch.bfloat16 if mode == "lora" else torch.float32
    torch.manual_seed(a.seed)
    if a.random or a.config15b:
        cfg = Qwen2Config(**QWEN25_15B) if a.config15b else AutoConfig.from_pretrained(a.model)
        with torch.device("cuda" if CUDA else "cpu"):
            model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype, attn_implementation="sdpa")
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(a.seed + 1)  # adapters: identical on every rank
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    model.train()
    return model


def compare(ref: str, other: str, tol: float) -> int:
    r, o = json.loads(Path(ref).read_text()), json.loads(Path(other).read_text())
    n = min(len(r["losses"]), len(o["losses"]))
    diffs = [abs(x - y) / abs(x) for x, y in zip(r["losses"][:n], o["losses"][:n])]
    worst = max(diffs)
    speed = r["s_per_step_median"] / o["s_per_step_median"]
    print(f"{other} vs {ref}: {n} steps, loss {r['losses'][-1]:.5f} vs {o['losses'][-1]:.5f}, max rel diff {worst:.2e} "
          f"(tol {tol:g}) -> {'OK' if worst <= tol else 'FAIL'}; step {o['s_per_step_median'] * 1e3:.1f} ms vs "
          f"{r['s_per_step_median'] * 1e3:.1f} ms: speed-up x{speed:.2f}")
    return 0 if worst <= tol else 1


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["lora", "full"], default="lora")
    ap.add_argument("--model", help="Hugging Face folder (weights, or only config + tokenizer with --random)")
    ap.add_argument("--random", action="store_true", help="random weights from --model's config.json")
    ap.add_argument("--config15b", action="store_true", help="random weights of the Qwen2.5-1.5B config")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3, help="steps left out of the timing (still trained)")
    ap.add_argument("--batch-size", type=int, default=16, help="global batch (examples per optimizer step)")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    ap.add_argument("--compare", nargs=2, metavar=("REF", "OTHER"))
    ap.add_argument("--tol", type=float, default=0.01)
    a = ap.parse_args(argv)
    if a.compare:
        return compare(*a.compare, a.tol)

    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    from sqltune import default_db, schema_text
    from sqltune.model import load_tokenizer
    from sqltune.prompt import PromptBuilder

    if CUDA:  # cuDNN attention gives NaN gradients with our block masks (see BENCHMARKS.md); use mem-efficient
        torch.backends.cuda.enable_cudnn_sdp(False)
    acc = Accelerator(mixed_precision=os.environ.get("ACCELERATE_MIXED_PRECISION", "bf16" if CUDA else "no"))
    W, rank = acc.num_processes, acc.process_index
    fsdp = acc.distributed_type == DistributedType.FSDP

    with acc.main_process_first():
        db = default_db()
    tok = load_tokenizer(a.model)
    data = tokenize(tok, PromptBuilder(schema_text(db)), make_examples(150, seed=0))

    model = LossModule(build_model(a, a.mode), reduction="sum")
    params = [p for p in model.parameters() if p.requires_grad]
    lr = a.lr or (2e-4 if a.mode == "lora" else 1e-5)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, **({"foreach": True} if fsdp or not CUDA else {"fused": True}))
    model, opt = acc.prepare(model, opt)

    n = len(data.items)
    per_epoch = epoch_batches(n, a.batch_size, 0)
    global_idx = []
    ep = 0
    while len(global_idx) < a.steps:
        global_idx += epoch_batches(n, a.batch_size, ep)
        ep += 1
    global_idx = global_idx[: a.steps]
    batches, n_glob = [], []
    for idx in global_idx:
        shard = idx[rank::W]
        batches.append(to_device(shared_prefix_batch(data, shard), acc.device))
        n_glob.append(sum(len(data.items[i][1]) for i in idx))

    losses, times = [], []
    sync = torch.cuda.synchronize if CUDA else (lambda: None)
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    for step, (b, ng) in enumerate(zip(batches, n_glob)):
        sync()
        t0 = time.perf_counter()
        loss_sum = model(**b)
        acc.backward(loss_sum * (W / ng))
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        times.append(time.perf_counter() - t0)
        losses.append(loss_sum.detach().float())
    total = torch.stack(losses)
    total = acc.reduce(total, reduction="sum")  # global summed loss per step
    losses = [float(x) / ng for x, ng in zip(total.tolist(), n_glob)]
    timed = sorted(times[a.warmup:])
    res = dict(mode=a.mode, world=W, distributed_type=str(acc.distributed_type), mixed_precision=acc.mixed_precision,
               device=torch.cuda.get_device_name(acc.device) if CUDA else "cpu", steps=a.steps, batch_size=a.batch_size,
               steps_per_epoch=len(per_epoch), lr=lr, weights="random" if (a.random or a.config15b) else "real",
               config="Qwen2.5-1.5B" if a.config15b else a.model, losses=losses,
               s_per_step_median=timed[len(timed) // 2], s_timed_total=sum(times[a.warmup:]),
               max_mem_gb=torch.cuda.max_memory_allocated() / 2**30 if CUDA else 0.0, date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               torch=torch.__version__)
    if acc.is_main_process:
        print(f"{a.mode} world={W} {res['distributed_type']}: loss {losses[0]:.4f} -> {losses[-1]:.4f}, "
              f"median step {res['s_per_step_median'] * 1e3:.1f} ms, mem {res['max_mem_gb']:.1f} GB", flush=True)
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps(res, indent=1))
    acc.wait_for_everyone()
    acc.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
