import json, sys
from pathlib import Path
sys.path.insert(0, "/work/main/src")
from sqltune.score import score_pairs
from sqltune.dataset import read_jsonl
DS = Path("/work/shared/data/devsuite")
tot = {}
for db in sys.argv[2:]:
    run = Path(sys.argv[1]) / db / "seeds"
    rep = json.load(open(run / "tuned_test_report.json"))
    base = json.load(open(run / "base_test_report.json"))
    gold = read_jsonl(DS / db / "test.jsonl")
    dbp = DS / db / f"{db}.sqlite"
    ex = rep["examples"]
    assert [e["id"] for e in ex] == [str(g["id"]) for g in gold]
    T = [e["pool"]["sql"] if e.get("pool") else e["pred_sql"] for e in ex]
    U = [e["pool"]["base_sql"] if e.get("pool") else None for e in ex]
    sT, sU = score_pairs(dbp, gold, T)["examples"], score_pairs(dbp, gold, U)["examples"]
    B = [t if a["executed"] or not b["executed"] else u for t, u, a, b in zip(T, U, sT, sU)]
    sB = score_pairs(dbp, gold, B)["examples"]
    row = {"n": len(gold), "untuned": sum(e["exact"] for e in base["examples"]), "T": sum(e["exact"] for e in sT),
           "base": sum(e["exact"] for e in sB), "panel": sum(e["exact"] for e in ex),
           "panel vs base fixed/broken": (sum(p["exact"] and not b["exact"] for p, b in zip(ex, sB)), sum(b["exact"] and not p["exact"] for p, b in zip(ex, sB))),
           "changed": rep["summary"].get("pool_changed")}
    print(db, row)
    for k, v in row.items():
        if isinstance(v, int):
            tot[k] = tot.get(k, 0) + v
print("pooled", tot)
