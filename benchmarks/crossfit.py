"""A dev set cut from the train split: a devsuite-shaped folder in which each database's train split is cut in two by
SQL skeleton (`sqltune.check.sql_skeleton`: every skeleton whole on one side, so paraphrases of one query never
straddle the cut), and each half becomes the other's test. `<db>_a` trains on half A and is judged on half B,
`<db>_b` the reverse; valid stays the devsuite's valid. The devsuite's own test split is not copied, so nothing run
on this folder can read it.

    python benchmarks/crossfit.py --out .gpu/devsuite_xf --seed 20            # every DB with >= 12 train pairs
    python benchmarks/crossfit.py --out DIR --dbs flight_2 singer --sides a   # only the A->B side of two DBs

The folder is what `benchmarks/transfer.py --devsuite DIR` (and `gpu_sweep.sh`, through its KEEP/devsuite) reads:
`DIR/<db>_a/<db>_a.sqlite` is a copy of the database. A choice made on what this folder scores is a choice made on
train/valid only.
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

DEVSUITE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "devsuite"


def halves(rows: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    """Cut `rows` in two by SQL skeleton: skeletons shuffled with `seed`, each given whole to the smaller half."""
    from sqltune.check import sql_skeleton

    groups: dict[str, list[dict]] = collections.defaultdict(list)
    for r in rows:
        groups[sql_skeleton(r["sql"])].append(r)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    a: list[dict] = []
    b: list[dict] = []
    for k in keys:
        (a if len(a) <= len(b) else b).extend(groups[k])
    return a, b


MARK = ".made-by-crossfit"  # in every folder a build writes: a later build may overwrite only such folders


class NotOurs(Exception):
    """A folder a build would write into holds files it did not make."""


def claim(d: Path) -> Path:
    """`d`, made (or found empty, or found marked by an earlier build) and marked; a folder with other files in it is
    refused (`NotOurs`), so that a mistyped --out never overwrites someone's train.jsonl or database."""
    if d.exists() and (not d.is_dir() or (any(d.iterdir()) and not (d / MARK).is_file())):
        raise NotOurs(f"{d} exists and was not made by this script; choose another --out")
    d.mkdir(parents=True, exist_ok=True)
    (d / MARK).write_text("benchmarks/crossfit.py or benchmarks/ckpt_rules.py build\n", encoding="utf-8")
    return d


def build(root: Path, out: Path, dbs: list[str], seed: int, sides: str = "ab") -> list[tuple[str, int, int]]:
    """Write `out/<db>_<side>/` for every db and side; returns (name, train, test) per folder written."""
    from sqltune.dataset import read_jsonl, write_jsonl

    made = []
    for db in dbs:
        src = root / db
        a, b = halves(read_jsonl(src / "train.jsonl"), seed)
        for side, (train, test) in (("a", (a, b)), ("b", (b, a))):
            if side not in sides:
                continue
            name = f"{db}_{side}"
            d = claim(out / name)
            shutil.copyfile(src / f"{db}.sqlite", d / f"{name}.sqlite")
            write_jsonl(d / "train.jsonl", train)
            write_jsonl(d / "test.jsonl", test)
            shutil.copyfile(src / "valid.jsonl", d / "valid.jsonl")
            made.append((name, len(train), len(test)))
    return made


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devsuite", default=str(DEVSUITE))
    ap.add_argument("--out", required=True)
    ap.add_argument("--dbs", nargs="*", default=None, help="default: every DB with at least --min-train train pairs")
    ap.add_argument("--min-train", type=int, default=12)
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--sides", default="ab", choices=["a", "b", "ab"])
    args = ap.parse_args(argv)
    root, out = Path(args.devsuite), Path(args.out)
    if not root.is_dir():
        print(f"error: no devsuite at {root}", file=sys.stderr)
        return 2
    dbs = args.dbs
    if dbs is None:
        from sqltune.dataset import read_jsonl

        dbs = sorted(p.name for p in root.iterdir()
                     if (p / "train.jsonl").is_file() and len(read_jsonl(p / "train.jsonl")) >= args.min_train)
    missing = [d for d in dbs if not (root / d / f"{d}.sqlite").is_file()]
    if missing:
        print(f"error: not in {root}: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        made = build(root, out, dbs, args.seed, args.sides)
    except NotOurs as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, n_train, n_test in made:
        print(f"{name}: train {n_train}, test {n_test}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
