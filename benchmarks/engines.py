"""CPU inference engines against sqltune's PyTorch path (issue 17): same prompts, greedy, same token budget.

Each engine runs in its own virtual environment (they pin other versions than sqltune's), so the
benchmark is split into steps that exchange JSON files in one folder (--dir):

    PY=.venv/bin/python                                   # sqltune's venv
    $PY benchmarks/engines.py prompts --dir D [--adapter A]  # the questions, sqltune's prompts and token ids
    $PY benchmarks/engines.py gguf --dir D                   # the packaged Q4_K_M GGUF, joined + verified
    $PY benchmarks/engines.py pytorch --dir D [--adapter A]  # sqltune's evaluator: one at a time, then batched
    .venv-llama/bin/python benchmarks/engines.py llamacpp --dir D [--lora L.gguf] [--tag T]
    .venv-ov/bin/python benchmarks/engines.py openvino --dir D --model M [--tag T]
    $PY benchmarks/engines.py score --dir D                  # executor + scorer, answers vs PyTorch's, table

The prompts are rendered once by sqltune's one prompt builder and handed to every engine as token
ids (no engine re-tokenises or applies its own chat template). Every engine stops a row at EOS or
once `sqltune.extract.is_complete` says the statement has ended (sqltune's own stopping rule), at
most --max-new-tokens. SQL is taken from the raw text by `sqltune.extract.extract_sql` and scored by
`sqltune.score.score_pairs`, the same as `sqltune eval`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def _load(d: Path, name: str) -> dict:
    if name.endswith(".jsonl"):  # a `*_pred.jsonl` written by sqltune's evaluator (e.g. a run's tuned_test_pred)
        p = json.loads((d / "prompts.json").read_text())
        rows = {r["id"]: r for r in map(json.loads, (d / name).read_text().splitlines())}
        return {"engine": f"pytorch (sqltune evaluator, {name})", "load_seconds": float("nan"), "load_average": [float("nan")],
                "runs": {"batched": {"batch_size": None, "seconds": float("nan"),  # not timed here
                                     "raw": [rows[it["id"]]["raw"] for it in p["items"]]}}}
    return json.loads((d / name).read_text())


def _save(d: Path, name: str, obj: dict) -> None:
    obj.setdefault("load_average", os.getloadavg())
    (d / name).write_text(json.dumps(obj, indent=1))
    print(f"wrote {d / name}", file=sys.stderr)


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw


# ---------------------------------------------------------------- sqltune's venv
def cmd_prompts(a) -> None:
    from sqltune.dataset import load_items
    from sqltune.evaluate import load_for_inference
    from sqltune.generate import eos_token_ids

    items = load_items(a.split)[: a.n]
    # the tokenizer and builder only: load_for_inference checks an adapter's prompt fingerprint too
    model, tok, builder = load_for_inference(a.model, a.adapter, "cpu")
    prompts = [builder.prompt(tok, it["question"]) for it in items]
    _save(a.dir, "prompts.json", {
        "split": a.split, "items": items, "prompts": prompts,
        "token_ids": [tok(p, add_special_tokens=False)["input_ids"] for p in prompts],
        "eos_ids": sorted(eos_token_ids(model, tok)), "max_new_tokens": a.max_new_tokens,
        "fingerprint": builder.fingerprint(tok)})


def cmd_gguf(a) -> None:
    from sqltune.model import PACKAGED, join_parts

    spec = PACKAGED[a.model]
    t = time.perf_counter()
    out = join_parts(spec.part_paths(), a.dir / f"{a.model}.gguf", spec.sha256)
    print(f"{out} ({out.stat().st_size / 1e6:.0f} MB) joined and verified in {time.perf_counter() - t:.1f} s")


def cmd_pytorch(a) -> None:
    from sqltune.db import resolve_db
    from sqltune.evaluate import EvalConfig, load_for_inference, predict, predict_questions
    from sqltune.generate import prefix_cache
    from sqltune.model import pick_device
    from sqltune.serve import PROBE_QUESTIONS

    p = _load(a.dir, "prompts.json")
    dev, db = pick_device("cpu"), resolve_db(None)
    t = time.perf_counter()
    model, tok, builder = load_for_inference(a.model, a.adapter, dev)
    load_s = time.perf_counter() - t
    runs = {}
    for mode in a.modes.split(","):
        bs = a.batch_size if mode == "batched" else 1
        cfg = EvalConfig(batch_size=bs, max_new_tokens=p["max_new_tokens"], autocast=dev.autocast, progress=False)
        t = time.perf_counter()
        if mode == "serve_one_at_a_time":  # what `sqltune serve` does for a lone request: the cached schema prefix
            prefix = prefix_cache(model, tok, [builder.prompt(tok, q) for q in PROBE_QUESTIONS], autocast=dev.autocast)
            prefix_s = time.perf_counter() - t
            raw = [predict_questions(model, tok, builder, [it["question"]], db, cfg, prefix=prefix)[0].raw
                   for it in p["items"]]
        else:
            raw = [r["raw"] for r in predict(model, tok, builder, p["items"], db, cfg)]
        runs[mode] = {"batch_size": bs, "seconds": time.perf_counter() - t, "raw": raw, "load_average": os.getloadavg()}
        if mode == "serve_one_at_a_time":
            runs[mode]["prefix_seconds"] = prefix_s
        print(f"pytorch {mode}: {runs[mode]['seconds']:.1f} s", file=sys.stderr)
    _save(a.dir, f"pytorch{a.tag}.json", {"engine": "pytorch (sqltune)", "load_seconds": load_s, "autocast": dev.autocast,
                                          "threads": __import__("torch").get_num_threads(), "runs": runs})


# ---------------------------------------------------------------- engine venvs (no torch, no transformers)
def _stopper(eos: set[int]):
    from sqltune.extract import is_complete  # pure Python: the same stopping rule as sqltune's decoder

    def done(ids: list[int], text: str) -> bool:
        return bool(ids) and (ids[-1] in eos or is_complete(text))
    return done


def cmd_llamacpp(a) -> None:
    import llama_cpp
    import llama_cpp.llama as llama_mod
    from llama_cpp import Llama, __version__

    if not a.extra_bufts:  # the weight repacking (AMX here) segfaulted on every multi-token decode in this VM
        default = llama_cpp.llama_model_default_params

        def params():
            mp = default()
            mp.use_extra_bufts = False
            return mp
        llama_mod.llama_cpp.llama_model_default_params = params
    p = _load(a.dir, "prompts.json")
    eos, limit = set(p["eos_ids"]), p["max_new_tokens"]
    done = _stopper(eos)
    t = time.perf_counter()
    kw = {"lora_path": str(a.lora)} if a.lora else {}
    llm = Llama(model_path=str(a.gguf or a.dir / "qwen2.5-coder-0.5b.gguf"), n_ctx=4096, n_threads=a.threads,
                n_batch=512, verbose=False, **kw)
    load_s = time.perf_counter() - t
    raws, secs = [], []
    t0 = time.perf_counter()
    for ids in p["token_ids"]:
        t = time.perf_counter()
        out: list[int] = []
        # greedy; generate() reuses the KV cache of the longest prefix shared with the previous prompt
        for tok_id in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
            out.append(tok_id)
            text = _text(llm.detokenize([i for i in out if i not in eos], special=True))
            if done(out, text) or len(out) >= limit:
                break
        raws.append(_text(llm.detokenize([i for i in out if i not in eos], special=True)))
        secs.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    print(f"llama.cpp {__version__}: load {load_s:.2f} s, {len(raws)} questions in {total:.1f} s", file=sys.stderr)
    _save(a.dir, f"llamacpp{a.tag}.json", {
        "engine": f"llama-cpp-python {__version__}", "load_seconds": load_s, "threads": a.threads,
        "extra_bufts": a.extra_bufts,
        "lora": str(a.lora) if a.lora else None,
        "runs": {"one_at_a_time": {"batch_size": 1, "seconds": total, "per_question": secs, "raw": raws,
                                   "load_average": os.getloadavg()}}})


def cmd_openvino(a) -> None:
    import openvino_genai as ov_genai

    p = _load(a.dir, "prompts.json")
    eos, limit = set(p["eos_ids"]), p["max_new_tokens"]
    done = _stopper(eos)
    t = time.perf_counter()
    kw = {}
    if a.lora:  # PEFT's adapter_model.safetensors; PEFT scales B·A by lora_alpha / r, OpenVINO by `alpha`
        peft_cfg = json.loads((a.lora.parent / "adapter_config.json").read_text())
        kw["adapters"] = ov_genai.AdapterConfig(ov_genai.Adapter(str(a.lora)), peft_cfg["lora_alpha"] / peft_cfg["r"])
    sched = ov_genai.SchedulerConfig()
    sched.enable_prefix_caching = True  # the schema prefix's KV blocks are reused across requests
    sched.cache_size = 2  # GB of KV cache
    pipe = ov_genai.LLMPipeline(str(a.model), "CPU", scheduler_config=sched, **kw)
    tok = pipe.get_tokenizer()
    load_s = time.perf_counter() - t

    def config():
        c = pipe.get_generation_config()
        c.max_new_tokens, c.do_sample = limit, False
        c.stop_token_ids = eos
        c.apply_chat_template = False
        return c

    def inputs(rows: list[list[int]]):
        import numpy as np
        import openvino as ov

        width = max(len(r) for r in rows)  # left-padded, masked
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, width - len(r):], mask[i, width - len(r):] = r, 1
        return ov_genai.TokenizedInputs(ov.Tensor(ids), ov.Tensor(mask))

    runs = {}
    # one at a time, with a streamer that stops at the end of the statement (sqltune's rule)
    raws, secs = [], []
    t0 = time.perf_counter()
    for ids in p["token_ids"]:
        t = time.perf_counter()
        got: list[int] = []

        class Stop(ov_genai.StreamerBase):
            def __init__(self):
                super().__init__()

            def write(self, token):
                toks = token if isinstance(token, list) else [token]
                got.extend(toks)
                text = tok.decode([i for i in got if i not in eos], skip_special_tokens=False)
                return ov_genai.StreamingStatus.STOP if done(got, text) else ov_genai.StreamingStatus.RUNNING

            def end(self):
                pass

        pipe.generate(inputs([ids]), config(), streamer=Stop())
        raws.append(tok.decode([i for i in got if i not in eos], skip_special_tokens=False))
        secs.append(time.perf_counter() - t)
    runs["one_at_a_time"] = {"batch_size": 1, "seconds": time.perf_counter() - t0, "per_question": secs, "raw": raws,
                             "load_average": os.getloadavg()}
    print(f"openvino one at a time: {runs['one_at_a_time']['seconds']:.1f} s", file=sys.stderr)
    # batched: a list of prompts in one call (no per-row early stop: rows run to EOS or the budget)
    if a.batch_size > 1:
        raws = []
        t0 = time.perf_counter()
        for i in range(0, len(p["token_ids"]), a.batch_size):
            res = pipe.generate([tok.decode(r, skip_special_tokens=False) for r in p["token_ids"][i:i + a.batch_size]],
                                config())
            raws += list(res.texts)
        runs["batched"] = {"batch_size": a.batch_size, "seconds": time.perf_counter() - t0, "raw": raws,
                           "load_average": os.getloadavg()}
        print(f"openvino batched: {runs['batched']['seconds']:.1f} s", file=sys.stderr)
    _save(a.dir, f"openvino{a.tag}.json", {"engine": f"openvino-genai {ov_genai.__version__}", "load_seconds": load_s,
                                           "lora": str(a.lora) if a.lora else None, "runs": runs})


# ---------------------------------------------------------------- scoring (sqltune's venv)
def cmd_score(a) -> None:
    from sqltune.db import resolve_db
    from sqltune.extract import extract_sql
    from sqltune.score import score_pairs

    p = _load(a.dir, "prompts.json")
    db = resolve_db(None)
    ref = [extract_sql(r) for r in _load(a.dir, a.ref)["runs"]["batched"]["raw"]]
    table = []
    for name in [a.ref, *a.files]:
        res = _load(a.dir, name)
        for mode, run in res["runs"].items():
            sqls = [extract_sql(r) for r in run["raw"]]
            report = score_pairs(db, p["items"], sqls)
            n = len(sqls)
            table.append({"engine": res["engine"], "file": name, "mode": mode, "batch_size": run["batch_size"],
                          "load_s": round(res["load_seconds"], 2), "seconds": round(run["seconds"], 1),
                          "exact": sum(e["exact"] for e in report["examples"]), "n": n,
                          "runs": sum(e["error"] is None for e in report["examples"]),
                          "same_sql_as_pytorch": sum(x == y for x, y in zip(sqls, ref)),
                          "load_average_1m": round(run.get("load_average", res["load_average"])[0], 1)})
    (a.dir / f"table{a.tag}.json").write_text(json.dumps(table, indent=1))
    print("| engine | mode | load s | wall s, all questions | exact | runs | same SQL as the reference | load avg (1 min) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['engine']} | {r['mode']} (bs {r['batch_size']}) | {r['load_s']} | {r['seconds']} | "
              f"{r['exact']}/{r['n']} | {r['runs']}/{r['n']} | {r['same_sql_as_pytorch']}/{r['n']} | {r['load_average_1m']} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("prompts", "gguf", "pytorch", "llamacpp", "openvino", "score"):
        s = sub.add_parser(name)
        s.add_argument("--dir", type=Path, required=True)
        s.add_argument("--tag", default="", help="suffix of the result file (e.g. -lora)")
        s.add_argument("--batch-size", type=int, default=16)
        s.add_argument("--threads", type=int, default=2)
        if name in ("prompts", "pytorch", "gguf"):
            s.add_argument("--model", default="qwen2.5-coder-0.5b")
        if name in ("prompts", "pytorch"):
            s.add_argument("--adapter", default=None, help="a checkpoint folder written by `sqltune train`")
        if name == "pytorch":
            s.add_argument("--modes", default="batched,one_at_a_time,serve_one_at_a_time")
        if name == "prompts":
            s.add_argument("--split", default="exoplanets:test")
            s.add_argument("--n", type=int, default=30)
            s.add_argument("--max-new-tokens", type=int, default=256)
        if name == "llamacpp":
            s.add_argument("--gguf", type=Path, default=None)
            s.add_argument("--lora", type=Path, default=None, help="a LoRA adapter converted to GGUF")
            s.add_argument("--extra-bufts", action="store_true", help="llama.cpp's weight repacking (crashed here)")
        if name == "score":
            s.add_argument("--ref", default="pytorch.json", help="the PyTorch result whose batched run is the reference")
            s.add_argument("files", nargs="*", help="engine results in --dir")
        if name == "openvino":
            s.add_argument("--model", type=Path, required=True, help="an OpenVINO IR folder (or a .gguf file)")
            s.add_argument("--lora", type=Path, default=None, help="adapter_model.safetensors")
    a = ap.parse_args()
    a.dir.mkdir(parents=True, exist_ok=True)
    globals()[f"cmd_{a.cmd}"](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
