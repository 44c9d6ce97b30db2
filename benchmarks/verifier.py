"""A verifier trained per database on the model's own labelled answers (LEVER, Ni et al. 2023), as the panel's judge.

Session 39 found that some answer among the untuned 1.5B's 48 (greedy + 15 samples for each of the panel's three
prompts) is right on 97.7 % of the dev halves' questions, while every judge the untuned model can be (votes, the
reviewer, ...) stays near R1's 87.0 %. LEVER trains a verifier on execution-labelled samples: given the question, the
SQL and what it returns, is the SQL right? Here it is trained per database, as a user's run could: on the model's
answers to the *seed* questions (no examples in the prompt, U0's greedy answer and its samples), each labelled by
executing it against the seed's gold SQL (`score_pairs`, exact), plus the seeds' gold SQL as right answers. A LoRA on
the untuned model learns to answer "Yes" or "No" after a prompt built from the same schema text (`VERIFY_SYSTEM`,
the SQL and its first rows as `prompt.result_preview` shows them); its score is the log-odds logit(Yes) - logit(No).

Three steps (the model runs only in the second; the first and third run here on the CPU):

    # 1. the examples: train (seed questions' answers, labelled) and score (the judged questions' answers)
    python benchmarks/verifier.py build --answers xf --pool xf --suite .gpu/xf --split test --out .gpu/ver/xf.jsonl.gz
    # 2. per folder: a fresh LoRA trained on its train rows, then every score row scored (GPU)
    python benchmarks/verifier.py train --data .gpu/ver/xf.jsonl.gz --model /root/sqh/models/qwen2.5-coder-1.5b \
        --out verifier_xf.json
    # 3. the judge replayed: benchmarks/review_replay.py --verifier verifier_xf.json (rules V1, V2)

Session 41 (`build-cross`): one verifier per group of databases instead of per folder, trained on the labelled
answers of every devsuite database outside the group (their train questions' U0 answers and valid questions' scheme-C
answers), so that what it learns is what makes an answer wrong on databases it never saw:

    python benchmarks/verifier.py build-cross --suite devsuite --answers ds --train-answers train_answers \
        --halves .gpu/xf --halves-answers xf --out .gpu/ver/cross.jsonl.gz
    python benchmarks/verifier.py train --data .gpu/ver/cross.jsonl.gz --epochs 2 --batch 16 --out verifier_cross.json
    python benchmarks/verifier.py pairs --verifier verifier_cross.json --suite .gpu/xf --cache review_xf.json

`--pool`: folders of `untuned_answers.py --vote N` answers in which the seed questions' answers are found, by question
id (for a dev half, the other half's folder holds them: its test questions are this half's train questions).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

VERIFY_SYSTEM = ("You are an expert in SQLite. Given a question about the database below, a SQLite query and the "
                 "first rows it returns, answer Yes if the query answers the question exactly, else No.\n\n"
                 "Database schema:\n{schema}")
YES, NO = "Yes", "No"
# fixed before the dev read (session 40's rule): LoRA on every linear layer of the untuned model
SETTINGS = {"r": 16, "alpha": 32, "dropout": 0.05, "lr": 2e-4, "epochs": 4, "batch": 8, "seed": 0, "max_len": 2048}


def render(tokenizer, schema: str, question: str, sql: str, result: dict | None) -> str:
    """The verifier's prompt: the chat template with `VERIFY_SYSTEM` over the schema text, the question, the SQL and
    its first rows as the user's turn; the reply (its first token, "Yes" or "No") is what is trained and scored."""
    from sqltune.prompt import result_preview

    shown = result_preview((result or {}).get("columns"), (result or {}).get("rows"))
    user = f"Question: {question.strip()}\nSQL: {sql.strip()}\n{shown}\nDoes the SQL answer the question?"
    msgs = [{"role": "system", "content": VERIFY_SYSTEM.format(schema=schema)}, {"role": "user", "content": user}]
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def _answers_by_id(pool: list[Path], split: str, n: int, ks=(0,)) -> dict[str, list[str]]:
    """{question id: [distinct SQL of U<k>'s greedy answer and samples, k in ks]} over every folder of the pools."""
    from repair_replay import _read

    out: dict[str, list[str]] = {}
    for root in pool:
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            for k in ks:
                for r in _read(folder / f"{split}_k{k}_v{n}.jsonl") or []:
                    seen = out.setdefault(str(r["id"]), [])
                    for x in (c.get("sql") for c in r["candidates"]):
                        if x and x not in seen:
                            seen.append(x)
    return out


def _results(con, sqls: list[str]) -> dict[str, dict | None]:
    from sqltune.execute import execute
    from sqltune.prompt import CORRECTION_ROWS

    out = {}
    for x in sqls:
        r = execute(con, x, timeout=5.0)
        out[x] = {"columns": r.columns, "rows": r.rows[:CORRECTION_ROWS]} if r.ok else None
    return out


def _labelled(db: Path, con, tok, schema: str, questions: list[dict], answers: dict[str, list[str]],
              meta: dict) -> tuple[list[dict], int]:
    """Train rows: each question's gold SQL (right) and its distinct answers, labelled by executing them against the
    gold (`score_pairs`, exact); answers that fail to run are left out (the panel never judges such an answer).
    Returns (rows, how many are right); `meta` is merged into every row."""
    from sqltune.score import score_pairs

    todo = [(q, x) for q in questions for x in dict.fromkeys([q["sql"]] + answers.get(str(q["id"]), []))]
    if not todo:
        return [], 0
    ex = score_pairs(db, [q for q, _ in todo], [x for _, x in todo])["examples"]
    res = _results(con, [x for _, x in todo])
    rows, n_pos = [], 0
    for (q, x), e in zip(todo, ex):
        if res[x] is None:
            continue
        label = int(bool(e["exact"]))
        n_pos += label
        rows.append(dict(meta, role="train", id=str(q["id"]), sql=x, label=label,
                         text=render(tok, schema, q["question"], x, res[x])))
    return rows, n_pos


def _to_score(con, tok, schema: str, questions: list[dict], ans: dict, meta: dict) -> list[dict]:
    """Rows to score: every distinct SQL of scheme C (the panel's three greedy answers and their samples) that runs,
    for each question."""
    from sampled_panel import schemes

    rows = []
    for g in questions:
        i = str(g["id"])
        sqls = [x for x in dict.fromkeys(schemes(*ans[i])["C"]) if x]
        got = _results(con, sqls)
        rows += [dict(meta, role="score", id=i, sql=x, text=render(tok, schema, g["question"], x, got[x]))
                 for x in sqls if got[x] is not None]
    return rows


def _write_rows(rows: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(f"wrote {len(rows)} rows to {out}")


def build(a) -> int:
    from sampled_panel import read_answers

    from sqltune.dataset import read_jsonl
    from sqltune.execute import connect_readonly
    from sqltune.model import load_tokenizer, resolve_model
    from sqltune.schema import schema_text

    tok = load_tokenizer(resolve_model(a.tokenizer))
    seeds_answers = _answers_by_id(a.pool, a.pool_split, a.vote)
    rows = []
    for folder in sorted(p for p in a.answers.iterdir() if p.is_dir()):
        name = folder.name
        db = a.suite / name / f"{name}.sqlite"
        schema = schema_text(db)
        seeds = read_jsonl(a.suite / name / "train.jsonl")
        judged = [g for sp in a.split for g in read_jsonl(a.suite / name / f"{sp}.jsonl")]
        missing = [str(s["id"]) for s in seeds if str(s["id"]) not in seeds_answers]
        if missing:
            raise SystemExit(f"error: no answers for {len(missing)} of {name}'s seed questions in --pool "
                             f"(e.g. {missing[0]})")
        ans = {i: v for sp in a.split for i, v in read_answers(folder, sp, a.vote).items()}
        con = connect_readonly(db)
        try:
            train_rows, n_pos = _labelled(db, con, tok, schema, seeds, seeds_answers, {"folder": name})
            score_rows = _to_score(con, tok, schema, judged, ans, {"folder": name})
        finally:
            con.close()
        rows += train_rows + score_rows
        print(f"{name}: train {len(train_rows)} ({n_pos} right), score {len(score_rows)}", flush=True)
    _write_rows(rows, a.out)
    return 0


def groups_of(names: list[str], k: int) -> dict[str, str]:
    """{database: group}: the names sorted and dealt round-robin into `k` groups g0..g<k-1> (session 41's rule)."""
    return {n: f"g{i % k}" for i, n in enumerate(sorted(names))}


def build_cross(a) -> int:
    """Session 41: one verifier per group of databases, trained on the labelled answers of every database outside
    the group (their train questions' U0 answers, their valid questions' scheme-C answers, and each gold SQL), and
    scoring the scheme-C answers of the group's own dev halves (`--halves`) and valid/test questions. Rows carry
    `unit` (the group: what `train` fits one verifier to) beside `folder` (where their scores are filed)."""
    from sampled_panel import read_answers, schemes

    from sqltune.dataset import read_jsonl
    from sqltune.execute import connect_readonly
    from sqltune.model import load_tokenizer, resolve_model
    from sqltune.schema import schema_text

    tok = load_tokenizer(resolve_model(a.tokenizer))
    names = sorted(p.name for p in a.suite.iterdir() if (p / f"{p.name}.sqlite").is_file())
    if not names:
        raise SystemExit(f"error: no databases in {a.suite}")
    group = groups_of(names, a.groups)
    units = sorted(set(group.values()))
    train_ans = _answers_by_id([a.train_answers], "train", a.vote)
    rows: list[dict] = []
    for name in names:
        db = a.suite / name / f"{name}.sqlite"
        schema = schema_text(db)
        train_q = read_jsonl(a.suite / name / "train.jsonl")
        valid_q = read_jsonl(a.suite / name / "valid.jsonl")
        missing = [str(q["id"]) for q in train_q if str(q["id"]) not in train_ans]
        if missing:
            raise SystemExit(f"error: no answers for {len(missing)} of {name}'s train questions in "
                             f"{a.train_answers} (e.g. {missing[0]})")
        ds = {sp: read_answers(a.answers / name, sp, a.vote) for sp in ("valid", "test")}
        valid_ans = {i: [x for x in dict.fromkeys(schemes(*v)["C"]) if x] for i, v in ds["valid"].items()}
        con = connect_readonly(db)
        try:
            lab, pos = _labelled(db, con, tok, schema, train_q, train_ans, {"db": name})
            lab_v, pos_v = _labelled(db, con, tok, schema, valid_q, valid_ans, {"db": name})
            # this DB's labelled rows train every group's verifier but its own
            for u in units:
                if u != group[name]:
                    rows += [dict(r, unit=u, folder=u) for r in lab + lab_v]
            own = {"unit": group[name], "db": name}
            n_score = 0
            for sp in ("valid", "test"):
                sc = _to_score(con, tok, schema, read_jsonl(a.suite / name / f"{sp}.jsonl"), ds[sp],
                               dict(own, folder=name))
                rows += sc
                n_score += len(sc)
        finally:
            con.close()
        print(f"{name} ({group[name]}): train {len(lab)} ({pos} right) + valid {len(lab_v)} ({pos_v} right), "
              f"score {n_score}", flush=True)
    for half in sorted(p for p in (a.halves_answers.iterdir() if a.halves_answers else []) if p.is_dir()):
        base = next((n for n in names if half.name in (f"{n}_a", f"{n}_b")), None)
        if base is None:
            raise SystemExit(f"error: {half.name} is not a half (<db>_a or <db>_b) of a database in {a.suite}")
        db = a.halves / half.name / f"{half.name}.sqlite"
        con = connect_readonly(db)
        try:
            sc = _to_score(con, tok, schema_text(db), read_jsonl(a.halves / half.name / "test.jsonl"),
                           read_answers(half, "test", a.vote), {"unit": group[base], "db": base, "folder": half.name})
        finally:
            con.close()
        rows += sc
        print(f"{half.name} ({group[base]}): score {len(sc)}", flush=True)
    for u in units:
        t = [r for r in rows if r["unit"] == u and r["role"] == "train"]
        print(f"{u}: {', '.join(n for n in names if group[n] == u)}; {len(t)} train rows "
              f"({sum(r['label'] for r in t)} right)", flush=True)
    _write_rows(rows, a.out)
    return 0


def _batches(items: list, size: int):
    for b in range(0, len(items), size):
        yield items[b: b + size]


def _encode(tok, texts: list[str], max_len: int, device):
    import torch

    ids = [tok(t, add_special_tokens=False)["input_ids"][-max_len:] for t in texts]
    width = max(len(x) for x in ids)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    x = torch.tensor([[pad] * (width - len(r)) + r for r in ids], device=device)  # left-padded: the reply is last
    m = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in ids], device=device)
    return x, m


def _yes_no_logits(model, tok, texts: list[str], max_len: int, yes: int, no: int):
    x, m = _encode(tok, texts, max_len, next(model.parameters()).device)
    pos = (m.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=x, attention_mask=m, position_ids=pos, logits_to_keep=1).logits[:, -1]
    return logits[:, [yes, no]].float()


def train(a) -> int:
    from contextlib import nullcontext

    import torch
    from peft import LoraConfig, get_peft_model

    from sqltune.model import load, pick_device

    cfg = dict(SETTINGS, **{k: v for k, v in (("epochs", a.epochs), ("batch", a.batch)) if v is not None})
    # one verifier per unit (a folder, or with build-cross a group of databases); scores are filed by folder
    data: dict[str, dict[str, list]] = {}
    with gzip.open(a.data, "rt") as f:
        for line in f:
            r = json.loads(line)
            data.setdefault(r.get("unit", r["folder"]), {"train": [], "score": []})[r["role"]].append(r)
    if a.folders:
        data = {k: v for k, v in data.items() if k in a.folders}
    dev = pick_device(a.device, a.dtype)
    loaded = load(a.model, dev, builder=lambda info: None)
    base, tok = loaded.model, loaded.tokenizer
    yes = tok(YES, add_special_tokens=False)["input_ids"]
    no = tok(NO, add_special_tokens=False)["input_ids"]
    if len(yes) != 1 or len(no) != 1:
        raise SystemExit(f"error: '{YES}' / '{NO}' are not one token each for this tokenizer")
    yes, no = yes[0], no[0]
    out = json.loads(a.out.read_text()) if a.out.is_file() else {}
    done = out.setdefault("_units", [])
    todo = [n for n in data if n not in done and n not in out]
    if todo and out.get("_settings", cfg) != cfg:  # one file, one set of settings: resuming must not mix them
        raise SystemExit(f"error: {a.out} was trained with {out['_settings']}, not {cfg}")
    if todo:
        out["_settings"] = cfg

    def amp():
        return torch.autocast(device_type=dev.device, dtype=torch.bfloat16) if dev.autocast else nullcontext()

    for name, part in sorted(data.items()):
        if name not in todo:
            print(f"{name}: scored already", flush=True)
            continue
        t0 = time.perf_counter()
        torch.manual_seed(cfg["seed"])
        lora = LoraConfig(r=cfg["r"], lora_alpha=cfg["alpha"], lora_dropout=cfg["dropout"], task_type="CAUSAL_LM",
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        model = get_peft_model(base, lora)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg["lr"])
        rows = part["train"]
        n_pos = sum(r["label"] for r in rows)
        n_neg = len(rows) - n_pos
        # balanced: each class weighs half the loss whatever its count (a class with no rows weighs nothing)
        w = torch.tensor([len(rows) / (2 * max(n_pos, 1)) if n_pos else 0.0,
                          len(rows) / (2 * max(n_neg, 1)) if n_neg else 0.0], device=dev.device)
        rng = random.Random(cfg["seed"])
        losses = []
        model.train()
        steps = 0
        for _ in range(cfg["epochs"]):
            order = list(rows)
            rng.shuffle(order)
            for b in _batches(order, cfg["batch"]):
                target = torch.tensor([0 if r["label"] else 1 for r in b], device=dev.device)
                with amp():
                    lg = _yes_no_logits(model, tok, [r["text"] for r in b], cfg["max_len"], yes, no)
                loss = torch.nn.functional.cross_entropy(lg, target, weight=w)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
                steps += 1
        model.eval()
        scores: dict[str, dict[str, dict[str, float]]] = {}
        train_right = 0
        with torch.inference_mode(), amp():
            for b in _batches(rows, 16):
                lg = _yes_no_logits(model, tok, [r["text"] for r in b], cfg["max_len"], yes, no)
                d = (lg[:, 0] - lg[:, 1]).tolist()
                train_right += sum(int((q > 0) == bool(r["label"])) for q, r in zip(d, b))
            for b in _batches(part["score"], 16):
                lg = _yes_no_logits(model, tok, [r["text"] for r in b], cfg["max_len"], yes, no)
                for q, r in zip((lg[:, 0] - lg[:, 1]).tolist(), b):  # logit(Yes) - logit(No): log-odds of right
                    scores.setdefault(r["folder"], {}).setdefault(r["id"], {})[r["sql"]] = round(q, 4)
        base = model.unload()  # the LoRA layers out, the untuned weights as they were
        took = time.perf_counter() - t0
        first = sum(losses[:5]) / max(len(losses[:5]), 1)
        last = sum(losses[-5:]) / max(len(losses[-5:]), 1)
        info = {"train": len(rows), "right": n_pos, "steps": steps, "loss_first": round(first, 4),
                "loss_last": round(last, 4), "train_acc": round(train_right / max(len(rows), 1), 4),
                "seconds": round(took, 1)}
        cross = any("unit" in r for r in rows + part["score"])  # build-cross: the unit is a group of databases
        for folder in sorted(set(scores) | (set() if cross else {name})):
            out[folder] = dict(info, scores=scores.get(folder, {}), **({"unit": name} if cross else {}))
        done.append(name)
        a.out.write_text(json.dumps(out, indent=0))
        print(f"{name}: {len(rows)} train ({n_pos} right), {steps} steps, loss {first:.3f} -> {last:.3f}, train acc "
              f"{train_right / max(len(rows), 1):.3f}, {len(part['score'])} scored, {took:.0f} s", flush=True)
    return 0


def pairs(a) -> int:
    """How often a judge ranks a right answer above a wrong one to the same question: over every (right, wrong) pair
    of a folder's scored SQL, labelled by `score_pairs` (exact) against the question's gold, the verifier's rate and,
    with `--cache` (review_replay.py's), the reviewer's over the pairs it scored, and on those pairs all three judges
    (the verifier, the reviewer, review_replay's V3 sum of their z-scores); per folder, the verifier's AUC."""
    from sqltune.dataset import read_jsonl
    from sqltune.score import score_pairs

    from review_replay import zsum

    ver = json.loads(a.verifier.read_text())
    rev = json.loads(a.cache.read_text()) if a.cache else {}
    by_v, both = [], []  # both: (verifier, reviewer, z-sum) right on a pair both judges scored
    for name, v in sorted((k, v) for k, v in ver.items() if not k.startswith("_")):
        gold = {str(g["id"]): g for g in read_jsonl(a.suite / name / f"{a.split}.jsonl")}
        todo = [(i, x) for i, d in v["scores"].items() for x in d]
        ex = score_pairs(a.suite / name / f"{name}.sqlite", [gold[i] for i, _ in todo], [x for _, x in todo])
        right = {k: bool(e["exact"]) for k, e in zip(todo, ex["examples"])}
        pos = [v["scores"][i][x] for i, x in todo if right[(i, x)]]
        neg = [v["scores"][i][x] for i, x in todo if not right[(i, x)]]
        auc = (sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
               if pos and neg else None)
        for i, d in v["scores"].items():
            r = rev.get(name, {}).get(i, {})
            zs = zsum(d, r)
            for p in (x for x in d if right[(i, x)]):
                for n in (x for x in d if not right[(i, x)]):
                    by_v.append(d[p] > d[n])
                    if p in r and n in r:
                        both.append((d[p] > d[n], r[p] > r[n], zs[p] > zs[n]))
        print(f"{name}: {len(pos)} right, {len(neg)} wrong, AUC {'-' if auc is None else f'{auc:.3f}'}")
    rate = [sum(t[k] for t in both) / max(len(both), 1) for k in range(3)]
    print(f"right above wrong, same question: verifier {sum(by_v) / max(len(by_v), 1):.3f} of {len(by_v)} pairs"
          + (f"; reviewer {rate[1]:.3f} of {len(both)}" if a.cache else ""))
    if a.cache:
        print(f"on the {len(both)} pairs both scored: verifier {rate[0]:.3f}, reviewer {rate[1]:.3f}, "
              f"z(reviewer) + z(verifier) {rate[2]:.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="the labelled train rows and the rows to score, rendered (CPU)")
    b.add_argument("--answers", required=True, type=Path, help="answers of the judged split (untuned_answers.py)")
    b.add_argument("--pool", required=True, type=Path, nargs="+", help="answer folders holding the seeds' answers")
    b.add_argument("--pool-split", default="test", help="the split name of the --pool answer files")
    b.add_argument("--suite", required=True, type=Path)
    b.add_argument("--split", nargs="+", default=["test"], help="the judged splits (one verifier scores them all)")
    b.add_argument("--vote", type=int, default=16)
    b.add_argument("--tokenizer", default="qwen2.5-coder-0.5b", help="a model whose chat template renders (Qwen2.5's "
                   "0.5B and 1.5B share theirs)")
    b.add_argument("--out", required=True, type=Path)
    x = sub.add_parser("build-cross", help="session 41: rows for one verifier per group of databases, each trained on "
                       "the other groups' labelled answers (CPU)")
    x.add_argument("--suite", required=True, type=Path, help="the devsuite (train/valid/test per database)")
    x.add_argument("--answers", required=True, type=Path, help="answers to every DB's valid and test questions "
                   "(untuned_answers.py --vote N, k 4, 0, 2)")
    x.add_argument("--train-answers", required=True, type=Path, help="U0 answers to every DB's train questions")
    x.add_argument("--halves", type=Path, default=None, help="crossfit.py's dev halves (their test is scored too)")
    x.add_argument("--halves-answers", type=Path, default=None, help="answers to the halves' test questions")
    x.add_argument("--groups", type=int, default=4)
    x.add_argument("--vote", type=int, default=16)
    x.add_argument("--tokenizer", default="qwen2.5-coder-0.5b")
    x.add_argument("--out", required=True, type=Path)
    t = sub.add_parser("train", help="per folder (or per group): train a LoRA verifier, score (GPU)")
    t.add_argument("--data", required=True, type=Path)
    t.add_argument("--model", default="qwen2.5-coder-1.5b")
    t.add_argument("--device", default=None)
    t.add_argument("--dtype", default=None)
    t.add_argument("--folders", nargs="*", default=None)
    t.add_argument("--epochs", type=int, default=None, help="override (session 40's rule fixes 4; session 41's 2)")
    t.add_argument("--batch", type=int, default=None, help="override (session 41's rule fixes 16 for build-cross)")
    t.add_argument("--out", required=True, type=Path)
    q = sub.add_parser("pairs", help="how often the verifier (and the reviewer) ranks a right answer above a wrong one")
    q.add_argument("--verifier", required=True, type=Path, help="`train`'s scores")
    q.add_argument("--suite", required=True, type=Path, help="the folders the scores are filed under")
    q.add_argument("--split", default="test")
    q.add_argument("--cache", type=Path, default=None, help="review_replay.py's reviewer cache, for its rate beside")
    a = ap.parse_args(argv)
    if a.cmd == "build-cross" and (a.halves is None) != (a.halves_answers is None):
        ap.error("--halves and --halves-answers go together")
    return {"build": build, "build-cross": build_cross, "train": train, "pairs": pairs}[a.cmd](a)


if __name__ == "__main__":
    raise SystemExit(main())
