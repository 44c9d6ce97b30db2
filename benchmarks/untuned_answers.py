"""The untuned model's greedy answers on every devsuite DB, with k retrieved training examples in its prompt.

What a panel (`eval.fallback: panel`) weighs besides the tuned answer: U0 (no examples), U4 and U2 (4 and 2 of the
DB's own train pairs, retrieved by the shipped `fewshot_for`), decoded through the shipped `evaluate.predict` with the
model loaded once (`model.load`) and one prompt builder per DB (`prompt.PromptBuilder` over `schema.schema_text`,
the recipe's chat style). Answers are as written (no repair, no vote, no fallback); `benchmarks/panel_replay.py` combines
them with a run's stored tuned answers.

    python benchmarks/untuned_answers.py --model qwen2.5-coder-1.5b --devsuite ../shared/data/devsuite \\
        --splits valid test --k 0 2 4 --out runs/untuned15
    # -> runs/untuned15/<db>/<split>_k<k>.jsonl  ({id, question, sql, error} per question) + timing.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


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
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args(argv)

    from sqltune.dataset import read_jsonl
    from sqltune.evaluate import EvalConfig, predict
    from sqltune.model import load, pick_device
    from sqltune.prompt import PromptBuilder
    from sqltune.schema import schema_text

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
        for split in a.splits:
            items = read_jsonl(folder / f"{split}.jsonl")
            for k in a.k:
                cfg = EvalConfig(batch_size=a.batch_size, fewshot=k, fewshot_pool=train if k else None,
                                 autocast=bool(dev.autocast), progress=False)
                t = time.perf_counter()
                rows = predict(loaded.model, loaded.tokenizer, builder, items, db, cfg)
                secs = time.perf_counter() - t
                out = a.out / name / f"{split}_k{k}.jsonl"
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text("".join(json.dumps({key: r.get(key) for key in ("id", "question", "sql", "error")})
                                       + "\n" for r in rows), encoding="utf-8")
                timing["runs"].append({"db": name, "split": split, "k": k, "n": len(items), "s": round(secs, 1)})
                print(f"{name} {split} k={k}: {len(items)} questions, {secs:.1f} s", flush=True)
    (a.out / "timing.json").write_text(json.dumps(timing, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
