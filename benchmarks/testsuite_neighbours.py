"""Manual-check sample: synthetic predictions that exact accepts and the suite rejects (issue 18).

    PYTHONPATH=src python benchmarks/testsuite_neighbours.py [--n 20] [--seed 0]

For every devsuite test split (flight_2 left out: slow to build on a shared CPU), the neighbour
queries of each gold that return the gold's rows on the real database (so exact says "right") are
scored with the suite; a seeded sample of those the suite rejects is written with the question, the
gold, the neighbour and the variant rows that differ, for a person to judge.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sqltune.dataset import load_items  # noqa: E402
from sqltune.execute import connect_readonly, execute  # noqa: E402
from sqltune.score import exact_match, is_ordered  # noqa: E402
from sqltune.testsuite import column_alternatives, build_suite, load_suite, neighbours, read_schema, suite_verdicts  # noqa: E402
from testsuite import OUT, _evidence, devsuite_dbs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    pool, counts = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for folder in devsuite_dbs():
            if folder.name == "flight_2":
                continue
            db = folder / f"{folder.name}.sqlite"
            items = load_items(folder / "test.jsonl")
            meta = load_suite(build_suite(db, items, Path(tmp) / folder.name).folder)
            alts = column_alternatives(read_schema(db)[0])
            con = connect_readonly(db)
            accepted = []
            for it in items:
                g = execute(con, it["sql"])
                for nb in neighbours(it["sql"], alts):
                    r = execute(con, nb)
                    if r.ok and exact_match(g.rows, r.rows, is_ordered(it["sql"])):
                        accepted.append((it, nb))
            con.close()
            verdicts = suite_verdicts(meta, db, [it["sql"] for it, _ in accepted], [nb for _, nb in accepted],
                                      [True] * len(accepted))
            rejected = [(it, nb) for (it, nb), v in zip(accepted, verdicts) if not v]
            counts[folder.name] = {"exact_accepted_neighbours": len(accepted), "suite_rejects": len(rejected)}
            pool += [{"db": folder.name, "id": it["id"], "question": it["question"], "gold_sql": it["sql"],
                      "pred_sql": nb, **_evidence(meta, it["sql"], nb)} for it, nb in rejected]
    sample = random.Random(args.seed).sample(pool, min(args.n, len(pool)))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "neighbour_sample.json").write_text(json.dumps({"counts": counts, "sample": sample}, indent=2, default=str))
    print(json.dumps(counts, indent=2))


if __name__ == "__main__":
    main()
