"""The untuned model's greedy answers on every devsuite DB, with k retrieved training examples in its prompt.

What a panel (`eval.fallback: panel`) weighs besides the tuned answer: U0 (no examples), U4 and U2 (4 and 2 of the
DB's own train pairs, retrieved by the shipped `fewshot_for`), decoded through the shipped `evaluate.predict` with the
model loaded once (`model.load`) and one prompt builder per DB (`prompt.PromptBuilder` over `schema.schema_text`,
the recipe's chat style). Answers are as written (no repair, no vote, no fallback); `benchmarks/panel_replay.py` combines
them with a run's stored tuned answers.

    python benchmarks/untuned_answers.py --model qwen2.5-coder-1.5b --devsuite ../shared/data/devsuite \\
        --splits valid test --k 0 2 4 --out runs/untuned15
    # -> runs/untuned15/<db>/<split>_k<k>.jsonl  ({id, question, sql, error} per question) + timing.json

`--vote N` (N > 1) decodes instead, through the same `predict` with `eval.vote N` (`vote_when: always`), the greedy
answer and N-1 samples per question (`vote.sample_sql`: one prefill, `--temperature`, `--top-p`, `--seed`) and keeps
them all: `<split>_k<k>_v<N>.jsonl` rows are {id, question, sql (the greedy answer), error, candidates: [{sql,
mean_logprob}, ...] (the greedy one first)}, what a replay needs to vote any subset of them. `--extra-pool NAME`
adds the pairs in each DB folder's NAME (e.g. a run's validated synthetic pairs) to the pool the examples are
retrieved from (`--tag` names those answer files apart).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def _row(r: dict) -> dict:
    """What a replay reads of a `predict` row: the greedy answer (a vote's candidate 0) and, with a vote, every
    candidate's SQL and mean log-probability in the order drawn."""
    if "vote" not in r:
        return {key: r.get(key) for key in ("id", "question", "sql", "error")}
    cands = r["vote"]["candidates"]
    return {"id": r.get("id"), "question": r.get("question"), "sql": r.get("greedy_sql"), "error": cands[0]["error"],
            "candidates": [{"sql": c["sql"], "mean_logprob": c["mean_logprob"]} for c in cands]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--devsuite", required=True, type=Path)
    ap.add_argument("--dbs", nargs="*", help="default: every DB folder with a train.jsonl")
    ap.add_argument("--splits", nargs="+", default=["valid", "test"])
    ap.add_argument("--k", nargs="+", type=int, default=[0, 2, 4])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--extra-pool", default=None, metavar="NAME",
                    help="also retrieve examples from <db folder>/NAME (JSONL pairs, e.g. a run's synth.jsonl)")
    ap.add_argument("--tag", default="", help="appended to every answer file's stem (e.g. _syn)")
    ap.add_argument("--vote", type=int, default=1, help="N > 1: keep the greedy answer and N-1 samples per question")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args(argv)
    if a.vote < 1:
        ap.error(f"--vote must be at least 1 (1: the greedy answer only), got {a.vote}")

    from sqltune.dataset import read_jsonl
    from sqltune.evaluate import EvalConfig, predict
    from sqltune.model import load, pick_device
    from sqltune.prompt import PromptBuilder
    from sqltune.schema import schema_text

    from sqltune.vote import VoteSettings

    vote = VoteSettings(a.vote, a.temperature, a.top_p, seed=a.seed, when="always") if a.vote > 1 else None
    dev = pick_device(a.device, a.dtype)
    t0 = time.perf_counter()
    loaded = load(a.model, dev, builder=lambda info: None)
    timing = {"load_s": round(time.perf_counter() - t0, 1), "device": str(dev.device), "runs": []}
    dbs = a.dbs or sorted(p.name for p in a.devsuite.iterdir() if (p / "train.jsonl").is_file())
    for name in dbs:
        folder = a.devsuite / name
        db = folder / f"{name}.sqlite"
        builder = PromptBuilder(schema_text(db), "chat")
        train = read_jsonl(folder / "train.jsonl")
        if a.extra_pool:
            extra = folder / a.extra_pool
            if not extra.is_file():
                raise SystemExit(f"error: {extra} is missing (--extra-pool)")
            train = train + read_jsonl(extra)
        for split in a.splits:
            items = read_jsonl(folder / f"{split}.jsonl")
            for k in a.k:
                cfg = EvalConfig(batch_size=a.batch_size, fewshot=k, fewshot_pool=train if k else None,
                                 autocast=bool(dev.autocast), progress=False, vote=vote)
                t = time.perf_counter()
                rows = predict(loaded.model, loaded.tokenizer, builder, items, db, cfg)
                secs = time.perf_counter() - t
                out = a.out / name / (f"{split}_k{k}{a.tag}.jsonl" if vote is None
                                      else f"{split}_k{k}_v{a.vote}{a.tag}.jsonl")
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text("".join(json.dumps(_row(r)) + "\n" for r in rows), encoding="utf-8")
                timing["runs"].append({"db": name, "split": split, "k": k, "n": len(items), "s": round(secs, 1),
                                       "vote": a.vote, "extra_pool": a.extra_pool})
                print(f"{name} {split} k={k}: {len(items)} questions, {secs:.1f} s", flush=True)
    timing_file = a.out / (f"timing{a.tag}.json" if vote is None else f"timing_v{a.vote}{a.tag}.json")
    timing_file.write_text(json.dumps(timing, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
