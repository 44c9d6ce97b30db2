"""Time the panel's reviewer (`vote.review_scores`) on stored candidate pools, on this machine.

The pools are real: the distinct SQL of dev-half questions whose panel disagreed, as a `review_replay.py --cache`
stores them (`results/nvidia-h200-2026-12-03-s33-review-pool/scores.tgz`, `rv_xf.json`). For each of `--folders`,
the first `--per-folder` questions, at most `--max-sql` SQL each, are scored once for warm-up (one SQL) and then
timed. `--src` puts another checkout's `src` first on the path, so two commits time the same pools (session 33: the
shared-prefix scoring against the whole-sequence scoring before it). `--out` keeps the scores to compare.

    python benchmarks/review_speed.py --scores rv_xf.json --suite .gpu/xf
    git worktree add /tmp/old 61e1243 && python benchmarks/review_speed.py --scores rv_xf.json --suite .gpu/xf \\
        --src /tmp/old/src
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--scores", required=True, type=Path, help="a review_replay.py --cache: the pools to score")
    ap.add_argument("--suite", required=True, type=Path, help="the folders the pools' questions come from")
    ap.add_argument("--folders", nargs="+", default=["flight_2_a", "tvshow_b", "network_1_b"])
    ap.add_argument("--per-folder", type=int, default=4)
    ap.add_argument("--max-sql", type=int, default=8)
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="the sqltune source to time")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(a.src))
    from sqltune.dataset import read_jsonl
    from sqltune.model import load, pick_device
    from sqltune.prompt import PromptBuilder
    from sqltune.schema import schema_text
    from sqltune.vote import review_scores

    pools = json.loads(a.scores.read_text())
    work = []
    for name in a.folders:
        if name not in pools:
            print(f"error: {a.scores} has no pools for {name}", file=sys.stderr)
            return 2
        builder = PromptBuilder(schema_text(a.suite / name / f"{name}.sqlite"), "chat")
        question = {str(g["id"]): g["question"] for g in read_jsonl(a.suite / name / "test.jsonl")}
        for i, sqls in list(pools[name].items())[: a.per_folder]:
            work.append((builder, question[i], sorted(sqls)[: a.max_sql]))
    dev = pick_device(a.device, a.dtype)
    loaded = load(a.model, dev, builder=lambda info: None)
    review_scores(loaded.model, loaded.tokenizer, work[0][0], work[0][1], work[0][2][:1], autocast=bool(dev.autocast))
    t0 = time.perf_counter()
    out = [review_scores(loaded.model, loaded.tokenizer, b, q, s, autocast=bool(dev.autocast)) for b, q, s in work]
    dt = time.perf_counter() - t0
    n = sum(len(s) for _, _, s in work)
    print(f"{a.src}: {len(work)} questions, {n} SQL, {dt:.1f} s ({dt / n:.2f} s per SQL); {dev}")
    if a.out:
        a.out.write_text(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
