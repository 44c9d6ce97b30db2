"""One-GPU speed benchmark for issue 7: bf16 LoRA and full fine-tuning, batched generation.

    python3 benchmarks/gpu_bench.py --model /root/sqh/models/qwen2.5-coder-0.5b --out $OUT/bench.json
    python3 benchmarks/gpu_bench.py --model ... --only peak,train05,gen,train15

Everything here is a plain PyTorch + peft loop over sqltune's own prompts (PromptBuilder over the
exoplanets schema); see gpu_common.py for the two batch layouts (padded / shared-prefix), the loss
(lm_head on labelled tokens only) and how FLOPs are counted. Each section is guarded: one failing
section is reported and the others still run. A table is printed last; full numbers go to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_common import (  # noqa: E402
    QWEN25_15B, clean_sql, epoch_batches, flops, lm_loss, make_examples, padded_batch, shared_prefix_batch,
    shared_prefix_len, to_device, tokenize,
)

RESULTS: list[dict] = []
DEV = "cuda"  # a CPU smoke run (tests, --device cpu) sets "cpu"


def log(*a):
    print(*a, flush=True)


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def autocast():
    # bf16 autocast on CUDA; the CPU smoke run stays in fp32 (bf16 is emulated, very slow, on most CPUs)
    return torch.autocast(DEV, dtype=torch.bfloat16) if DEV == "cuda" else contextlib.nullcontext()


def base_dtype():
    return torch.bfloat16 if DEV == "cuda" else torch.float32


def max_mem_gb():
    return torch.cuda.max_memory_allocated() / 2**30 if DEV == "cuda" else 0.0


def empty_cache():
    gc.collect()
    if DEV == "cuda":
        torch.cuda.empty_cache()


def measure_peak(n: int = 8192, reps: int = 20) -> float:
    """bf16 matmul TFLOP/s (median of `reps` timed products after warm-up), random data."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync()
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        a @ b
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e) / 1e3)
    ts.sort()
    del a, b
    return 2 * n**3 / ts[len(ts) // 2] / 1e12


# ---------------------------------------------------------------------------------------------- models
def lora_wrap(model, r: int = 16, alpha: int = 32, dropout: float = 0.05, lean: bool = False):
    """peft LoRA on every linear layer. lean: no dropout and adapters kept in the base dtype (bf16),
    which removes peft's per-layer fp32 casts and dropout kernels (fewer launches per step)."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0 if lean else dropout, target_modules="all-linear",
                     task_type="CAUSAL_LM")
    return get_peft_model(model, cfg, autocast_adapter_dtype=not lean)


def prepare(base, mode: str):
    """A trainable copy of `base` (bf16 on the GPU) for `mode`:
    lora | lora_lean | full (fp32 master) | full_bf16."""
    m = copy.deepcopy(base)
    if mode == "lora":
        m = lora_wrap(m)  # base stays bf16 and frozen; adapters are fp32 (peft's default)
    elif mode == "lora_lean":
        m = lora_wrap(m, lean=True)
    elif mode == "full":
        m = m.float()  # fp32 master weights, bf16 matmuls under autocast
    elif mode == "full_bf16":
        pass  # bf16 weights and optimizer states (what a plain "bf16 full fine-tune" does)
    else:
        raise ValueError(mode)
    m.train()
    return m


def random_model(cfg_kwargs: dict, dtype=torch.bfloat16):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(**cfg_kwargs)
    torch.manual_seed(0)
    with torch.device(DEV):
        m = Qwen2ForCausalLM._from_config(cfg, attn_implementation="sdpa", dtype=dtype)
    return m


# ---------------------------------------------------------------------------------------------- train
def train_run(name, base, mode, data, pad_id, layout, batch_size, epochs=1, max_steps=None, head="labels",
              lr=None, peak=None, warmup=2, keep=False, pad_to=1, compile=None, fixed_len=False, profile=False):
    """Time `epochs` epochs (or max_steps steps) of training; returns a result dict (and the model if keep).

    compile: None | "default" | "reduce-overhead" (CUDA graphs): torch.compile of the decoder body
    (the lm_head + loss stay eager). fixed_len: every shared-prefix batch padded to one length (one
    shape to compile). The warm-up steps (compilation included) are timed separately.
    """
    model = prepare(base, mode)
    cfg = model.config
    params = [p for p in model.parameters() if p.requires_grad]
    lr = lr or (2e-4 if mode.startswith("lora") else 1e-5)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
    n = len(data.items)
    idx_batches = [b for ep in range(epochs) for b in epoch_batches(n, batch_size, ep)]
    if max_steps:
        idx_batches = (idx_batches * (max_steps // len(idx_batches) + 1))[:max_steps]
    length = None
    if layout == "shared" and (fixed_len or compile):
        length = -(-max(shared_prefix_len(data, idx) for idx in idx_batches) // 64) * 64
    build = (lambda idx: padded_batch(data, idx, pad_id)) if layout == "padded" else (
        lambda idx: shared_prefix_batch(data, idx, pad_to=pad_to, length=length))
    cpu_batches = [build(idx) for idx in idx_batches]
    batches = [to_device(b, DEV) for b in cpu_batches]
    # FLOPs of the real tokens only (padding not counted as useful work)
    count = [padded_batch(data, idx, pad_id) if layout == "padded" else shared_prefix_batch(data, idx)
             for idx in idx_batches]
    total_flops = sum(flops(cfg, b, mode.replace("_lean", ""), None if head == "labels" else
                            (int(b["attention_mask"].sum()) if b["attention_mask"].dim() == 2 else None)) for b in count)
    ex_tokens = sum(data.example_tokens(idx) for idx in idx_batches)
    fed_tokens = sum(int(b["input_ids"].numel()) for b in count)
    body = None
    if compile:
        from gpu_common import _lm_parts

        body = torch.compile(_lm_parts(model)[0], mode=None if compile == "default" else compile, dynamic=False)

    def step_loss(b):
        if compile == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration: earlier graph outputs may be reused
        with autocast():
            if head == "hf":  # the plain way: HF computes logits for every position, mean loss
                return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss
            return lm_loss(model, b, body=body)[0]

    sync()
    tw = time.perf_counter()
    for b in batches[:warmup]:  # warm-up: compilation, kernels, allocator, cuBLAS handles (no optimizer step)
        step_loss(b).backward()
    model.zero_grad(set_to_none=True)
    sync()
    warm_s = time.perf_counter() - tw
    if DEV == "cuda":
        torch.cuda.reset_peak_memory_stats()
    prof = None
    if profile:
        from torch.profiler import ProfilerActivity, profile as tprofile

        prof = tprofile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
        prof.__enter__()
    losses = []
    t0 = time.perf_counter()
    for b in batches:
        loss = step_loss(b)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    sync()
    dt = time.perf_counter() - t0
    losses = [float(x) for x in losses]
    bad = [i for i, x in enumerate(losses) if x != x or x in (float("inf"), float("-inf"))]
    res = dict(name=name, mode=mode, layout=layout, head=head, batch_size=batch_size, steps=len(batches),
               epochs=epochs if not max_steps else None, seconds=dt, s_per_step=dt / len(batches),
               warmup_steps=warmup, warmup_seconds=warm_s, compile=compile, length=length,
               example_tokens=ex_tokens, fed_tokens=fed_tokens, example_tok_s=ex_tokens / dt, fed_tok_s=fed_tokens / dt,
               tflops=total_flops / dt / 1e12, mfu=(total_flops / dt / 1e12 / peak) if peak else None,
               loss_first=losses[0], loss_last=losses[-1], first_nonfinite_step=bad[0] if bad else None,
               max_mem_gb=max_mem_gb(), lr=lr, params=sum(p.numel() for p in model.parameters()),
               trainable=sum(p.numel() for p in params))
    if prof is not None:
        prof.__exit__(None, None, None)
        ka = prof.key_averages()
        res["profile_cuda"] = ka.table(sort_by="self_cuda_time_total", row_limit=12, max_name_column_width=60)
        res["profile_cpu"] = ka.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60)
        res["kernels_per_step"] = sum(e.count for e in ka if e.device_type.name == "CUDA") / len(batches)
        log(res["profile_cuda"])
        log(res["profile_cpu"])
        log(f"  CUDA kernels per step: {res['kernels_per_step']:.0f}")
    log(f"  {name}: {dt:.2f} s for {len(batches)} steps ({dt / len(batches) * 1e3:.1f} ms/step; warm-up {warm_s:.1f} s), "
        f"{res['tflops']:.0f} TFLOP/s = {100 * (res['mfu'] or 0):.1f}% of peak, loss {losses[0]:.3f} -> {losses[-1]:.3f}"
        + (f", NON-FINITE from step {bad[0]}" if bad else ""))
    del opt, batches
    if keep:
        return res, model
    del model, body
    empty_cache()
    return res


# ---------------------------------------------------------------------------------------------- generate
def tokenizable(sql: str) -> str | None:
    """None (scored as 'no SQL') for text sqlglot cannot even tokenize: sqltune.execute lets that
    TokenError (and a RecursionError on deeply nested garbage) escape (reported to the lead), and such
    text is never a correct answer."""
    import sqlglot

    try:
        sqlglot.parse(sql, read="sqlite")
    except sqlglot.errors.ParseError:
        return sql  # SQLite judges syntax; execute() handles this one
    except (Exception, RecursionError):  # noqa: BLE001 - TokenError / RecursionError escape execute()
        return None
    return sql


def gen_run(name, model, tok, builder, evalset, db, static=False, reps=2, max_new_tokens=128, one_at_a_time=None):
    from sqltune.score import score_pairs

    tok.padding_side = "left"
    qs = evalset if one_at_a_time is None else evalset[:one_at_a_time]
    prompts = [builder.prompt(tok, e["question"]) for e in qs]
    kw = dict(max_new_tokens=max_new_tokens, do_sample=False, top_p=None, top_k=None, temperature=None,
              pad_token_id=tok.pad_token_id)
    if static:
        kw["cache_implementation"] = "static"
    groups = [prompts] if one_at_a_time is None else [[p] for p in prompts]
    times, texts, new_tokens = [], [], 0
    model.eval()
    for r in range(reps):
        texts, new_tokens = [], 0
        sync()
        t0 = time.perf_counter()
        for g in groups:
            enc = tok(g, return_tensors="pt", padding=True, add_special_tokens=False).to(DEV)
            fp32 = next(model.parameters()).dtype == torch.float32
            with torch.inference_mode(), (autocast() if fp32 else contextlib.nullcontext()):
                out = model.generate(**enc, **kw)
            gen = out[:, enc["input_ids"].shape[1]:]
            new_tokens += int(gen.shape[1])
            texts += tok.batch_decode(gen, skip_special_tokens=True)
        sync()
        times.append(time.perf_counter() - t0)
        log(f"  {name} rep {r}: {times[-1]:.2f} s")
    preds = [tokenizable(clean_sql(t)) for t in texts]
    rep = score_pairs(db, qs, preds)
    best = min(times[1:]) if len(times) > 1 else times[0]
    res = dict(name=name, questions=len(qs), static=static, one_at_a_time=one_at_a_time is not None, times=times,
               seconds=best, qps=len(qs) / best, max_new_steps=new_tokens, accuracy=rep["summary"],
               sample=[{"q": q["question"], "gold": q["sql"], "pred": p} for q, p in list(zip(qs, preds))[:5]])
    log(f"  {name}: {best:.2f} s, {res['qps']:.1f} q/s, exact {rep['summary'].get('exact')}")
    return res


def gen_sqltune_run(name, model, tok, builder, evalset, db, batch_size=32, reps=2, max_new_tokens=128):
    """sqltune.generate.generate_sql: shared-prefix KV cache, batched greedy, early stop per row."""
    from sqltune.generate import GenerationStats, generate_sql
    from sqltune.score import score_pairs

    qs = [e["question"] for e in evalset]
    times = []
    model.eval()
    fp32 = next(model.parameters()).dtype == torch.float32
    for r in range(reps):
        stats = GenerationStats()
        sync()
        t0 = time.perf_counter()
        gens = generate_sql(model, tok, builder, qs, batch_size=batch_size, max_new_tokens=max_new_tokens,
                            progress=False, autocast=fp32, stats=stats)
        sync()
        times.append(time.perf_counter() - t0)
        log(f"  {name} rep {r}: {times[-1]:.2f} s")
    preds = [tokenizable(g.sql) if g.sql else None for g in gens]
    rep = score_pairs(db, evalset, preds)
    best = min(times[1:]) if len(times) > 1 else times[0]
    res = dict(name=name, questions=len(qs), impl="sqltune.generate_sql", batch_size=batch_size, times=times,
               seconds=best, qps=len(qs) / best, accuracy=rep["summary"], stats=stats.to_dict(),
               sample=[{"q": e["question"], "gold": e["sql"], "pred": p, "raw": g.raw[:300]}
                       for e, p, g in list(zip(evalset, preds, gens))[:5]])
    log(f"  {name}: {best:.2f} s, {res['qps']:.1f} q/s, exact {rep['summary'].get('exact')}; raw[0]: {gens[0].raw[:200]!r}")
    return res


# ---------------------------------------------------------------------------------------------- main
def guarded(section):
    def deco(fn):
        def run(*a, **k):
            log(f"== {section}")
            try:
                return fn(*a, **k)
            except Exception as e:  # noqa: BLE001 - report and go on with the next section
                traceback.print_exc()
                RESULTS.append(dict(name=section, error=f"{type(e).__name__}: {e}"))
                empty_cache()
        return run
    return deco


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="HF folder of the real weights (default: sqltune's resolution)")
    ap.add_argument("--only", default="peak,equiv,baseline05,train05,compile05,gen,train15",
                    help="sections: peak,equiv,nan,baseline05,profile,eager05,train05,compile05,gen,train15")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-train", type=int, default=150)
    ap.add_argument("--n-eval", type=int, default=30)
    ap.add_argument("--cudnn-sdp", action="store_true",
                    help="leave PyTorch's cuDNN attention on (off by default: NaN gradients with our masks, see 'nan')")
    ap.add_argument("--no-static", action="store_true", help="skip the static-cache (compiled) generation")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run of the code paths")
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu_bench.json"))
    a = ap.parse_args(argv)
    only = set(a.only.split(","))
    global DEV
    DEV = a.device

    from transformers import AutoModelForCausalLM

    from sqltune import default_db, schema_text
    from sqltune.model import load_tokenizer, resolve_model
    from sqltune.prompt import PromptBuilder

    torch.backends.cuda.matmul.allow_tf32 = True
    if DEV == "cuda" and not a.cudnn_sdp:
        torch.backends.cuda.enable_cudnn_sdp(False)  # masked SDPA then runs on the memory-efficient kernel
    env = dict(cudnn_sdp=bool(a.cudnn_sdp), device=torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu", torch=torch.__version__,
               transformers=__import__("transformers").__version__, peft=__import__("peft").__version__,
               date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), argv=sys.argv)
    log(json.dumps(env))
    peak = None
    if "peak" in only:
        peak = measure_peak()
        log(f"bf16 matmul peak (8192^3, median of 20): {peak:.0f} TFLOP/s")
    env["peak_tflops"] = peak

    db = default_db()
    builder = PromptBuilder(schema_text(db))
    location = a.model or resolve_model(None)
    tok = load_tokenizer(location)
    train, evalset = make_examples(a.n_train, seed=0), make_examples(a.n_eval, seed=1)
    data = tokenize(tok, builder, train)
    log(f"data: {len(data.items)} examples, prefix {len(data.prefix)} tokens, "
        f"{data.example_tokens() / len(data.items):.0f} tokens/example")
    env.update(prefix_tokens=len(data.prefix), tokens_per_example=data.example_tokens() / len(data.items))
    base = AutoModelForCausalLM.from_pretrained(location, dtype=base_dtype(), attn_implementation="sdpa").to(DEV)
    base.eval()
    pad_id = tok.pad_token_id

    @guarded("equiv")
    def equiv():
        idx = list(range(a.batch_size))
        pb, sb = to_device(padded_batch(data, idx, pad_id), DEV), to_device(shared_prefix_batch(data, idx), DEV)
        with torch.no_grad(), autocast():
            lp, lsh = lm_loss(base, pb)[0].item(), lm_loss(base, sb)[0].item()
            lhf = base(input_ids=pb["input_ids"], attention_mask=pb["attention_mask"], labels=pb["labels"]).loss.item()
        m32 = copy.deepcopy(base).float()
        with torch.no_grad():
            lp32, ls32 = lm_loss(m32, pb)[0].item(), lm_loss(m32, sb)[0].item()
        del m32
        empty_cache()
        r = dict(name="equiv", padded_bf16=lp, shared_bf16=lsh, hf_padded_bf16=lhf, padded_fp32=lp32, shared_fp32=ls32,
                 rel_diff_bf16=abs(lp - lsh) / abs(lp), rel_diff_fp32=abs(lp32 - ls32) / abs(lp32))
        log(f"  loss padded vs shared-prefix: bf16 {lp:.5f} vs {lsh:.5f}; fp32 {lp32:.6f} vs {ls32:.6f}")
        RESULTS.append(r)

    def tr(*args, **kw):
        try:
            return train_run(*args, **kw)
        except Exception as e:  # noqa: BLE001 - one variant failing does not stop the others
            traceback.print_exc()
            empty_cache()
            return dict(name=args[0], error=f"{type(e).__name__}: {e}")

    def gen_after(name, res_model):
        res, m = res_model if isinstance(res_model, tuple) else (res_model, None)
        RESULTS.append(res)
        if m is not None:
            if "gen" in only:
                try:
                    RESULTS.append(gen_run(name, m, tok, builder, evalset, db, reps=1))
                except Exception as e:  # noqa: BLE001
                    traceback.print_exc()
                    RESULTS.append(dict(name=name, error=f"{type(e).__name__}: {e}"))
            del m
            empty_cache()

    bs, E = a.batch_size, a.epochs

    @guarded("baseline05")
    def baseline05():
        RESULTS.append(tr("lora_padded_hf_1ep", base, "lora", data, pad_id, "padded", bs, 1, head="hf", peak=peak))
        RESULTS.append(tr("full_bf16_padded_hf_1ep", base, "full_bf16", data, pad_id, "padded", bs, 1, head="hf", peak=peak))

    @guarded("profile")
    def profile():
        for mode in ("full", "lora"):
            RESULTS.append(tr(f"profile_{mode}_shared", base, mode, data, pad_id, "shared", bs, max_steps=5, peak=peak,
                              profile=True))

    @guarded("train05")
    def train05():
        gen_after("gen_after_lora_eager", tr(f"lora_shared_{E}ep", base, "lora", data, pad_id, "shared", bs, E,
                                             peak=peak, fixed_len=True, keep=True))
        RESULTS.append(tr(f"lora_lean_shared_{E}ep", base, "lora_lean", data, pad_id, "shared", bs, E, peak=peak,
                          fixed_len=True))
        gen_after("gen_after_full_eager", tr(f"full_shared_{E}ep", base, "full", data, pad_id, "shared", bs, E,
                                             peak=peak, fixed_len=True, keep=True))
        RESULTS.append(tr(f"full_bf16_shared_{E}ep", base, "full_bf16", data, pad_id, "shared", bs, E, peak=peak,
                          fixed_len=True))
        for b2 in (32, 64):
            for mode in ("lora", "full"):
                RESULTS.append(tr(f"{mode}_shared_b{b2}_{E}ep", base, mode, data, pad_id, "shared", b2, E, peak=peak,
                                  pad_to=64))

    @guarded("nan")
    def nan():
        """Which SDPA backend gives non-finite gradients on a 64-example shared-prefix batch (real weights)?"""
        from torch.nn.attention import SDPBackend, sdpa_kernel

        idx = list(range(64))
        L = -(-shared_prefix_len(data, idx) // 64) * 64
        out = dict(name="nan_by_sdpa_backend", tokens=L)
        for label, b in (("unpadded", shared_prefix_batch(data, idx)), ("padded_to_64", shared_prefix_batch(data, idx, length=L))):
            b = to_device(b, DEV)
            for be in ("CUDNN_ATTENTION", "EFFICIENT_ATTENTION", "MATH"):
                m = copy.deepcopy(base).float()
                try:
                    with sdpa_kernel([getattr(SDPBackend, be)]), autocast():
                        loss, _ = lm_loss(m, b)
                    loss.backward()
                    g = torch.stack([p.grad.float().norm() for p in m.parameters() if p.grad is not None])
                    out[f"{label}_{be}"] = dict(loss=loss.item(), grad_finite=bool(torch.isfinite(g).all()),
                                                grad_norm=float(g.norm()))
                except Exception as e:  # noqa: BLE001
                    out[f"{label}_{be}"] = f"{type(e).__name__}: {str(e)[:120]}"
                del m
                empty_cache()
                log(f"  {label} {be}: {out[f'{label}_{be}']}")
        RESULTS.append(out)

    @guarded("eager05")
    def eager05():
        gen_after("gen_after_lora_eager", tr(f"lora_shared_{E}ep", base, "lora", data, pad_id, "shared", bs, E,
                                             peak=peak, fixed_len=True, keep=True))
        gen_after("gen_after_full_eager", tr(f"full_shared_{E}ep", base, "full", data, pad_id, "shared", bs, E,
                                             peak=peak, fixed_len=True, keep=True))
        RESULTS.append(tr(f"full_shared_b64_{E}ep", base, "full", data, pad_id, "shared", 64, E, peak=peak, pad_to=64))

    @guarded("compile05")
    def compile05():
        for mode, cmode, b2 in (("full", "default", bs), ("lora", "default", bs), ("lora_lean", "default", bs),
                                ("lora", "default", 32)):
            keep = b2 == bs and mode in ("full", "lora")
            gen_after(f"gen_after_{mode}_b{b2}_{cmode}", tr(f"{mode}_shared_b{b2}_{E}ep_compile_{cmode}", base, mode,
                                                            data, pad_id, "shared", b2, E, peak=peak, compile=cmode,
                                                            keep=keep))

    @guarded("gen")
    def gen():
        try:
            RESULTS.append(gen_sqltune_run("gen_sqltune_b32", base, tok, builder, evalset, db, batch_size=32, reps=1))
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            RESULTS.append(dict(name="gen_sqltune_b32", error=f"{type(e).__name__}: {e}"))
        RESULTS.append(gen_run("gen_batched_dynamic", base, tok, builder, evalset, db, reps=3))
        if not a.no_static:
            RESULTS.append(gen_run("gen_batched_static_compiled", base, tok, builder, evalset, db, static=True, reps=3))

    @guarded("train15")
    def train15():
        big = random_model(QWEN25_15B)
        for name, mode, layout, b2, steps, kw in [
            ("1.5B_full_padded_b16", "full", "padded", 16, 10, {}),
            ("1.5B_full_bf16_padded_b16", "full_bf16", "padded", 16, 10, {}),
            ("1.5B_full_shared_b16", "full", "shared", 16, 20, {"fixed_len": True}),
            ("1.5B_full_shared_b16_compile", "full", "shared", 16, 20, {"compile": "default"}),
            ("1.5B_full_bf16_shared_b64_compile", "full_bf16", "shared", 64, 10, {"compile": "default"}),
        ]:
            r = tr(name, big, mode, data, pad_id, layout, b2, max_steps=steps, peak=peak, **kw)
            r["weights"] = "random (Qwen2.5-1.5B config)"
            RESULTS.append(r)
        del big

    for sec, fn in [("equiv", equiv), ("nan", nan), ("baseline05", baseline05), ("profile", profile),
                    ("eager05", eager05), ("train05", train05), ("compile05", compile05), ("gen", gen),
                    ("train15", train15)]:
        if sec in only:
            fn()
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps({"env": env, "results": RESULTS}, indent=1))

    log("\n| run | steps | s | ms/step | warm-up s | example tok/s | fed tok/s | TFLOP/s | % peak | loss first->last | mem GB |")
    log("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in RESULTS:
        if "error" in r:
            log(f"| {r['name']} | ERROR {r['error'][:80]} |")
        elif "s_per_step" in r:
            log(f"| {r['name']} | {r['steps']} | {r['seconds']:.2f} | {r['s_per_step'] * 1e3:.1f} | {r['warmup_seconds']:.1f} | {r['example_tok_s']:.0f} | "
                f"{r['fed_tok_s']:.0f} | {r['tflops']:.0f} | {100 * (r['mfu'] or 0):.1f} | {r['loss_first']:.3f}->{r['loss_last']:.3f} | "
                f"{r['max_mem_gb']:.1f} |")
        elif "qps" in r:
            acc = r["accuracy"]
            log(f"| {r['name']} | {r['questions']} q | {r['seconds']:.2f} | times {['%.2f' % t for t in r['times']]} | "
                f"{r['qps']:.1f} q/s | exact {acc.get('exact')} fuzzy {acc.get('fuzzy')} |")
        else:
            log(f"| {r['name']} | {json.dumps({k: v for k, v in r.items() if k != 'name'})} |")


if __name__ == "__main__":
    main()
